// The admin page's spend per UTC day (table, uPlot plot, CSV export) and the ledger's
// newest rows. Loaded before admin.js, which holds the helpers these call (api, cell, $).
"use strict";

const PLOT_COLORS = ["#4fa3ff", "#ffb454", "#ff6b6b", "#7fd962", "#c792ea", "#5ccfe6", "#f07178"];
let spendPlot = null;

function spendParams(format) {
  const group = $("spend-group").value;
  const params = new URLSearchParams({ group_by: `day,${group}` });
  if ($("spend-since").value.trim()) params.set("since", $("spend-since").value.trim());
  if ($("spend-until").value.trim()) params.set("until", $("spend-until").value.trim());
  if (format) params.set("format", format);
  return { group, params };
}

function drawSpend(lines, group) {
  // One series per tenant / key / model: cost per UTC day (a float, for the plot only).
  const days = [...new Set(lines.map((l) => l.day))].sort();
  const names = [...new Set(lines.map((l) => l[group] ?? "–"))].sort();
  const x = days.map((d) => Date.parse(`${d}T00:00:00Z`) / 1000);
  const series = names.map((name) => days.map((day) => {
    const line = lines.find((l) => l.day === day && (l[group] ?? "–") === name);
    return line ? Number(line.cost_usd) : 0;
  }));
  const container = $("spend-plot");
  if (spendPlot) { spendPlot.destroy(); spendPlot = null; }
  container.replaceChildren();
  if (!days.length) return;
  const axis = { stroke: "#8a96a3", grid: { stroke: "#26313c" }, ticks: { stroke: "#26313c" } };
  const day = 86400;
  spendPlot = new uPlot({
    width: Math.max(300, container.clientWidth || 600), height: 200,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"), // ledger days are UTC
    series: [{}].concat(names.map((name, i) => ({
      label: name, stroke: PLOT_COLORS[i % PLOT_COLORS.length], width: 2,
      points: { show: true, size: 6 },
    }))),
    scales: {
      x: { time: true, auto: false, range: [x[0] - day / 2, x[x.length - 1] + day / 2] },
      y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] },
    },
    axes: [axis, { ...axis, label: "USD", size: 76,
      values: (_u, ticks) => ticks.map((v) => String(+v.toPrecision(2))) }],
  }, [x, ...series], container);
}

async function loadSpend(event) {
  if (event) event.preventDefault();
  const { group, params } = spendParams();
  const body = await api("GET", `/admin/spend?${params}`);
  $("spend-group-head").textContent = group;
  $("spend-table").querySelector("tbody").replaceChildren(...body.data.map((line) => {
    const row = document.createElement("tr");
    row.dataset.group = line[group] ?? "";
    for (const value of [line.day, line[group], line.requests, line.prompt_tokens,
      line.completion_tokens, line.cost_usd]) cell(row, value);
    return row;
  }));
  drawSpend(body.data, group);
  $("spend").dataset.hasData = String(body.data.length > 0);
}

async function exportCsv() {
  const { params } = spendParams("csv");
  const text = await api("GET", `/admin/spend?${params}`);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
  link.download = "llm-gateway-spend.csv";
  link.click();
  URL.revokeObjectURL(link.href);
  $("spend-csv").dataset.lines = String(text.trim().split("\n").length);
}

async function loadLedger() {
  const body = await api("GET", "/admin/ledger?limit=50");
  $("ledger-table").querySelector("tbody").replaceChildren(...body.data.map((r) => {
    const row = document.createElement("tr");
    row.dataset.requestId = r.id;
    for (const value of [r.created_at.replace("T", " ").slice(0, 19), r.id, r.tenant,
      r.key_id, r.model, r.status, r.prompt_tokens, r.completion_tokens, r.cost_usd]) {
      cell(row, value);
    }
    return row;
  }));
}

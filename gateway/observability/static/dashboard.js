// The gateway's live dashboard: polls /dashboard/api/history and draws it with uPlot,
// plus a chat playground that streams from /v1/chat/completions. No build step, no CDN.
"use strict";

const KEY_STORAGE = "llmgw-admin-key";
const COLORS = ["#4fa3ff", "#ffb454", "#ff6b6b", "#7fd962", "#c792ea", "#5ccfe6", "#f07178"];
const plots = new Map(); // panel id -> {plot, names}
let pollTimer = null;

function authHeaders() {
  const key = sessionStorage.getItem(KEY_STORAGE);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function setStatus(text) {
  document.getElementById("status").textContent = text;
}

function showLogin(message) {
  document.getElementById("login").hidden = false;
  setStatus(message);
}

function fmt(value, unit) {
  if (value === null || value === undefined) return "–";
  const digits = Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 1 ? 2 : 3;
  return `${value.toFixed(digits)}${unit ? " " + unit : ""}`;
}

function tick(value) {
  // Axis labels that stay readable for tiny values (costs of a few millionths).
  if (value === 0 || Math.abs(value) >= 1) return String(+value.toFixed(2));
  return String(+value.toPrecision(2));
}

function last(series) {
  for (let i = series.length - 1; i >= 0; i--) if (series[i] !== null) return series[i];
  return null;
}

function panelElement(id, title) {
  let section = document.getElementById(`panel-${id}`);
  if (!section) {
    section = document.createElement("section");
    section.className = "panel";
    section.id = `panel-${id}`;
    section.dataset.points = "0";
    section.dataset.hasData = "false";
    section.innerHTML = `<h2></h2><div class="plot"></div>`;
    section.querySelector("h2").textContent = title;
    document.getElementById("panels").appendChild(section);
  }
  return section;
}

function makePlot(section, panel, names, data) {
  const container = section.querySelector(".plot");
  container.innerHTML = "";
  const series = [{}].concat(names.map((name, i) => ({
    label: name, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: false,
    value: (_u, v) => fmt(v, ""),
  })));
  const axis = { stroke: "#8a96a3", grid: { stroke: "#26313c" }, ticks: { stroke: "#26313c" } };
  const opts = {
    width: Math.max(300, container.clientWidth || 400), height: 180, series,
    scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
    axes: [axis, { ...axis, label: panel.unit, size: 76, values: (_u, ticks) => ticks.map(tick) }],
  };
  return new uPlot(opts, data, container);
}

function drawPanel(id, panel, t) {
  const section = panelElement(id, panel.title);
  const names = Object.keys(panel.series);
  const data = [t].concat(names.map((n) => panel.series[n]));
  // "has data": the newest sample of some series is above zero (activity in the window)
  const hasData = names.some((n) => (panel.series[n].at(-1) ?? 0) > 0);
  const known = plots.get(id);
  if (!names.length) {
    section.querySelector(".plot").innerHTML = `<p class="empty">no data yet</p>`;
    if (known) { known.plot.destroy(); plots.delete(id); }
  } else if (known && known.names.join("\u0000") === names.join("\u0000")) {
    known.plot.setData(data);
  } else {
    if (known) known.plot.destroy();
    plots.set(id, { plot: makePlot(section, panel, names, data), names });
  }
  section.dataset.points = String(t.length);
  section.dataset.hasData = String(hasData);
}

function drawTiles(panels) {
  const sum = (...xs) => (xs.every((x) => x === null) ? null : xs.reduce((a, x) => a + (x || 0), 0));
  const errors = panels.errors.series;
  document.getElementById("tile-rps").textContent = fmt(last(panels.requests.series["requests/s"]));
  document.getElementById("tile-p95").textContent = fmt(last(panels.latency.series.p95), "s");
  document.getElementById("tile-tps").textContent = fmt(last(panels.tokens.series.completion));
  document.getElementById("tile-errors").textContent =
    fmt(sum(last(errors["5xx"]), last(errors["failed runs"])));
  document.getElementById("tile-429").textContent = fmt(last(errors["429"]));
}

async function poll() {
  try {
    const response = await fetch("/dashboard/api/history", { headers: authHeaders() });
    if (response.status === 401 || response.status === 403) {
      showLogin("sign in with the admin key");
      return;
    }
    if (!response.ok) throw new Error(`history: HTTP ${response.status}`);
    const body = await response.json();
    document.getElementById("login").hidden = true;
    for (const [id, panel] of Object.entries(body.panels)) drawPanel(id, panel, body.t);
    drawTiles(body.panels);
    setStatus(`live · ${body.t.length} samples · window ${body.window_s}s`);
    schedule(body.interval_s * 1000);
  } catch (error) {
    setStatus(`offline: ${error.message}`);
    schedule(5000);
  }
}

function schedule(ms) {
  clearTimeout(pollTimer);
  pollTimer = setTimeout(poll, ms);
}

async function loadModels() {
  const response = await fetch("/v1/models", { headers: authHeaders() });
  if (!response.ok) return;
  const select = document.getElementById("chat-model");
  select.innerHTML = "";
  for (const model of (await response.json()).data) {
    select.appendChild(new Option(model.id, model.id));
  }
}

function* sseEvents(buffer) {
  // Yields the data of each complete event; returns what is left of the buffer.
  let end;
  while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
    const block = buffer.slice(0, end);
    buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
    const data = block.split(/\r?\n/).filter((l) => l.startsWith("data:"))
      .map((l) => l.slice(5).replace(/^ /, "")).join("\n");
    if (data) yield data;
  }
  return buffer;
}

function showUsage(usage) {
  document.getElementById("chat-prompt-tokens").textContent = usage.prompt_tokens;
  document.getElementById("chat-completion-tokens").textContent = usage.completion_tokens;
  const cost = document.getElementById("chat-cost");
  const metered = usage.cost !== undefined && usage.cost !== null;
  cost.dataset.cost = metered ? JSON.stringify(usage.cost) : "";
  cost.textContent = metered ? String(usage.cost) : "not metered";
}

function handleChunk(chunk, output) {
  if (chunk.error) throw new Error(chunk.error.message);
  for (const choice of chunk.choices || []) {
    if (choice.delta && choice.delta.content) output.textContent += choice.delta.content;
  }
  if (chunk.usage) showUsage(chunk.usage);
}

async function sendChat(event) {
  event.preventDefault();
  const playground = document.getElementById("playground");
  const output = document.getElementById("chat-output");
  output.textContent = "";
  playground.dataset.state = "streaming";
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: { "content-type": "application/json", ...authHeaders() },
      body: JSON.stringify({
        model: document.getElementById("chat-model").value,
        messages: [{ role: "user", content: document.getElementById("chat-input").value }],
        max_tokens: Number(document.getElementById("chat-max-tokens").value) || 64,
        stream: true, stream_options: { include_usage: true },
      }),
    });
    if (!response.ok) throw new Error((await response.json()).error.message);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const events = sseEvents(buffer + decoder.decode(value, { stream: true }));
      let next;
      while (!(next = events.next()).done) {
        if (next.value !== "[DONE]") handleChunk(JSON.parse(next.value), output);
      }
      buffer = next.value;
    }
    playground.dataset.state = "done";
  } catch (error) {
    output.textContent += `\n[error] ${error.message}`;
    playground.dataset.state = "error";
  }
}

document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY_STORAGE, document.getElementById("admin-key").value);
  loadModels();
  poll();
});
document.getElementById("chat-form").addEventListener("submit", sendChat);
loadModels();
poll();

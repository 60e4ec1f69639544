// The gateway's admin page: keys (create, show the secret once, edit, rotate, revoke) and
// tenants; admin_spend.js adds spend per day (table, plot, CSV) and the ledger's newest
// rows. Every call goes to /admin/* with the admin key (sessionStorage, shared with
// /dashboard). No build step, no CDN; values are written with textContent only.
"use strict";

const KEY_STORAGE = "llmgw-admin-key";
const $ = (id) => document.getElementById(id);
let pending = 0;

class SignInNeeded extends Error {}

function authHeaders() {
  const key = sessionStorage.getItem(KEY_STORAGE);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function setStatus(text) { $("status").textContent = text; }

function busy(delta) {
  pending += delta;
  $("admin").dataset.pending = String(pending);
}

async function api(method, path, body) {
  const headers = { ...authHeaders() };
  if (body !== undefined) headers["content-type"] = "application/json";
  busy(1);
  try {
    const response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401 || response.status === 403) {
      $("login").hidden = false;
      setStatus("sign in with the admin key");
      throw new SignInNeeded("the admin key is needed");
    }
    const isJson = (response.headers.get("content-type") || "").includes("json");
    const data = isJson ? await response.json() : await response.text();
    if (!response.ok) throw new Error(isJson && data.error ? data.error.message : `HTTP ${response.status}`);
    return data;
  } finally {
    busy(-1);
  }
}

async function guarded(work) {
  // Runs an action; its failure is shown on the page (#admin-error).
  $("admin-error").textContent = "";
  try {
    await work();
  } catch (error) {
    if (!(error instanceof SignInNeeded)) $("admin-error").textContent = error.message;
  }
}

// ---- small helpers --------------------------------------------------------------

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  row.appendChild(td);
  return td;
}

function addButton(parent, label, className, onClick) {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = label;
  button.className = className;
  button.addEventListener("click", () => guarded(() => onClick(button)));
  parent.appendChild(button);
  return button;
}

function listOrNull(text) {
  const items = text.split(",").map((s) => s.trim()).filter(Boolean);
  return items.length ? items : null;
}

function numberOrNull(text) { return text.trim() === "" ? null : Number(text); }
function textOrNull(text) { return text.trim() === "" ? null : text.trim(); }

function termsFrom(prefix) {
  // The limits and models of a key or tenant form ("" clears: all models, no limit).
  return {
    models: listOrNull($(`${prefix}-models`).value),
    budget_usd: textOrNull($(`${prefix}-budget`).value),
    budget_period: $(`${prefix}-period`).value,
    rpm: numberOrNull($(`${prefix}-rpm`).value),
    tpm: numberOrNull($(`${prefix}-tpm`).value),
    max_parallel_requests: numberOrNull($(`${prefix}-parallel`).value),
    weight: numberOrNull($(`${prefix}-weight`).value),
    priority: numberOrNull($(`${prefix}-priority`).value),
  };
}

function fillTerms(prefix, item) {
  $(`${prefix}-models`).value = item.models ? item.models.join(", ") : "";
  $(`${prefix}-budget`).value = item.budget_usd ?? "";
  $(`${prefix}-period`).value = item.budget_period;
  $(`${prefix}-rpm`).value = item.rpm ?? "";
  $(`${prefix}-tpm`).value = item.tpm ?? "";
  $(`${prefix}-parallel`).value = item.max_parallel_requests ?? "";
  $(`${prefix}-weight`).value = item.weight ?? "";
  $(`${prefix}-priority`).value = item.priority ?? "";
}

function limitCells(row, item) {
  cell(row, item.models ? item.models.join(", ") : "all");
  cell(row, item.budget_usd === null ? "–" : `${item.budget_usd} / ${item.budget_period}`);
  cell(row, item.period_spend_usd).className = "spent";
  cell(row, item.rpm ?? "–");
  cell(row, item.tpm ?? "–");
  cell(row, item.max_parallel_requests ?? "–");
  cell(row, item.weight ?? "–").className = "weight";
  cell(row, item.priority ?? "–").className = "priority";
}

// ---- keys -----------------------------------------------------------------------

function showSecret(label, secret) {
  $("new-key-label").textContent = label;
  $("new-key-secret").textContent = secret;
  $("new-key").hidden = false;
}

function keyState(key) {
  if (key.revoked_at) return "revoked";
  if (key.expires_at && Date.parse(key.expires_at) <= Date.now()) return "expired";
  return "live";
}

function keyRow(key) {
  const row = document.createElement("tr");
  const state = keyState(key);
  row.dataset.keyId = key.id;
  row.dataset.state = state;
  if (state === "revoked") row.className = "revoked";
  cell(row, key.id);
  cell(row, key.tenant);
  cell(row, key.name);
  limitCells(row, key);
  cell(row, key.expires_at || "never");
  cell(row, state);
  const actions = cell(row, "");
  if (state !== "revoked") {
    addButton(actions, "Edit", "edit", async () => editKey(key));
    addButton(actions, "Rotate", "rotate", async () => rotateKey(key.id));
    addButton(actions, "Revoke", "revoke", async (button) => revokeKey(key.id, button));
  }
  return row;
}

async function loadKeys() {
  const revoked = $("keys-revoked").checked;
  const body = await api("GET", `/admin/keys?include_revoked=${revoked}`);
  $("keys-table").querySelector("tbody").replaceChildren(...body.data.map(keyRow));
}

async function createKey(event) {
  event.preventDefault();
  const created = await api("POST", "/admin/keys", {
    tenant: $("key-tenant").value.trim(), name: textOrNull($("key-name").value),
    expires_at: textOrNull($("key-expires").value), ...termsFrom("key"),
  });
  showSecret(`key ${created.id} for ${created.tenant}:`, created.key);
  $("key-form").reset();
  await Promise.all([loadKeys(), loadLedger()]);
}

async function rotateKey(keyId) {
  const grace = Number($("rotate-grace").value) || 0;
  const rotated = await api("POST", `/admin/keys/${keyId}/rotate`, { grace_period_s: grace });
  const note = grace ? ` (the old one works for ${grace} s more)` : "";
  showSecret(`new secret for key ${keyId}${note}:`, rotated.key);
  await loadKeys();
}

async function revokeKey(keyId, button) {
  if (button.dataset.armed !== "true") { // a second click confirms
    button.dataset.armed = "true";
    button.textContent = "Confirm revoke";
    button.classList.add("danger");
    return;
  }
  await api("DELETE", `/admin/keys/${keyId}`);
  if ($("key-edit-id").textContent === keyId) $("key-edit-form").hidden = true;
  await loadKeys();
}

function editKey(key) {
  $("key-edit-id").textContent = key.id;
  $("key-edit-name").value = key.name ?? "";
  $("key-edit-expires").value = key.expires_at ?? "";
  fillTerms("key-edit", key);
  $("key-edit-form").hidden = false;
}

async function saveKey(event) {
  event.preventDefault();
  const keyId = $("key-edit-id").textContent;
  await api("PATCH", `/admin/keys/${keyId}`, {
    name: textOrNull($("key-edit-name").value),
    expires_at: textOrNull($("key-edit-expires").value), ...termsFrom("key-edit"),
  });
  $("key-edit-form").hidden = true;
  await loadKeys();
}

// ---- tenants --------------------------------------------------------------------

function tenantRow(tenant) {
  const row = document.createElement("tr");
  row.dataset.tenant = tenant.name;
  cell(row, tenant.name);
  limitCells(row, tenant);
  addButton(cell(row, ""), "Edit", "edit", async () => editTenant(tenant));
  return row;
}

async function loadTenants() {
  const body = await api("GET", "/admin/tenants");
  $("tenants-table").querySelector("tbody").replaceChildren(...body.data.map(tenantRow));
}

async function createTenant(event) {
  event.preventDefault();
  await api("POST", "/admin/tenants", { name: $("tenant-name").value.trim(), ...termsFrom("tenant") });
  $("tenant-form").reset();
  await loadTenants();
}

function editTenant(tenant) {
  $("tenant-name").value = tenant.name;
  $("tenant-name").readOnly = true;
  fillTerms("tenant", tenant);
  $("tenant-create").hidden = true;
  $("tenant-save").hidden = false;
}

async function saveTenant() {
  const name = $("tenant-name").value;
  await api("PATCH", `/admin/tenants/${encodeURIComponent(name)}`, termsFrom("tenant"));
  $("tenant-form").reset();
  $("tenant-name").readOnly = false;
  $("tenant-create").hidden = false;
  $("tenant-save").hidden = true;
  await loadTenants();
}

async function refreshAll() {
  await guarded(async () => {
    await Promise.all([loadKeys(), loadTenants(), loadSpend(), loadLedger()]);
    $("login").hidden = true;
    setStatus("signed in");
    $("admin").dataset.ready = "true";
  });
}

$("refresh").addEventListener("click", refreshAll);
$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY_STORAGE, $("admin-key").value);
  refreshAll();
});
$("key-form").addEventListener("submit", (event) => guarded(() => createKey(event)));
$("key-edit-form").addEventListener("submit", (event) => guarded(() => saveKey(event)));
$("key-edit-cancel").addEventListener("click", () => { $("key-edit-form").hidden = true; });
$("new-key-dismiss").addEventListener("click", () => {
  $("new-key-secret").textContent = "";
  $("new-key").hidden = true;
});
$("keys-revoked").addEventListener("change", () => guarded(loadKeys));
$("tenant-form").addEventListener("submit", (event) => guarded(() => createTenant(event)));
$("tenant-save").addEventListener("click", () => guarded(saveTenant));
$("spend-form").addEventListener("submit", (event) => guarded(() => loadSpend(event)));
$("spend-csv").addEventListener("click", () => guarded(exportCsv));
$("ledger-refresh").addEventListener("click", () => guarded(loadLedger));
$("admin").dataset.pending = "0";
refreshAll();

// Runs page: server-side filtered/sorted/paginated table, live progress, actions, submit forms.
import { $, api, onRetry, esc, fmtInt, fmtPct, fmtDuration, statusBadge, flagBadges, ACTIVE, CANCELLABLE, stream,
  throttle, errorText, showFieldErrors } from "./common.js";

const body = $("#runs-body");
const filters = $("#filters");
const selected = new Set();
let cursors = [null];   // cursor of each visited page; the last one is the current page's
let nextCursor = null;
let rows = new Map();   // id -> row data on this page

function query(cursor) {
  const q = new URLSearchParams();
  for (const [k, v] of new FormData(filters)) if (String(v).trim()) q.set(k, String(v).trim());
  if (cursor) q.set("cursor", cursor);
  return q;
}

function fromUrl() {
  const q = new URLSearchParams(location.search);
  for (const el of filters.elements) if (el.name && q.has(el.name)) el.value = q.get(el.name);
}

function actions(r) {
  const out = [];
  if (r.has_model) out.push(`<a class="btn" href="/api/experiments/${r.id}/model" download="experiment-${r.id}.rpg" data-action="download">Download</a>`);
  if (CANCELLABLE.has(r.status)) out.push(`<button type="button" class="btn" data-action="cancel" data-id="${r.id}">Cancel</button>`);
  if (r.status === "failed" || r.status === "cancelled") out.push(`<button type="button" class="btn" data-action="retry" data-id="${r.id}">Retry</button>`);
  return out.join(" ");
}

function progressCell(r) {
  const pct = Math.round(100 * (r.progress || 0));
  const ep = r.epoch !== null && r.epoch !== undefined ? ` · ep ${r.epoch}` : "";
  return `<progress max="1" value="${r.progress || 0}" aria-label="progress of run ${r.id}"></progress> <span class="pct">${pct}%${ep}</span>`;
}

// classification: the best validation accuracy; pose, multitask: the task's primary metric
function metricCell(r) {
  if (!r.task || r.task === "classification") return fmtPct(r.best_val_acc);
  if (r.primary_value === null || r.primary_value === undefined) return "—";
  const value = r.primary_metric === "pckh" ? fmtPct(r.primary_value) : Number(r.primary_value).toFixed(3);
  return `<span class="task-metric" title="${esc(r.task)}: ${esc(r.primary_metric)}, the last epoch's">${esc(r.primary_metric)} ${value}</span>`;
}

function rowHtml(r) {
  const err = r.error ? ` title="${esc(r.error.slice(0, 500))}"` : "";
  return `<tr data-id="${r.id}" class="${esc(r.status)}"${err}>
    <td><input type="checkbox" aria-label="select run ${r.id}" data-select="${r.id}" ${selected.has(r.id) ? "checked" : ""}></td>
    <td class="num">${r.id}</td>
    <td><a href="/runs/${r.id}">${esc(r.name)}</a></td>
    <td class="c-status">${statusBadge(r.status)} ${flagBadges(r.flags)}</td>
    <td class="c-progress">${progressCell(r)}</td>
    <td>${esc(r.arch)}</td><td>${esc(r.scope)}</td>
    <td class="num">${r.ring_size === null ? "—" : fmtInt(r.ring_size)}</td>
    <td class="num">${fmtInt(r.backbone_params)}</td>
    <td class="num c-acc">${metricCell(r)}</td>
    <td class="num"${r.gap !== null && r.gap < 0 ? ' title="negative: validation accuracy above training accuracy (training accuracy is averaged over the epoch while the weights change; the run page says more)"' : ""}>${r.gap === null ? "—" : fmtPct(r.gap)}</td>
    <td class="num">${fmtDuration(r.duration_s)}</td>
    <td>${esc(r.worker || "—")}</td>
    <td class="c-actions">${actions(r)}</td></tr>`;
}

function renderCounts(counts) {
  if (!counts) return;
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  $("#counts").innerHTML = `<span><strong>${total}</strong> runs</span>` +
    Object.entries(counts).map(([s, n]) => `<span>${statusBadge(s)} ${n}</span>`).join("");
}

let loadSeq = 0;  // a slower, older answer must not replace a newer one

async function load() {
  const seq = ++loadSeq;
  const cursor = cursors[cursors.length - 1];
  const q = query(cursor);
  history.replaceState(null, "", `?${query(null)}`);
  let page;
  try {
    page = await api(`/ui/api/runs?${q}`);
  } catch (err) {
    if (seq !== loadSeq) return;
    body.innerHTML = `<tr><td colspan="14" class="state error">Could not load runs: ${esc(errorText(err))}</td></tr>`;
    return;
  }
  if (seq !== loadSeq) return;
  rows = new Map(page.items.map((r) => [r.id, r]));
  nextCursor = page.next_cursor;
  if (page.counts) renderCounts(page.counts);
  body.innerHTML = page.items.length ? page.items.map(rowHtml).join("")
    : `<tr><td colspan="14" class="state">No runs${q.toString() ? " match these filters" : " yet: submit one below"}.</td></tr>`;
  $("#next").disabled = !nextCursor;
  $("#prev").disabled = cursors.length < 2;
  $("#page-no").textContent = `page ${cursors.length}`;
  body.dataset.loaded = "1";
}

const reload = throttle(load, 400);

function applyEvent(ev) {
  const r = rows.get(ev.id);
  if (!r) { if (cursors.length === 1) reload(); return; }
  const finished = r.status !== ev.status && !ACTIVE.has(ev.status);
  Object.assign(r, { status: ev.status, progress: ev.progress, epoch: ev.epoch, best_val_acc: ev.best_val_acc, error: ev.error });
  const tr = body.querySelector(`tr[data-id="${ev.id}"]`);
  if (!tr) return;
  tr.className = r.status;
  tr.querySelector(".c-status").innerHTML = statusBadge(r.status);
  tr.querySelector(".c-progress").innerHTML = progressCell(r);
  tr.querySelector(".c-acc").innerHTML = metricCell(r);
  tr.querySelector(".c-actions").innerHTML = actions(r);
  if (finished) reload();  // final numbers, duration, download
}

async function act(kind, id, button) {
  button.disabled = true;
  try {
    const out = await api(`/api/experiments/${id}/${kind}`, { method: "POST" });
    applyEvent({ ...rows.get(id), ...out, id });
  } catch (err) {
    button.disabled = false;
    alertAction(`${kind} run ${id}: ${errorText(err)}`);
  }
}
function alertAction(text) { $("#selected-count").textContent = text; }

function updateSelection() {
  $("#compare").disabled = selected.size === 0;
  $("#selected-count").textContent = selected.size ? `${selected.size} selected` : "";
}

// --- submit forms
function tabs() {
  const tabEls = [...document.querySelectorAll("[role=tab]")];
  const select = (tab) => {
    for (const t of tabEls) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on)); t.tabIndex = on ? 0 : -1;
      document.getElementById(t.getAttribute("aria-controls")).hidden = !on;
    }
    tab.focus();
  };
  tabEls.forEach((t, i) => {
    t.addEventListener("click", () => select(t));
    t.addEventListener("keydown", (e) => {
      if (e.key === "ArrowRight") select(tabEls[(i + 1) % tabEls.length]);
      if (e.key === "ArrowLeft") select(tabEls[(i + tabEls.length - 1) % tabEls.length]);
    });
  });
}

function simpleSpec(form) {
  const v = Object.fromEntries(new FormData(form));
  const num = (x) => (x === "" || isNaN(Number(x)) ? x : Number(x));
  const spec = {
    name: v.name, model: { arch: v.arch, width: num(v.width) },
    data: { dataset: v.dataset }, train: { epochs: num(v.epochs), batch_size: num(v.batch_size) },
    tags: v.tags ? v.tags.split(",").map((s) => s.trim()).filter(Boolean) : [],
  };
  if (String(v.ring_size).trim()) spec.rpg = { ring_size: num(String(v.ring_size).trim()), scope: v.scope };
  return spec;
}

async function parseText(text) {
  const t = text.trim();
  if (t.startsWith("{")) {
    try { return JSON.parse(t); } catch { /* YAML is a superset: let the server say where */ }
  }
  return api("/ui/api/parse-spec", { method: "POST", body: text, headers: { "Content-Type": "text/plain" } });
}

function bindSubmit(form, build, url, describe) {
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const result = $(".result", form);
    showFieldErrors(form, null);
    result.textContent = "Submitting…";
    try {
      const payload = await build(form);
      const out = await api(url, { method: "POST", json: payload });
      result.textContent = describe(out);
      cursors = [null]; load();
    } catch (err) {
      result.textContent = err.status === 401 ? "Needs a valid API token (field at the top)." : "Not submitted.";
      showFieldErrors(form, err);
    }
  });
}

function init() {
  fromUrl();
  filters.addEventListener("submit", (e) => { e.preventDefault(); cursors = [null]; load(); });
  $("#next").addEventListener("click", () => { if (nextCursor) { cursors.push(nextCursor); load(); } });
  $("#prev").addEventListener("click", () => { if (cursors.length > 1) { cursors.pop(); load(); } });
  body.addEventListener("change", (e) => {
    const id = Number(e.target.dataset.select);
    if (!id) return;
    if (e.target.checked) selected.add(id); else selected.delete(id);
    updateSelection();
  });
  body.addEventListener("click", (e) => {
    const b = e.target.closest("button[data-action]");
    if (b) act(b.dataset.action, Number(b.dataset.id), b);
  });
  $("#compare").addEventListener("click", () => { location.href = `/similarity?ids=${[...selected].join(",")}`; });
  tabs();
  bindSubmit($("#form-simple"), async (f) => simpleSpec(f), "/api/experiments", (o) => `Queued run #${o.id}.`);
  const fromText = async (f) => parseText($("textarea", f).value);
  bindSubmit($("#form-text"), fromText, "/api/experiments", (o) => `Queued run #${o.id}.`);
  bindSubmit($("#form-sweep"), fromText, "/api/sweeps", (o) => `Queued sweep #${o.id} (${o.experiment_ids.length} runs).`);
  onRetry(load);
  load();
  stream("/api/events", { summary: (s) => renderCounts(s.counts), status: applyEvent });
}

init();

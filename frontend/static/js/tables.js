// Tables page: the comparison of sharing variants against stacks (paper Tables 4 and 5).
import { $, api, onRetry, esc, errorText, fmtInt } from "./common.js";
import { loadTasks } from "./tasks.js";

const form = $("#tb-controls");
const state = $("#tb-state");
const table = $("#tb-table");

function query() {
  const q = new URLSearchParams();
  for (const [k, v] of new FormData(form)) { const s = String(v).trim(); if (s) q.set(k, s); }
  return q;
}

function fmt(x, unit) { return unit ? x.toPrecision(3) : `${(100 * x).toFixed(1)}%`; }

function paramsText(c) {
  const parts = [];
  if (c.backbone_params !== null && c.backbone_params !== undefined) parts.push(`${fmtInt(c.backbone_params)} backbone params`);
  if (c.total_params !== null && c.total_params !== undefined) parts.push(`${fmtInt(c.total_params)} total`);
  return parts.join(" · ") || "params unknown";
}

function flaggedHtml(c) {
  if (!c.flagged_ids.length) return "";
  const runs = c.flagged_ids.map((i) => `<a href="/runs/${i}">#${i}</a>`).join(" ");
  const text = c.flagged
    ? `flagged: every run of this cell diverged or stayed near chance (${runs}); not ranked`
    : `${c.flagged_ids.length} flagged run${c.flagged_ids.length === 1 ? "" : "s"} left out: ${runs}`;
  return `<div class="badge-flag" data-flagged="${c.flagged ? "cell" : "runs"}">⚠ ${text}</div>`;
}

function cellHtml(c, metrics) {
  if (!c) return `<td class="empty">—</td>`;
  const lines = metrics.map((m) => {
    const s = c.metrics[m.key];
    if (!s) return `<div class="metric">${esc(m.label)}: —</div>`;
    const best = c.best.includes(m.key);
    const half = (s.max - s.min) / 2;
    return `<div class="metric${best ? " best" : ""}" data-metric="${esc(m.key)}">${best ? `<span aria-label="best ${esc(m.label)}">★</span> ` : ""}`
      + `${esc(m.label)}: <strong>${fmt(s.mean, m.unit)}</strong> ± ${fmt(half, m.unit)}`
      + ` <span class="muted">[${fmt(s.min, m.unit)}, ${fmt(s.max, m.unit)}]</span></div>`;
  }).join("");
  const best = c.best.length ? " best-cell" : "";
  const runs = c.experiment_ids.map((i) => `<a href="/runs/${i}">#${i}</a>`).join(" ");
  return `<td class="cell${best}${c.flagged ? " flagged-cell" : ""}">${lines}<div class="muted">${paramsText(c)} · ${c.n} run${c.n === 1 ? "" : "s"}: ${runs}</div>${flaggedHtml(c)}</td>`;
}

function render(out) {
  const metrics = out.metrics;
  const cols = out.stacks.length ? out.stacks : [null];
  const dirs = metrics.map((m) => `${m.label} (${m.direction} is better)`).join("; ");
  $("#tb-caption").textContent = `${out.task}: ${out.runs} comparable runs. ${dirs}.`;
  $("#tb-summary").textContent = out.summary;
  $("#tb-others").innerHTML = out.others.map((o) => {
    const q = query(); q.set("conditions", o.conditions_key || "");
    const link = o.conditions_key ? ` <a href="?${q}">show their table</a>` : "";
    return `<li>${o.runs} run${o.runs === 1 ? "" : "s"} differ in ${esc(o.differs.join(", ") || "nothing named")}: ${esc(o.description)}.${link}</li>`;
  }).join("");
  table.tHead.innerHTML = `<tr><th scope="col">sharing \\ stacks</th>${cols.map((s) => `<th scope="col">${s === null ? "—" : `${s} sub-network${s === 1 ? "" : "s"}`}</th>`).join("")}</tr>`;
  table.tBodies[0].innerHTML = out.rows.map((row) => {
    const cells = cols.map((st) => cellHtml(out.cells.find((c) => c.row === row && c.stacks === st), metrics));
    return `<tr><th scope="row">${esc(row)}</th>${cells.join("")}</tr>`;
  }).join("");
  table.hidden = false;
}

async function load() {
  const q = query();
  history.replaceState(null, "", `?${q}`);
  if (!q.has("task") && !q.has("sweep")) {
    state.textContent = "Choose a task or a sweep."; table.hidden = true; return;
  }
  state.textContent = "Loading…"; state.classList.remove("error");
  let out;
  try {
    out = await api(`/api/analysis/comparison?${q}`);
  } catch (err) {
    state.textContent = `Could not load the table: ${errorText(err)}`; state.classList.add("error"); table.hidden = true;
    return;
  }
  if (!out.runs) { state.textContent = "No succeeded runs match."; table.hidden = true; $("#tb-summary").textContent = ""; $("#tb-others").innerHTML = ""; return; }
  state.textContent = "";
  render(out);
  table.dataset.ready = "1";
}

const params = new URLSearchParams(location.search);
await loadTasks(form.elements.task, params.get("task") || "", true);
for (const el of form.elements) if (el.name && params.has(el.name)) el.value = params.get(el.name);
if (!params.has("task") && !params.has("sweep")) form.elements.task.value = "pose";
form.addEventListener("submit", (e) => { e.preventDefault(); load(); });
onRetry(load);
load();

// Power-law page: the server builds the figure (points, fits, legend with b, CI and R^2).
import { $, api, onRetry, esc, errorText, plot, linkPointsToRuns } from "./common.js";
import { loadTasks } from "./tasks.js";

const form = $("#pl-controls");
const graph = $("#pl-graph");
const state = $("#pl-state");

function query() {
  const q = new URLSearchParams();
  for (const [k, v] of new FormData(form)) {
    const s = String(v).trim();
    if (!s) continue;
    q.set(k, k === "target" ? String(Number(s) / 100) : s);
  }
  return q;
}

function renderTable(rows, target, empty = "No finished runs.", bytes = false) {
  const key = String(target);
  const unit = bytes ? "Bytes" : "Params";
  $("#pl-target-h").textContent = target ? `${unit} for ${(100 * target).toPrecision(4)}%` : `${unit} for target`;
  $("#pl-table tbody").innerHTML = rows.length ? rows.map((r) => {
    const ci = r.b_ci && r.b_ci.length === 2 ? `[${r.b_ci[0].toFixed(3)}, ${r.b_ci[1].toFixed(3)}]` : "—";
    const need = r.plain ? "baseline" : (r.params_for[key] ?? (r.b === null ? (r.fit_error ? "no fit" : "needs 3 sizes") : "unreachable"));
    return `<tr data-conditions="${esc(r.conditions_key || "")}"><td>${esc(r.series)}<div class="muted small">${esc(r.description || "")}</div></td><td data-method="${esc(r.method || "")}">${esc(r.method || "—")}</td><td class="num">${r.points}</td>
      <td class="num">${r.a === null || r.a === undefined ? "—" : r.a.toPrecision(3)}</td>
      <td class="num">${r.b === null ? "—" : r.b.toFixed(3)}</td><td>${ci}</td>
      <td class="num">${r.r2 === null ? "—" : r.r2.toFixed(3)}</td><td class="num">${esc(need)}</td></tr>`;
  }).join("") : `<tr><td colspan="8" class="state">${esc(empty)}</td></tr>`;
}

// The methods side by side at each budget (the API's budget_table): the best of a row marked.
function fmtValue(v, unit) {
  if (v === null || v === undefined) return "—";
  return unit ? v.toPrecision(4) : `${(100 * v).toFixed(1)}%`;
}

function budgetCellHtml(c, unit) {
  if (!c) return `<td class="cell muted">—</td>`;
  const runs = c.experiment_ids.map((i) => `<a href="/runs/${i}">#${i}</a>`).join(" ");
  const range = c.n > 1 ? ` <span class="muted">(${fmtValue(c.min, unit)}–${fmtValue(c.max, unit)})</span>` : "";
  const delta = c.delta_rpg === null || c.delta_rpg === undefined ? ""
    : `<div class="muted" data-delta="${c.delta_rpg}">Δ rpg ${c.delta_rpg >= 0 ? "+" : "−"}${Math.abs(c.delta_rpg).toFixed(unit ? 3 : 1)}${unit ? ` ${esc(unit)}` : " pts"}${c.separated === null || c.separated === undefined ? "" : c.separated ? ", apart" : ", overlap"}</div>`;
  const flagged = c.flagged_ids.length
    ? `<div class="badge-flag">⚠ ${c.flagged_ids.length} flagged run${c.flagged_ids.length === 1 ? "" : "s"} left out: ${c.flagged_ids.map((i) => `<a href="/runs/${i}">#${i}</a>`).join(" ")}${c.n ? "" : "; not ranked"}</div>` : "";
  const star = c.best ? `<span aria-label="best">★</span> ` : "";
  return `<td class="cell${c.best ? " best-cell" : ""}${c.n ? "" : " flagged-cell"}" data-method="${esc(c.method)}"${c.best ? ' data-best="1"' : ""}>
    <div class="metric${c.best ? " best" : ""}">${star}${fmtValue(c.mean, unit)}${range}</div>${delta}
    <div class="muted">${c.n} run${c.n === 1 ? "" : "s"}${runs ? `: ${runs}` : ""}</div>${flagged}</td>`;
}

function renderBudget(t, unit) {
  const table = $("#pl-budget");
  if (!t || !t.rows.length) {
    table.hidden = true;
    $("#pl-budget-summary").textContent = "No runs to set side by side by method.";
    return;
  }
  if (t.methods.length < 2) {  // one method: its sizes are the figure's; nothing to set side by side
    table.hidden = true;
    $("#pl-budget-summary").textContent = `Only one method (${t.methods[0]}) among these runs: this table sets methods side by side at each budget (a spec's method section: rpg, width, hashed, prune-global).`;
    return;
  }
  $("#pl-budget-summary").textContent = t.summary || "";
  table.querySelector("thead").innerHTML = `<tr><th scope="col">Budget</th>${t.methods.map((m) => `<th scope="col">${esc(m)}</th>`).join("")}</tr>`;
  table.querySelector("tbody").innerHTML = t.rows.map((r) => {
    const apart = r.best_separated === true ? "best apart from the rest" : r.best_separated === false ? "ranges overlap" : "";
    return `<tr data-budget="${esc(String(r.budget))}"><th scope="row">${esc(r.label)}${apart ? `<div class="muted small">${apart}</div>` : ""}</th>${t.methods.map((m) => budgetCellHtml(r.cells[m], unit)).join("")}</tr>`;
  }).join("");
  table.hidden = false;
}

const CLASSIFICATION_METRICS = [["best_val_acc", "best val accuracy"], ["val_acc", "final val accuracy"]];
let taskList = [];

// The metric options of the chosen task (classification: the accuracy columns).
function fillMetrics(task, value) {
  const t = taskList.find((x) => x.name === task);
  const opts = task === "classification" || !t ? CLASSIFICATION_METRICS
    : t.metrics.map((m) => [m.key, `${m.label} (${m.direction} is better)`]);
  form.elements.metric.innerHTML = opts.map(([k, l]) => `<option value="${esc(k)}">${esc(l)}</option>`).join("");
  if (value && opts.some(([k]) => k === value)) form.elements.metric.value = value;
}

// What is fitted and which way is better, stated beside the figure.
function fittedText(out) {
  if (!out.fitted) return "";
  const label = out.task === "classification" ? out.metric.replace(/_/g, " ") : out.label;
  const quantity = out.higher_is_better ? `error (1 − ${label})` : label;
  return `Fitted: ${quantity} = a·P^−b; ${label}: ${out.higher_is_better ? "higher" : "lower"} is better.`;
}

async function load() {
  const q = query();
  history.replaceState(null, "", `?${q}`);
  state.textContent = "Loading…"; state.classList.remove("error");
  let out;
  try {
    out = await api(`/ui/figures/power-law?${q}`);
  } catch (err) {
    state.textContent = `Could not load the power law: ${errorText(err)}`; state.classList.add("error");
    return;
  }
  const gap = q.get("y") === "gap";
  if (!out.points) {
    if (out.excluded) {  // every matching run is flagged: say which, and how to include them
      const runs = out.excluded_runs.map((r) => `<a href="/runs/${r.id}">#${r.id}</a> (${esc(r.flags.join(", ").replace(/_/g, " "))})`).join(", ");
      state.innerHTML = `No unflagged runs to plot: ${out.excluded} succeeded run${out.excluded === 1 ? " is" : "s are"} flagged by the guard rails and left out: ${runs}. Tick “include flagged runs” to show ${out.excluded === 1 ? "it" : "them"}.`;
    } else {
      state.textContent = "No succeeded runs with a backbone parameter count yet: run a sweep over ring sizes.";
    }
    $("#pl-summary").textContent = "";
    renderBudget(out.budget_table, out.unit || "");
    graph.hidden = true; renderTable([], null, out.excluded ? "No fits: every matching run is flagged (above)." : undefined);
    return;
  }
  $("#pl-fitted").textContent = gap ? "" : fittedText(out);
  renderBudget(gap ? null : out.budget_table, out.unit || "");
  $("#pl-summary").textContent = out.summary || "";
  state.textContent = `${out.points} runs in ${out.series} series (one per set of conditions; a size run with several seeds is shown at their mean, the bar spanning them; the fit uses every run).` + (gap ? " Y: train accuracy minus final validation accuracy (the paper's Table 6a; lower: less over-fitting)." : "") +
    (out.excluded ? ` ${out.excluded} flagged run${out.excluded === 1 ? "" : "s"} (diverged or near chance) left out of the fits: hollow grey markers.` : "") +
    (gap ? " No power law is fitted to the gap: it is plotted per run; choose accuracy or error for the fits." : "");
  await plot(graph, out.figure);
  graph.dataset.ready = "1";
  renderTable(gap ? [] : out.table, q.has("target") ? Number(q.get("target")) : null,
    gap ? "No power law is fitted to the train−val gap: choose accuracy or error to see the fits." : undefined, out.x === "bytes");
  linkPointsToRuns(graph);
}

const params = new URLSearchParams(location.search);
taskList = await loadTasks(form.elements.task, params.get("task") || "classification");
fillMetrics(form.elements.task.value, params.get("metric"));
form.elements.task.addEventListener("change", () => fillMetrics(form.elements.task.value));
for (const el of form.elements) {
  if (el.name === "metric" || el.name === "task") continue;
  if (!el.name || !params.has(el.name)) continue;
  if (el.type === "checkbox") { el.checked = params.get(el.name) === "true"; continue; }
  el.value = el.name === "target" ? String(100 * Number(params.get("target"))) : params.get(el.name);
}
form.addEventListener("submit", (e) => { e.preventDefault(); load(); });
onRetry(load);
load();

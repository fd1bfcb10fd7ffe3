// Generalization page: in-distribution vs out-of-distribution accuracy (server-built figure).
import { $, api, onRetry, esc, errorText, fmtInt, fmtPct, plot, linkPointsToRuns } from "./common.js";

const form = $("#ood-controls");
const graph = $("#ood-graph");
const state = $("#ood-state");

function query() {
  const q = new URLSearchParams();
  for (const [k, v] of new FormData(form)) {
    const s = String(v).trim();
    if (s) q.set(k, s);
  }
  return q;
}

function renderTable(rows) {
  $("#ood-table tbody").innerHTML = rows.length ? rows.map((r) => {
    const gap = r.train_acc !== null && r.val_acc !== null ? r.train_acc - r.val_acc : null;
    return `<tr><td><a href="/runs/${r.experiment_id}">#${r.experiment_id} ${esc(r.name)}</a></td>
      <td>${r.scope === "plain" ? "plain" : `RPG (${esc(r.scope)})`}</td><td>${esc(r.arch)}</td>
      <td class="num">${fmtInt(r.backbone_params)}</td><td class="num">${fmtPct(r.val_acc, 2)}</td>
      <td class="num">${gap === null ? "—" : fmtPct(gap, 2)}</td><td class="num">${fmtPct(r.ood_acc, 2)}</td></tr>`;
  }).join("") : `<tr><td colspan="7" class="state">No runs with eval.ood yet.</td></tr>`;
}

async function load() {
  const q = query();
  history.replaceState(null, "", q.toString() ? `?${q}` : location.pathname);
  state.textContent = "Loading…"; state.classList.remove("error");
  let out;
  try {
    out = await api(`/ui/figures/ood?${q}`);
  } catch (err) {
    state.textContent = `Could not load the OOD results: ${errorText(err)}`; state.classList.add("error");
    return;
  }
  renderTable(out.rows);
  if (!out.points) {
    state.textContent = "No succeeded runs with out-of-distribution results: add eval.ood to a spec (see docs/OOD.md).";
    graph.hidden = true;
    return;
  }
  state.textContent = `${out.points} run${out.points === 1 ? "" : "s"}.`;
  await plot(graph, out.figure);
  graph.dataset.ready = "1";
  linkPointsToRuns(graph);
}

const params = new URLSearchParams(location.search);
for (const el of form.elements) if (el.name && params.has(el.name)) el.value = params.get(el.name);
form.addEventListener("submit", (e) => { e.preventDefault(); load(); });
onRetry(load);
load();

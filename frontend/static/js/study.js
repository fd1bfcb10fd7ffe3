// Study page (issue 25): a search study's trials in order, pruned ones marked, the best so far,
// the parameter importance and, for a power-law study, why each size was chosen.
import { $, api, esc, errorText, plot, statusBadge, ACTIVE } from "./common.js";

const id = Number($("main").dataset.studyId);

function fact(label, value) { return `<div><dt>${esc(label)}</dt><dd>${value}</dd></div>`; }
function num(v) { return v === null || v === undefined ? "—" : Number(v).toFixed(4); }
function interval(iv) { return iv ? `[${iv.map((v) => (v === null ? "∞" : Number(v).toFixed(3))).join(", ")}]` : ""; }
function params(p) {
  return Object.entries(p || {}).map(([k, v]) => `${esc(k)} = ${esc(typeof v === "number" ? Number(v.toPrecision(4)) : v)}`).join(", ");
}

function trialRow(t) {
  const why = t.reason ? `${esc(t.reason)}${t.b_interval ? ` <span class="muted">b ∈ ${interval(t.b_interval)}</span>` : ""}` : "";
  return `<tr data-trial="${t.number}" class="${t.status === "pruned" ? "pruned" : ""}"><td class="num">${t.number}</td>
    <td><a href="/runs/${t.experiment_id}">#${t.experiment_id}</a></td><td>${statusBadge(t.status)}</td>
    <td class="params">${params(t.params)}</td><td class="num">${num(t.value)}</td>
    <td class="num">${Object.keys(t.intermediate || {}).length}</td><td class="num">${num(t.best_so_far)}</td><td class="why">${why}</td></tr>`;
}

async function load() {
  const st = $("#study-state");
  let s;
  try {
    s = await api(`/api/studies/${id}`);
  } catch (err) {
    st.textContent = `Could not load study ${id}: ${errorText(err)}`; st.classList.add("error"); return;
  }
  $("#study-title").textContent = `Study #${s.id} ${s.name}`;
  st.hidden = true;
  $("#study-head").hidden = false;
  const counts = Object.entries(s.counts).map(([k, v]) => `${esc(k)} ${v}`).join(", ") || "—";
  $("#study-facts").innerHTML = [
    fact("State", esc(s.state)), fact("Sampler", esc(s.sampler)), fact("Pruner", esc(s.pruner)),
    fact("Objective", `${esc(s.objective)} (${esc(s.direction)})`),
    fact("Trials", `${s.trials.length} of ${s.n_trials}, ${s.parallel} at once`), fact("By status", counts),
    fact("Best", s.best ? `trial ${s.best.number}: ${num(s.best.value)}` : "none yet"),
    fact("Sweep", s.sweep_id ? `<a href="/?sweep=${s.sweep_id}">#${s.sweep_id}</a>` : "—"),
  ].join("");
  const note = $("#study-note");
  note.hidden = !s.stop_reason;
  note.textContent = s.stop_reason ? `Stopped: ${s.stop_reason}` : "";
  $("#trials tbody").innerHTML = s.trials.map(trialRow).join("");
  const imp = s.importance ? Object.entries(s.importance) : [];
  $("#importance-panel").hidden = !imp.length;
  $("#importance tbody").innerHTML = imp.map(([k, v]) => `<tr><td>${esc(k)}</td><td class="num">${Number(v).toFixed(3)}</td></tr>`).join("");
  try {
    const out = await api(`/ui/figures/studies/${id}`);
    await plot($("#study-graph"), out.figure);
    $("#study-graph").hidden = false;
    $("#study-graph").dataset.ready = "1";
  } catch (err) { st.hidden = false; st.textContent = `Could not draw the trials: ${errorText(err)}`; }
  if (s.state === "running" || s.trials.some((t) => ACTIVE.has(t.status))) setTimeout(load, 3000);
}

load();

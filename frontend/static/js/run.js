// Run page: live progress and curves from the run's event stream, spec, params, similarity.
import { $, api, onRetry, esc, fmtInt, fmtPct, fmtDuration, statusBadge, flagBadges, ACTIVE, CANCELLABLE, stream,
  throttle, errorText, plot } from "./common.js";

const id = Number($("main").dataset.runId);
let run = null;
let es = null;

// Why a train-val gap can be negative; augmentation is named only where the run augmented
// (the engine's resolved data.augment, stored in the result's hyperparameters).
function negativeGapNote(r) {
  const augmented = ((r.result && r.result.hyperparameters) || {}).augment === true;
  return "negative: validation accuracy above training accuracy. Training accuracy is averaged over "
    + `the epoch${augmented ? " on augmented images" : ""} while the weights still change, with `
    + "batch statistics in the normalisation layers; validation is measured "
    + `${augmented ? "on clean images " : ""}after it, with the running statistics, so a small `
    + "model that does not overfit can score higher there.";
}

function fact(label, value) { return `<div><dt>${esc(label)}</dt><dd>${value}</dd></div>`; }

function flagMessages(r) {
  const out = {};
  for (const f of (r.result && r.result.health) || []) out[f.code] = f.message;
  return out;
}

function renderFlags(r) {
  const box = $("#run-flags");
  if (!box) return;
  const health = (r.result && r.result.health) || [];
  box.hidden = !health.length;
  box.innerHTML = health.map((f) => `<p>${flagBadges([f.code])} ${esc(f.message)}</p>`).join("") +
    (health.length ? `<p class="muted">Flagged runs are left out of power-law fits unless “include flagged runs” is ticked.</p>` : "");
}

// a pose or multitask run: how its sub-networks share weights (the spec's, defaults filled)
function sharingFact() {
  const m = (run.spec && run.spec.model) || {};
  const sharing = m.sharing || "rpg";
  const stacks = m.stacks ?? (sharing === "single" ? 1 : 2);
  return fact("sharing", `${esc(sharing)} · ${stacks} sub-network${stacks === 1 ? "" : "s"}`);
}

// a pose or multitask run's metrics (the last epoch's) beside a constant prediction's
function taskMetricFacts() {
  const res = run.result || {};
  const base = res.baseline || {};
  return Object.entries(res.metrics || {}).map(([key, v]) => {
    const show = (x) => (x === null || x === undefined ? "—" : key === "pckh" ? fmtPct(x, 1) : Number(x).toFixed(3));
    const b = base[`val_${key}`];
    const note = b === undefined ? "" : ` <span class="muted" title="a constant prediction from the training targets (the mean pose or maps)">(constant ${show(b)})</span>`;
    return fact(key === res.primary_metric ? `${key} (primary)` : key, show(v) + note);
  });
}

function renderHead() {
  $("#run-title").textContent = `#${run.id} ${run.name}`;
  document.title = `#${run.id} ${run.name} · RPG Studio`;
  // the runs list's duration: wall time from start to end (or to now); training: the epochs only
  const dur = run.started_at ? ((run.finished_at ? new Date(run.finished_at) : new Date()) - new Date(run.started_at)) / 1000 : run.train_time_s;
  const gap = run.train_acc !== null && run.best_val_acc !== null ? run.train_acc - run.best_val_acc : null;
  const task = (run.spec && run.spec.task) || "classification";
  const dense = task !== "classification";
  $("#run-facts").innerHTML = [
    fact("status", `${statusBadge(run.status)} ${flagBadges(run.flags, flagMessages(run))}`), fact("arch", esc(run.arch)),
    dense ? fact("task", esc(task)) : fact("scope", esc(run.scope)),
    fact("dataset", esc(run.dataset)),
    dense ? sharingFact() : fact("ring size", run.ring_size === null ? "— (plain)" : fmtInt(run.ring_size)),
    fact("backbone params", fmtInt(run.backbone_params)), fact("total params", fmtInt(run.total_params)),
    ...(dense ? taskMetricFacts() : [
      fact("best val acc", fmtPct(run.best_val_acc, 2)), fact("train acc", fmtPct(run.train_acc, 2)),
      fact("train−val gap", gap === null ? "—" : fmtPct(gap, 2) + (gap < 0 ? ` <span class="muted gap-note">${esc(negativeGapNote(run))}</span>` : "")),
    ]),
    fact("duration", fmtDuration(dur) + (run.train_time_s ? ` <span class="muted">(training ${fmtDuration(run.train_time_s)})</span>` : "")), fact("worker", esc(run.worker || "—")), fact("attempts", String(run.attempts)),
    fact("sweep", run.sweep_id ? `<a href="/?sweep=${run.sweep_id}">#${run.sweep_id}</a>` : "—"),
  ].join("");
  renderProgress(run);
  renderFlags(run);
  // a failed run's message is its error; any other run's is a note on its last attempt (the
  // service stopped while it trained and it resumes, or a transient error it is retried after)
  const failed = run.status === "failed";
  const err = $("#run-error"), note = $("#run-note");
  err.hidden = !(run.error && failed); err.textContent = run.error && failed ? `Error: ${run.error}` : "";
  note.hidden = !(run.error && !failed); note.textContent = run.error && !failed ? `Note: ${run.error}` : "";
  const dl = $("#run-download");
  dl.hidden = !run.has_model; dl.href = `/api/experiments/${id}/model`; dl.setAttribute("download", `experiment-${id}.rpg`);
  $("#run-cancel").hidden = !CANCELLABLE.has(run.status);
  $("#run-retry").hidden = !(run.status === "failed" || run.status === "cancelled");
  $("#run-compare").href = `/similarity?ids=${id}`;
  $("#run-spec").textContent = JSON.stringify(run.spec, null, 2);
  $("#run-head").hidden = false;
}

function renderProgress(p) {
  $("#run-progress").value = p.progress || 0;
  $("#run-progress-text").textContent = `${Math.round(100 * (p.progress || 0))}%` + (p.epoch !== null && p.epoch !== undefined ? ` · epoch ${p.epoch}` : "") + ` · ${p.status}`;
}

async function loadRun() {
  try {
    run = await api(`/api/experiments/${id}`);
  } catch (err) {
    $("#run-state").textContent = err.status === 404 ? `Run ${id} does not exist (deleted?).` : `Could not load run ${id}: ${errorText(err)}`;
    $("#run-state").classList.add("error");
    return false;
  }
  $("#run-state").hidden = true;
  renderHead();
  return true;
}

async function loadCurves() {
  try {
    const out = await api(`/ui/figures/runs/${id}/curves`);
    if (!out.points) return;
    $("#curves-state").hidden = true;
    await plot($("#curves-graph"), out.figure);
    $("#curves-graph").dataset.ready = "1";
  } catch (err) { $("#curves-state").textContent = `Could not load the curves: ${errorText(err)}`; }
}

function partRow(label, n) { return `<tr><th scope="row">${esc(label)}</th><td class="num">${n === undefined ? "—" : n.toLocaleString()}</td></tr>`; }

// The parameters by part. A plain network's conv weights are its backbone but for the stem
// (run.backbone_params: every conv but the first, as counted in training), so they get two rows.
function paramRows(p) {
  const backbone = run ? run.backbone_params : null;
  const split = !p.ring && p.conv && backbone !== null && backbone !== undefined && backbone > 0 && backbone <= p.conv;
  const convRows = split ? [partRow("backbone conv (every conv but the stem)", backbone), partRow("stem conv", p.conv - backbone)]
    : [partRow("ring", p.ring), partRow("stem / other conv", p.conv)];
  return [...convRows, partRow("batchnorm", p.norm), partRow("head", p.head), partRow("other", p.other),
    partRow("total learned", p.total)];
}

// The .rpg file against the full float32 state dict, said the right way round.
function sizeNote(info) {
  if (!info.params.ring) return "a plain network: the file holds every weight, as a state dict does";
  if (info.file_bytes <= info.full_bytes) return `${(info.full_bytes / info.file_bytes).toFixed(1)}× smaller`;
  const header = (info.bytes || {}).header;
  const why = header ? `: its header (${fmtInt(header)}B, the spec and every generated layer's name, shape and offset) outweighs what the ring saves in a network this small` : "";
  return `${(info.file_bytes / info.full_bytes).toFixed(1)}× larger${why}`;
}

async function loadParams() {
  const st = $("#params-state");
  try {
    const info = await api(`/ui/api/runs/${id}/model-info`);
    if (!info.available) { st.textContent = "No stored model yet (it appears when the run succeeds)."; return; }
    $("#params-table tbody").innerHTML = paramRows(info.params).join("");
    $("#params-table").hidden = false;
    // both bars on one scale, the larger one the panel's width: neither leaves the panel
    const most = Math.max(info.file_bytes, info.full_bytes, 1);
    const w = (n) => Math.max(n / most, 0.002) * 100;
    $("#size-bars").innerHTML = `<div>.rpg file: <strong>${fmtInt(info.file_bytes)}B</strong> (${esc(sizeNote(info))})</div>
      <div class="bar" style="width:${w(info.file_bytes)}%"></div>
      <div>full float32 state dict: <strong>${fmtInt(info.full_bytes)}B</strong></div><div class="bar full" style="width:${w(info.full_bytes)}%"></div>`;
    $("#size-bars").hidden = false;
    st.hidden = true;
  } catch (err) {
    st.textContent = `Could not read the model: ${errorText(err)}`;
  }
}

async function loadSimilarity() {
  const st = $("#sim-state");
  try {
    const out = await api(`/ui/figures/similarity?ids=${id}`);
    if (!out.shown) { st.textContent = "No similarity histogram stored for this run."; return; }
    st.hidden = true;
    await plot($("#sim-graph"), out.figure);
  } catch (err) { st.textContent = `Could not load the histogram: ${errorText(err)}`; }
}

async function loadOOD() {
  try {
    const out = await api(`/ui/figures/runs/${id}/ood`);
    if (!out.sets) return;
    const sevs = [...new Set(Object.values(out.shifts).flatMap((v) => Object.keys(v)))].sort((a, b) => a - b);
    $("#ood-summary").textContent = `Mean out-of-distribution accuracy ${fmtPct(out.ood_acc, 2)} ` +
      `against ${fmtPct(out.val_acc, 2)} in distribution (severity 0 is the unshifted set and is left out of the mean).`;
    $("#ood-shifts thead").innerHTML = `<tr><th scope="col">Shift</th>${sevs.map((s) => `<th scope="col" class="num">severity ${s}</th>`).join("")}</tr>`;
    $("#ood-shifts tbody").innerHTML = Object.entries(out.shifts).map(([name, v]) =>
      `<tr><th scope="row">${esc(name)}</th>${sevs.map((s) => `<td class="num">${fmtPct(v[s], 1)}</td>`).join("")}</tr>`).join("") +
      Object.entries(out.folders).map(([name, acc]) =>
        `<tr><th scope="row">folder ${esc(name)}</th><td class="num" colspan="${Math.max(sevs.length, 1)}">${fmtPct(acc, 1)}</td></tr>`).join("");
    $("#ood-panel").hidden = false;
    await plot($("#ood-graph"), out.figure);
    $("#ood-graph").dataset.ready = "1";
  } catch (err) { $("#ood-summary").textContent = `Could not load the OOD results: ${errorText(err)}`; $("#ood-panel").hidden = false; }
}

// Pictures of a pose or multitask run (its result's samples), rendered by the server.
async function loadSamples() {
  if (!run || !run.result || !Array.isArray(run.result.samples) || !run.result.samples.length) return;
  try {
    const res = await fetch(`/ui/runs/${id}/samples`, { headers: (() => { const t = localStorage.getItem("rpg-studio-token"); return t ? { Authorization: "Bearer " + t } : {}; })() });
    if (!res.ok) return;
    const markup = await res.text();
    if (!markup) return;
    $("#samples").innerHTML = markup;
    $("#samples-title").textContent = run.result.task === "pose" ? "Predicted and true keypoints" : "Input, depth and normals: predicted and true";
    $("#samples-panel").hidden = false;
  } catch { /* the pictures are optional */ }
}

async function act(kind) {
  try {
    await api(`/api/experiments/${id}/${kind}`, { method: "POST" });
    $("#run-action-result").textContent = `${kind} requested.`;
    await loadRun();
    if (kind === "retry") follow();
  } catch (err) { $("#run-action-result").textContent = `${kind}: ${errorText(err)}`; }
}

const refreshCurves = throttle(loadCurves, 300);

function follow() {
  if (es) es.close();
  es = stream(`/api/experiments/${id}/events`, {
    progress: (p) => { if (run) { Object.assign(run, p); renderProgress(run); } },
    metric: () => refreshCurves(),
    end: async () => { es.close(); await loadRun(); loadCurves(); loadParams(); loadSimilarity(); loadOOD(); loadSamples(); },
  });
}

async function init() {
  $("#run-cancel").addEventListener("click", () => act("cancel"));
  $("#run-retry").addEventListener("click", () => act("retry"));
  onRetry(init);
  if (!(await loadRun())) return;
  loadCurves(); loadParams(); loadSimilarity(); loadOOD(); loadSamples();
  if (ACTIVE.has(run.status)) follow();
}
init();

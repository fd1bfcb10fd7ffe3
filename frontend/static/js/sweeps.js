// Sweeps page: progress of each sweep (live), and the ablation bars (paper Fig. 5).
import { $, api, onRetry, esc, errorText, plot, stream, throttle, FINISHED } from "./common.js";
import { loadTasks } from "./tasks.js";

const tbody = $("#sweeps tbody");
let cursor = null;
let shown = [];

function finished(c) { return [...FINISHED].reduce((n, s) => n + (c[s] || 0), 0); }

// A sweep's task: its base spec's (classification when it names none).
function taskOf(s) { return s.task || "classification"; }
const taskSelect = $("#sweeps-task");

function rowHtml(s) {
  const done = finished(s.counts);
  const task = taskOf(s);
  const counts = Object.entries(s.counts).map(([k, v]) => `${esc(k)} ${v}`).join(", ") || "—";
  return `<tr data-id="${s.id}"><td class="num">${s.id}</td><td>${esc(s.name)} <span class="tag">${esc(task)}</span></td>
    <td><progress max="${s.total || 1}" value="${done}" aria-label="sweep ${s.id}: ${done} of ${s.total} finished"></progress> ${done}/${s.total}</td>
    <td>${counts}</td><td>${new Date(s.created_at).toLocaleString()}</td>
    <td><a class="btn" href="/?sweep=${s.id}">Runs</a> <a class="btn" href="/power-law?sweep=${s.id}${taskOf(s) === "classification" ? "" : `&task=${esc(taskOf(s))}`}">Power law</a>
      ${s.compares_variants ? `<a class="btn" href="/tables?sweep=${s.id}">Table</a>` : ""}
      ${(s.study_ids || []).map((sid, i) => `<a class="btn" href="/ui/studies/${sid}">Study${s.study_ids.length > 1 ? ` ${i + 1}` : ""}</a>`).join(" ")}
      <button type="button" class="btn" data-ablation="${s.id}" data-name="${esc(s.name)}">Ablation bars</button>
      <button type="button" class="btn" data-speed="${s.id}" data-name="${esc(s.name)}">Accuracy vs time</button></td></tr>`;
}

async function load(more = false) {
  const st = $("#sweeps-state");
  try {
    const q = more && cursor ? `?cursor=${cursor}` : "";
    const page = await api(`/api/sweeps${q}`);
    shown = more ? shown.concat(page.items) : page.items;
    cursor = page.next_cursor;
  } catch (err) {
    st.textContent = `Could not load sweeps: ${errorText(err)}`; st.classList.add("error"); return;
  }
  const want = taskSelect.value;
  const rows = want ? shown.filter((s) => taskOf(s) === want) : shown;
  st.hidden = rows.length > 0;
  if (!rows.length) st.textContent = shown.length ? `No ${want} sweeps on this page.` : "No sweeps yet: submit one from the Runs page.";
  tbody.innerHTML = rows.map(rowHtml).join("");
  $("#sweeps").hidden = !rows.length;
  $("#more").hidden = !cursor;
}

async function ablation(id, name) {
  const panel = $("#ablation"), st = $("#ablation-state");
  panel.hidden = false;
  $("#ablation-h").textContent = `Ablation: sweep #${id} ${name}`;
  st.textContent = "Loading…";
  try {
    const out = await api(`/ui/figures/sweeps/${id}/ablation`);
    if (!out.figure) { st.textContent = `No bars: ${out.reason}.`; $("#ablation-graph").hidden = true; return; }
    st.textContent = "";
    await plot($("#ablation-graph"), out.figure);
    $("#ablation-graph").dataset.ready = "1";
  } catch (err) { st.textContent = `Could not load: ${errorText(err)}`; }
}

// Accuracy against inference time per image, one point per run (paper Table 1).
async function speed(id, name) {
  const panel = $("#speed"), st = $("#speed-state"), graph = $("#speed-graph");
  panel.hidden = false;
  $("#speed-h").textContent = `Accuracy against inference time: sweep #${id} ${name}`;
  st.textContent = "Loading…";
  try {
    const out = await api(`/ui/figures/sweeps/${id}/speed`);
    if (!out.figure) { st.textContent = `No points: ${out.reason}.`; graph.hidden = true; return; }
    st.textContent = "";
    await plot(graph, out.figure);
    graph.dataset.ready = "1";
  } catch (err) { st.textContent = `Could not load: ${errorText(err)}`; }
}

tbody.addEventListener("click", (e) => {
  const b = e.target.closest("button[data-ablation]");
  if (b) ablation(b.dataset.ablation, b.dataset.name);
  const s = e.target.closest("button[data-speed]");
  if (s) speed(s.dataset.speed, s.dataset.name);
});
$("#more").addEventListener("click", () => load(true));
taskSelect.addEventListener("change", () => load());
onRetry(load);
loadTasks(taskSelect, "", true).then(() => load());
const refresh = throttle(() => { if (!$("#more").hidden) return; load(); }, 1000);
stream("/api/events", { status: refresh });

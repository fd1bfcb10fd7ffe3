// Shared helpers: API calls with the saved token, formatting, banners, event streams, plots.
const TOKEN_KEY = "rpg-studio-token";

export const $ = (sel, root = document) => root.querySelector(sel);

export function token() { return localStorage.getItem(TOKEN_KEY) || ""; }

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status; this.detail = detail;
  }
}

function prefetched(path) {
  // a GET the page's inline script already started (window.rpgPrefetch), used once
  const p = window.rpgPrefetch;
  if (!p || p.url !== path) return null;
  window.rpgPrefetch = null;
  return p.response;
}

export async function api(path, opts = {}) {
  const headers = { ...(opts.headers || {}) };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  if (opts.json !== undefined) { headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(opts.json); }
  let res;
  try {
    res = await (prefetched(path) || fetch(path, { method: opts.method || "GET", headers, body: opts.body }));
  } catch (err) {
    banner(`The API is unreachable (${err.message}). Is the server running?`, true);
    throw new ApiError(0, "the API is unreachable");
  }
  if (res.status >= 500) banner(`The API answered ${res.status} for ${path}.`, true);
  else clearBanner();
  const body = res.status === 204 ? null : await res.json().catch(() => null);
  if (!res.ok) throw new ApiError(res.status, body && body.detail !== undefined ? body.detail : res.statusText);
  return body;
}

let retryHandler = null;
export function onRetry(fn) { retryHandler = fn; }

export function banner(text, withRetry = false) {
  const el = $("#banner");
  el.textContent = text;
  if (withRetry && retryHandler) {
    const b = document.createElement("button");
    b.className = "btn small"; b.type = "button"; b.textContent = "Retry";
    b.addEventListener("click", () => { clearBanner(); retryHandler(); });
    el.append(b);
  }
  el.hidden = false;
}
export function clearBanner() { const el = $("#banner"); if (el) el.hidden = true; }

export function errorText(err) {
  if (err instanceof ApiError && Array.isArray(err.detail))
    return err.detail.map((d) => `${d.field}: ${d.message}`).join("; ");
  return err.message || String(err);
}

// --- formatting
export function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
export function fmtInt(n) {
  if (n === null || n === undefined) return "—";
  for (const [u, s] of [["G", 1e9], ["M", 1e6], ["k", 1e3]]) if (Math.abs(n) >= s) return `${(n / s).toPrecision(3)}${u}`;
  return String(Math.round(n));
}
export function fmtPct(x, digits = 1) { return x === null || x === undefined ? "—" : `${(100 * x).toFixed(digits)}%`; }
export function fmtDuration(s) {
  if (s === null || s === undefined) return "—";
  if (s < 60) return `${s.toFixed(0)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}
export function statusBadge(status) { return `<span class="status st-${esc(status)}">${esc(status)}</span>`; }
// Guard-rail flags of a finished run (rpg_core.training.health): a warning badge each, message as title.
const FLAG_TEXT = { "diverged": "diverged: evaluation blew up", "near-chance": "near chance: no better than guessing" };
export function flagBadges(flags, messages) {
  return (flags || []).map((f) => {
    const msg = (messages && messages[f]) || FLAG_TEXT[f] || f;
    return `<span class="flag fl-${esc(f)}" title="${esc(msg)}" data-flag="${esc(f)}">⚠ ${esc(f)}</span>`;
  }).join(" ");
}
// Job statuses: api.status owns them; the page carries them (#job-statuses, frontend.routes.render).
const JOB = JSON.parse(document.getElementById("job-statuses").textContent);
export const STATUSES = JOB.statuses;                // every status, in lifecycle order
export const ACTIVE = new Set(JOB.active);           // not finished: the page follows them
export const FINISHED = new Set(JOB.finished);       // terminal
export const CANCELLABLE = new Set(JOB.cancellable); // a cancel changes them

// --- live updates: EventSource with the browser's own reconnects
export function stream(url, handlers) {
  const es = new EventSource(url);
  for (const [event, fn] of Object.entries(handlers)) {
    es.addEventListener(event, (e) => { try { fn(JSON.parse(e.data)); } catch (err) { console.warn(err); } });
  }
  addEventListener("pagehide", () => es.close());
  return es;
}

// Run fn at most once per ms, trailing: a steady stream of events cannot starve it.
export function throttle(fn, ms) {
  let timer = null;
  return () => {
    if (timer === null) timer = setTimeout(() => { timer = null; fn(); }, ms);
  };
}

// --- plots: plotly.js loads async (<script id="plotly-js">) while the figure JSON is fetched
export function plotlyReady() {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  const tag = document.getElementById("plotly-js");
  return new Promise((resolve, reject) => {
    tag.addEventListener("load", () => resolve(window.Plotly));
    tag.addEventListener("error", () => reject(new Error("plotly.js did not load")));
  });
}

export async function plot(el, figure) {
  const Plotly = await plotlyReady();
  el.hidden = false;  // graphs start hidden; plotly sizes itself to the visible container
  const config = { responsive: true, displaylogo: false, toImageButtonOptions: { format: "svg" } };
  return Plotly.react(el, figure.data, figure.layout, config);
}

// --- the token form in the header
function initToken() {
  const form = $("#token-form"); if (!form) return;
  const input = $("#token-input"), state = $("#token-state");
  input.value = token();
  state.textContent = token() ? "saved" : "reads only";
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const v = input.value.trim();
    if (v) localStorage.setItem(TOKEN_KEY, v); else localStorage.removeItem(TOKEN_KEY);
    state.textContent = v ? "saved" : "reads only";
  });
}

// --- 422 errors shown at their field
export function showFieldErrors(form, err) {
  const box = $(".form-errors", form);
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  for (const el of form.querySelectorAll(".field-error")) el.remove();
  box.innerHTML = "";
  if (!err) return;
  const details = err instanceof ApiError && Array.isArray(err.detail) ? err.detail : [{ field: "", message: errorText(err) }];
  const general = [];
  for (const d of details) {
    const input = form.querySelector(`[data-field="${CSS.escape(d.field)}"]`);
    if (input) {
      input.setAttribute("aria-invalid", "true");
      const msg = document.createElement("span");
      msg.className = "field-error"; msg.textContent = d.message; msg.dataset.for = d.field;
      input.after(msg);
    } else general.push(d);
  }
  if (general.length) {
    box.innerHTML = `<ul>${general.map((d) => `<li><strong>${esc(d.field)}</strong>${d.field ? ": " : ""}${esc(d.message)}</li>`).join("")}</ul>`;
  }
}

initToken();

// A click on a point whose customdata is a run id opens that run's page (bound once per graph).
export function linkPointsToRuns(graph) {
  if (graph.dataset.linked) return;
  graph.dataset.linked = "1";
  graph.on("plotly_click", (ev) => {
    const id = ev.points && ev.points[0] && ev.points[0].customdata;
    if (id) location.href = `/runs/${id}`;
  });
}

// Similarity page: overlaid normalised histograms of the chosen runs (paper Fig. 7).
import { $, api, onRetry, errorText, plot, showFieldErrors } from "./common.js";

const form = $("#sim-form");
const state = $("#sim-state");

async function load() {
  const ids = form.elements.ids.value.trim();
  showFieldErrors(form, null);
  if (!ids) return;
  history.replaceState(null, "", `?ids=${encodeURIComponent(ids)}`);
  state.textContent = "Loading…";
  try {
    const out = await api(`/ui/figures/similarity?ids=${encodeURIComponent(ids)}`);
    const missing = out.missing.length ? ` No histogram for run(s) ${out.missing.join(", ")}.` : "";
    state.textContent = out.shown ? `${out.shown} run(s).${missing}` : `Nothing to show.${missing}`;
    await plot($("#sim-graph"), out.figure);
    $("#sim-graph").dataset.ready = "1";
  } catch (err) {
    state.textContent = "";
    showFieldErrors(form, err);
  }
}

form.elements.ids.value = new URLSearchParams(location.search).get("ids") || "";
form.addEventListener("submit", (e) => { e.preventDefault(); load(); });
onRetry(load);
load().catch((err) => { state.textContent = errorText(err); });

// The task registry (GET /api/tasks) for the pages' task selectors.
import { api, esc } from "./common.js";

let cache = null;

export async function tasks() {
  if (!cache) cache = api("/api/tasks").catch(() => []);
  return cache;
}

// Fill a <select> with the tasks (keeping its first option when keepFirst), select `value`.
export async function loadTasks(select, value, keepFirst = false) {
  const list = await tasks();
  if (!list.length) return list; // the registry did not load: keep the page's own options
  const first = keepFirst && select.options.length ? select.options[0].outerHTML : "";
  select.innerHTML = first + list.map((t) => `<option value="${esc(t.name)}">${esc(t.name)}</option>`).join("");
  if (value) select.value = value;
  return list;
}

// The dashboard: its state (days, filters, page), one operation per state, and a poll every
// second that costs a 304 while nothing changed and re-renders when the ETag does.
import { load } from "./api.js";
import { renderBars, renderTrend } from "./charts.js";
import { el, formatNumber, formatTime, text } from "./dom.js";
import { openDetail, renderTable } from "./threats.js";

const POLL_MS = 1000;
const state = { days: 30, page: 1, limit: 20, severity: "", source: "", category: "", search: "" };
let shown = null; // the ETag of what is on screen
let generation = 0; // bumped by every change of state: an older answer is dropped
const categories = new Set();

function variables() {
  const filter = {};
  if (state.severity) filter.severity = [state.severity];
  if (state.source) filter.source = state.source;
  if (state.category) filter.category = state.category;
  if (state.search) filter.search = state.search;
  return {
    days: state.days,
    page: state.page,
    limit: state.limit,
    sources: 10,
    filter: Object.keys(filter).length ? filter : null,
  };
}

function render(data) {
  const stats = data.stats;
  text("card-total", formatNumber(stats.totalThreats));
  text("card-critical", formatNumber(stats.critical));
  text("card-high", formatNumber(stats.high));
  text("card-last24h", formatNumber(stats.last24h));
  text("card-sources", formatNumber(stats.sources));
  text("card-last-ingest", formatTime(stats.lastIngestedAt));
  renderTrend(document.getElementById("trend"), data.trend);
  renderBars(document.getElementById("severity"), data.severityBreakdown, "severity", (row) =>
    `sev-${row.severity.toLowerCase()}`,
  );
  renderBars(document.getElementById("sources"), data.sourceBreakdown, "source");
  renderTable(data.threats, openDetail);
  updateSources(data.sourceBreakdown);
  for (const item of data.threats.items) categories.add(item.category);
  document
    .getElementById("categories")
    .replaceChildren(...[...categories].sort().map((c) => el("option", { value: c })));
  for (const button of document.querySelectorAll("[data-days]")) {
    button.setAttribute("aria-pressed", String(Number(button.dataset.days) === state.days));
  }
}

function updateSources(rows) {
  const select = document.getElementById("filter-source");
  const names = new Set(rows.map((r) => r.source));
  if (state.source) names.add(state.source);
  const options = [el("option", { value: "" }, "Any source")];
  for (const name of [...names].sort()) options.push(el("option", { value: name }, name));
  select.replaceChildren(...options);
  select.value = state.source;
}

async function refresh() {
  const mine = generation;
  try {
    const { etag, body } = await load(variables(), shown);
    if (mine !== generation) return;
    if (body) {
      if (!body.data) throw new Error((body.errors || [{}])[0].message || "no data");
      render(body.data);
      shown = etag;
    }
    text("status", `Live · updated ${new Date().toLocaleTimeString("en-GB")}`);
    document.body.dataset.ready = "true";
  } catch (error) {
    if (mine === generation) text("status", `Offline: ${error.message}`);
  }
}

function change(values) {
  Object.assign(state, values);
  generation += 1;
  shown = null;
  refresh();
}

// A hidden tab does not poll; it catches up as soon as it is shown again.
async function poll() {
  if (!document.hidden) await refresh();
  setTimeout(poll, POLL_MS);
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

function wire() {
  for (const button of document.querySelectorAll("[data-days]")) {
    button.addEventListener("click", () => change({ days: Number(button.dataset.days) }));
  }
  const byId = (id) => document.getElementById(id);
  byId("filters").addEventListener("submit", (event) => event.preventDefault());
  byId("search").addEventListener(
    "input",
    debounce(() => change({ search: byId("search").value.trim(), page: 1 }), 300),
  );
  byId("filter-severity").addEventListener("change", () =>
    change({ severity: byId("filter-severity").value, page: 1 }),
  );
  byId("filter-source").addEventListener("change", () =>
    change({ source: byId("filter-source").value, page: 1 }),
  );
  byId("filter-category").addEventListener(
    "input",
    debounce(() => change({ category: byId("filter-category").value.trim(), page: 1 }), 300),
  );
  byId("prev").addEventListener("click", () => change({ page: Math.max(1, state.page - 1) }));
  byId("next").addEventListener("click", () => change({ page: state.page + 1 }));
  byId("detail-close").addEventListener("click", () => byId("detail").close());
  document.addEventListener("visibilitychange", () => document.hidden || refresh());
}

wire();
poll();

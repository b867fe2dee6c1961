// Storage: totals, dedup savings, and how bytes and counts grew by kind and collection,
// drawn as SVG by hand.

import { api } from "./api.js";
import { bytes, count, h, notice } from "./dom.js";
import { barChart, lineChart } from "./charts.js";

const RANGES = [7, 30, 90, 365];

export async function renderStorage(ctx) {
  const [stats, history] = await Promise.all([
    api("/v1/storage/stats", { signal: ctx.signal }),
    api("/v1/storage/history?days=30", { signal: ctx.signal }),
  ]);
  const head = h("div", { class: "page-head" }, h("h1", { text: "Storage" }));
  if (!stats.assets) {
    ctx.view.replaceChildren(head, notice("empty", "Nothing stored yet", "Charts appear once you keep some media.", h("a", { class: "button", href: "#/upload", text: "Upload" })));
    return;
  }
  const saved = stats.dedup_savings_bytes;
  const summary = h(
    "ul",
    { class: "totals", id: "totals" },
    h("li", {}, h("span", { class: "big", text: bytes(stats.bytes) }), h("span", { text: `in ${count(stats.assets, "asset")}` })),
    h("li", {}, h("span", { class: "big", text: bytes(stats.stored_bytes) }), h("span", { text: `stored as ${count(stats.objects, "object")}` })),
    h(
      "li",
      { id: "dedup" },
      h("span", { class: "big", text: bytes(saved) }),
      h("span", { text: `saved by dedup${stats.bytes ? ` (${Math.round((saved / stats.bytes) * 100)}%)` : ""}` }),
    ),
  );
  const kinds = Object.entries(stats.by_kind).map(([name, u]) => ({ name, value: u.bytes, label: `${bytes(u.bytes)} · ${count(u.assets, "asset")}` }));
  const collections = Object.entries(stats.by_collection)
    .sort((a, b) => b[1].bytes - a[1].bytes)
    .map(([name, u]) => ({ name, value: u.bytes, label: `${bytes(u.bytes)} · ${count(u.assets, "asset")}` }));

  const range = h(
    "select",
    { id: "history-range", "aria-label": "Period" },
    RANGES.map((d) => h("option", { value: d, text: d === 365 ? "last year" : `last ${d} days`, selected: d === 30 })),
  );
  const metric = h("select", { id: "history-metric", "aria-label": "Measure" }, h("option", { value: "bytes", text: "bytes" }), h("option", { value: "assets", text: "assets" }));
  const charts = h("div", { class: "charts", id: "history-charts" });

  function draw(hist) {
    const m = metric.value;
    const fmt = m === "bytes" ? bytes : (n) => Number(n).toLocaleString("en");
    const days = hist.series.map((d) => d.day);
    const byKind = hist.kinds.map((k) => ({ name: k, values: hist.series.map((d) => d.by_kind[k][m]) }));
    const byCollection = hist.collections.map((c) => ({ name: c, values: hist.series.map((d) => d.by_collection[c][m]) }));
    charts.replaceChildren(
      h("figure", {}, h("figcaption", { text: `Total ${m} by kind` }), lineChart(days, byKind, fmt, `${m} by kind over time`)),
      h("figure", {}, h("figcaption", { text: `Total ${m} by collection` }), lineChart(days, byCollection, fmt, `${m} by collection over time`)),
    );
  }
  async function reload() {
    try {
      draw(await api(`/v1/storage/history?days=${range.value}`, { signal: ctx.signal }));
    } catch (e) {
      charts.replaceChildren(notice("error", "Could not load the history", e.message));
    }
  }
  range.addEventListener("change", reload);
  metric.addEventListener("change", reload);

  ctx.view.replaceChildren(
    head,
    summary,
    h(
      "div",
      { class: "two" },
      h("section", {}, h("h2", { text: "By kind" }), barChart(kinds, "Bytes by kind")),
      h("section", {}, h("h2", { text: "By collection" }), barChart(collections, "Bytes by collection")),
    ),
    h("section", {}, h("div", { class: "section-head" }, h("h2", { text: "Over time" }), h("div", { class: "controls" }, metric, range)), charts),
  );
  draw(history);
}

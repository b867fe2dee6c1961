// Two hand-drawn SVG charts: horizontal bars and lines over days. They scale with their
// container (viewBox), take their colours from the stylesheet (series-N classes) and carry
// a text table for screen readers.

import { h, svg } from "./dom.js";

const SERIES = 8;

function srTable(headers, rows) {
  // Wrapped: a table grows to its rows whatever height it is given.
  return h(
    "div",
    { class: "visually-hidden" },
    h(
    "table",
    {},
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { text: x })))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((x) => h("td", { text: x }))))),
    ),
  );
}

export function barChart(items, title) {
  if (!items.length) return h("p", { class: "hint", text: "Nothing yet." });
  const width = 480;
  const barH = 22;
  const gap = 12;
  const labelW = 120;
  const height = items.length * (barH + gap);
  const max = Math.max(1, ...items.map((i) => i.value));
  const chart = svg(
    "svg",
    { class: "chart bars", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title, preserveAspectRatio: "xMinYMin meet" },
    items.map((item, i) => {
      const y = i * (barH + gap);
      const w = Math.max(2, ((width - labelW - 8) * item.value) / max);
      return svg(
        "g",
        { class: `series-${i % SERIES}` },
        svg("text", { x: 0, y: y + barH * 0.7, class: "label", text: item.name.length > 16 ? `${item.name.slice(0, 15)}…` : item.name }),
        svg("rect", { x: labelW, y, width: w, height: barH, rx: 3, class: "bar" }),
        svg("title", { text: `${item.name}: ${item.label}` }),
      );
    }),
  );
  const legend = h(
    "ul",
    { class: "legend values" },
    items.map((item, i) => h("li", { class: `series-${i % SERIES}` }, h("span", { class: "swatch", "aria-hidden": "true" }), `${item.name}: ${item.label}`)),
  );
  return h("div", { class: "chart-box" }, chart, legend);
}

function niceMax(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

export function lineChart(days, series, fmt, title) {
  if (!series.length) return h("p", { class: "hint", text: "Nothing yet." });
  const width = 640;
  const height = 240;
  // On a phone the chart is drawn smaller than its viewBox and its text set larger.
  const narrow = window.matchMedia("(max-width: 760px)").matches;
  const pad = { left: narrow ? 96 : 64, right: 12, top: 16, bottom: narrow ? 36 : 28 };
  const innerW = width - pad.left - pad.right;
  const innerH = height - pad.top - pad.bottom;
  const max = niceMax(Math.max(0, ...series.flatMap((s) => s.values)));
  const x = (i) => pad.left + (days.length > 1 ? (i * innerW) / (days.length - 1) : innerW / 2);
  const y = (v) => pad.top + innerH - (v / max) * innerH;
  const ticks = [0, max / 2, max];
  const chart = svg(
    "svg",
    { class: "chart lines", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title },
    ticks.map((t) =>
      svg(
        "g",
        { class: "tick" },
        svg("line", { x1: pad.left, x2: width - pad.right, y1: y(t), y2: y(t), class: "grid-line" }),
        svg("text", { x: pad.left - 6, y: y(t) + 4, class: "axis", "text-anchor": "end", text: fmt(t) }),
      ),
    ),
    svg("text", { x: pad.left, y: height - 8, class: "axis", text: days[0] }),
    svg("text", { x: width - pad.right, y: height - 8, class: "axis", "text-anchor": "end", text: days[days.length - 1] }),
    series.map((s, i) =>
      svg(
        "g",
        { class: `series-${i % SERIES}` },
        svg("polyline", { class: "line", points: s.values.map((v, j) => `${x(j).toFixed(1)},${y(v).toFixed(1)}`).join(" ") }),
        svg("circle", { class: "dot", cx: x(s.values.length - 1), cy: y(s.values[s.values.length - 1]), r: 3.5 }),
        svg("title", { text: `${s.name}: ${fmt(s.values[s.values.length - 1])}` }),
      ),
    ),
  );
  const legend = h(
    "ul",
    { class: "legend" },
    series.map((s, i) => h("li", { class: `series-${i % SERIES}` }, h("span", { class: "swatch", "aria-hidden": "true" }), `${s.name}: ${fmt(s.values[s.values.length - 1])}`)),
  );
  const table = srTable(["day", ...series.map((s) => s.name)], days.map((d, j) => [d, ...series.map((s) => fmt(s.values[j]))]));
  return h("div", { class: "chart-box" }, chart, legend, table);
}

// The charts, as SVG built with DOM calls: the trend's bars and the breakdowns' rows.
import { el, formatNumber, svg } from "./dom.js";

const WIDTH = 600;
const HEIGHT = 160;

export function renderTrend(container, points) {
  const max = Math.max(1, ...points.map((p) => p.count));
  const step = WIDTH / Math.max(1, points.length);
  const gap = points.length > 45 ? 0.5 : 2;
  const chart = svg("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    preserveAspectRatio: "none",
    role: "img",
    "aria-label": `Threats published per day over ${points.length} days`,
  });
  points.forEach((point, i) => {
    const height = (point.count / max) * HEIGHT;
    chart.append(
      svg(
        "rect",
        {
          class: "bar",
          x: (i * step + gap / 2).toFixed(2),
          y: (HEIGHT - height).toFixed(2),
          width: Math.max(0.5, step - gap).toFixed(2),
          height: height.toFixed(2),
          "data-date": point.date,
          "data-count": point.count,
        },
        svg("title", {}, `${point.date}: ${formatNumber(point.count)}`),
      ),
    );
  });
  const first = points[0];
  const last = points[points.length - 1];
  const axis = el("div", { class: "axis" }, el("span", {}, first ? first.date : ""), el("span", {}, last ? last.date : ""));
  container.replaceChildren(chart, axis);
}

// Rows of label, bar and count; `key` names the label field.
export function renderBars(container, rows, key, classFor = () => "") {
  const max = Math.max(1, ...rows.map((r) => r.count));
  container.replaceChildren(
    ...rows.map((row) => {
      const bar = svg("svg", { class: "bar-track", viewBox: "0 0 100 10", preserveAspectRatio: "none" });
      bar.append(svg("rect", { width: ((row.count / max) * 100).toFixed(2), height: 10 }));
      return el(
        "div",
        { class: `bar-row ${classFor(row)}`.trim(), "data-name": row[key], "data-count": row.count },
        el("span", { class: "bar-label" }, row[key]),
        bar,
        el("span", { class: "bar-count" }, formatNumber(row.count)),
      );
    }),
  );
}

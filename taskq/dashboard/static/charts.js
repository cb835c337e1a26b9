// Small line charts in inline SVG: no library, no build step.
(function () {
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const PALETTE = ["#2f6fed", "#1f9d55", "#d64545", "#c98a00", "#7b61c9", "#1aa3a3", "#e0663a"];

function svgEl(name, attrs) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  return el;
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function clock(ms) {
  const d = new Date(ms);
  return d.toTimeString().slice(0, 8);
}

// series: [{name, points: [[t_ms, value], ...]}]; draws into `holder` (replacing it).
function lineChart(holder, series, opts) {
  opts = opts || {};
  const W = 600, H = 180, L = 44, R = 8, T = 8, B = 20;
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img" });
  svg.setAttribute("aria-label", opts.label || "chart");
  const all = series.flatMap((s) => s.points);
  let t0 = Infinity, t1 = -Infinity, vmax = 0;
  for (const [t, v] of all) {
    if (t < t0) t0 = t;
    if (t > t1) t1 = t;
    if (v != null && v > vmax) vmax = v;
  }
  if (!all.length) { t1 = Date.now(); t0 = t1 - 60000; }
  if (t1 - t0 < 1000) t0 = t1 - 1000;
  const ymax = niceMax(vmax);
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - v / ymax) * (H - T - B);
  for (let i = 0; i <= 4; i++) {
    const v = (ymax * i) / 4;
    svg.appendChild(svgEl("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "axis" }));
    const label = svgEl("text", { x: L - 4, y: y(v) + 3, "text-anchor": "end" });
    label.textContent = opts.format ? opts.format(v) : String(+v.toFixed(2));
    svg.appendChild(label);
  }
  for (const [i, t] of [[0, t0], [1, (t0 + t1) / 2], [2, t1]]) {
    const anchor = ["start", "middle", "end"][i];
    const label = svgEl("text", { x: x(t), y: H - 5, "text-anchor": anchor });
    label.textContent = clock(t);
    svg.appendChild(label);
  }
  series.forEach((s, i) => {
    const pts = s.points.filter((p) => p[1] != null);
    if (!pts.length) return;
    const d = pts.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
    const color = s.color || PALETTE[i % PALETTE.length];
    svg.appendChild(svgEl("polyline", { points: d, fill: "none", stroke: color,
      "stroke-width": 1.6, "data-series": s.name }));
  });
  const legend = document.createElement("div");
  legend.className = "legend";
  series.forEach((s, i) => {
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = s.color || PALETTE[i % PALETTE.length];
    item.append(swatch, s.name);
    legend.appendChild(item);
  });
  holder.replaceChildren(svg, legend);
}

window.taskqCharts = { lineChart, clock };
})();

// The queues view: counts per queue, and the depth, throughput and latency charts.
(function () {
"use strict";

const { FINAL, MAX_ROWS, state, h, when, ago, logical, badge, runLink, getJSON, toast, every, act, navigate, lineChart, clock } = window.taskq;

function queuesView(main) {
  const table = h("table", { id: "queues-table" });
  const depth = h("div", { id: "depth-chart" });
  const through = h("div", { id: "throughput-chart" });
  const latency = h("div", { id: "latency-chart" });
  const latencyNote = h("p", { class: "note" });
  main.append(
    h("h1", {}, "Queues"),
    table,
    h("div", { class: "grid" },
      h("div", { class: "panel" }, h("h2", {}, "Depth (waiting + in flight) over time"), depth),
      h("div", { class: "panel" }, h("h2", {}, "Throughput: runs finished per second"), through),
      h("div", { class: "panel" }, h("h2", {}, "Start latency (enqueue to start), ms"), latency,
        latencyNote)),
  );
  const head = ["queue", "partitions", "backlog", "in flight", "delayed", "dead",
    "consumers alive", "finished/s"];
  async function refreshTable() {
    const { queues } = await getJSON("/api/queues");
    const rows = queues.map((q) => h("tr", { "data-queue": q.queue },
      h("td", {}, q.queue, q.levels.length > 1 || (q.levels[0] && q.levels[0].level)
        ? h("div", { class: "note" }, q.levels.map((l) =>
          `priority ${l.level}: ${l.backlog} waiting, ${l.in_flight} in flight`).join("; "))
        : null),
      h("td", { class: "num" }, q.partitions.length > 1 ? q.partitions.length : "–"),
      h("td", { class: "num backlog" }, q.backlog),
      h("td", { class: "num" }, q.in_flight),
      h("td", { class: "num" }, q.delayed),
      h("td", { class: "num dead" }, q.dead ? h("a", { href: "/dead", "data-nav": true }, q.dead) : 0),
      h("td", { class: "num" }, q.consumers_alive),
      h("td", { class: "num" }, q.throughput_per_s.toFixed(2))));
    table.replaceChildren(
      h("thead", {}, h("tr", {}, head.map((c, i) => h("th", { class: i > 1 ? "num" : "" }, c)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 8, class: "muted" }, "no queues"))));
  }
  async function refreshCharts() {
    const { samples } = await getJSON("/api/depth");
    const names = [...new Set(samples.flatMap((s) => Object.keys(s.queues)))].sort();
    lineChart(depth, names.map((q) => ({
      name: q,
      points: samples.map((s) => [s.t_ms, s.queues[q] ? s.queues[q].waiting + s.queues[q].pending : null]),
    })), { label: "queue depth" });
    const stats = await getJSON("/api/stats");
    const secs = fillSeconds(stats.series);
    lineChart(through, [
      { name: "completed", color: "#1f9d55", points: secs.map((s) => [s.t * 1000, s.completed]) },
      { name: "failed or cancelled", color: "#d64545", points: secs.map((s) => [s.t * 1000, s.failed]) },
    ], { label: "throughput" });
    const started = stats.series.filter((s) => s.started);
    lineChart(latency, [
      { name: "average", points: started.map((s) => [s.t * 1000, s.latency_avg_ms]) },
      { name: "median", color: "#1aa3a3", points: started.map((s) => [s.t * 1000, s.latency_p50_ms]) },
      { name: "max", color: "#c98a00", points: started.map((s) => [s.t * 1000, s.latency_max_ms]) },
    ], { label: "start latency" });
    latencyNote.textContent = stats.latency;
  }
  every(5000, () => refreshTable().catch((e) => toast(e.message)));
  every((state.config.sample_seconds || 2) * 1000, () => refreshCharts().catch((e) => toast(e.message)));
  state.onReset = () => { refreshTable(); refreshCharts(); };
}

// Seconds with nothing finished are absent from the series: put zeros in, from the
// first second kept to now, so the throughput line drops to 0 when work stops.
function fillSeconds(series) {
  if (!series.length) return [];
  const by = new Map(series.map((s) => [s.t, s]));
  const out = [];
  const last = Math.max(series[series.length - 1].t, Math.floor(Date.now() / 1000) - 1);
  for (let t = Math.max(series[0].t, last - 600); t <= last; t++) {
    out.push(by.get(t) || { t, completed: 0, failed: 0 });
  }
  return out;
}

Object.assign(window.taskqViews = window.taskqViews || {}, { queuesView });
})();

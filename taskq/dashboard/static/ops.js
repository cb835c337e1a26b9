// The dead-letters view (requeue, with actions on) and the workers view.
(function () {
"use strict";

const { FINAL, MAX_ROWS, state, h, when, ago, logical, badge, runLink, getJSON, toast, every, act, navigate, lineChart, clock } = window.taskq;

function deadView(main) {
  const body = h("tbody", { id: "dead-body" });
  const tools = h("div", { class: "filters" });
  main.append(h("h1", {}, "Dead letters"), tools,
    h("table", { id: "dead-table" },
      h("thead", {}, h("tr", {}, ["entry", "queue", "run", "task", "reason", "when", ""].map((c) => h("th", {}, c)))),
      body));
  async function requeue(queue, ids) {
    const got = await act("/api/dead/requeue", { queue, ids });
    if (got) { toast(`requeued ${got.requeued}`); load(); }
  }
  async function load() {
    const { entries } = await getJSON("/api/dead");
    body.replaceChildren(...(entries.length ? entries.map((e) => h("tr", { "data-entry": e.entry_id },
      h("td", { class: "mono" }, e.entry_id),
      h("td", {}, e.queue),
      h("td", {}, e.run_id ? runLink(e.run_id, e.queue) : "–"),
      h("td", {}, e.task || "–"),
      h("td", { class: "error" }, e.reason),
      h("td", { title: when(e.time_ms) }, ago(e.time_ms)),
      h("td", {}, state.config.actions
        ? h("button", { class: "action requeue", onclick: () => requeue(e.queue, [e.entry_id]) }, "Requeue")
        : ""))) : [h("tr", {}, h("td", { colspan: 7, class: "muted" }, "no dead letters"))]));
    const queues = [...new Set(entries.map((e) => e.queue))];
    tools.replaceChildren(...(state.config.actions ? queues.map((q) =>
      h("button", { class: "action", "data-requeue-all": q, onclick: () => requeue(q, null) },
        `Requeue all of ${q}`)) : [h("span", { class: "muted" },
      "read-only: start the dashboard with --allow-actions and --token to requeue")]));
  }
  every(5000, () => load().catch((e) => toast(e.message)));
  state.onReset = load;
}

function workersView(main) {
  const table = h("table", { id: "workers-table" });
  main.append(h("h1", {}, "Workers"), table);
  async function load() {
    const { workers } = await getJSON("/api/workers");
    table.replaceChildren(
      h("thead", {}, h("tr", {}, ["worker", "host", "pid", "queues", "busy / slots", "started", "heartbeat", ""].map((c) => h("th", {}, c)))),
      h("tbody", {}, workers.length ? workers.map((w) => h("tr", { "data-worker": w.worker_id },
        h("td", { class: "mono" }, w.worker_id), h("td", {}, w.host), h("td", { class: "num" }, w.pid),
        h("td", {}, w.queues.join(", ")), h("td", { class: "num" }, `${w.busy} / ${w.slots}`),
        h("td", {}, ago(w.started_ms)), h("td", {}, ago(w.last_heartbeat_ms)),
        h("td", {}, w.alive ? badge("alive", "Completed") : badge("stale", "Failed"))))
        : h("tr", {}, h("td", { colspan: 8, class: "muted" }, "no workers"))));
  }
  every(3000, () => load().catch((e) => toast(e.message)));
}


Object.assign(window.taskqViews = window.taskqViews || {}, { deadView, workersView });
})();

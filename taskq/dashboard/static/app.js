// The taskq dashboard: one page, five views, live over server-sent events.
// Every value from the server is put in the page as text (textContent), never as HTML.
(function () {
"use strict";

const { lineChart, clock } = window.taskqCharts;
const FINAL = new Set(["Completed", "Cached", "Failed", "Cancelled"]);
const MAX_ROWS = 200;
const state = { config: null, view: null, timers: [], onEvents: null, onReset: null };

// -- helpers ----------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function when(ms) {
  if (ms == null) return "–";
  const d = new Date(ms);
  return d.toISOString().replace("T", " ").slice(0, 23) + "Z";
}

function ago(ms) {
  if (ms == null) return "–";
  const s = Math.max(0, (Date.now() - ms) / 1000);
  return s < 60 ? `${s.toFixed(0)} s ago` : s < 3600 ? `${(s / 60).toFixed(0)} min ago`
    : `${(s / 3600).toFixed(1)} h ago`;
}

function logical(queue) { return queue.split("#")[0]; }

function badge(s, extra) { return h("span", { class: `state ${s}${extra ? " " + extra : ""}` }, s); }

function runLink(runId, queue) {
  const href = `/runs/${encodeURIComponent(runId)}` + (queue ? `?queue=${encodeURIComponent(queue)}` : "");
  return h("a", { href, "data-nav": true, class: "mono" }, runId);
}

async function getJSON(path) {
  const res = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error || `${res.status} ${res.statusText}`);
  return body;
}

function toast(text) {
  const el = h("div", { class: "toast", id: "toast" }, text);
  document.getElementById("toast")?.remove();
  document.body.appendChild(el);
  setTimeout(() => el.remove(), 4000);
}

function every(ms, fn) { fn(); state.timers.push(setInterval(fn, ms)); }

// -- the action token: asked once, kept in this tab (sessionStorage) --------------------

function askToken() {
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  input.value = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "ok" && input.value ? input.value : null);
    }, { once: true });
    dialog.showModal();
    input.focus();
  });
}

async function act(path, body) {
  for (let tries = 0; tries < 2; tries++) {
    let token = sessionStorage.getItem("taskq-token");
    if (!token) {
      token = await askToken();
      if (!token) return null;
      sessionStorage.setItem("taskq-token", token);
    }
    const res = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
      body: JSON.stringify(body),
    });
    const got = await res.json().catch(() => ({}));
    if (res.status === 401) { sessionStorage.removeItem("taskq-token"); toast(got.error); continue; }
    if (!res.ok) { toast(got.error || `${res.status}`); return null; }
    return got;
  }
  return null;
}

// -- live updates -----------------------------------------------------------------------

function connect() {
  const live = document.getElementById("live");
  const source = new EventSource("/api/events");
  source.onopen = () => { live.textContent = "live"; live.className = "live on"; };
  source.onerror = () => { live.textContent = "reconnecting"; live.className = "live off"; };
  source.addEventListener("runs", (msg) => {
    const events = JSON.parse(msg.data);
    if (state.onEvents) state.onEvents(events);
  });
  source.addEventListener("reset", () => { if (state.onReset) state.onReset(); });
}

// -- views ------------------------------------------------------------------------------

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

function runsView(main, params) {
  const filters = {
    state: params.get("state") || "", task: params.get("task") || "", queue: params.get("queue") || "",
  };
  const stateSel = h("select", { id: "filter-state" },
    ["", "Pending", "Scheduled", "Running", "Retrying", "AwaitingRetry", "AwaitingChildren",
      "Completed", "Failed", "Crashed", "Cancelled"].map((s) =>
      h("option", { value: s, selected: s === filters.state }, s || "any state")));
  const taskIn = h("input", { id: "filter-task", placeholder: "task", value: filters.task });
  const queueSel = h("select", { id: "filter-queue" },
    ["", ...state.config.queues].map((q) => h("option", { value: q, selected: q === filters.queue }, q || "any queue")));
  const apply = () => {
    const p = new URLSearchParams();
    for (const [k, el] of [["state", stateSel], ["task", taskIn], ["queue", queueSel]]) {
      if (el.value) p.set(k, el.value);
    }
    navigate(`/runs${p.toString() ? "?" + p : ""}`);
  };
  stateSel.onchange = apply; queueSel.onchange = apply;
  taskIn.onkeydown = (e) => { if (e.key === "Enter") apply(); };
  const body = h("tbody", { id: "runs-body" });
  main.append(
    h("h1", {}, "Runs"),
    h("div", { class: "filters" }, stateSel, taskIn, queueSel,
      h("span", { class: "muted" }, "newest first; updated live")),
    h("table", { id: "runs-table" },
      h("thead", {}, h("tr", {}, ["run", "task", "queue", "state", "attempt", "updated"].map((c) => h("th", {}, c)))),
      body),
  );
  const rows = new Map();
  function row(r) {
    const tr = h("tr", { "data-run": r.run_id },
      h("td", {}, runLink(r.run_id, r.queue)),
      h("td", { class: "task" }, r.task || "–"),
      h("td", {}, r.queue),
      h("td", { class: "state-cell" }, badge(r.state)),
      h("td", { class: "num attempt" }, r.attempt ?? "–"),
      h("td", { class: "updated", title: when(r.updated_ms) }, clock(r.updated_ms)));
    tr.dataset.state = r.state;
    return tr;
  }
  function matches(ev) {
    return (!filters.state || ev.state === filters.state)
      && (!filters.task || ev.task === filters.task)
      && (!filters.queue || logical(ev.queue) === filters.queue);
  }
  async function load() {
    const p = new URLSearchParams({ limit: "100" });
    for (const k of ["state", "task", "queue"]) if (filters[k]) p.set(k, filters[k]);
    const { runs } = await getJSON(`/api/runs?${p}`);
    rows.clear();
    body.replaceChildren(...runs.map((r) => { const tr = row(r); rows.set(r.run_id, tr); return tr; }));
  }
  state.onEvents = (events) => {
    for (const ev of events) {
      const old = rows.get(ev.run_id);
      if (!matches(ev)) {
        if (old && filters.state) { old.remove(); rows.delete(ev.run_id); }
        continue;
      }
      const r = { run_id: ev.run_id, queue: ev.queue, state: ev.state, updated_ms: ev.time_ms,
        task: ev.task || (old && old.querySelector(".task").textContent !== "–" ? old.querySelector(".task").textContent : null),
        attempt: ev.attempt ?? (old ? old.querySelector(".attempt").textContent : null) };
      const tr = row(r);
      if (old) old.remove();
      rows.set(ev.run_id, tr);
      body.prepend(tr);
    }
    while (rows.size > MAX_ROWS) {
      const last = body.lastElementChild;
      rows.delete(last.dataset.run);
      last.remove();
    }
  };
  state.onReset = () => load().catch((e) => toast(e.message));
  return load();
}

function runView(main, runId, params) {
  const queue = params.get("queue") || "";
  const holder = h("div", { id: "run" });
  main.append(h("h1", {}, "Run ", h("span", { class: "mono" }, runId)), holder);
  let pending = null;
  async function load() {
    const q = queue ? `?queue=${encodeURIComponent(queue)}` : "";
    let run;
    try {
      ({ run } = await getJSON(`/api/runs/${encodeURIComponent(runId)}${q}`));
    } catch (e) {
      holder.replaceChildren(h("p", { class: "error" }, e.message));
      return;
    }
    holder.replaceChildren(...renderRun(run));
  }
  state.onEvents = (events) => {
    // This run, or one of its children (ids <run>.<n>): load again, at most twice a second.
    if (!events.some((ev) => ev.run_id === runId || ev.run_id.startsWith(runId + "."))) return;
    if (!pending) pending = setTimeout(() => { pending = null; load(); }, 500);
  };
  state.onReset = load;
  return load();
}

function renderRun(run) {
  const out = [];
  const facts = h("dl", { class: "kv", id: "run-facts" },
    h("dt", {}, "state"), h("dd", { id: "run-state" }, badge(run.state)),
    h("dt", {}, "task"), h("dd", { id: "run-task" }, run.task || "–"),
    h("dt", {}, "queue"), h("dd", {}, run.queue),
    h("dt", {}, "attempts"), h("dd", {}, run.attempts.length));
  const panel = h("div", { class: "panel" }, facts);
  if (state.config.actions && !FINAL.has(run.state)) {
    panel.append(h("p", {}, h("button", {
      class: "danger", id: "cancel-run",
      onclick: async () => {
        const got = await act(`/api/runs/${encodeURIComponent(run.run_id)}/cancel`, { queue: run.queue });
        if (got) toast(`cancel: ${got.reply}`);
      },
    }, "Cancel this run")));
  }
  out.push(panel);
  if (run.result != null) out.push(h("h2", {}, "Result"), h("pre", { id: "run-result" }, run.result));
  if (run.error != null) out.push(h("h2", {}, "Error"), h("pre", { id: "run-error", class: "error" }, run.error));
  out.push(h("h2", {}, "Attempts"), h("table", { id: "attempts" },
    h("thead", {}, h("tr", {}, h("th", {}, "attempt"), h("th", {}, "started"), h("th", {}, "error"))),
    h("tbody", {}, run.attempts.map((a) => h("tr", { "data-attempt": a.attempt },
      h("td", { class: "num" }, a.attempt), h("td", {}, when(a.started_ms)),
      h("td", { class: a.error ? "error" : "muted" }, a.error || "–"))))));
  if (run.children.length) {
    out.push(h("h2", {}, `Children (${run.children.length})`), tree(run.children));
  }
  out.push(h("h2", {}, "Events"), h("table", { id: "run-events" },
    h("tbody", {}, run.events.map((e) => h("tr", {},
      h("td", { class: "mono" }, when(e.time_ms)), h("td", {}, badge(e.state)),
      h("td", { class: "muted" }, e.attempt != null ? `attempt ${e.attempt}` : ""),
      h("td", { class: "error" }, e.error || ""))))));
  if (run.logs.length) {
    out.push(h("h2", {}, "Log"), h("pre", { id: "run-log" },
      run.logs.map((l) => `${when(l.time_ms)}  ${l.level}  #${l.attempt}  ${l.message}\n`).join("")));
  }
  return out;
}

// A flow's children as a tree: a child that is itself a flow opens on a click.
function tree(children) {
  return h("ul", { class: "tree", id: "children" }, children.map((c) => {
    const sub = h("div");
    let open = false;
    const toggle = h("button", {
      class: "toggle", title: "show its children",
      onclick: async () => {
        open = !open;
        toggle.textContent = open ? "▾" : "▸";
        if (!open) { sub.replaceChildren(); return; }
        const { run } = await getJSON(`/api/runs/${encodeURIComponent(c.run_id)}?queue=${encodeURIComponent(c.queue)}`);
        sub.replaceChildren(run.children.length ? tree(run.children) : h("span", { class: "muted" }, "no children"));
      },
    }, "▸");
    return h("li", { "data-run": c.run_id }, toggle, runLink(c.run_id, c.queue), " ",
      h("span", { class: "muted" }, c.task || ""), " ", badge(c.state), sub);
  }));
}

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

// -- routing ----------------------------------------------------------------------------

function navigate(path) {
  history.pushState({}, "", path);
  render();
}

function render() {
  for (const t of state.timers) clearInterval(t);
  state.timers = [];
  state.onEvents = null;
  state.onReset = null;
  const main = document.getElementById("view");
  main.replaceChildren();
  const path = location.pathname;
  const params = new URLSearchParams(location.search);
  let view;
  if (path.startsWith("/runs/")) {
    view = "runs";
    runView(main, decodeURIComponent(path.slice("/runs/".length)), params);
  } else if (path === "/runs") { view = "runs"; runsView(main, params); }
  else if (path === "/dead") { view = "dead"; deadView(main); }
  else if (path === "/workers") { view = "workers"; workersView(main); }
  else { view = "queues"; queuesView(main); }
  document.body.dataset.view = path.startsWith("/runs/") ? "run" : view;
  for (const a of document.querySelectorAll("header nav a")) {
    a.classList.toggle("active", a.dataset.view === view);
  }
}

document.addEventListener("click", (e) => {
  const a = e.target.closest("a[data-nav]");
  if (!a || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
  e.preventDefault();
  navigate(a.getAttribute("href"));
});
window.addEventListener("popstate", render);

(async function start() {
  state.config = await getJSON("/api/config");
  document.getElementById("mode").textContent = state.config.actions
    ? "actions allowed (token)" : "read-only";
  document.body.dataset.actions = state.config.actions ? "on" : "off";
  connect();
  render();
})();
})();

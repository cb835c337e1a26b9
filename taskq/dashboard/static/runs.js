// The runs list (live) and a run's page (attempts, result, events, log, a flow's children).
(function () {
"use strict";

const { FINAL, MAX_ROWS, state, h, when, ago, logical, badge, runLink, getJSON, toast, every, act, navigate, lineChart, clock } = window.taskq;

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


Object.assign(window.taskqViews = window.taskqViews || {}, { runsView, runView });
})();

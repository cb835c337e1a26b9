// The taskq dashboard: one page, five views, live over server-sent events.
(function () {
"use strict";

const { state, getJSON, navigate } = window.taskq;
const { queuesView, runsView, runView, deadView, workersView } = window.taskqViews;

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


// -- routing ----------------------------------------------------------------------------

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
state.render = render;

(async function start() {
  state.config = await getJSON("/api/config");
  document.getElementById("mode").textContent = state.config.actions
    ? "actions allowed (token)" : "read-only";
  document.body.dataset.actions = state.config.actions ? "on" : "off";
  connect();
  render();
})();
})();

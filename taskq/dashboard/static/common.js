// The dashboard's shared helpers: building elements, formatting, fetching, the action token.
// Every value from the server goes into the page as text (textContent), never as HTML.
(function () {
"use strict";

const { lineChart, clock } = window.taskqCharts;
const FINAL = new Set(["Completed", "Cached", "Failed", "Cancelled"]);
const MAX_ROWS = 200;
const state = { config: null, timers: [], onEvents: null, onReset: null, render: null };

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


function navigate(path) {
  history.pushState({}, "", path);
  state.render();
}

window.taskq = {
  FINAL, MAX_ROWS, state, h, when, ago, logical, badge, runLink, getJSON, toast, every, act,
  navigate, lineChart, clock,
};
})();

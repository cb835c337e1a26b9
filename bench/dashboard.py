"""The dashboard's responsiveness with 100,000 runs in the events streams:
``python -m bench.dashboard [--runs 100000] [--worked 20000] [--requests 40]``.

On a private ``redis-server`` it enqueues ``--runs`` no-op runs with ``task.map`` (the
first ``--worked`` on queue ``default``, the rest on queue ``bulk``), drains ``default``
with a burst worker (so its runs have Running and Completed events too; ``bulk``'s stay
Pending), starts ``taskq dashboard`` as its own process, then times every page and JSON
endpoint (``--requests`` sequential requests each, after warm-ups; median and p99) and
the server-sent-events delay from an ``XADD`` to the events stream to its arrival at a
client (with 10 more clients connected). Rewrites ``bench/DASHBOARD.md``.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import taskq
from bench.common import ROOT, percentile, say, taskq_cmd
from taskq.localredis import LocalRedis
from taskq.testing import run_burst

PREFIX = "dashbench"
OUT = ROOT / "bench" / "DASHBOARD.md"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--worked", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--sse", type=int, default=100, help="XADDs timed over SSE")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    server = LocalRedis()
    url = server.start()
    try:
        report = bench(url, args.runs, args.worked, args.requests, args.sse)
    finally:
        server.close()
    args.out.write_text(report)
    say(f"wrote {args.out}")
    return 0


def fill(url: str, runs: int, worked: int) -> tuple[taskq.App, dict[str, str]]:
    app = taskq.App(url, prefix=PREFIX)

    @app.task(name="bench.noop")
    def noop(i: int) -> int:
        return i

    @app.task(name="bench.noop_bulk", queue="bulk")
    def noop_bulk(i: int) -> int:
        return i

    t0 = time.perf_counter()
    done = noop.map(range(worked))
    pending = noop_bulk.map(range(runs - worked))
    say(f"enqueued {runs} runs in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    run_burst(app, ["default"], concurrency=16)
    say(f"burst worker drained {worked} runs of queue default in {time.perf_counter() - t0:.1f} s")
    samples = {"completed": done[len(done) // 2].run_id, "pending": pending[0].run_id}
    return app, samples


def start_dashboard(url: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TASKQ_PREFIX": PREFIX}
    proc = subprocess.Popen(
        [*taskq_cmd(), "dashboard", "--port", "0", "--redis-url", url],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("taskq dashboard on "):
        raise RuntimeError(f"the dashboard did not start: {line!r}")
    return proc, line.split()[3].rstrip("/")


def time_gets(base: str, paths: list[str], n: int) -> list[tuple[str, float, float, int]]:
    netloc = urlsplit(base).netloc
    conn = http.client.HTTPConnection(netloc, timeout=60)
    rows = []
    for path in paths:
        times, size = [], 0
        for i in range(n + 3):
            t0 = time.perf_counter()
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            took = (time.perf_counter() - t0) * 1000
            if resp.status != 200:
                raise RuntimeError(f"GET {path}: {resp.status} {body[:200]!r}")
            if i >= 3:  # warm-ups left out
                times.append(took)
            size = len(body)
        rows.append((path, statistics.median(times), percentile(times, 0.99), size))
        say(f"  {path}: median {rows[-1][1]:.1f} ms, p99 {rows[-1][2]:.1f} ms, {size} bytes")
    conn.close()
    return rows


def open_stream(base: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(urlsplit(base).netloc, timeout=60)
    conn.request("GET", "/api/events", headers={"Accept": "text/event-stream"})
    resp = conn.getresponse()
    assert resp.status == 200
    return resp


def time_sse(app: taskq.App, base: str, n: int) -> list[float]:
    idle = [open_stream(base) for _ in range(10)]
    resp = open_stream(base)
    client = app.broker.client
    events = app.keys.events("default")
    arrived: dict[str, float] = {}
    done = threading.Event()

    def read() -> None:
        while len(arrived) < n:
            line = resp.readline().decode()
            if line.startswith("data: ") and '"bench-sse-' in line:
                now = time.perf_counter()
                for part in line.split('"run_id": "')[1:]:
                    rid = part.split('"', 1)[0]
                    arrived.setdefault(rid, now)
        done.set()

    threading.Thread(target=read, daemon=True).start()
    sent: dict[str, float] = {}
    for i in range(n):
        rid = f"bench-sse-{i}"
        sent[rid] = time.perf_counter()
        client.xadd(events, {"r": rid, "s": "Pending", "k": "bench.sse"})
        time.sleep(0.02)  # one at a time, so each is timed alone, not behind the others
    done.wait(60)
    for r in idle:
        r.close()
    return [(arrived[r] - sent[r]) * 1000 for r in sent if r in arrived]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def bench(url: str, runs: int, worked: int, requests: int, sse: int) -> str:
    app, sample = fill(url, runs, worked)
    lens = {q: int(app.broker.execute("XLEN", app.keys.events(q))) for q in ("default", "bulk")}
    say(f"events streams: {lens} entries")
    proc, base = start_dashboard(url)
    try:
        paths = [
            "/",
            "/static/app.js",
            "/api/config",
            "/api/queues",
            "/api/workers",
            "/api/runs",
            "/api/runs?limit=500",
            "/api/runs?state=Completed",
            "/api/runs?task=bench.noop_bulk",
            "/api/runs?state=Failed",
            f"/api/runs/{sample['completed']}?queue=default",
            f"/api/runs/{sample['pending']}?queue=bulk",
            "/api/dead",
            "/api/depth",
            "/api/stats",
            "/api/recent",
        ]
        say(f"timing {len(paths)} endpoints, {requests} requests each")
        rows = time_gets(base, paths, requests)
        say(f"timing the SSE delay of {sse} XADDs")
        delays = time_sse(app, base, sse)
        rss = rss_kib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return report(runs, worked, lens, rows, delays, rss, requests)


def report(
    runs: int,
    worked: int,
    lens: dict[str, int],
    rows: list[tuple[str, float, float, int]],
    delays: list[float],
    rss: int,
    requests: int,
) -> str:
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        "# Dashboard responsiveness",
        "",
        f"`python -m bench.dashboard` at {head}, {when},"
        f" on {platform.machine()} with {os.cpu_count()} CPUs (shared), Python "
        f"{platform.python_version()}, a private redis-server on loopback.",
        "",
        f"- runs in the events streams: {runs:,} ({worked:,} on `default`, drained by a burst "
        f"worker: Pending, Running and Completed events; {runs - worked:,} on `bulk`, Pending)",
        f"- events-stream entries: {', '.join(f'`{q}` {n:,}' for q, n in lens.items())} "
        "(a map's Pending events, and a worker batch's, share entries of up to 16 runs)",
        f"- the dashboard process (`taskq dashboard`, its own process) after all requests: "
        f"{rss / 1024:.0f} MiB resident",
        "",
        f"Each endpoint: {requests} sequential GETs on one keep-alive connection after 3 "
        "warm-ups; time from request to the last byte, at the client.",
        "",
        "| endpoint | median ms | p99 ms | bytes |",
        "|---|---:|---:|---:|",
    ]
    for path, med, p99, size in rows:
        lines.append(f"| `{path}` | {med:.1f} | {p99:.1f} | {size:,} |")
    if delays:
        lines += [
            "",
            f"Server-sent events: {len(delays)} `XADD`s to `default`'s events stream, one "
            "every 20 ms, each timed from just before the `XADD` to the arrival of its "
            "message at a client (10 more clients connected): median "
            f"{statistics.median(delays):.1f} ms, p99 {percentile(delays, 0.99):.1f} ms, "
            f"max {max(delays):.1f} ms.",
        ]
    lines += [
        "",
        "What each read costs is bounded by a count, not by the 100,000 runs: the queues "
        "view reads counts (XLEN, XPENDING, ZCARD) and at most 500 entries per events "
        "stream for the throughput; the runs list pages newest-first through at most 2,000 "
        "entries per queue (so a filter that matches nothing, `state=Failed`, costs the most); "
        "depth, throughput, latency and the recent events come from the dashboard's memory; "
        "the run page (`taskq.overview.run_detail`) reads the run's events with one XRANGE "
        "of its queue's capped events stream (at most `events_maxlen` entries).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

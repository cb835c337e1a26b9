"""How taskq scales out: worker processes on one node, queues and partitions on a Cluster.

Usage::

    .venv/bin/python -m bench.scale                        # the defaults, a few minutes
    .venv/bin/python -m bench.scale --processes 1,2,4,8,12 --masters 6 \\
        --queues 12 --partitions 12 --runs 400000          # a bigger machine

Three set-ups, each drained by ``taskq worker --burst`` pools of every size in
``--processes`` (a subprocess, as users run it), ``--runs`` no-op runs pre-enqueued
with ``map`` before each drain:

1. ``single``: one private ``redis-server``, one queue; beside it a bare redis-py
   consumer (XREADGROUP COUNT 100 + pipelined XACK/XDEL) on the same server.
2. ``queues``: a ``--masters``-master Cluster, ``--queues`` separate queues, the runs
   spread evenly over them (where the queues land is up to their names' hash slots).
3. ``partitions``: the same Cluster, one queue split into ``--partitions`` partitions
   (their names are salted so they spread evenly over the masters).

For each drain: runs/s from pool start to the last finish and over the drain window
(first start to last finish, server clock), worker CPU per run (the CPU of the same
pool on an empty queue taken out), every master's Redis CPU per run and share of the
runs, and the CPU of every process against the machine's cores, from ``/proc``.
Everything runs on private servers on free loopback ports, stopped by their own pid.
The report goes to ``bench/SCALE.md`` (overwritten; ``--out`` to write elsewhere).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from redis.crc import key_slot

from bench import scale_report, servers
from bench.common import busy_cpu_seconds, say
from bench.run import taskq_version
from bench.scale_drain import (
    CHUNK,
    Layout,
    Params,
    SetupResult,
    bare,
    drain,
    load_tasks,
    tasks,
)

OUT = Path(__file__).resolve().parent / "SCALE.md"


# -- layouts ------------------------------------------------------------------------------


def spread(queues: list[str]) -> Callable[[int], None]:
    """An enqueue that gives every queue an equal share of the runs, in map calls."""

    def enqueue(n: int) -> None:
        for k, q in enumerate(queues):
            share = n // len(queues) + (1 if k < n % len(queues) else 0)
            task = tasks().noop.with_options(queue=q)
            for lo in range(0, share, CHUNK):
                task.map(range(lo, min(share, lo + CHUNK)))

    return enqueue


def layout_for(setup: str, p: Params) -> Layout:
    """The queues of one set-up (see the module docstring)."""
    if setup == "single":
        return Layout("1 queue", ["default"], ["default"], spread(["default"]))
    if setup == "queues":
        qs = [f"q{i}" for i in range(p.queues)]
        return Layout(
            f"{p.queues} queues", qs, qs, spread(qs), note="placed by their names' hash slots"
        )
    return Layout(
        f"1 queue x {p.partitions} partitions",
        tasks().app.settings.queue_names("hot"),
        ["hot"],
        spread(["hot"]),
        note=(
            f"`TASKQ_PARTITIONS=hot={p.partitions}`; `map` deals the runs over the "
            "partitions, the worker is given `-Q hot`"
        ),
    )


# -- main ---------------------------------------------------------------------------------


def measure(name: str, s: servers.Setup, p: Params) -> SetupResult:
    """Every pool size of one set-up: an empty-queue pool first, then the drains."""
    lay = layout_for(name, p)
    res = SetupResult(name, lay, s)
    res.slots = {q: int(key_slot(q.encode())) for q in lay.queues}
    admin = s.clients()[0]
    res.redis_version = str(admin.info("server").get("redis_version", "?"))
    admin.close()
    say(f"{name}: {lay.name} on {len(s.ports)} master(s) {s.url}")
    for procs in p.processes:
        idle = drain(s, lay, procs, p.concurrency, 0)
        say(f"  {procs}p empty queue: wall {idle.pool_wall_s:.2f} s, CPU {idle.worker_cpu_s:.2f} s")
        for rep in range(p.reps):
            d = drain(s, lay, procs, p.concurrency, p.runs)
            d.idle = idle
            res.drains.append(d)
            say(
                f"  {procs}p rep {rep + 1}/{p.reps}: {d.n / d.to_drained_s:,.0f} runs/s from "
                f"pool start, {d.n / d.window_s:,.0f} runs/s in the drain window "
                f"({d.window_s:.2f} s), pool wall {d.pool_wall_s:.2f} s, "
                f"completed {d.completed:,}, entries per master {d.entries}"
            )
            if name == "single":
                b = bare(s, p.runs)
                res.bare.append(b)
                say(f"  bare consumer: {b.done / b.wall_s:,.0f} entries/s")
    return res


def parse_args(argv: list[str] | None) -> tuple[Params, Path]:
    ap = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    ap.add_argument("--processes", default="1,2,4,8,16", help="pool sizes, comma-separated")
    ap.add_argument("--masters", type=int, default=3, help="Cluster masters")
    ap.add_argument("--queues", type=int, default=8, help="separate queues on the Cluster")
    ap.add_argument("--partitions", type=int, default=8, help="partitions of the hot queue")
    ap.add_argument("--runs", type=int, default=80_000, help="runs per drain")
    ap.add_argument("--concurrency", type=int, default=8, help="threads per worker process")
    ap.add_argument("--reps", type=int, default=2, help="drains per pool size (best kept)")
    ap.add_argument("--setups", default="single,queues,partitions", help="which set-ups")
    ap.add_argument("--out", type=Path, default=OUT, help="report file (overwritten)")
    a = ap.parse_args(argv)
    setups = tuple(x for x in a.setups.split(",") if x)
    unknown = set(setups) - {"single", "queues", "partitions"}
    if unknown:
        ap.error(f"unknown set-ups {sorted(unknown)}")
    procs = tuple(int(x) for x in a.processes.split(",") if x)
    if a.runs < 1 or a.masters < 1 or min(procs, default=0) < 1:
        ap.error("--runs, --masters and every --processes value must be >= 1")
    return (
        Params(procs, a.masters, a.queues, a.partitions, a.runs, a.concurrency, a.reps, setups),
        a.out,
    )


def main(argv: list[str] | None = None) -> int:
    p, out = parse_args(argv)
    started, load0, busy0 = time.time(), os.getloadavg()[0], busy_cpu_seconds()
    version = taskq_version()
    load_tasks(p.partitions)
    results: list[SetupResult] = []
    if "single" in p.setups:
        with servers.single() as s:
            results.append(measure("single", s, p))
    cluster_setups = [x for x in ("queues", "partitions") if x in p.setups]
    if cluster_setups:
        with servers.cluster(p.masters) as s:
            for name in cluster_setups:
                results.append(measure(name, s, p))
    tasks().app.close()
    machine = scale_report.Machine(
        argv=sys.argv[1:] if argv is None else argv,
        started=started,
        elapsed_s=time.time() - started,
        load=(load0, os.getloadavg()[0]),
        busy_s=busy_cpu_seconds() - busy0,
        taskq=version,
        changed=taskq_version().rpartition("hash ")[2] != version.rpartition("hash ")[2],
    )
    text = scale_report.write(out, p, results, machine)
    print(text.split("## Results", 1)[-1].split("## Notes", 1)[0].strip())
    say(f"wrote {out} ({machine.elapsed_s:.0f} s)")
    failed = [d for r in results for d in r.drains if d.completed != d.n or d.returncode != 0]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

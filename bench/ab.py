"""A/B of the per-run cost of two source trees, side by side on one private Redis.

    python -m bench.ab TREE_A TREE_B [--body noop|work] [-n 20000] [--reps 3]

Each tree is a checkout of taskq (``git worktree add ../wt/base <commit>`` makes one;
``.`` is this one). For each repetition, and each tree in turn, N runs of
``bench.tasks.<body>`` are enqueued with ``map`` by that tree's own code, then one
``taskq worker bench.tasks:app --processes 1 --concurrency 8 --burst --burst-wait 0``
of that tree drains them (``PYTHONPATH`` picks the tree). Printed per drain: wall
time of the worker command, worker CPU per run (the child's rusage less the same
command on an empty queue, so start-up is out), redis-server CPU per run (INFO cpu) and
the Redis command time of its script calls per run (INFO commandstats, EVALSHA: steadier
than the CPU figure, which also counts the server's own event loop).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path
from time import perf_counter

import redis

from taskq.localredis import LocalRedis

ENQUEUE = (
    "import sys, bench.tasks as t; t.app.configure(redis_url=sys.argv[1], prefix=sys.argv[2]); "
    "body = getattr(t, sys.argv[3]); n = int(sys.argv[4])\n"
    "for i in range(0, n, 10_000): body.map(range(i, min(n, i + 10_000)))\n"
    "t.app.close()"
)


def redis_cpu(r: redis.Redis) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def script_usec(r: redis.Redis) -> int:
    """Redis command time of every EVALSHA so far (commands inside scripts included)."""
    stats = r.info("commandstats").get("cmdstat_evalsha")
    return int(stats["usec"]) if stats else 0


def drain(tree: Path, url: str, r: redis.Redis, body: str, n: int, tag: str) -> tuple[float, ...]:
    """(wall s, worker CPU s, redis CPU s, script us) of one enqueue + burst drain of ``n`` runs."""
    r.flushall()
    env = {**os.environ, "PYTHONPATH": str(tree), "TASKQ_PREFIX": tag, "TASKQ_REDIS_URL": url}
    if n:
        enq = [sys.executable, "-c", ENQUEUE, url, tag, body, str(n)]
        subprocess.run(enq, env=env, cwd=tree, check=True)
    cmd = [sys.executable, "-m", "taskq", "worker", "bench.tasks:app", "--processes", "1"]
    cmd += ["--concurrency", "8", "--burst", "--burst-wait", "0", "--log-level", "WARNING"]
    r.config_resetstat()
    cpu0 = redis_cpu(r)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = perf_counter()
    subprocess.run(cmd, env=env, cwd=tree, check=True, capture_output=True)
    wall = perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    worker = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
    return wall, worker, redis_cpu(r) - cpu0, script_usec(r)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__)
    p.add_argument("trees", nargs=2, type=Path)
    p.add_argument("--body", default="noop", choices=["noop", "work"])
    p.add_argument("-n", type=int, default=20_000)
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args(argv)
    trees = [t.resolve() for t in args.trees]
    with LocalRedis() as server:
        r = redis.Redis.from_url(server.url)
        idle = {t: drain(t, server.url, r, args.body, 0, "idle")[1] for t in trees}
        got: dict[Path, list[tuple[float, ...]]] = {t: [] for t in trees}
        for rep in range(args.reps):
            for t in trees:
                wall, worker, rcpu, usec = drain(t, server.url, r, args.body, args.n, f"ab{rep}")
                per = (wall, 1e6 * (worker - idle[t]) / args.n, 1e6 * rcpu / args.n, usec / args.n)
                got[t].append(per)
                print(
                    f"{t.name:>12} rep {rep + 1}: wall {per[0]:.2f} s, worker CPU/run "
                    f"{per[1]:.0f} us, redis CPU/run {per[2]:.1f} us (scripts {per[3]:.1f} us)",
                    flush=True,
                )
        print(f"body {args.body}, N={args.n:,}, medians:")
        for t in trees:
            cols = list(zip(*got[t], strict=True))
            med = [statistics.median(c) for c in cols]
            print(
                f"  {t}: wall {med[0]:.2f} s, worker CPU/run {med[1]:.0f} us "
                f"(start-up {idle[t]:.2f} s out), redis CPU/run {med[2]:.1f} us "
                f"(scripts {med[3]:.1f} us)"
            )
        r.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

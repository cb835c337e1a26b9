"""A/B of two source trees' bulk enqueue (``map``), side by side on one private Redis.

    python -m bench.ab_map TREE_A TREE_B [--reps 5]

Per repetition and tree in turn, a subprocess of that tree (``PYTHONPATH``) enqueues
100,000 runs of ``bench.tasks.work`` in ``map`` calls of 10,000 on a FLUSHALLed server;
printed: runs per second (client wall) and redis-server CPU per run (``INFO cpu``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

from taskq.localredis import LocalRedis

CODE = r"""
import sys, time, redis, bench.tasks as t
url = sys.argv[1]
r = redis.Redis.from_url(url)
t.app.configure(redis_url=url, prefix="m")
t.work.map(range(1000))  # scripts loaded, connections made
r.flushall()
def cpu():
    i = r.info("cpu")
    return float(i["used_cpu_user"]) + float(i["used_cpu_sys"])
c0, w0 = cpu(), time.perf_counter()
for _ in range(10):
    t.work.map(range(10_000))
w, c = time.perf_counter() - w0, cpu() - c0
print(f"{100_000 / w:.0f} {1e6 * c / 100_000:.2f}")
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ab_map", description=__doc__)
    p.add_argument("trees", nargs=2, type=Path)
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args(argv)
    trees = [t.resolve() for t in args.trees]
    with LocalRedis() as server:
        got: dict[Path, list[tuple[float, float]]] = {t: [] for t in trees}
        for _ in range(args.reps):
            for t in trees:
                env = {**os.environ, "PYTHONPATH": str(t)}
                cmd = [sys.executable, "-c", CODE, server.url]
                out = subprocess.run(cmd, cwd=t, env=env, capture_output=True, text=True)
                out.check_returncode()
                rate, cpu = out.stdout.split()
                got[t].append((float(rate), float(cpu)))
        for t in trees:
            rates = [r for r, _ in got[t]]
            cpus = [c for _, c in got[t]]
            print(
                f"{t}: map {statistics.median(rates):,.0f} runs/s (reps "
                f"{', '.join(f'{x:,.0f}' for x in rates)}), redis-server CPU per run "
                f"{statistics.median(cpus):.2f} us"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

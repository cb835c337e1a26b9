"""How close a rate limit holds under load from several worker processes.

    python -m bench.ratelimit [--runs 2000] [--processes 4]

Enqueues ``--runs`` runs of ``bench.tasks.limited`` (a no-op limited to
``bench.tasks.LIMITED_RATE`` per second for all workers together) on a private Redis, then
drains them with ``taskq worker bench.tasks:app --processes N --concurrency 8 --burst``.
The achieved rate is measured on the server's clock from the runs' own start times
(``t1`` in their records): (runs - 1) / (last start - first start). Also printed: how many
runs were deferred to the delay queue (each at most once) and the worst start-to-slot
spacing. The report goes to ``bench/RATELIMIT.md`` (overwritten).
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
from pathlib import Path

import redis

from taskq.events import read_events
from taskq.localredis import LocalRedis

OUT = Path(__file__).resolve().parent / "RATELIMIT.md"
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=2000)
    p.add_argument("--processes", type=int, default=4)
    a = p.parse_args()
    import bench.tasks as t

    with LocalRedis() as server:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TASKQ_REDIS_URL": server.url}
        t.app.configure(redis_url=server.url)
        futures = t.limited.map(range(a.runs))
        cmd = [
            sys.executable,
            "-m",
            "taskq",
            "worker",
            "bench.tasks:app",
            "--processes",
            str(a.processes),
            "--concurrency",
            "8",
            "--burst",
            "--burst-wait",
            "60",
        ]
        subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
        r = redis.Redis.from_url(server.url)
        prefix = t.app.settings.prefix
        starts = sorted(
            int(r.hget(f"{prefix}:{{{f.queue}}}:run:{f.run_id}", "t1") or 0) for f in futures
        )
        done = sum(1 for f in futures if f.state.name == "Completed")
        events = read_events(t.app.broker, "default", count=100_000)
        deferred = sum(e.state == "Scheduled" for e in events)
        t.app.close()
    span = (starts[-1] - starts[0]) / 1000
    rate = (len(starts) - 1) / span
    limit = t.LIMITED_RATE
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    lines = [
        "# Rate limit under load",
        "",
        f"`python -m bench.ratelimit --runs {a.runs} --processes {a.processes}`: {a.runs} runs "
        f"of `bench.tasks.limited` (limit {limit}/s for all workers together) drained by "
        f"`taskq worker --processes {a.processes} --concurrency 8 --burst` on one private Redis.",
        "",
        f"- completed: {done} of {a.runs}",
        f"- achieved rate, from the runs' start times (server clock): {rate:.1f}/s, "
        f"{rate / limit:.3f} of the limit (first to last start: {span:.2f} s)",
        f"- start-to-start gaps: min {min(gaps)} ms, median {sorted(gaps)[len(gaps) // 2]} ms "
        f"(the limit's interval: {1000 / limit:g} ms)",
        f"- runs deferred to the delay queue for their slot (each at most once): {deferred}",
        "",
    ]
    OUT.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

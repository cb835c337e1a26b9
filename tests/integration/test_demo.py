"""The demo (`make demo`): a real progress bar, current state counts, the pool's warnings."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
PROGRESS = re.compile(r"^  \[([#.]{30})\] +(\d+)/320 final  (.*)$")


def test_demo_shows_progress_current_states_and_the_pools_warnings(redis_url: str) -> None:
    env = {**os.environ, "TASKQ_REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}
    env.pop("TASKQ_PREFIX", None)
    res = subprocess.run(
        [sys.executable, "-m", "workers.demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout.splitlines()
    # The test Redis runs without persistence: the pool's warning about it is shown.
    assert any(
        line.startswith("worker pool warning: ") and "has appendonly no" in line for line in out
    ), res.stdout
    bars = [m for line in out if (m := PROGRESS.match(line))]
    assert len(bars) >= 2, res.stdout
    for m in bars:
        counts = dict(part.split("=") for part in m.group(3).split())
        assert sum(int(v) for v in counts.values()) == 320, m.group(0)  # runs, not transitions
        assert m.group(1).count("#") == 30 * int(m.group(2)) // 320
    assert bars[-1].group(2) == "320"
    assert bars[-1].group(3) == "Completed=316 Failed=4"

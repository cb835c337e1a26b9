"""``bench.scale``: which master holds a queue, and a tiny run that writes the report.

No timing is asserted: the smoke run checks that every drain completed every run, on
the one node and on a one-master Cluster, and that each section is written.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from redis.crc import key_slot

from bench.servers import Setup
from taskq.partitions import partition_names

ROOT = Path(__file__).resolve().parents[2]


def test_master_of_reads_the_slot_ranges() -> None:
    thirds = [(0, 5460), (5461, 10921), (10922, 16383)]
    setup = Setup("redis+cluster://x:1/", [1, 2, 3], [0, 0, 0], thirds)
    held = [0, 0, 0]
    for name in partition_names("hot", 8):
        slot = key_slot(name.encode())
        expected = (slot > 5460) + (slot > 10921)
        assert setup.master_of(f"taskq:{{{name}}}:stream") == expected
        held[expected] += 1
    assert sorted(held) == [2, 3, 3]  # what the bench reports as the spread
    assert Setup("redis://x:1/0", [1], [0]).master_of("anything") == 0


@pytest.mark.slow
def test_small_run_completes_every_drain_and_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "SCALE.md"
    args = ["--runs", "200", "--reps", "1", "--processes", "1", "--masters", "1", "--queues", "2"]
    args += ["--partitions", "2", "--out", str(out)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKQ_")}
    done = subprocess.run(
        [sys.executable, "-m", "bench.scale", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "WARNING" not in done.stdout
    text = out.read_text()
    for heading in (
        "### 1. One node: 1 queue",
        "### 2a. Cluster of 1 master(s): 2 queues",
        "### 2b. Cluster of 1 master(s): 1 queue x 2 partitions",
        "### 3. Where the ceiling is",
        "## How to run on a bigger machine",
    ):
        assert heading in text
    # Every run of every Cluster drain was counted on the one master.
    assert len(re.findall(r"^\| 1 \| 0 \| 200 \(100%\) \|", text, re.M)) == 2
    assert "bare redis-py" in text

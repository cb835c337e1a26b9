"""``bench.scale``: its slot arithmetic, and a tiny end-to-end run that writes the report.

No timing is asserted: the smoke run checks that every drain completed every run, on
the one node and on a one-master Cluster, and that each section is written.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from bench.scale import emulated_partition_names
from bench.servers import slot_ranges
from taskq.partitions import partition_names

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("masters", [1, 2, 3, 5, 7])
def test_slot_ranges_cover_every_slot_once_in_order(masters: int) -> None:
    ranges = slot_ranges(masters)
    assert len(ranges) == masters
    assert ranges[0][0] == 0 and ranges[-1][1] == REDIS_CLUSTER_HASH_SLOTS - 1
    for (_, hi), (lo, _) in itertools.pairwise(ranges):
        assert lo == hi + 1


def test_slot_ranges_match_redis_cli_for_three_masters() -> None:
    # What `redis-cli --cluster create` printed for 3 masters (research/scaleout.md §1).
    assert slot_ranges(3) == [(0, 5460), (5461, 10922), (10923, 16383)]


@pytest.mark.parametrize("count", [2, 3, 8, 13])
def test_emulated_partitions_land_where_taskq_partitions_do(count: int) -> None:
    emulated = emulated_partition_names("hot", count)
    real = partition_names("hot", count)
    for i, (e, r) in enumerate(zip(emulated, real, strict=True)):
        low = i * REDIS_CLUSTER_HASH_SLOTS // count
        high = (i + 1) * REDIS_CLUSTER_HASH_SLOTS // count
        assert low <= key_slot(e.encode()) < high
        assert low <= key_slot(r.encode()) < high
    assert len(set(emulated)) == count


@pytest.mark.slow
def test_small_run_completes_every_drain_and_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "SCALE.md"
    args = ["--runs", "200", "--processes", "1", "--masters", "1", "--queues", "2"]
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

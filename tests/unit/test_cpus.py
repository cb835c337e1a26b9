"""``available_cpus``: the ``--processes`` default follows affinity and cgroup quotas."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from taskq.cpus import available_cpus, cgroup_cpu_limit


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [
        ("200000 100000", 2),
        ("150000 100000", 2),  # 1.5 CPUs: rounded up
        ("50000 100000", 1),  # half a CPU: at least one process
        ("max 100000", None),
        ("garbage", None),
    ],
)
def test_cgroup_v2_cpu_max(tmp_path: Path, cpu_max: str, expected: int | None) -> None:
    _write(tmp_path / "cpu.max", cpu_max)
    assert cgroup_cpu_limit(tmp_path) == expected


@pytest.mark.parametrize("sub", ["cpu", "cpu,cpuacct"])
def test_cgroup_v1_cfs_quota(tmp_path: Path, sub: str) -> None:
    _write(tmp_path / sub / "cpu.cfs_quota_us", "300000")
    _write(tmp_path / sub / "cpu.cfs_period_us", "100000")
    assert cgroup_cpu_limit(tmp_path) == 3


def test_cgroup_v1_unlimited_quota(tmp_path: Path) -> None:
    _write(tmp_path / "cpu" / "cpu.cfs_quota_us", "-1")
    _write(tmp_path / "cpu" / "cpu.cfs_period_us", "100000")
    assert cgroup_cpu_limit(tmp_path) is None


def test_no_cgroup_files_means_no_limit(tmp_path: Path) -> None:
    assert cgroup_cpu_limit(tmp_path) is None
    assert available_cpus(tmp_path) == len(os.sched_getaffinity(0))


def test_a_quota_below_the_affinity_mask_wins(tmp_path: Path) -> None:
    _write(tmp_path / "cpu.max", "100000 100000")
    assert available_cpus(tmp_path) == 1


def test_the_affinity_mask_limits_the_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    _write(tmp_path / "cpu.max", "max 100000")
    assert available_cpus(tmp_path) == 1


def test_the_worker_command_defaults_processes_to_available_cpus() -> None:
    from taskq.cli import worker

    option = next(p for p in worker.params if p.name == "processes")
    assert option.default is available_cpus

"""How many CPUs this process may use: the default of ``taskq worker --processes``.

``os.cpu_count()`` is the host's count; inside a CPU-limited container (a cgroup
CPU quota) or under ``taskset`` the process may use far fewer, and a pool sized
by the host count only adds memory and contention.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

#: Where the cgroup filesystem is mounted (a container sees its own cgroup here).
CGROUP_ROOT = Path("/sys/fs/cgroup")


def available_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """CPUs in this process's affinity mask, further limited by a cgroup CPU quota.

    Args:
        cgroup_root: The cgroup mount point (a parameter for tests).

    Returns:
        At least 1.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_limit(cgroup_root)
    if quota is not None:
        cpus = min(cpus, quota)
    return max(1, cpus)


def cgroup_cpu_limit(cgroup_root: Path = CGROUP_ROOT) -> int | None:
    """The cgroup CPU quota in whole CPUs (rounded up, at least 1); None if unlimited.

    cgroup v2: ``cpu.max`` holds ``"<quota> <period>"`` or ``"max <period>"``.
    cgroup v1: ``cpu.cfs_quota_us`` (``-1``: unlimited) and ``cpu.cfs_period_us``
    under ``cpu/`` or ``cpu,cpuacct/``. Unreadable or malformed files count as no limit.
    """
    v2 = _read(cgroup_root / "cpu.max")
    if v2 is not None:
        parts = v2.split()
        if len(parts) == 2 and parts[0] != "max":
            return _whole_cpus(parts[0], parts[1])
        return None
    for sub in ("cpu", "cpu,cpuacct", "."):
        quota = _read(cgroup_root / sub / "cpu.cfs_quota_us")
        period = _read(cgroup_root / sub / "cpu.cfs_period_us")
        if quota is not None and period is not None:
            return _whole_cpus(quota, period)
    return None


def _whole_cpus(quota: str, period: str) -> int | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    if q <= 0 or p <= 0:  # -1: no quota
        return None
    return max(1, math.ceil(q / p))


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None

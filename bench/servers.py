"""The Redis set-ups ``bench.scale`` measures: one node, or an M-master Cluster.

Both are private ``redis-server`` processes on free loopback ports
(:class:`taskq.localredis.LocalRedis`, :class:`taskq.localcluster.LocalCluster`; the
shared Redis on 6379 is never touched), stopped by their own pid when the ``with``
block ends. :class:`Setup` adds what the bench reads: each master's pid (for
``/proc``) and slot range (to say which master holds which queue).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.crc import key_slot

from taskq.localcluster import LocalCluster
from taskq.localredis import LocalRedis

HOST = "127.0.0.1"


@dataclass
class Setup:
    """Running servers: the URL taskq is given, and each master's port and pid.

    Attributes:
        url: ``redis://...`` for one node, ``redis+cluster://h:p,h:p/`` for a cluster.
        ports: Each master's port, in slot order (master 0 owns the lowest slots).
        pids: Each master's ``redis-server`` pid (for ``/proc``), same order.
        ranges: Each master's slot range ``(first, last)``, same order.
    """

    url: str
    ports: list[int]
    pids: list[int]
    ranges: list[tuple[int, int]] = field(default_factory=list)

    @property
    def is_cluster(self) -> bool:
        """True for a Cluster (even a one-master one)."""
        return bool(self.ranges)

    def clients(self) -> list[redis.Redis]:
        """One plain client per master (INFO, CONFIG RESETSTAT, per-node reads)."""
        return [redis.Redis(host=HOST, port=p) for p in self.ports]

    def master_of(self, key_or_tag: str) -> int:
        """Index of the master holding ``key_or_tag``'s slot (0 for one node)."""
        if not self.ranges:
            return 0
        slot = int(key_slot(key_or_tag.encode()))
        return next(i for i, (lo, hi) in enumerate(self.ranges) if lo <= slot <= hi)


@contextlib.contextmanager
def single() -> Iterator[Setup]:
    """One private ``redis-server``, no persistence."""
    with LocalRedis() as server:
        assert server.pid is not None
        yield Setup(server.url, [server.port], [server.pid])


@contextlib.contextmanager
def cluster(masters: int) -> Iterator[Setup]:
    """A private ``masters``-master Redis Cluster without replicas, no persistence."""
    with LocalCluster(masters=masters) as lc:
        ports = lc.masters  # in slot-range order
        ranges = [(lo, hi) for lo, hi, *_ in lc.expected_view()]
        pids = [lc.node(port).pid for port in ports]
        if len(ranges) != len(ports) or None in pids:
            raise RuntimeError(f"unexpected cluster layout: {ranges} for masters {ports}")
        yield Setup(lc.url, ports, [int(pid or 0) for pid in pids], ranges)


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads), from ``/proc``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

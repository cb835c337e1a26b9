"""The Redis set-ups ``bench.scale`` measures: one node, or an M-master Cluster.

Both are private ``redis-server`` processes on free loopback ports (the shared Redis
on 6379 is never touched), stopped by their own pid when the ``with`` block ends.
:func:`cluster` uses :class:`taskq.localcluster.LocalCluster` where taskq has it, and
otherwise builds the same thing here from :class:`taskq.localredis.LocalRedis`
servers: ``CLUSTER ADDSLOTSRANGE`` per node with the slot ranges ``redis-cli --cluster
create`` would give, ``CLUSTER MEET``, then a wait until every node reports
``cluster_state:ok`` and knows every master.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from taskq.localredis import LocalRedis

HOST = "127.0.0.1"
#: How long a cluster may take to agree on its slots (a 3-master one takes ~1-2 s).
CLUSTER_TIMEOUT = 30.0


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


def slot_ranges(masters: int) -> list[tuple[int, int]]:
    """The slot range of each master as ``redis-cli --cluster create`` assigns them.

    Partition names are salted into equal N-th slices of the slot range
    (:mod:`taskq.partitions`), which spread evenly only over masters that own equal
    contiguous ranges, as redis-cli's do; so the bench uses redis-cli's arithmetic.
    """
    per_node = REDIS_CLUSTER_HASH_SLOTS / masters
    ranges, first, cursor = [], 0, 0.0
    for i in range(masters):
        last = math.floor(cursor + per_node - 1 + 0.5)  # lroundf
        if last > REDIS_CLUSTER_HASH_SLOTS or i == masters - 1:
            last = REDIS_CLUSTER_HASH_SLOTS - 1
        last = max(last, first)
        ranges.append((first, last))
        first, cursor = last + 1, cursor + per_node
    return ranges


@contextlib.contextmanager
def cluster(masters: int) -> Iterator[Setup]:
    """A private ``masters``-master Redis Cluster without replicas, no persistence."""
    try:
        from taskq.localcluster import LocalCluster  # type: ignore[import-not-found]
    except ImportError:
        with _own_cluster(masters) as setup:
            yield setup
        return
    with LocalCluster(masters=masters) as lc:
        ports = list(lc.masters)
        admin = [redis.Redis(host=HOST, port=p) for p in ports]
        try:
            owned = [_own_range(c) for c in admin]
            pids = [int(c.info("server")["process_id"]) for c in admin]
        finally:
            for c in admin:
                c.close()
        order = sorted(range(len(ports)), key=lambda i: owned[i][0])
        yield Setup(
            lc.url, [ports[i] for i in order], [pids[i] for i in order], [owned[i] for i in order]
        )


def _own_range(client: redis.Redis) -> tuple[int, int]:
    """The (single, contiguous) slot range the node behind ``client`` serves."""
    me = client.execute_command("CLUSTER MYID")
    me = me.decode() if isinstance(me, bytes) else me
    for lo, hi, master, *_ in client.execute_command("CLUSTER SLOTS", NEVER_DECODE=True):
        node_id = master[2].decode() if len(master) > 2 else ""
        if node_id == me:
            return int(lo), int(hi)
    raise RuntimeError(f"node {me} serves no slots")


@contextlib.contextmanager
def _own_cluster(masters: int) -> Iterator[Setup]:
    servers: list[LocalRedis] = []
    clients: list[redis.Redis] = []
    try:
        for _ in range(masters):
            s = LocalRedis(
                port=_cluster_port(),
                extra_args=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                ],
            )
            servers.append(s)
            s.start()
        clients = [redis.Redis(host=HOST, port=s.port) for s in servers]
        ranges = slot_ranges(masters)
        for epoch, (c, (lo, hi)) in enumerate(zip(clients, ranges, strict=True), 1):
            c.execute_command("CLUSTER ADDSLOTSRANGE", lo, hi)
            # Distinct epochs up front, as redis-cli does: nodes that all start at 0
            # spend seconds resolving the collision before the slots propagate.
            c.execute_command("CLUSTER SET-CONFIG-EPOCH", epoch)
        for s in servers[1:]:
            clients[0].execute_command("CLUSTER MEET", HOST, s.port)
        _wait_ok(clients, masters)
        pids = [s.pid for s in servers]
        assert all(p is not None for p in pids)
        hosts = ",".join(f"{HOST}:{s.port}" for s in servers)
        yield Setup(
            f"redis+cluster://{hosts}/",
            [s.port for s in servers],
            [int(p or 0) for p in pids],
            ranges,
        )
    finally:
        for c in clients:
            c.close()
        for s in servers:
            s.close()


def _cluster_port() -> int:
    """A free port below 55536 whose cluster bus port (port + 10000) is free too.

    Redis refuses a cluster port above 55535, and LocalRedis's own free-port pick
    may give one; a race with another process for the port is possible but rare.
    """
    for _ in range(100):
        port = random.randrange(20_000, 45_000)
        if all(_free(p) for p in (port, port + 10_000)):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _wait_ok(clients: list[redis.Redis], masters: int) -> None:
    """Wait until every node says ``cluster_state:ok`` and sees ``masters`` masters."""
    deadline = time.monotonic() + CLUSTER_TIMEOUT
    while True:
        ready = all(
            _info_state(c) == "ok" and len(c.execute_command("CLUSTER SLOTS")) == masters
            for c in clients
        )
        if ready:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the {masters}-master cluster did not form in {CLUSTER_TIMEOUT} s")
        time.sleep(0.05)


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads), from ``/proc``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _info_state(client: redis.Redis) -> str:
    """``cluster_state`` from CLUSTER INFO (redis-py parses the reply into a dict)."""
    info = client.execute_command("CLUSTER INFO")
    state = info.get("cluster_state", "") if isinstance(info, dict) else ""
    return state.decode() if isinstance(state, bytes) else str(state)

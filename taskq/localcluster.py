"""A private Redis Cluster of ``redis-server`` processes, for tests and the demo.

Each node is a :class:`~taskq.localredis.LocalRedis` started with
``--cluster-enabled yes`` on a free 127.0.0.1 port whose cluster bus port (port +
10000) is free too, in its own temporary directory. The cluster is built directly
(``CLUSTER ADDSLOTSRANGE`` + ``MEET`` + ``REPLICATE``) rather than with
``redis-cli --cluster create``, whose polling takes about 6 s where this takes the
~2 s a master waits before it declares itself writable.

Masters own equal contiguous slot ranges, master ``i`` of ``M`` owning
``16384*i//M`` to ``16384*(i+1)//M - 1``, the split :mod:`taskq.partitions` assumes.
(``redis-cli`` rounds differently: for 3 masters it puts the second boundary at
10923, not 10922.)

Example:
    >>> with LocalCluster(masters=3) as cluster:  # doctest: +SKIP
    ...     rc = RedisCluster(host="127.0.0.1", port=cluster.masters[0])
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

import redis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS

from taskq.localredis import (
    LocalRedis,
    PortInUseError,
    free_port,
    quick_client,
    raw_command,
    wait_until,
)
from taskq.localreshard import SlotMove

__all__ = ["LocalCluster", "SlotMove"]

_HOST = "127.0.0.1"
_BUS_OFFSET = 10000
_MAX_PORT = 65535 - _BUS_OFFSET
_PORT_ATTEMPTS = 20
_READY_TIMEOUT = 30.0
_POLL = 0.02
_CLIENT_TIMEOUT = 5.0
_NODE_TIMEOUT_MS = 2000

#: A cluster's layout as one node sees it: ``(first, last, master, replicas)`` per range.
View = tuple[tuple[int, int, int, tuple[int, ...]], ...]


def _bus_port_free(port: int) -> bool:
    """True if ``port + 10000`` can be bound on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((_HOST, port + _BUS_OFFSET))
        except OSError:
            return False
    return True


def _start_node(extra_args: Sequence[str]) -> LocalRedis:
    """Start one cluster-enabled node on a port whose bus port is free as well.

    Raises:
        RuntimeError: If no such port could be bound after several tries.
    """
    for _ in range(_PORT_ATTEMPTS):
        port = free_port()
        if port > _MAX_PORT or not _bus_port_free(port):
            continue
        node = LocalRedis(port=port, extra_args=extra_args)
        try:
            node.start()
        except PortInUseError:
            node.close()  # someone took the port or its bus port meanwhile: pick another
            continue
        except BaseException:
            node.close()
            raise
        return node
    raise RuntimeError(f"found no free port pair (p, p+{_BUS_OFFSET}) in {_PORT_ATTEMPTS} tries")


def _ranges(masters: int) -> list[tuple[int, int]]:
    """Equal contiguous slot ranges, ``(first, last)`` inclusive, for ``masters`` masters."""
    n = REDIS_CLUSTER_HASH_SLOTS
    return [(n * i // masters, n * (i + 1) // masters - 1) for i in range(masters)]


def _compress(owner: list[tuple[int, tuple[int, ...]]]) -> View:
    """Per-slot owners -> contiguous ranges with the same master and replicas."""
    out: list[tuple[int, int, int, tuple[int, ...]]] = []
    start = 0
    for slot in range(1, len(owner) + 1):
        if slot == len(owner) or owner[slot] != owner[start]:
            master, replicas = owner[start]
            out.append((start, slot - 1, master, replicas))
            start = slot
    return tuple(out)


def _view_of(client: redis.Redis) -> View | None:
    """``CLUSTER SLOTS`` of one node as a :data:`View`; None while a slot is unowned."""
    none: tuple[int, tuple[int, ...]] = (-1, ())
    owner = [none] * REDIS_CLUSTER_HASH_SLOTS
    for first, last, master, *replicas in raw_command(client, "CLUSTER", "SLOTS"):
        entry = (int(master[1]), tuple(sorted(int(r[1]) for r in replicas)))
        owner[first : last + 1] = [entry] * (last - first + 1)
    if none in owner:
        return None
    return _compress(owner)


class LocalCluster:
    """A private Redis Cluster on 127.0.0.1: ``masters`` masters, each with replicas.

    Nodes run with ``--save ''``, ``--appendonly no`` and ``--cluster-node-timeout
    2000`` (failovers in tests take seconds, not the default 15 s).

    Args:
        masters: Number of masters; they split the 16384 slots in equal ranges.
        replicas_per_master: Replicas attached to each master with ``CLUSTER REPLICATE``.
        node_timeout_ms: ``--cluster-node-timeout`` of every node.
        extra_args: More ``redis-server`` arguments for every node.

    Raises:
        ValueError: If ``masters`` < 1 or ``replicas_per_master`` < 0.
    """

    def __init__(
        self,
        masters: int = 1,
        replicas_per_master: int = 0,
        *,
        node_timeout_ms: int = _NODE_TIMEOUT_MS,
        extra_args: Sequence[str] = (),
    ) -> None:
        if masters < 1 or replicas_per_master < 0:
            raise ValueError(
                f"need masters >= 1, replicas >= 0; got {masters}, {replicas_per_master}"
            )
        self._count = masters
        self._replicas_per_master = replicas_per_master
        self._args = (
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            str(node_timeout_ms),
            "--cluster-announce-ip",  # else a lone node reports its own address as ""
            _HOST,
            "--repl-diskless-sync-delay",
            "0",
            # CLUSTER SLOTS lists a replica only once its replication offset is nonzero,
            # and on an idle master only the replication PING (default every 10 s) moves it.
            "--repl-ping-replica-period",
            "1",
            *extra_args,
        )
        self._nodes: dict[int, LocalRedis] = {}
        self._clients: dict[int, redis.Redis] = {}
        self._ids: dict[int, str] = {}
        # The master of each initial slot range, in range order, and each one's replicas.
        self._masters: list[int] = []
        self._replicas: dict[int, list[int]] = {}
        self._owner_overrides: dict[int, int] = {}

    def __repr__(self) -> str:
        return f"<LocalCluster masters={self._masters} replicas={self._replicas}>"

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:P1,127.0.0.1:P2,.../0`` listing every master.

        Raises:
            RuntimeError: If the cluster was never started.
        """
        if not self._masters:
            raise RuntimeError("LocalCluster has not been started yet")
        return "redis+cluster://" + ",".join(f"{_HOST}:{p}" for p in self._masters) + "/0"

    @property
    def masters(self) -> list[int]:
        """Ports of the masters in slot-range order (:meth:`failover` swaps one in)."""
        return list(self._masters)

    @property
    def ports(self) -> list[int]:
        """Ports of every node: the masters in slot-range order, then the replicas."""
        return [*self._masters, *(p for m in self._masters for p in self._replicas[m])]

    def replicas_of(self, master_port: int) -> list[int]:
        """Ports of the replicas of the master at ``master_port``."""
        return list(self._replicas[master_port])

    def node(self, port: int) -> LocalRedis:
        """The :class:`LocalRedis` process of the node at ``port`` (to kill it, say)."""
        return self._nodes[port]

    def node_for_slot(self, slot: int) -> int:
        """Port of the master that owns ``slot`` (after any :meth:`move_slot`)."""
        if slot in self._owner_overrides:
            return self._owner_overrides[slot]
        for (first, last), port in zip(_ranges(self._count), self._masters, strict=True):
            if first <= slot <= last:
                return port
        raise ValueError(f"slot {slot} is not in 0..{REDIS_CLUSTER_HASH_SLOTS - 1}")

    def start(self) -> str:
        """Start the nodes, assign the slots, and wait until every node agrees.

        Returns:
            :attr:`url`.

        Raises:
            RuntimeError: If a node cannot start, or the cluster is not consistent
                within 30 seconds.
        """
        if self._masters:
            return self.url
        try:
            masters = [self._add_node() for _ in range(self._count)]
            replicas = {
                m: [self._add_node() for _ in range(self._replicas_per_master)] for m in masters
            }
            self._masters, self._replicas = masters, replicas
            for epoch, (port, (first, last)) in enumerate(
                zip(masters, _ranges(self._count), strict=True), start=1
            ):
                client = self.node_client(port)
                # Distinct epochs up front spare the nodes their epoch-collision dance.
                raw_command(client, "CLUSTER", "SET-CONFIG-EPOCH", epoch)
                raw_command(client, "CLUSTER", "ADDSLOTSRANGE", first, last)
            for port in self._nodes:
                if port != masters[0]:
                    raw_command(self.node_client(port), "CLUSTER", "MEET", _HOST, masters[0])
            for master, ports in replicas.items():
                for port in ports:
                    self._replicate(port, master)
            self.wait_ready()
        except BaseException:
            self.close()
            raise
        return self.url

    def _add_node(self) -> int:
        node = _start_node(self._args)
        self._nodes[node.port] = node
        return node.port

    def node_client(self, port: int) -> redis.Redis:
        """A short-timeout client of the node at ``port`` itself (no cluster routing)."""
        if port not in self._clients:
            self._clients[port] = quick_client(f"redis://{_HOST}:{port}/0", _CLIENT_TIMEOUT)
        return self._clients[port]

    def node_id(self, port: int) -> str:
        """The cluster node id (``CLUSTER MYID``) of the node at ``port``."""
        if port not in self._ids:
            raw = raw_command(self.node_client(port), "CLUSTER", "MYID")
            self._ids[port] = raw.decode() if isinstance(raw, bytes) else str(raw)
        return self._ids[port]

    def _replicate(self, port: int, master: int) -> None:
        """Make ``port`` a replica of ``master`` once it has heard of ``master`` by gossip."""
        master_id = self.node_id(master)
        client = self.node_client(port)
        self._wait(
            lambda: master_id.encode() in raw_command(client, "CLUSTER", "NODES"),
            f"node {port} to learn of master {master}",
        )
        raw_command(client, "CLUSTER", "REPLICATE", master_id)

    def expected_view(self) -> View:
        """The layout every node should report, from the masters, replicas and moves."""
        owner = [
            (m, tuple(sorted(self._replicas[m])))
            for m in (self.node_for_slot(s) for s in range(REDIS_CLUSTER_HASH_SLOTS))
        ]
        return _compress(owner)

    def _consistent(self) -> bool:
        """Every node says ``cluster_state:ok``, agrees on the layout, replicas are in sync."""
        expected = self.expected_view()
        for port, node in self._nodes.items():
            if not node.running:
                continue  # a node a test killed has no view
            client = self.node_client(port)
            if b"cluster_state:ok" not in raw_command(client, "CLUSTER", "INFO"):
                return False
            if _view_of(client) != expected:
                return False
        for ports in self._replicas.values():
            for port in ports:
                if self._nodes[port].running and not self._link_up(port):
                    return False
        return True

    def _link_up(self, port: int) -> bool:
        info = self.node_client(port).info("replication")
        return info.get("role") == "slave" and info.get("master_link_status") == "up"

    def wait_ready(self, timeout: float = _READY_TIMEOUT) -> None:
        """Wait until every running node is ``ok`` and reports :meth:`expected_view`.

        Raises:
            RuntimeError: If that does not happen within ``timeout`` seconds.
        """
        self._wait(self._consistent, "the cluster to agree on its layout", timeout)

    def _wait(self, check: Callable[[], bool], what: str, timeout: float = _READY_TIMEOUT) -> None:
        wait_until(check, f"LocalCluster: {what}", timeout, _POLL)

    def begin_move(self, slot: int, to_port: int) -> SlotMove:
        """Start a live resharding of ``slot`` to the master at ``to_port``.

        Returns:
            A :class:`~taskq.localreshard.SlotMove` with ``IMPORTING`` and
            ``MIGRATING`` set; call its :meth:`~SlotMove.finish` to complete it.

        Raises:
            ValueError: If ``to_port`` is not a master, or already owns ``slot``.
        """
        return SlotMove.begin(self, slot, to_port)

    def slot_moved(self, slot: int, port: int) -> None:
        """Record that ``slot`` now belongs to ``port``; wait until every node agrees.

        :meth:`SlotMove.finish` calls it; so may a test that reshards another way.
        """
        self._owner_overrides[slot] = port
        self.wait_ready()

    def move_slot(self, slot: int, to_port: int) -> int:
        """Reshard ``slot`` to the master at ``to_port``, live; return the keys moved.

        Safe while clients read and write the slot: they get ``ASK`` / ``TRYAGAIN``
        during the move and ``MOVED`` after it. Use :meth:`begin_move` to act between
        the steps.
        """
        move = self.begin_move(slot, to_port)
        move.finish()
        return move.moved

    def failover(self, master_port: int) -> int:
        """Promote a replica of ``master_port`` with ``CLUSTER FAILOVER``; return its port.

        Waits until every node sees the replica as the master of the old master's slots
        (and the old master, if running, as its replica in sync).

        Raises:
            ValueError: If ``master_port`` is not a master or has no replica.
        """
        if master_port not in self._masters or not self._replicas[master_port]:
            raise ValueError(f"{master_port} is not a master with a replica")
        replica, *rest = self._replicas.pop(master_port)
        raw_command(self.node_client(replica), "CLUSTER", "FAILOVER")
        self._masters[self._masters.index(master_port)] = replica
        self._replicas[replica] = [*rest, master_port]
        for slot, port in self._owner_overrides.items():
            if port == master_port:
                self._owner_overrides[slot] = replica
        self.wait_ready()
        return replica

    def close(self) -> None:
        """Stop every node (by its own pid) and remove their directories. Safe twice."""
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                client.close()
        self._clients.clear()
        for node in self._nodes.values():
            node.close()
        self._nodes.clear()
        self._ids.clear()
        self._masters, self._replicas = [], {}
        self._owner_overrides.clear()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

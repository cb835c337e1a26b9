"""Redis Cluster routing for the lean wire path: the slot map, one socket per node and
thread, MOVED / ASK / TRYAGAIN followed.

Every key of a queue carries the queue's hash tag, so every script call and every
command taskq sends has one slot; the router sends each command to the master owning
its first key's slot. A round trip with commands for several nodes is written to every
node before any reply is read (one wait for all of them, as on one node), and the
replies come back in the commands' order. A command without a key (``TIME``,
``ECHO``) goes to the node of the nearest keyed command of the same round trip, so
``TIME`` read beside a delay queue is that queue's server's clock.

Redirections: ``MOVED`` (a slot moved for good: resharding, failover) updates the slot
map, refreshes it from ``CLUSTER SLOTS`` and re-sends; ``ASK`` (a slot being
migrated, the key already on the target) re-sends to the target after ``ASKING``;
``TRYAGAIN`` (a multi-key call whose keys are split by a migration in progress; the
call did not run) is re-sent after a short pause. A connection failure closes that
round trip's sockets, marks the map stale and raises: what had been sent may have run,
so the caller decides (the worker's loops back off and retry; every script is fenced
or idempotent).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from taskq.broker import wire

Node = tuple[str, int]

#: Redirections followed for one command before its last error reply is returned.
MAX_REDIRECTS = 16

#: Pause before re-sending a TRYAGAIN (a migration's keys in flight), doubled each time
#: up to the cap; after MAX_REDIRECTS the TRYAGAIN is returned (the caller backs off).
TRYAGAIN_PAUSE = 0.005
TRYAGAIN_CAP = 0.1

_REDIRECTS = ("MOVED", "ASK", "TRYAGAIN")

#: Commands whose keys follow a ``STREAMS`` argument.
_STREAMS_COMMANDS = (b"XREAD", b"XREADGROUP")

#: Commands whose key follows a subcommand.
_SUBCOMMANDS = frozenset(b"XINFO XGROUP OBJECT MEMORY".split())

#: Commands without a key (routed with their neighbours; see :meth:`Router.route`).
_KEYLESS = frozenset(
    b"ACL AUTH ASKING BGSAVE CLIENT CLUSTER COMMAND CONFIG DBSIZE DEBUG ECHO FLUSHALL FLUSHDB "
    b"FUNCTION HELLO INFO LASTSAVE LATENCY MONITOR PING PUBLISH READONLY READWRITE ROLE SAVE "
    b"SCRIPT SELECT SLOWLOG TIME WAIT".split()
)


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode()


def command_key(command: Sequence[Any]) -> bytes | None:
    """The key a command is routed by (its first key), None for a keyless command."""
    name = _bytes(command[0]).upper()
    if name in (b"EVALSHA", b"EVAL", b"FCALL"):
        return _bytes(command[3]) if int(command[2]) > 0 else None
    if name in _STREAMS_COMMANDS:
        for i, arg in enumerate(command):
            if _bytes(arg).upper() == b"STREAMS":
                return _bytes(command[i + 1])
        return None
    if name in _KEYLESS or len(command) < 2:
        return None
    if name in _SUBCOMMANDS:  # XINFO CONSUMERS <key> ..., OBJECT ENCODING <key>, ...
        return _bytes(command[2]) if len(command) > 2 else None
    return _bytes(command[1])


class Router:
    """Routes raw commands to the masters of a Redis Cluster.

    Args:
        startup: Nodes to learn the cluster from (any of them suffices).
        template: Authentication and database for every node's connection (its host
            and port are replaced per node).
        timeout: Socket timeout of each reply.
        connect_timeout: Timeout of each connect.
    """

    def __init__(
        self,
        startup: Sequence[Node],
        template: wire.Address,
        timeout: float | None,
        connect_timeout: float,
    ) -> None:
        self._startup = list(startup)
        self._template = template
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._slots: list[Node] | None = None
        self._lock = threading.Lock()
        self._local = threading.local()
        #: Redirections followed so far, by kind (MOVED, ASK, TRYAGAIN).
        self.redirects: Counter[str] = Counter()

    # -- the slot map -------------------------------------------------------------------

    def refresh(self) -> None:
        """Load the slot map from ``CLUSTER SLOTS`` of the first node that answers.

        Raises:
            ConnectionError: No known node answered.
        """
        known = list(dict.fromkeys([*(self._slots or ()), *self._startup]))
        failure: BaseException | None = None
        for node in known:
            conn = wire.Connection(self._address(node), self._timeout, self._connect_timeout)
            try:
                reply = conn.call("CLUSTER", "SLOTS")
            except (OSError, wire.ReplyError) as exc:
                failure = exc
                continue
            finally:
                conn.close()
            slots: list[Node] = [self._startup[0]] * REDIS_CLUSTER_HASH_SLOTS
            for first, last, master, *_replicas in reply:
                host = wire_text(master[0]) or node[0]
                owner = (host, int(master[1]))
                slots[int(first) : int(last) + 1] = [owner] * (int(last) - int(first) + 1)
            self._slots = slots
            return
        raise ConnectionError(f"no Redis Cluster node answered CLUSTER SLOTS: {failure}")

    def _map(self) -> list[Node]:
        slots = self._slots
        if slots is None:
            with self._lock:
                if self._slots is None:
                    self.refresh()
                slots = self._slots
        assert slots is not None
        return slots

    def masters(self) -> list[Node]:
        """Every master that owns slots."""
        return list(dict.fromkeys(self._map()))

    def node_of(self, key: bytes | str) -> Node:
        """The master owning ``key``'s slot."""
        return self._map()[key_slot(_bytes(key))]

    def _stale(self) -> None:
        """Forget the slot map; the next command loads it afresh."""
        self._slots = None

    def _moved(self, replies: Sequence[Exception]) -> None:
        """Take MOVED replies' news into the map, then reload it once: whole slot ranges
        move together (a resharding, a failover)."""
        slots = self._map()
        for reply in replies:
            _, slot, address = str(reply).split(" ")[:3]
            slots[int(slot)] = _node(address)
        with self._lock, contextlib.suppress(ConnectionError):
            self.refresh()

    # -- sockets ------------------------------------------------------------------------

    def _address(self, node: Node) -> wire.Address:
        t = self._template
        return wire.Address(node[0], node[1], None, t.db, t.username, t.password)

    def conn(self, node: Node) -> wire.Connection:
        """This thread's connection to ``node``."""
        conns: dict[Node, wire.Connection] | None = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        conn = conns.get(node)
        if conn is None:
            conn = conns[node] = wire.Connection(
                self._address(node), self._timeout, self._connect_timeout
            )
        return conn

    def close(self) -> None:
        """Close this thread's connections."""
        for conn in getattr(self._local, "conns", {}).values():
            conn.close()
        self._local.conns = {}

    # -- sending ------------------------------------------------------------------------

    def route(self, commands: Sequence[Sequence[Any]]) -> list[Node]:
        """The node of each command (keyless ones: their nearest keyed neighbour's)."""
        keys = [command_key(c) for c in commands]
        slots = self._map()
        nodes: list[Node | None] = [None if k is None else slots[key_slot(k)] for k in keys]
        last: Node | None = None
        for i in range(len(nodes) - 1, -1, -1):  # a keyless command takes the next keyed one's
            if nodes[i] is None:
                nodes[i] = last
            else:
                last = nodes[i]
        fallback = next((n for n in nodes if n is not None), slots[0])
        return [n or fallback for n in nodes]

    def send(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` (each to its slot's master); replies in order, errors as values.

        Raises:
            ConnectionError, OSError: A node could not be reached (the map is reloaded
                on the next call).
        """
        nodes = self.route(commands)
        replies: list[Any] = [None] * len(commands)
        asking: set[int] = set()
        todo = list(range(len(commands)))
        pause = TRYAGAIN_PAUSE
        for _ in range(MAX_REDIRECTS):
            groups: dict[Node, list[int]] = {}
            for i in todo:
                groups.setdefault(nodes[i], []).append(i)
            raw = self._exchange(commands, groups, asking)
            todo, wait, moved = [], False, []
            for i, reply in raw.items():
                replies[i] = reply  # the last error stays if redirections run out
                if not isinstance(reply, wire.ReplyError):
                    continue
                head, *rest = str(reply).split(" ")
                if head in _REDIRECTS:
                    self.redirects[head] += 1
                    todo.append(i)
                if head == "MOVED":
                    nodes[i] = _node(rest[1])  # where the server says the key lives
                    moved.append(i)
                    asking.discard(i)
                elif head == "ASK":
                    nodes[i] = _node(rest[1])
                    asking.add(i)
                elif head == "TRYAGAIN":
                    wait = True
            if moved:
                self._moved([raw[i] for i in moved])
            if not todo:
                return replies
            todo.sort()  # re-sent in their original order
            if wait:
                time.sleep(pause)  # a migration moves these keys now; they did not run
                pause = min(pause * 2, TRYAGAIN_CAP)
        return replies

    def _exchange(
        self, commands: Sequence[Sequence[Any]], groups: dict[Node, list[int]], asking: set[int]
    ) -> dict[int, Any]:
        """Write every node's commands, then read every node's replies."""
        sent: list[tuple[Node, list[int], int]] = []
        try:
            for node, idxs in groups.items():
                batch: list[Sequence[Any]] = []
                for i in idxs:
                    if i in asking:
                        batch.append(("ASKING",))
                    batch.append(commands[i])
                self.conn(node).send(batch)
                sent.append((node, idxs, len(batch)))
            out: dict[int, Any] = {}
            for node, idxs, count in sent:
                got = iter(self.conn(node).receive(count))
                for i in idxs:
                    if i in asking:
                        next(got)  # ASKING's OK
                    out[i] = next(got)
            return out
        except BaseException:
            for node, _, _ in sent:
                self.conn(node).close()  # unread replies would poison the next command
            self._stale()
            raise

    def send_to(self, node: Node, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` to ``node`` as they are (no redirection followed)."""
        raw = self._exchange(commands, {node: list(range(len(commands)))}, set())
        return [raw[i] for i in range(len(commands))]

    def broadcast(self, command: Sequence[Any]) -> list[Any]:
        """Send ``command`` to every master; their replies (errors as values)."""
        return [self._exchange([command], {node: [0]}, set())[0] for node in self.masters()]


def wire_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _node(address: str) -> Node:
    host, _, port = address.rpartition(":")
    return host, int(port.split("@")[0])

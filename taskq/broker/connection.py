"""The connection layer of the broker: redis-py and :mod:`taskq.broker.wire`, error
translation, raw commands and EVALSHA with self-healing NOSCRIPT.

The role objects of :mod:`taskq.broker` (producer, consumer, delay, flows, inspection)
each hold one :class:`Connection` and call only it; every redis-py error is translated
here.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

from taskq import scripts
from taskq.broker import cluster, sentinel, topology, wire
from taskq.config import Settings
from taskq.errors import BrokerError, RedisFullError, RedisUnavailableError
from taskq.keys import Keyspace

#: Passwords in a Redis URL: a ``password=`` query parameter and ``user:password@``.
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)
_USERINFO_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:@/?#]*:)[^/?#]*@")

#: A delivery as read: ``(queue, entry id, fields, priority level)``.
Entry = tuple[str, bytes, dict[bytes, bytes], int]

#: Error replies of a master that was demoted to a replica (a failover): with Sentinel or
#: Cluster, the new master is looked up and the call retried like a lost connection.
_DEMOTED = ("READONLY", "ERR WAIT cannot be used with replica")

#: Error replies that mean "not now" rather than "wrong": retried like a lost connection.
_UNAVAILABLE: tuple[str, ...] = ("LOADING", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN")


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``.

    Both the ``user:password@`` part and a ``password=`` query parameter are
    redacted. Everything else is returned unchanged.

    Args:
        url: A Redis URL such as ``redis://user:secret@host:6379/0``.

    Returns:
        The URL safe to log, e.g. ``redis://user:***@host:6379/0``.
    """
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return _QUERY_PASSWORD.sub(r"\1***", _USERINFO_PASSWORD.sub(r"\1***@", url))
    userinfo, at, hostinfo = netloc.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    if at and colon:
        url = url.replace(netloc, f"{user}:***@{hostinfo}", 1)
    return _QUERY_PASSWORD.sub(r"\1***", url)


def fields_of(flat: Sequence[bytes] | None) -> dict[bytes, bytes]:
    """A stream entry's flat field/value list as a dict."""
    flat = flat or []
    return {flat[i]: flat[i + 1] for i in range(0, len(flat) - 1, 2)}


def text(value: bytes | str) -> str:
    """A reply's bytes as text (a str, from redis-py's decoded paths, unchanged)."""
    return value.decode() if isinstance(value, bytes) else value


class Connection:
    """The one connection layer: every byte taskq sends to Redis goes through here.

    Two paths with one reply shape (RESP2): the lean :mod:`taskq.broker.wire` socket per
    thread for plain ``redis://`` URLs, which measurably wins (2026-12-02, 4,000 single
    ``submit`` calls then an in-process burst drain, 4 alternating runs each: submit
    4.0-4.7k/s against 2.9-3.7k/s with redis-py for everything, drain 4.5-5.5k/s against
    4.0-4.7k/s), and redis-py for everything else (TLS, unix sockets, pub/sub, SCAN).
    The Cluster and Sentinel branches cost the single-node path nothing measurable
    (2026-12-02, farm-bench, 8 pairs of 4,000 ``submit`` then a burst drain, against
    34356c6: submit median 9.0k/s against 9.2k/s, drain 11.2k/s against 11.2k/s).
    Every error reply and connection failure is translated here, inside
    :meth:`send_all`, :meth:`execute`, :meth:`call` and :meth:`check`, so no caller
    handles a redis-py exception.

    Redis Cluster and Sentinel are chosen by the URL (:mod:`taskq.broker.topology`):
    on a Cluster every round trip goes through :class:`taskq.broker.cluster.Router`
    (each command to its slot's master, redirections followed) and redis-py's
    ``RedisCluster`` serves the parsed paths; with Sentinel the lean path connects to
    the master :class:`taskq.broker.sentinel.Resolver` names and asks again after a
    failure or a ``READONLY`` reply. The roles above never see a node.

    Args:
        settings: Connection and limit settings.
        keys: The keyspace (prefix) to use.
    """

    def __init__(self, settings: Settings, keys: Keyspace) -> None:
        self.settings = settings
        self.keys = keys
        self.url = redact_url(settings.redis_url)
        self._client: redis.Redis | None = None
        self._lock = threading.Lock()
        self.topology = topology.parse(settings.redis_url, self.url)
        self._local = threading.local()
        self._router: cluster.Router | None = None
        self._sentinel: sentinel.Resolver | None = None
        self._transient = _UNAVAILABLE
        t = self.topology
        if t.kind == topology.SINGLE:
            self._address = wire.Address.from_url(settings.redis_url)
            return
        # A failover demotes the master these connections knew: wait for the new one.
        self._transient = (*_UNAVAILABLE, *_DEMOTED)
        self._address = None
        timeouts = (settings.socket_timeout, settings.connect_timeout)
        if t.kind == topology.CLUSTER:
            auth = wire.Address(username=t.username, password=t.password)
            self._router = cluster.Router(t.nodes, auth, *timeouts)
        else:
            self._sentinel = sentinel.Resolver(t, *timeouts)

    @property
    def redirects(self) -> dict[str, int]:
        """Cluster redirections followed so far, by kind (MOVED, ASK, TRYAGAIN); empty
        off a Cluster."""
        return dict(self._router.redirects) if self._router is not None else {}

    @property
    def is_cluster(self) -> bool:
        """True on a Redis Cluster: a script call or multi-key command must stay in one slot."""
        return self._router is not None

    @property
    def client(self) -> Any:
        """The redis-py client, made on first use (after a fork, in the child).

        Typed ``Any`` on purpose: redis-py's reply types are wide unions, and the
        roles decode every reply themselves.
        """
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._connect()
        return self._client

    def _connect(self) -> Any:
        s, t = self.settings, self.topology
        options: dict[str, Any] = {
            "socket_timeout": s.socket_timeout,
            "socket_connect_timeout": s.connect_timeout,
            "retry": Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.5), 3),
            "protocol": 2,  # RESP2, as taskq.broker.wire speaks: one reply shape on both paths
        }
        try:
            if self._sentinel is not None:
                return self._sentinel.client(health_check_interval=30, **options)
            if t.kind == topology.CLUSTER:
                nodes = [ClusterNode(h, p) for h, p in t.nodes]  # type: ignore[no-untyped-call]
                return RedisCluster(
                    startup_nodes=nodes, username=t.username, password=t.password, **options
                )
            return redis.Redis.from_url(s.redis_url, health_check_interval=30, **options)
        except ValueError as exc:
            raise RedisUnavailableError(f"invalid Redis URL {self.url}: {exc}") from None

    @contextlib.contextmanager
    def translate(self) -> Iterator[None]:
        """Translate redis-py errors into taskq errors (the only such boundary)."""
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            if self._sentinel is not None:
                self._sentinel.forget()  # the master may have failed: ask the sentinels again
            raise RedisUnavailableError(f"cannot reach Redis at {self.url}: {exc}") from exc
        except (redis.RedisError, wire.ReplyError) as exc:
            if self._sentinel is not None and _is_readonly(exc):
                self._sentinel.forget()  # demoted: a failover happened
            if str(exc).startswith(self._transient) or isinstance(exc, redis.BusyLoadingError):
                # Redis is up but cannot serve yet (loading its data, no master): transient.
                raise RedisUnavailableError(f"Redis at {self.url} is not ready: {exc}") from exc
            # hiredis keeps the OOM code in the text; redis-py strips it into the type.
            if str(exc).startswith("OOM") or isinstance(exc, redis.OutOfMemoryError):
                raise RedisFullError(
                    f"Redis at {self.url} is full: it reached maxmemory and refuses new work "
                    f"({exc}). Raise maxmemory, let the workers drain the backlog (they keep "
                    "consuming while Redis is full), or lower result_ttl so finished runs "
                    "expire sooner"
                ) from exc
            raise BrokerError(f"Redis at {self.url} replied: {exc}") from exc

    def check(self, reply: Any) -> Any:
        """``reply`` itself, or, when it is an error reply, that error raised translated."""
        if isinstance(reply, Exception):
            with self.translate():
                raise reply
        return reply

    def ping(self) -> None:
        """Raise :class:`RedisUnavailableError` unless Redis answers."""
        with self.translate():
            self.client.ping()

    def close(self) -> None:
        """Close this thread's lean connection and the redis-py pool (reopened on use)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        if self._router is not None:
            self._router.close()
        if self._client is not None:
            self._client.close()
            pool = getattr(self._client, "connection_pool", None)  # RedisCluster has none
            if pool is not None:
                pool.disconnect()
            self._client = None

    # -- raw commands -------------------------------------------------------------------

    def _wire(self) -> wire.Connection | None:
        """This thread's lean connection (None for URLs it does not handle, e.g. TLS, and
        on a Cluster, whose connections are the router's)."""
        address = self._sentinel.master() if self._sentinel is not None else self._address
        if address is None:
            return None
        conn: wire.Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.address != address:
            if conn is not None:
                conn.close()  # the master changed (a failover)
            s = self.settings
            conn = wire.Connection(address, s.socket_timeout, s.connect_timeout)
            self._local.conn = conn
        return conn

    def _judge(self, replies: list[Any]) -> list[Any]:
        """With Sentinel, forget the master when it answered READONLY (it was demoted)."""
        if self._sentinel is not None and any(_is_readonly(r) for r in replies):
            self._sentinel.forget()
        return replies

    def send(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send raw commands in one round trip; replies unparsed, errors as exception values.

        The hot path: hiredis-packed commands on a per-thread socket (:mod:`taskq.broker.wire`),
        or, for URLs that path does not handle, a redis-py connection read without
        response callbacks, so replies have the same shape either way. A lost
        connection raises (translated); an error reply is returned for the caller to
        judge (NOGROUP, say, may mean "nothing yet").
        """
        with self.translate():
            if self._router is not None:
                return self._router.send(commands)
            conn = self._wire()
            if conn is not None:
                return self._judge(conn.pipeline(commands))
            pool = self.client.connection_pool
            rconn = pool.get_connection()
            try:
                rconn.send_packed_command(rconn.pack_commands(commands))
                replies: list[Any] = []
                for _ in commands:
                    try:
                        replies.append(rconn.read_response())
                    except redis.ResponseError as exc:
                        replies.append(exc)
                return replies
            finally:
                pool.release(rconn)

    def send_all(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Like :meth:`send`, but the first error reply raises, translated."""
        return [self.check(reply) for reply in self.send(commands)]

    def execute(self, *args: Any) -> Any:
        """One raw command; an error reply raises :class:`BrokerError`."""
        return self.check(self.send([args])[0])

    def wait_replicas(self, key: str, replicas: int, timeout: float) -> int:
        """Redis ``WAIT`` on this thread's connection to the server holding ``key``: how
        many replicas acknowledged every write it sent, within ``timeout`` seconds."""
        command = ("WAIT", replicas, max(1, int(timeout * 1000)))
        if self._router is None:
            return int(self.execute(*command))
        with self.translate():
            reply = self._router.send_to(self._router.node_of(key), [command])[0]
        return int(self.check(reply))

    # -- redis-py parsed replies (inspection, not the hot path) -------------------------

    def scan(self, match: str, type_: str | None = None) -> Iterator[str]:
        """Keys matching ``match`` (SCAN; only of ``type_`` when given), as text."""
        with self.translate():
            for key in self.client.scan_iter(match=match, count=1000, _type=type_):
                yield text(key)

    def xread(self, streams: dict[str, str], count: int, block_ms: int | None) -> Any:
        """XREAD of ``{stream: after id}``, as redis-py parses it."""
        with self.translate():
            return self.client.xread(streams, count=count, block=block_ms)

    def xrange(self, key: str, count: int | None = None) -> Any:
        """XRANGE of the whole stream ``key`` (its first ``count`` entries when given)."""
        with self.translate():
            return self.client.xrange(key, count=count)

    def xrevrange(self, key: str, count: int) -> Any:
        """XREVRANGE: the newest ``count`` entries of stream ``key``, newest first."""
        with self.translate():
            return self.client.xrevrange(key, count=count)

    # -- scripts ------------------------------------------------------------------------

    @staticmethod
    def _evalsha(name: str, keys: Sequence[str], args: Sequence[Any]) -> tuple[Any, ...]:
        return ("EVALSHA", scripts.load(name).sha, len(keys), *keys, *args)

    def _heal(self, names: Sequence[str], commands: Sequence[Any], replies: list[Any]) -> None:
        """Load the scripts a NOSCRIPT reply named and re-send those calls (in place).

        Redis forgets loaded scripts on restart or SCRIPT FLUSH; loading on demand
        keeps EVALSHA's one-hash-per-call cost on the happy path.
        """
        redo = [i for i, r in enumerate(replies) if _is_noscript(r)]
        if not redo:
            return
        for name in dict.fromkeys(names[i] for i in redo):
            load = ("SCRIPT", "LOAD", scripts.load(name).source)
            if self._router is None:
                self.execute(*load)
                continue
            with self.translate():
                replies_of_all = self._router.broadcast(load)  # every master runs scripts
            for reply in replies_of_all:
                self.check(reply)
        for i, reply in zip(redo, self.send([commands[i] for i in redo]), strict=True):
            replies[i] = reply

    def call(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run script ``name`` with ``keys`` and ``args`` (EVALSHA, self-healing NOSCRIPT)."""
        return self.call_many(name, [(keys, args)])[0]

    def call_many(
        self, name: str, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]
    ) -> list[Any]:
        """Run script ``name`` once per ``(keys, args)``, all in one round trip; an error
        reply raises, translated."""
        return [self.check(r) for r in self.call_mixed([(name, k, a) for k, a in calls])]

    def call_mixed(self, calls: Sequence[tuple[str, Sequence[str], Sequence[Any]]]) -> list[Any]:
        """Run ``(script name, keys, args)`` calls of several scripts in one round trip.

        Replies come back in order; a call's error is returned as its reply (the
        caller decides, see :meth:`check`), except that NOSCRIPT is healed by loading
        and re-sending.
        """
        commands = [self._evalsha(name, k, a) for name, k, a in calls]
        replies = self.send(commands)
        self._heal([name for name, _, _ in calls], commands, replies)
        return replies

    def call_stream(
        self, name: str, calls: Iterable[tuple[Sequence[str], Sequence[Any]]]
    ) -> list[Any]:
        """Like :meth:`call_many`, but each call is sent as soon as ``calls`` yields it.

        Redis runs call *k* while the caller builds call *k+1*; every reply is read at
        the end (one wait instead of one per call). On the redis-py path the calls
        are gathered and sent as one round trip.
        """
        with self.translate():
            conn = self._wire()
        if conn is None:
            return self.call_many(name, list(calls))
        commands: list[tuple[Any, ...]] = []
        # Only the socket calls are translated: an error raised while the caller builds
        # the next call (its iterator) is the caller's, and passes through unchanged.
        for keys, args in calls:
            cmd = self._evalsha(name, keys, args)
            commands.append(cmd)
            with self.translate():
                conn.send([cmd])
        with self.translate():
            replies = self._judge(conn.receive(len(commands)))
        self._heal([name] * len(commands), commands, replies)
        return [self.check(r) for r in replies]

    def ttl_ms(self, ttl: float | None) -> int:
        """``ttl`` seconds (None: the settings' ``result_ttl``) as the scripts' milliseconds."""
        return int((ttl or self.settings.result_ttl) * 1000)


def _is_readonly(reply: Any) -> bool:
    return isinstance(reply, Exception) and str(reply).startswith(_DEMOTED)


def _is_noscript(reply: Any) -> bool:
    # hiredis keeps the error code in the text; redis-py strips it into the exception type.
    return isinstance(reply, redis.exceptions.NoScriptError) or (
        isinstance(reply, Exception) and str(reply).startswith("NOSCRIPT")
    )


def now() -> float:
    """The monotonic clock result waits measure their timeouts with."""
    return time.monotonic()

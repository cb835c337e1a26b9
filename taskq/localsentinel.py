"""A private Sentinel set-up: one master, one replica, one sentinel, on 127.0.0.1.

All three are :class:`~taskq.localredis.LocalRedis` processes in their own
temporary directories; the sentinel is ``redis-server <conf> --sentinel`` with a
config file it may rewrite. The sentinel declares the master down after 1 s
without an answer, so :meth:`LocalSentinel.kill_master` is followed by an
automatic failover within a few seconds.

Example:
    >>> with LocalSentinel() as sentinel:  # doctest: +SKIP
    ...     master = Sentinel([("127.0.0.1", sentinel.port)]).master_for("mymaster")
    ...     sentinel.failover()
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis

from taskq.localredis import LocalRedis, quick_client, raw_command, wait_until

__all__ = ["LocalSentinel"]

_HOST = "127.0.0.1"
_TIMEOUT = 30.0
_POLL = 0.02
_CLIENT_TIMEOUT = 2.0
#: Both data nodes: a full sync starts at once (Redis 7 waits 5 s for more replicas).
_DATA_ARGS = ("--repl-diskless-sync-delay", "0")
#: The client id field of ``CLIENT LIST`` (Redis's name, not a taskq record field).
_CLIENT_LIST_ID = "id"


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _fields(reply: dict[Any, Any] | list[Any]) -> dict[str, str]:
    """One instance of ``SENTINEL REPLICAS`` as a dict of str.

    The reply is a map (a dict here) or, from older parsers, a flat ``[k1, v1, ...]``.
    """
    if isinstance(reply, dict):
        return {_text(k): _text(v) for k, v in reply.items()}
    text = [_text(x) for x in reply]
    return dict(zip(text[::2], text[1::2], strict=True))


def _promotable(replica: dict[str, str]) -> bool:
    """Whether the sentinel would pick this replica in a failover (sentinelSelectSlave).

    It must be up and linked, have answered a PING in the last 5 s, and have sent an
    ``INFO`` at all (a replica the sentinel has only heard of gets ``NOGOODSLAVE``).
    """
    flags = set(replica.get("flags", "").split(","))
    return (
        not flags & {"s_down", "o_down", "disconnected"}
        and int(replica.get("last-ok-ping-reply", "1000000")) < 5000
        and int(replica.get("info-refresh", "1000000")) < 30000
    )


class LocalSentinel:
    """One master, one replica and one sentinel monitoring them as ``service``.

    Args:
        service: The name the sentinel monitors the master under.
        down_after_ms: ``down-after-milliseconds``: silence before the master is down.
        failover_timeout_ms: ``failover-timeout`` of the sentinel.
    """

    def __init__(
        self,
        service: str = "mymaster",
        *,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
    ) -> None:
        self.service = service
        self._down_after_ms = down_after_ms
        self._failover_timeout_ms = failover_timeout_ms
        self._master: LocalRedis | None = None
        self._replica: LocalRedis | None = None
        self._sentinel: LocalRedis | None = None
        self._conf_dir: Path | None = None
        self._clients: dict[int, redis.Redis] = {}

    def __repr__(self) -> str:
        ports = "not started" if self._master is None else f"master {self.master_port}"
        return f"<LocalSentinel {self.service} {ports}>"

    @property
    def url(self) -> str:
        """``redis+sentinel://127.0.0.1:PORT/<service>/0``."""
        return f"redis+sentinel://{_HOST}:{self.port}/{self.service}/0"

    @property
    def port(self) -> int:
        """Port of the sentinel."""
        return self._started(self._sentinel).port

    @property
    def master_port(self) -> int:
        """Port of the data node that is the master now (after any failover)."""
        return self._started(self._master).port

    @property
    def replica_port(self) -> int:
        """Port of the data node that is the replica now."""
        return self._started(self._replica).port

    @property
    def master(self) -> LocalRedis:
        """The data node that is the master now."""
        return self._started(self._master)

    @property
    def replica(self) -> LocalRedis:
        """The data node that is the replica now."""
        return self._started(self._replica)

    @property
    def sentinel(self) -> LocalRedis:
        """The sentinel process."""
        return self._started(self._sentinel)

    @staticmethod
    def _started(node: LocalRedis | None) -> LocalRedis:
        if node is None:
            raise RuntimeError("LocalSentinel has not been started yet")
        return node

    def start(self) -> str:
        """Start master, replica and sentinel; wait until the sentinel knows the replica.

        Returns:
            :attr:`url`.

        Raises:
            RuntimeError: If a server cannot start, or the set-up is not ready in 30 s.
        """
        if self._sentinel is not None:
            return self.url
        try:
            self._master = LocalRedis(extra_args=_DATA_ARGS)
            self._master.start()
            self._replica = LocalRedis(
                extra_args=(*_DATA_ARGS, "--replicaof", _HOST, str(self._master.port))
            )
            self._replica.start()
            self._conf_dir = Path(tempfile.mkdtemp(prefix="taskq-sentinel-"))
            conf = self._conf_dir / "sentinel.conf"
            conf.write_text(
                f"sentinel monitor {self.service} {_HOST} {self._master.port} 1\n"
                f"sentinel down-after-milliseconds {self.service} {self._down_after_ms}\n"
                f"sentinel failover-timeout {self.service} {self._failover_timeout_ms}\n"
            )
            self._sentinel = LocalRedis(config_file=conf, extra_args=("--sentinel",))
            self._sentinel.start()
            self._wait(self._settled, "the replica to sync and the sentinel to see it")
        except BaseException:
            self.close()
            raise
        return self.url

    def _client(self, port: int) -> redis.Redis:
        if port not in self._clients:
            self._clients[port] = quick_client(f"redis://{_HOST}:{port}/0", _CLIENT_TIMEOUT)
        return self._clients[port]

    def sentinel_master(self) -> tuple[str, int]:
        """``(host, port)`` of the master according to the sentinel."""
        host, port = raw_command(
            self._client(self.port), "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service
        )
        return _text(host), int(port)

    def _role(self, port: int) -> dict[str, Any]:
        info: dict[str, Any] = self._client(port).info("replication")
        return info

    def _master_ready(self) -> bool:
        """The sentinel names our master, sees it up and done failing over; it says so."""
        if self.sentinel_master() != (_HOST, self.master_port):
            return False
        sentinel = self._client(self.port)
        flags = _fields(raw_command(sentinel, "SENTINEL", "MASTER", self.service)).get("flags")
        return flags == "master" and self._role(self.master_port).get("role") == "master"

    def _settled(self) -> bool:
        """:meth:`_master_ready`, and our replica (if running) syncs from the master.

        The sentinel's own record of the replica's link is not waited for: it refreshes
        it by ``INFO`` every 10 s, and a ``SENTINEL FAILOVER`` does not need it fresh.
        """
        if not self._master_ready():
            return False
        if self._replica is None or not self._replica.running:
            return True  # a killed node: nothing more to wait for
        role = self._role(self.replica_port)
        if role.get("role") != "slave" or role.get("master_link_status") != "up":
            return False
        if role.get("master_port") != self.master_port:
            return False
        for raw in raw_command(self._client(self.port), "SENTINEL", "REPLICAS", self.service):
            replica = _fields(raw)
            if int(replica.get("port", -1)) == self.replica_port:
                return _promotable(replica)
        return False

    def _wait(self, check: Callable[[], bool], what: str, timeout: float = _TIMEOUT) -> None:
        wait_until(check, f"LocalSentinel: {what}", timeout, _POLL)

    def _promoted(self, *, convert: bool = True) -> None:
        """Swap master and replica, then wait until the sentinel and the nodes agree.

        Args:
            convert: Turn a still-running old master into the replica at once.
        """
        self._master, self._replica = self._replica, self._master
        new = self.master_port
        if self.replica.running and convert:
            self._wait(lambda: self.sentinel_master() == (_HOST, new), f"port {new} to be promoted")
            self._convert(self.replica_port)
            self._wait(self._settled, f"port {new} to be the master with a replica in sync")
        else:
            self._wait(self._master_ready, f"port {new} to be the master")

    def _convert(self, port: int) -> None:
        """Make ``port`` a replica of the master and drop its clients, as the sentinel does.

        The sentinel does the same, but only after it has seen the old master report
        ``role:master`` for about 10 s; clients that still hold a connection to it
        write there until then (writes a real failover loses). The sentinel's own
        links are spared: killing them makes it miss the new master's first PINGs
        and fail over a second time.
        """
        client = self._client(port)
        raw_command(client, "REPLICAOF", _HOST, str(self.master_port))
        entries: list[dict[str, Any]] = client.client_list(_type="normal")
        for entry in entries:
            if not str(entry.get("name", "")).startswith("sentinel-"):
                client_id = entry[_CLIENT_LIST_ID]
                raw_command(client, "CLIENT", "KILL", "ID", client_id, "SKIPME", "yes")

    def failover(self, *, convert_old_master: bool = True) -> int:
        """``SENTINEL FAILOVER``: promote the replica; return the new master's port.

        Args:
            convert_old_master: Reconfigure the old master as the new one's replica
                at once (dropping its clients), then wait until it is in sync, the
                sentinel ready for another failover. With False, return once the new
                master is promoted and leave the old one to the sentinel, which
                converts it about 10 s later: until then it still accepts writes from
                clients connected to it, as after a real ``SENTINEL FAILOVER``.

        Returns:
            The port of the new master (:attr:`master_port`).
        """
        raw_command(self._client(self.port), "SENTINEL", "FAILOVER", self.service)
        self._promoted(convert=convert_old_master)
        return self.master_port

    def kill_master(self, *, wait: bool = True) -> int:
        """SIGKILL the master (a real failure) and let the sentinel fail over on its own.

        Args:
            wait: Wait until the sentinel has promoted the replica (``down_after_ms``
                plus about a second); with False, return at once and let the test
                act during the outage, then call :meth:`wait_promoted`.

        Returns:
            The port of the killed node.
        """
        killed = self.master
        killed.kill()
        if wait:
            self.wait_promoted()
        return killed.port

    def wait_promoted(self, timeout: float = _TIMEOUT) -> None:
        """After :meth:`kill_master`, wait until the sentinel has promoted the replica."""
        survivor = self.replica_port
        self._wait(
            lambda: self.sentinel_master() == (_HOST, survivor),
            f"the sentinel to promote port {survivor}",
            timeout,
        )
        self._promoted()

    def revive(self) -> int:
        """Restart the node :meth:`kill_master` killed, empty, as the master's replica.

        Returns:
            Its port (the same as before the kill).

        Raises:
            RuntimeError: If the replica is running already, or does not sync in 30 s.
        """
        if self.replica.running:
            raise RuntimeError("LocalSentinel: the replica is running; nothing to revive")
        self.replica.start()
        # It restarts with its first arguments, as a master if it was one: make it a
        # replica at once, before anyone mistakes its empty data set for the real one.
        self._convert(self.replica_port)
        self._wait(self._settled, f"port {self.replica_port} to sync as the replica")
        return self.replica_port

    def close(self) -> None:
        """Stop all three servers by their own pids and remove their directories."""
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                client.close()
        self._clients.clear()
        for node in (self._sentinel, self._replica, self._master):
            if node is not None:
                node.close()
        self._sentinel = self._replica = self._master = None
        if self._conf_dir is not None:
            shutil.rmtree(self._conf_dir, ignore_errors=True)
            self._conf_dir = None

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

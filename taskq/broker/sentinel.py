"""Finding the master through Redis Sentinel, for the lean wire path.

The sentinels are asked, in the order the URL lists them, ``SENTINEL
get-master-addr-by-name <service>``; the first answer is kept until a connection to
that master fails or the master answers ``READONLY`` (it was demoted: a failover
happened), and then asked again. The redis-py client for the same URL is a
:class:`redis.sentinel.Sentinel` ``master_for`` client, which re-resolves by itself.
"""

from __future__ import annotations

import threading
from typing import Any

from redis.sentinel import Sentinel

from taskq.broker import wire
from taskq.broker.topology import Topology


class MasterNotFoundError(ConnectionError):
    """No sentinel named a master for the service (a connection failure, transient)."""


class Resolver:
    """The current master of a Sentinel service.

    Args:
        topology: The parsed ``redis+sentinel://`` URL.
        timeout: Socket timeout towards the sentinels and the master.
        connect_timeout: Connect timeout.
    """

    def __init__(self, topology: Topology, timeout: float | None, connect_timeout: float) -> None:
        self.topology = topology
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._master: wire.Address | None = None
        self._lock = threading.Lock()

    def master(self) -> wire.Address:
        """The master's address (asked of the sentinels once, then kept).

        Raises:
            MasterNotFoundError: No sentinel answered with a master.
        """
        master = self._master
        if master is None:
            with self._lock:
                if self._master is None:
                    self._master = self._ask()
                master = self._master
        return master

    def forget(self) -> None:
        """Drop the known master (it failed or was demoted); the next use asks again."""
        self._master = None

    def _ask(self) -> wire.Address:
        t = self.topology
        failures: list[str] = []
        for host, port in t.nodes:
            address = wire.Address(host, port, None, 0, t.sentinel_username, t.sentinel_password)
            conn = wire.Connection(address, self._timeout, min(self._connect_timeout, 1.0))
            try:
                reply = conn.call("SENTINEL", "get-master-addr-by-name", t.service)
            except (OSError, wire.ReplyError) as exc:
                failures.append(f"{host}:{port}: {exc}")
                continue
            finally:
                conn.close()
            if reply:
                host, port = _text(reply[0]), int(reply[1])
                return wire.Address(host, port, None, t.db, t.username, t.password)
            failures.append(f"{host}:{port}: no master named {t.service!r}")
        raise MasterNotFoundError(
            f"no sentinel named a master for {t.service!r} ({'; '.join(failures)})"
        )

    def client(self, **kwargs: Any) -> Any:
        """A redis-py client of the master (it follows failovers itself)."""
        t = self.topology
        sentinel_kwargs = {
            k: v
            for k, v in (("username", t.sentinel_username), ("password", t.sentinel_password))
            if v is not None
        }
        sentinels = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
            list(t.nodes),
            sentinel_kwargs={"socket_timeout": self._timeout, **sentinel_kwargs},
        )
        return sentinels.master_for(  # type: ignore[no-untyped-call, unused-ignore]
            t.service, db=t.db, username=t.username, password=t.password, **kwargs
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

"""Plain redis-py clients for every URL form taskq takes, for tests and fixtures.

taskq itself reaches Redis only through :mod:`taskq.broker`. Tests that look at keys
directly, and the fixtures in :mod:`taskq.testing` that clean up after them, need a
plain client for a single node, a Cluster or a Sentinel-managed master alike:
:func:`raw_client` builds one from the URL.

URL forms:

- ``redis://``, ``rediss://``, ``unix://``: as :meth:`redis.Redis.from_url`.
- ``redis+cluster://[user:pass@]h1:p1,h2:p2/0`` (``rediss+cluster`` for TLS): the
  startup nodes of a Cluster; db 0 only.
- ``redis+sentinel://[user:pass@]s1:p1,s2:p2/<service>[/<db>]`` (``rediss+...``):
  the sentinels (port default 26379), the service name, the db. The credentials
  are the master's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.sentinel import Sentinel

from taskq.broker.connection import redact_url

__all__ = ["answers", "delete_prefixed", "raw_client", "server_version"]

_TIMEOUT = 2.0
_SENTINEL_PORT = 26379
_SCHEMES = ("redis+cluster", "rediss+cluster", "redis+sentinel", "rediss+sentinel")
_BATCH = 500


def _hosts(netloc: str, default_port: int | None) -> list[tuple[str, int]]:
    """``h1:p1,h2:p2`` (after any ``user:pass@``) as ``[(h1, p1), (h2, p2)]``."""
    hosts = []
    for item in netloc.rpartition("@")[2].split(","):
        if item.startswith("["):  # [::1]:port
            host, _, rest = item[1:].partition("]")
            port = rest.removeprefix(":")
        else:
            host, _, port = item.partition(":")
        if not port:
            if default_port is None:
                raise ValueError(f"{item!r} has no port")
            port = str(default_port)
        hosts.append((host, int(port)))
    return hosts


def _auth(netloc: str) -> tuple[str | None, str | None]:
    """``(username, password)`` from ``user:pass@`` (either may be None)."""
    userinfo, at, _ = netloc.rpartition("@")
    if not at:
        return None, None
    user, colon, password = userinfo.partition(":")
    return unquote(user) or None, unquote(password) if colon else None


def raw_client(url: str) -> redis.Redis | RedisCluster:
    """A plain redis-py client for ``url`` (see the module docstring for the forms).

    Args:
        url: A Redis URL.

    Returns:
        A :class:`redis.Redis` (single node, or the master a sentinel names, re-resolved
        after a failover) or a :class:`~redis.cluster.RedisCluster`; the caller closes it.

    Raises:
        ValueError: If a cluster or sentinel URL is malformed or has query options, or
            a cluster URL names a db other than 0.
    """
    scheme = url.partition("://")[0]
    if scheme not in _SCHEMES:
        return redis.Redis.from_url(url)
    parts = urlsplit(url)
    shown = redact_url(url)
    if parts.query:
        raise ValueError(f"raw_client takes no query options: {shown}")
    username, password = _auth(parts.netloc)
    ssl = scheme.startswith("rediss")
    path = [p for p in parts.path.split("/") if p]
    if scheme.endswith("+cluster"):
        if path not in ([], ["0"]):
            raise ValueError(f"a Redis Cluster has db 0 only: {shown}")
        return RedisCluster(
            startup_nodes=[
                ClusterNode(h, p)  # type: ignore[no-untyped-call]
                for h, p in _hosts(parts.netloc, None)
            ],
            username=username,
            password=password,
            ssl=ssl,
            socket_timeout=_TIMEOUT,
            socket_connect_timeout=_TIMEOUT,
        )
    if len(path) not in (1, 2) or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError(f"expected redis+sentinel://hosts/service[/db]: {shown}")
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        _hosts(parts.netloc, _SENTINEL_PORT),
        socket_timeout=_TIMEOUT,
        socket_connect_timeout=_TIMEOUT,
    )
    master = sentinel.master_for(  # type: ignore[no-untyped-call]
        path[0],
        db=int(path[1]) if len(path) == 2 else 0,
        username=username,
        password=password,
        ssl=ssl,
        socket_timeout=_TIMEOUT,
        socket_connect_timeout=_TIMEOUT,
    )
    return cast(redis.Redis, master)


def answers(url: str) -> bool:
    """True if the server (on a cluster: every node) at ``url`` answers ``PING``.

    Never raises.
    """
    try:
        client = raw_client(url)
    except Exception:
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


def server_version(url: str) -> str:
    """``redis_version`` of the server at ``url`` (one node of a cluster), or ``"?"``."""
    try:
        client = raw_client(url)
    except (redis.RedisError, ValueError):
        return "?"
    try:
        if isinstance(client, RedisCluster):
            info = client.info("server", target_nodes=RedisCluster.RANDOM)
        else:
            info = client.info("server")
        return str(info.get("redis_version", "?"))
    except redis.RedisError:
        return "?"  # INFO may be denied to an ACL user; the caller still names the server
    finally:
        client.close()


def _unlink(client: redis.Redis | RedisCluster, keys: list[bytes]) -> int:
    """UNLINK ``keys``, one call per slot on a cluster (a cross-slot UNLINK is refused)."""
    if not isinstance(client, RedisCluster):
        return int(client.unlink(*keys))
    by_slot: defaultdict[int, list[bytes]] = defaultdict(list)
    for key in keys:
        by_slot[client.keyslot(key)].append(key)  # type: ignore[no-untyped-call]
    return sum(int(client.unlink(*group)) for group in by_slot.values())


def _scans(client: redis.Redis | RedisCluster, match: str) -> list[Iterable[bytes]]:
    """One SCAN per master of a cluster, or the one SCAN of a single node."""
    if not isinstance(client, RedisCluster):
        return [client.scan_iter(match=match, count=1000)]
    primaries: list[Any] = client.get_primaries()  # type: ignore[no-untyped-call]
    return [client.scan_iter(match=match, count=1000, target_nodes=node) for node in primaries]


def delete_prefixed(url: str, prefix: str) -> int:
    """Delete every key matching ``<prefix>:*`` with SCAN + UNLINK, on every master.

    Args:
        url: A Redis URL in any form :func:`raw_client` takes.
        prefix: A key prefix without glob characters.

    Returns:
        How many keys were deleted.
    """
    client = raw_client(url)
    try:
        deleted = 0
        batch: list[bytes] = []
        for scan in _scans(client, f"{prefix}:*"):
            for key in scan:
                batch.append(key)
                if len(batch) >= _BATCH:
                    deleted += _unlink(client, batch)
                    batch.clear()
        if batch:
            deleted += _unlink(client, batch)
        return deleted
    finally:
        client.close()

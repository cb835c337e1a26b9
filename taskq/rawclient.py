"""Plain redis-py clients for every URL form taskq takes, for tests and fixtures.

taskq itself reaches Redis only through :mod:`taskq.broker`. Tests that look at keys
directly, and the fixtures in :mod:`taskq.testing` that clean up after them, need a
plain client for a single node, a Cluster or a Sentinel-managed master alike:
:func:`raw_client` builds one from the URL.

URL forms: ``redis://``, ``rediss://`` and ``unix://`` as :meth:`redis.Redis.from_url`;
``redis+cluster://`` and ``redis+sentinel://`` as :mod:`taskq.broker.topology` reads them
(the same parser taskq's own connections use).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any, cast

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.sentinel import Sentinel

from taskq.broker import topology
from taskq.broker.connection import redact_url

__all__ = ["answers", "delete_prefixed", "raw_client", "server_version"]

_TIMEOUT = 2.0
_BATCH = 500


def raw_client(url: str) -> redis.Redis | RedisCluster:
    """A plain redis-py client for ``url``, parsed as taskq parses it
    (:mod:`taskq.broker.topology`).

    Args:
        url: A Redis URL.

    Returns:
        A :class:`redis.Redis` (single node, or the master a sentinel names, re-resolved
        after a failover) or a :class:`~redis.cluster.RedisCluster`; the caller closes it.

    Raises:
        ConfigurationError: A cluster or sentinel URL is malformed (a ``ValueError``).
    """
    t = topology.parse(url, redact_url(url))
    timeouts: dict[str, Any] = {"socket_timeout": _TIMEOUT, "socket_connect_timeout": _TIMEOUT}
    if t.kind == topology.SINGLE:
        return redis.Redis.from_url(url)
    if t.kind == topology.CLUSTER:
        nodes = [ClusterNode(h, p) for h, p in t.nodes]  # type: ignore[no-untyped-call]
        return RedisCluster(
            startup_nodes=nodes, username=t.username, password=t.password, **timeouts
        )
    sentinel_auth = {"username": t.sentinel_username, "password": t.sentinel_password}
    sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
        list(t.nodes),
        sentinel_kwargs={k: v for k, v in sentinel_auth.items() if v is not None} or None,
        **timeouts,
    )
    master = sentinel.master_for(  # type: ignore[no-untyped-call, unused-ignore]
        t.service, db=t.db, username=t.username, password=t.password, **timeouts
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

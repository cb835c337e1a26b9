"""What a Redis URL names: one server, a Redis Cluster, or a master found through Sentinel.

redis-py has no URL scheme for Cluster with several startup nodes or for Sentinel, so
taskq parses these two forms itself (Prefect's docket uses the same ones)::

    redis+cluster://[user:password@]host1:7001,host2:7002[/0][?option=value]
    redis+sentinel://[user:password@]s1[:26379],s2[:26379]/service[/db][?option=value]

For ``redis+cluster://`` the hosts are startup nodes (any reachable master or
replica; the rest is discovered), the user and password are the nodes', and the
database can only be 0. For ``redis+sentinel://`` the hosts are the sentinels (port
26379 when none is given), ``service`` the name the sentinels monitor, the user and
password are the master's, and the query options ``sentinel_username`` and
``sentinel_password`` authenticate to the sentinels. TLS (``rediss+cluster://``,
``rediss+sentinel://``) is not supported yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote

from taskq.errors import ConfigurationError

SINGLE, CLUSTER, SENTINEL = "single", "cluster", "sentinel"

#: The scheme of each kind that taskq parses itself (single-node URLs go to redis-py).
SCHEMES = {"redis+cluster": CLUSTER, "redis+sentinel": SENTINEL}

_TLS_SCHEMES = ("rediss+cluster", "rediss+sentinel")

#: Query options of a Sentinel URL that are the sentinels' own.
_SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")

SENTINEL_PORT = 26379
CLUSTER_PORT = 6379


@dataclass(frozen=True)
class Topology:
    """A parsed Redis URL.

    Attributes:
        kind: ``single``, ``cluster`` or ``sentinel``.
        nodes: Cluster startup nodes or sentinels, as ``(host, port)``; empty for single.
        service: The master's name the sentinels know (Sentinel only).
        db: Database number (always 0 for a Cluster).
        username: The Redis servers' user (None: the default user).
        password: The Redis servers' password.
        sentinel_username: The sentinels' user.
        sentinel_password: The sentinels' password.
    """

    kind: str
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None


def scheme_of(url: str) -> str:
    """The URL's scheme, lower case ('' when it has none)."""
    head, sep, _ = url.partition("://")
    return head.lower() if sep else ""


def parse(url: str, shown: str | None = None) -> Topology:
    """The topology ``url`` names.

    Args:
        url: A Redis URL.
        shown: The URL as error messages show it (password redacted); default ``url``.

    Raises:
        ConfigurationError: A Cluster or Sentinel URL is malformed.
    """
    scheme = scheme_of(url)
    kind = SCHEMES.get(scheme)
    if kind is None:
        if scheme in _TLS_SCHEMES:
            raise _bad(shown or url, f"{scheme}:// (TLS) is not supported yet")
        return Topology(SINGLE)
    rest = url.split("://", 1)[1]
    rest, _, query_text = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    query = {k: v[0] for k, v in parse_qs(query_text).items()}
    password = query.get("password", password)
    default_port = SENTINEL_PORT if kind == SENTINEL else CLUSTER_PORT
    nodes = tuple(_host_port(h, default_port, shown or url) for h in hosts.split(",") if h)
    if not nodes:
        raise _bad(shown or url, "name at least one host:port")
    parts = [p for p in path.split("/") if p]
    if kind == CLUSTER:
        if len(parts) > 1 or (parts and parts[0] != "0"):
            raise _bad(shown or url, "a Redis Cluster has only database 0")
        return Topology(CLUSTER, nodes, db=0, username=username, password=password)
    if not parts or len(parts) > 2:
        raise _bad(shown or url, "give the service name the sentinels monitor: .../mymaster[/db]")
    db_text = parts[1] if len(parts) == 2 else query.get("db", "0")
    if not db_text.isdigit():
        raise _bad(shown or url, f"the database must be a number, not {db_text!r}")
    return Topology(
        SENTINEL,
        nodes,
        service=unquote(parts[0]),
        db=int(db_text),
        username=username,
        password=password,
        sentinel_username=query.get(_SENTINEL_OPTIONS[0]),
        sentinel_password=query.get(_SENTINEL_OPTIONS[1]),
    )


def _host_port(text: str, default: int, shown: str) -> tuple[str, int]:
    if text.startswith("["):  # [IPv6]:port
        host, _, tail = text[1:].partition("]")
        port = tail.removeprefix(":")
    else:
        host, colon, port = text.rpartition(":")
        if not colon:
            host, port = text, ""
    if not host:
        raise _bad(shown, f"empty host in {text!r}")
    if not port:
        return host, default
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise _bad(shown, f"bad port {port!r}")
    return host, int(port)


def _bad(shown: str, why: str) -> ConfigurationError:
    return ConfigurationError(f"invalid Redis URL {shown!r}: {why}")

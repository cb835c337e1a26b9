"""Cluster and Sentinel URLs (taskq.broker.topology) and how the router keys commands."""

from __future__ import annotations

import pytest

from taskq.app import check_redis_url
from taskq.broker.cluster import command_key
from taskq.broker.connection import redact_url
from taskq.broker.topology import CLUSTER, SENTINEL, SINGLE, parse
from taskq.errors import ConfigurationError


def test_a_cluster_url_lists_startup_nodes_with_the_nodes_password() -> None:
    t = parse("redis+cluster://u:s%40cret@h1:7001,h2:7002,[::1]:7003/0")
    assert t.kind == CLUSTER
    assert t.nodes == (("h1", 7001), ("h2", 7002), ("::1", 7003))
    assert (t.username, t.password, t.db) == ("u", "s@cret", 0)
    assert parse("redis+cluster://h1/").nodes == (("h1", 6379),)


def test_a_sentinel_url_names_sentinels_service_db_and_both_credentials() -> None:
    t = parse("redis+sentinel://:pw@s1,s2:26380/mymaster/3?sentinel_password=spw")
    assert t.kind == SENTINEL
    assert t.nodes == (("s1", 26379), ("s2", 26380))
    assert (t.service, t.db, t.password, t.sentinel_password) == ("mymaster", 3, "pw", "spw")
    assert parse("redis+sentinel://s1/mymaster").db == 0


def test_plain_urls_are_single_node() -> None:
    assert parse("redis://localhost:6379/0").kind == SINGLE
    assert parse("unix:///run/redis.sock").kind == SINGLE


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis+cluster://", "name at least one host:port"),
        ("redis+cluster://h1:7001/1", "only database 0"),
        ("redis+cluster://h1:99999/", "bad port '99999'"),
        ("redis+sentinel://s1:26379", "give the service name"),
        ("redis+sentinel://s1/m/x", "the database must be a number"),
        ("rediss+cluster://h1:7001/", "(TLS) is not supported yet"),
        ("redis+socket://h1/", "redis+socket:// URLs are not supported"),
    ],
)
def test_malformed_cluster_and_sentinel_urls_are_refused_before_connecting(
    url: str, why: str
) -> None:
    with pytest.raises(ConfigurationError, match="invalid Redis URL") as info:
        check_redis_url(url)
    assert why in str(info.value)


def test_a_refused_url_hides_its_password() -> None:
    with pytest.raises(ConfigurationError) as info:
        check_redis_url("redis+cluster://u:hunter2@h1:7001/5")
    assert "hunter2" not in str(info.value) and "u:***@" in str(info.value)
    assert redact_url("redis+sentinel://:pw@s1,s2/m") == "redis+sentinel://:***@s1,s2/m"


@pytest.mark.parametrize(
    ("command", "key"),
    [
        (("EVALSHA", "abc", 2, "taskq:{q}:stream", "taskq:{q}:events", "arg"), b"taskq:{q}:stream"),
        (("EVALSHA", "abc", 0, "arg"), None),
        (("XREADGROUP", "GROUP", "g", "c", "COUNT", 1, "STREAMS", "s1", "s2", ">", ">"), b"s1"),
        (("XREAD", "COUNT", 1, "BLOCK", 5, "STREAMS", b"ev", "0-0"), b"ev"),
        (("LINDEX", "taskq:{q}:result:r", 0), b"taskq:{q}:result:r"),
        (("TIME",), None),
        (("SCRIPT", "LOAD", "return 1"), None),
        (("CLIENT", "SETNAME", "w1"), None),
        (("XINFO", "CONSUMERS", "taskq:{q}:stream", "taskq"), b"taskq:{q}:stream"),
        (("XGROUP", "CREATE", b"s", "g", "0"), b"s"),
        (("WAIT", 1, 100), None),
    ],
)
def test_commands_are_routed_by_their_first_key(command: tuple[object, ...], key: object) -> None:
    assert command_key(command) == key

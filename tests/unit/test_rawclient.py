"""Tests for taskq.rawclient: plain redis-py clients for every taskq URL form."""

from __future__ import annotations

import shutil
import socket

import pytest
import redis
from redis.cluster import RedisCluster

from taskq.rawclient import answers, delete_prefixed, raw_client, server_version
from taskq.testing import RedisClusterFactory

needs_redis_server = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="redis-server is not on PATH"
)


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_plain_url_is_a_plain_client() -> None:
    client = raw_client("redis://127.0.0.1:1/3")
    assert type(client) is redis.Redis
    assert client.connection_pool.connection_kwargs["db"] == 3
    client.close()


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://127.0.0.1:7001/1",  # a cluster has db 0 only
        "rediss+cluster://127.0.0.1:7001/0",  # TLS: not supported yet
        "redis+sentinel://127.0.0.1:26379",  # no service
        "redis+sentinel://127.0.0.1:26379/mymaster/x",
        "redis+sentinel://127.0.0.1:26379/mymaster/0/extra",
    ],
)
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        raw_client(url)


def test_sentinel_url_names_sentinels_service_db_and_credentials() -> None:
    # Neither Sentinel nor master_for connects until the first command.
    client = raw_client("redis+sentinel://u:p%40ss@127.0.0.1:27101,[::1]/jobs/2")
    try:
        pool = client.connection_pool
        assert pool.service_name == "jobs"
        kwargs = pool.connection_kwargs
        assert (kwargs["db"], kwargs["username"], kwargs["password"]) == (2, "u", "p@ss")
        sentinels = pool.sentinel_manager.sentinels
        hosts = [s.connection_pool.connection_kwargs for s in sentinels]
        assert [(h["host"], h["port"]) for h in hosts] == [("127.0.0.1", 27101), ("::1", 26379)]
    finally:
        client.close()


def test_answers_never_raises() -> None:
    assert answers(f"redis+cluster://127.0.0.1:{_dead_port()}/0") is False
    assert answers(f"redis+sentinel://127.0.0.1:{_dead_port()}/mymaster/0") is False
    assert answers("redis+cluster://127.0.0.1:1/5") is False  # malformed
    assert server_version("redis+cluster://127.0.0.1:1/5") == "?"


@pytest.mark.cluster
@needs_redis_server
def test_cluster_url_reaches_the_cluster_and_deletes_per_slot(
    redis_cluster_factory: RedisClusterFactory,
) -> None:
    cluster = redis_cluster_factory()
    assert answers(cluster.url)
    assert server_version(cluster.url).count(".") == 2
    client = raw_client(cluster.url)
    try:
        assert isinstance(client, RedisCluster)
        pipe = client.pipeline(transaction=False)
        for i in range(1200):  # > one UNLINK batch, over many slots of the one master
            pipe.set(f"px:{{t{i}}}:k", i)
        pipe.set("px-other", 1)
        pipe.execute()
        assert len({client.keyslot(f"px:{{t{i}}}:k") for i in range(1200)}) > 1000

        assert delete_prefixed(cluster.url, "px") == 1200
        assert client.dbsize() == 1  # px-other is outside px:*
        assert delete_prefixed(cluster.url, "px") == 0
    finally:
        client.close()

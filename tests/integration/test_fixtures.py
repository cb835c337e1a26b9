"""Tests for the taskq.testing pytest plugin (Redis selection and key prefixes)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import redis

from taskq.localredis import LocalRedis, ping
from taskq.testing import RedisClusterFactory, RedisServerFactory

pytest_plugins = ["pytester"]

PREFIX_RE = re.compile(r"taskq-test-[0-9a-f]{8}")


def test_redis_url_answers_and_is_not_the_shared_default(redis_url: str) -> None:
    assert ping(redis_url)
    if not os.environ.get("TASKQ_TEST_REDIS_URL"):
        assert not redis_url.endswith(":6379/0"), "tests must not use a Redis on 6379 by default"


def test_docker_compose_file_points_at_root(
    pytestconfig: pytest.Config, request: pytest.FixtureRequest
) -> None:
    path = request.getfixturevalue("docker_compose_file")
    assert Path(path) == pytestconfig.rootpath / "docker-compose.yml"
    assert Path(path).is_file()


def test_taskq_prefix_format(taskq_prefix: str) -> None:
    assert PREFIX_RE.fullmatch(taskq_prefix)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not on PATH")
def test_redis_server_factory(redis_server_factory: RedisServerFactory) -> None:
    server = redis_server_factory(appendonly=True, extra_args=["--appendfsync", "always"])
    assert isinstance(server, LocalRedis)
    client = redis.Redis.from_url(server.url)
    try:
        client.set("k", "v")
        server.kill()
        server.restart()
        assert client.get("k") == b"v"
    finally:
        client.close()
    other = redis_server_factory()
    assert other.port != server.port
    assert ping(other.url)


PREFIX_TESTS = """
import redis

def _fill(url, prefix):
    client = redis.Redis.from_url(url)
    pipe = client.pipeline(transaction=False)
    for i in range(2500):
        pipe.set(f"{prefix}:k{i}", i)
    pipe.xadd(prefix + ":{q}:stream", {"f": "v"})
    pipe.set(prefix + "-not-mine", 1)
    pipe.execute()
    client.rpush("prefixes", prefix)
    client.close()

def test_a(redis_url, taskq_prefix):
    _fill(redis_url, taskq_prefix)

def test_b(redis_url, taskq_prefix):
    _fill(redis_url, taskq_prefix)
"""


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not on PATH")
def test_taskq_prefix_unique_and_cleaned(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest('pytest_plugins = ["taskq.testing"]')
    pytester.makepyfile(PREFIX_TESTS)
    with LocalRedis() as server:
        monkeypatch.setenv("TASKQ_TEST_REDIS_URL", server.url)
        result = pytester.runpytest("-p", "no:cacheprovider")
        result.assert_outcomes(passed=2)
        client = redis.Redis.from_url(server.url)
        try:
            prefixes = [p.decode() for p in client.lrange("prefixes", 0, -1)]
            assert len(prefixes) == 2
            assert prefixes[0] != prefixes[1]
            assert all(PREFIX_RE.fullmatch(p) for p in prefixes)
            for prefix in prefixes:
                assert list(client.scan_iter(match=f"{prefix}:*")) == []
                assert client.get(f"{prefix}-not-mine") == b"1"  # outside <prefix>:*
        finally:
            client.close()


NEEDS_REDIS_TEST = """
def test_needs_redis(redis_url):
    pass
"""


@pytest.mark.parametrize("ci", [False, True])
def test_no_redis_skips_locally_fails_on_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ci: bool
) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()
    pytester.makeconftest('pytest_plugins = ["taskq.testing"]')
    pytester.makepyfile(NEEDS_REDIS_TEST)
    monkeypatch.delenv("TASKQ_TEST_REDIS_URL", raising=False)
    monkeypatch.setenv("TASKQ_TEST_NO_DOCKER", "1")
    monkeypatch.setenv("PATH", str(empty))  # no redis-server, no docker
    if ci:
        monkeypatch.setenv("CI", "true")
    else:
        monkeypatch.delenv("CI", raising=False)
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    if ci:
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(["*no Redis for the tests*failing instead of skipping*"])
    else:
        result.assert_outcomes(skipped=1)
        result.stdout.fnmatch_lines(["*no Redis for the tests*"])


def test_bad_env_url_fails_clearly(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest('pytest_plugins = ["taskq.testing"]')
    pytester.makepyfile(NEEDS_REDIS_TEST)
    monkeypatch.setenv("TASKQ_TEST_REDIS_URL", "redis://user:hunter2@127.0.0.1:1/0")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*TASKQ_TEST_REDIS_URL=redis://user:***@127.0.0.1:1/0 does not answer PING*"]
    )
    assert "hunter2" not in result.stdout.str()


def test_plugin_works_without_pytest_docker(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest('pytest_plugins = ["taskq.testing"]')
    pytester.makepyfile(
        """
        def test_x(redis_url, docker_compose_file):
            assert docker_compose_file.endswith("docker-compose.yml")
        """
    )
    monkeypatch.delenv("TASKQ_TEST_NO_DOCKER", raising=False)
    result = pytester.runpytest("-p", "no:docker", "-p", "no:cacheprovider")
    if shutil.which("redis-server") is None and not os.environ.get("TASKQ_TEST_REDIS_URL"):
        result.assert_outcomes(skipped=1)
    else:
        result.assert_outcomes(passed=1)


TWO_REDIS_TESTS = """
def test_one(redis_url):
    pass

def test_two(redis_url):
    pass
"""
ANNOUNCED = r"taskq tests: Redis \d+\.\d+\.\d+ at {url} \({why}\)"


def _announcements(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("taskq tests: Redis")]


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not on PATH")
def test_session_says_which_redis_it_uses_from_the_env(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest('pytest_plugins = ["taskq.testing"]')
    pytester.makepyfile(TWO_REDIS_TESTS)
    with LocalRedis() as server:
        # The default user is nopass, so any password works: check that it is hidden.
        url = server.url.replace("redis://", "redis://default:hunter2@")
        monkeypatch.setenv("TASKQ_TEST_REDIS_URL", url)
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    lines = _announcements(out)
    assert len(lines) == 1, out
    shown = re.escape(server.url.replace("redis://", "redis://default:***@"))
    assert re.fullmatch(ANNOUNCED.format(url=shown, why="TASKQ_TEST_REDIS_URL"), lines[0])
    assert "hunter2" not in out


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not on PATH")
def test_session_says_it_started_a_private_redis_server(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest('pytest_plugins = ["taskq.testing"]')
    pytester.makepyfile(TWO_REDIS_TESTS)
    monkeypatch.delenv("TASKQ_TEST_REDIS_URL", raising=False)
    monkeypatch.setenv("TASKQ_TEST_NO_DOCKER", "1")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    lines = _announcements(result.stdout.str())
    assert len(lines) == 1, result.stdout.str()
    url = r"redis://127\.0\.0\.1:\d+/0"
    why = "a private redis-server started from PATH"
    assert re.fullmatch(ANNOUNCED.format(url=url, why=why), lines[0])


CLUSTER_TESTS = """
from redis.cluster import RedisCluster
from taskq.testing import raw_client

seen = {}

def test_fill(redis_url, taskq_prefix):
    seen["prefix"] = taskq_prefix
    client = raw_client(redis_url)
    assert isinstance(client, RedisCluster)
    pipe = client.pipeline(transaction=False)  # split per node by redis-py
    for i in range(300):
        pipe.set(f"{taskq_prefix}:{{t{i}}}:k", i)
    pipe.set(taskq_prefix + "-not-mine", 1)
    pipe.execute()
    masters = {client.get_node_from_key(f"{taskq_prefix}:{{t{i}}}:k").port for i in range(300)}
    seen["masters"] = len(masters)
    client.close()

def test_cleaned(redis_url):
    client = raw_client(redis_url)
    prefix = seen["prefix"]
    left = [k for node in client.get_primaries()
            for k in client.scan_iter(match=prefix + ":*", target_nodes=node)]
    assert left == []
    assert client.get(prefix + "-not-mine") == b"1"
    assert seen["masters"] == len(redis_url.split(",")) == 3
    client.close()
"""


@pytest.mark.cluster
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not on PATH")
def test_cluster3_option_starts_a_cluster_and_cleans_every_master(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest('pytest_plugins = ["taskq.testing"]')
    pytester.makepyfile(CLUSTER_TESTS)
    monkeypatch.delenv("TASKQ_TEST_REDIS_URL", raising=False)
    monkeypatch.delenv("TASKQ_TEST_REDIS_MODE", raising=False)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--taskq-redis=cluster3")
    result.assert_outcomes(passed=2)
    lines = _announcements(result.stdout.str())
    assert len(lines) == 1, result.stdout.str()
    url = r"redis\+cluster://127\.0\.0\.1:\d+,127\.0\.0\.1:\d+,127\.0\.0\.1:\d+/0"
    why = "a private 3-master Redis Cluster started from PATH"
    assert re.fullmatch(ANNOUNCED.format(url=url, why=why), lines[0])


@pytest.mark.cluster
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not on PATH")
def test_cluster_mode_from_env(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeconftest('pytest_plugins = ["taskq.testing"]')
    pytester.makepyfile(NEEDS_REDIS_TEST)
    monkeypatch.delenv("TASKQ_TEST_REDIS_URL", raising=False)
    monkeypatch.setenv("TASKQ_TEST_REDIS_MODE", "cluster")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    lines = _announcements(result.stdout.str())
    assert len(lines) == 1, result.stdout.str()
    url = r"redis\+cluster://127\.0\.0\.1:\d+/0"
    why = "a private 1-master Redis Cluster started from PATH"
    assert re.fullmatch(ANNOUNCED.format(url=url, why=why), lines[0])


def test_bad_mode_is_a_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest('pytest_plugins = ["taskq.testing"]')
    pytester.makepyfile(NEEDS_REDIS_TEST)
    monkeypatch.delenv("TASKQ_TEST_REDIS_URL", raising=False)
    monkeypatch.setenv("TASKQ_TEST_REDIS_MODE", "clustr")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*TASKQ_TEST_REDIS_MODE='clustr': expected one of single*"])


@pytest.mark.cluster
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not on PATH")
def test_env_cluster_url_wins(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    redis_cluster_factory: RedisClusterFactory,
) -> None:
    cluster = redis_cluster_factory()
    pytester.makeconftest('pytest_plugins = ["taskq.testing"]')
    pytester.makepyfile(
        f"""
        def test_x(redis_url):
            assert redis_url == {cluster.url!r}
        """
    )
    monkeypatch.setenv("TASKQ_TEST_REDIS_URL", cluster.url)
    result = pytester.runpytest("-p", "no:cacheprovider", "--taskq-redis=cluster3")
    result.assert_outcomes(passed=1)

"""Tests for taskq.localredis against real redis-server processes."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
import redis

from taskq.broker.connection import redact_url
from taskq.localredis import LocalRedis, PortInUseError, ensure_redis, ping

needs_redis_server = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="redis-server is not on PATH"
)


def _dead_url() -> str:
    """A URL on a 127.0.0.1 port where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://user:secret@h:1/0", "redis://user:***@h:1/0"),
        ("redis://:secret@h:1/0", "redis://:***@h:1/0"),
        ("rediss://user:p%40ss@h:6380/2", "rediss://user:***@h:6380/2"),
        ("redis://user:p@ss@h/0", "redis://user:***@h/0"),
        ("redis://h:1/0?password=secret&db=2", "redis://h:1/0?password=***&db=2"),
        ("redis+sentinel://:pw@h1:1,h2:2/mymaster", "redis+sentinel://:***@h1:1,h2:2/mymaster"),
        ("unix://:pw@/tmp/redis.sock?db=1", "unix://:***@/tmp/redis.sock?db=1"),
        ("redis://user:pw@[::1:6379/0", "redis://user:***@[::1:6379/0"),
        ("redis://h:1/0", "redis://h:1/0"),
        ("redis://user@h:1/0", "redis://user@h:1/0"),
        ("redis://localhost", "redis://localhost"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert "secret" not in redact_url(url)


def test_ping_never_raises() -> None:
    assert ping(_dead_url()) is False
    assert ping("not a url") is False
    assert ping("redis://127.0.0.1:99999/0") is False


@needs_redis_server
def test_start_ping_stop() -> None:
    server = LocalRedis()
    with pytest.raises(RuntimeError):
        _ = server.url
    url = server.start()
    try:
        assert url == f"redis://127.0.0.1:{server.port}/0" == server.url
        assert server.running
        assert ping(url)
        assert server.start() == url  # already running: no-op
        assert server.dir.is_dir()
        assert (server.dir / "redis.log").exists()
        client = redis.Redis.from_url(url)
        try:
            assert client.config_get("appendonly") == {"appendonly": "no"}
            assert client.config_get("save") == {"save": ""}
            assert client.config_get("bind")["bind"] == "127.0.0.1"
        finally:
            client.close()
        server.stop()
        assert not server.running
        assert not ping(url)
        assert server.dir.is_dir()  # kept for restart
    finally:
        workdir = server.dir
        server.close()
    assert not workdir.exists()
    server.close()  # idempotent


@needs_redis_server
def test_context_manager_removes_dir() -> None:
    with LocalRedis() as server:
        workdir: Path = server.dir
        assert ping(server.url)
    assert not ping(server.url)
    assert not workdir.exists()


@needs_redis_server
def test_fixed_port_taken_raises_clear_error() -> None:
    with LocalRedis() as first:
        second = LocalRedis(port=first.port)
        with pytest.raises(RuntimeError, match=r"could not bind 127\.0\.0\.1:\d+ \(port in use\)"):
            second.start()
        second.close()
        assert ping(first.url)  # the first server is untouched


@needs_redis_server
def test_bad_argument_raises_with_log() -> None:
    server = LocalRedis(extra_args=["--no-such-option", "1"])
    with pytest.raises(RuntimeError, match="exited with code"):
        server.start()
    server.close()


def test_missing_binary(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    server = LocalRedis()
    with pytest.raises(RuntimeError, match="redis-server is not on PATH"):
        server.start()
    server.close()


@needs_redis_server
def test_kill_restart_keeps_aof_data() -> None:
    with LocalRedis(appendonly=True, extra_args=["--appendfsync", "always"]) as server:
        port, url = server.port, server.url
        client = redis.Redis.from_url(url)
        try:
            assert client.config_get("appendfsync") == {"appendfsync": "always"}
            client.set("k", "v")
        finally:
            client.close()
        server.kill()
        assert not server.running
        assert not ping(url)
        assert server.restart() == url
        assert server.port == port
        client = redis.Redis.from_url(url)
        try:
            assert client.get("k") == b"v"
        finally:
            client.close()


@needs_redis_server
def test_restart_without_aof_loses_data() -> None:
    with LocalRedis() as server:
        client = redis.Redis.from_url(server.url)
        try:
            client.set("k", "v")
            server.restart()
            assert client.get("k") is None
        finally:
            client.close()


@needs_redis_server
def test_ensure_redis_uses_answering_url(monkeypatch: pytest.MonkeyPatch) -> None:
    with LocalRedis() as server:
        assert ensure_redis(server.url) == (server.url, None)
        monkeypatch.setenv("TASKQ_REDIS_URL", server.url)
        assert ensure_redis(None) == (server.url, None)


@needs_redis_server
def test_ensure_redis_starts_local_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKQ_REDIS_URL", _dead_url())
    url, server = ensure_redis(None)
    assert server is not None
    try:
        assert url == server.url
        assert ping(url)
    finally:
        server.close()


def test_ensure_redis_error_redacts_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    dead = _dead_url().replace("redis://", "redis://user:hunter2@")
    with pytest.raises(RuntimeError, match="not on PATH") as info:
        ensure_redis(dead)
    assert "hunter2" not in str(info.value)
    assert "user:***@127.0.0.1" in str(info.value)


@needs_redis_server
def test_fixed_port_taken_raises_port_in_use() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        server = LocalRedis(port=sock.getsockname()[1])
        try:
            with pytest.raises(PortInUseError, match="port in use"):
                server.start()
            assert not server.running
        finally:
            server.close()


@needs_redis_server
def test_config_file_is_read(tmp_path: Path) -> None:
    conf = tmp_path / "redis.conf"
    conf.write_text("maxmemory-policy allkeys-lru\n")
    with LocalRedis(config_file=conf) as server:
        client = redis.Redis.from_url(server.url)
        try:
            assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}
            assert client.config_get("bind")["bind"] == "127.0.0.1"  # our flags still apply
        finally:
            client.close()

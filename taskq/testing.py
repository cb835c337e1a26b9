"""Pytest plugin for testing code that uses taskq.

Enable it in your ``conftest.py``::

    pytest_plugins = ["taskq.testing"]

Redis selection (session fixture ``redis_url``), first match wins:

1. ``TASKQ_TEST_REDIS_URL`` if set (it must answer ``PING``).
2. pytest-docker, when it is installed and a Docker engine with Compose v2
   answers: service ``redis`` (port 6379) from ``<rootdir>/docker-compose.yml``.
   Set ``TASKQ_TEST_NO_DOCKER=1`` to skip this step.
3. A private ``redis-server`` on a free 127.0.0.1 port (:class:`LocalRedis`).
4. Otherwise the tests that need Redis are skipped, or fail when ``CI`` is set.

At session start one line says which server was chosen and why, e.g.
``taskq tests: Redis 7.0.15 at redis://127.0.0.1:40123/0 (a private redis-server
started from PATH)`` (any password shown as ``***``).

Tests share one Redis; isolate them with the ``taskq_prefix`` fixture (a
unique key prefix per test, cleaned up afterwards) instead of ``FLUSHALL``, so
they can also run in parallel under pytest-xdist.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
import warnings
from collections.abc import Iterator, Sequence
from typing import NoReturn, Protocol

import pytest
import redis

from taskq.app import App
from taskq.broker.connection import redact_url
from taskq.localredis import LocalRedis, ping
from taskq.worker import Worker

__all__ = [
    "BurstWorker",
    "RedisServerFactory",
    "burst_worker",
    "docker_compose_file",
    "docker_setup",
    "redis_server_factory",
    "redis_url",
    "run_burst",
    "taskq_app",
    "taskq_prefix",
]

_DOCKER_TIMEOUT = 10.0
_DOCKER_WAIT = 60.0


class RedisServerFactory(Protocol):
    """Callable returned by the ``redis_server_factory`` fixture."""

    def __call__(self, *, appendonly: bool = False, extra_args: Sequence[str] = ()) -> LocalRedis:
        """Start and return a new private Redis server.

        Args:
            appendonly: Enable the append-only file, so data survives
                :meth:`LocalRedis.kill` + :meth:`LocalRedis.restart`.
            extra_args: More ``redis-server`` arguments.

        Returns:
            A started :class:`LocalRedis`; it is closed at session end.
        """
        ...


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def _docker_usable() -> bool:
    """True if a Docker engine and the Compose v2 plugin both answer."""
    if _env_flag("TASKQ_TEST_NO_DOCKER") or shutil.which("docker") is None:
        return False
    try:
        for command in (["docker", "info"], ["docker", "compose", "version"]):
            result = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=_DOCKER_TIMEOUT,
                check=False,
            )
            if result.returncode != 0:
                return False
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def _no_redis(message: str) -> NoReturn:
    """Skip locally, fail on CI (``CI`` set): a silent skip would hide a broken setup."""
    if os.environ.get("CI"):
        pytest.fail(f"{message} (failing instead of skipping because CI is set)", pytrace=False)
    pytest.skip(message)


def _redis_from_docker(request: pytest.FixtureRequest) -> str:
    """Start the compose ``redis`` service through pytest-docker and return its URL.

    Raises:
        pytest.FixtureLookupError: If pytest-docker is not installed or disabled.
        Exception: Whatever pytest-docker raises when ``docker compose up`` fails.
    """
    services = request.getfixturevalue("docker_services")
    ip = str(request.getfixturevalue("docker_ip"))
    port = int(services.port_for("redis", 6379))
    url = f"redis://{ip}:{port}/0"
    services.wait_until_responsive(check=lambda: ping(url), timeout=_DOCKER_WAIT, pause=0.2)
    return url


@pytest.fixture(scope="session")
def docker_compose_file(pytestconfig: pytest.Config) -> str:
    """Compose file for pytest-docker: ``<rootdir>/docker-compose.yml``.

    Overrides pytest-docker's default (``tests/docker-compose.yml``). It is a
    plain fixture, so it does no harm when pytest-docker is not installed.
    """
    return str(pytestconfig.rootpath / "docker-compose.yml")


@pytest.fixture(scope="session")
def docker_setup() -> list[str]:
    """Compose setup for pytest-docker: start only ``redis``, not the worker image."""
    return ["up --wait redis"]


def _server_version(url: str) -> str:
    client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
    try:
        return str(client.info("server").get("redis_version", "?"))
    except redis.RedisError:
        return "?"  # INFO may be denied to an ACL user; the line still names the server
    finally:
        client.close()


def _announce(request: pytest.FixtureRequest, url: str, why: str) -> None:
    """Print which Redis the session uses, and why, on the terminal (shown without -s)."""
    line = f"taskq tests: Redis {_server_version(url)} at {redact_url(url)} ({why})"
    plugins = request.config.pluginmanager
    reporter = plugins.get_plugin("terminalreporter")
    if reporter is None:  # -p no:terminal
        return
    capture = plugins.get_plugin("capturemanager")
    if capture is None:
        reporter.write_line(line)
        return
    with capture.global_and_fixture_disabled():  # past the capture of this fixture's output
        reporter.write_line(line)


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of the Redis server the tests use (see the module docstring for the order).

    Yields:
        A ``redis://`` URL that answered ``PING``.
    """
    env_url = os.environ.get("TASKQ_TEST_REDIS_URL")
    if env_url:
        if not ping(env_url, timeout=2.0):
            pytest.fail(
                f"TASKQ_TEST_REDIS_URL={redact_url(env_url)} does not answer PING",
                pytrace=False,
            )
        _announce(request, env_url, "TASKQ_TEST_REDIS_URL")
        yield env_url
        return

    if _docker_usable():
        # The compose file publishes redis on ${TASKQ_REDIS_PORT-6379}; an empty
        # value asks Docker for an ephemeral host port, so the tests never
        # collide with (or use) a Redis already listening on 6379.
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("TASKQ_REDIS_PORT", "")
            try:
                url = _redis_from_docker(request)
            except pytest.FixtureLookupError:
                pass  # pytest-docker not installed or disabled (-p no:docker)
            except Exception as exc:
                if os.environ.get("CI"):
                    raise
                warnings.warn(
                    f"taskq.testing: docker compose could not start redis ({exc}); "
                    "falling back to a local redis-server",
                    stacklevel=1,
                )
            else:
                _announce(request, url, "Docker compose service")
                yield url
                return

    if shutil.which("redis-server") is None:
        _no_redis(
            "no Redis for the tests: set TASKQ_TEST_REDIS_URL, start a Docker engine "
            "with Compose v2, or put redis-server on PATH"
        )
    with LocalRedis() as server:
        _announce(request, server.url, "a private redis-server started from PATH")
        yield server.url


@pytest.fixture(scope="session")
def redis_server_factory() -> Iterator[RedisServerFactory]:
    """Factory for extra private Redis servers, e.g. for tests that kill or restart Redis.

    Every server it creates is closed (stopped, directory removed) at session end.

    Yields:
        A callable ``(*, appendonly=False, extra_args=()) -> LocalRedis``
        returning a started server.
    """
    servers: list[LocalRedis] = []

    def make(*, appendonly: bool = False, extra_args: Sequence[str] = ()) -> LocalRedis:
        if shutil.which("redis-server") is None:
            _no_redis("redis-server is not on PATH; this test needs a private Redis server")
        server = LocalRedis(appendonly=appendonly, extra_args=extra_args)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.close()


def _delete_prefixed(url: str, prefix: str) -> int:
    """Delete every key matching ``<prefix>:*`` with SCAN + UNLINK; return how many."""
    client = redis.Redis.from_url(url)
    try:
        deleted = 0
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += int(client.unlink(*batch))
                batch.clear()
        if batch:
            deleted += int(client.unlink(*batch))
        return deleted
    finally:
        client.close()


@pytest.fixture
def taskq_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix unique to this test, like ``taskq-test-1a2b3c4d``.

    After the test, all keys matching ``<prefix>:*`` are deleted from
    ``redis_url`` (using SCAN, not KEYS).

    Yields:
        The prefix (contains no glob characters).
    """
    prefix = f"taskq-test-{uuid.uuid4().hex[:8]}"
    yield prefix
    _delete_prefixed(redis_url, prefix)


# -- app and worker fixtures --------------------------------------------------------------


@pytest.fixture
def taskq_app(redis_url: str, taskq_prefix: str) -> Iterator[App]:
    """A fresh :class:`~taskq.App` on the test Redis, under this test's unique prefix.

    Register tasks on it inside the test, submit them, then drain with
    :func:`run_burst` (or the ``burst_worker`` fixture).
    """
    app = App(redis_url, prefix=taskq_prefix)
    yield app
    app.close()


def run_burst(
    app: App,
    queues: Sequence[str] | None = None,
    *,
    concurrency: int = 4,
    burst_wait: float = 60.0,
) -> Worker:
    """Run a worker in this process until the queues are drained; return it.

    Deterministic: it returns when a read finds nothing and nothing is running,
    never after a sleep. It waits for delay-queue runs (retries, delayed runs)
    due within ``burst_wait`` seconds; later ones stay scheduled.
    """
    worker = Worker(app, queues, concurrency=concurrency, burst=True, burst_wait=burst_wait)
    worker.run()
    return worker


class BurstWorker(Protocol):
    """Callable returned by the ``burst_worker`` fixture."""

    def __call__(
        self,
        app: App,
        queues: Sequence[str] | None = None,
        *,
        concurrency: int = 4,
        burst_wait: float = 60.0,
    ) -> Worker: ...


@pytest.fixture
def burst_worker() -> BurstWorker:
    """:func:`run_burst` as a fixture: ``burst_worker(app)`` drains ``app``'s queues."""
    return run_burst

"""Pytest plugin for testing code that uses taskq.

Enable it in your ``conftest.py``::

    pytest_plugins = ["taskq.testing"]

Redis selection (session fixture ``redis_url``), first match wins:

1. ``TASKQ_TEST_REDIS_URL`` if set (it must answer ``PING``; it may be a
   ``redis+cluster://`` or ``redis+sentinel://`` URL).
2. With ``--taskq-redis=cluster`` (a 1-master cluster owning all slots, which
   already refuses cross-slot scripts) or ``--taskq-redis=cluster3`` (3 masters,
   where keys really live on different nodes): a private :class:`LocalCluster`.
   The option's default is ``TASKQ_TEST_REDIS_MODE``, else ``single``.
3. pytest-docker, when it is installed and a Docker engine with Compose v2
   answers: service ``redis`` (port 6379) from ``<rootdir>/docker-compose.yml``.
   Set ``TASKQ_TEST_NO_DOCKER=1`` to skip this step.
4. A private ``redis-server`` on a free 127.0.0.1 port (:class:`LocalRedis`).
5. Otherwise the tests that need Redis are skipped, or fail when ``CI`` is set.

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

from taskq.app import App
from taskq.broker.connection import redact_url
from taskq.localcluster import LocalCluster
from taskq.localredis import LocalRedis
from taskq.localsentinel import LocalSentinel
from taskq.rawclient import answers, delete_prefixed, raw_client, server_version
from taskq.worker import Worker

__all__ = [
    "BurstWorker",
    "RedisClusterFactory",
    "RedisSentinelFactory",
    "RedisServerFactory",
    "burst_worker",
    "docker_compose_file",
    "docker_setup",
    "raw_client",
    "redis_cluster_factory",
    "redis_sentinel_factory",
    "redis_server_factory",
    "redis_url",
    "run_burst",
    "taskq_app",
    "taskq_prefix",
]

_DOCKER_TIMEOUT = 10.0
_DOCKER_WAIT = 60.0
_MODES = ("single", "cluster", "cluster3")
_MODE_ENV = "TASKQ_TEST_REDIS_MODE"


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--taskq-redis=single|cluster|cluster3``: the kind of Redis ``redis_url`` starts."""
    parser.addoption(
        "--taskq-redis",
        choices=_MODES,
        default=None,
        help=f"Redis the taskq tests start: single (default), cluster (1 master owning all "
        f"slots), cluster3 (3 masters); default from ${_MODE_ENV}",
    )


def _redis_mode(config: pytest.Config) -> str:
    mode = config.getoption("--taskq-redis") or os.environ.get(_MODE_ENV) or "single"
    if mode not in _MODES:
        raise pytest.UsageError(f"{_MODE_ENV}={mode!r}: expected one of {', '.join(_MODES)}")
    return str(mode)


class RedisClusterFactory(Protocol):
    """Callable returned by the ``redis_cluster_factory`` fixture."""

    def __call__(self, masters: int = 1, replicas_per_master: int = 0) -> LocalCluster:
        """Start and return a new private Redis Cluster.

        Args:
            masters: Masters, splitting the slots in equal ranges.
            replicas_per_master: Replicas of each master.

        Returns:
            A started :class:`LocalCluster`; it is closed at session end.
        """
        ...


class RedisSentinelFactory(Protocol):
    """Callable returned by the ``redis_sentinel_factory`` fixture."""

    def __call__(self, service: str = "mymaster") -> LocalSentinel:
        """Start and return a new master + replica + sentinel set-up.

        Args:
            service: The name the sentinel monitors the master under.

        Returns:
            A started :class:`LocalSentinel`; it is closed at session end.
        """
        ...


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
    services.wait_until_responsive(check=lambda: answers(url), timeout=_DOCKER_WAIT, pause=0.2)
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


def _announce(request: pytest.FixtureRequest, url: str, why: str) -> None:
    """Print which Redis the session uses, and why, on the terminal (shown without -s)."""
    line = f"taskq tests: Redis {server_version(url)} at {redact_url(url)} ({why})"
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
        A ``redis://`` URL that answered ``PING``, or a ``redis+cluster://`` one
        with ``--taskq-redis=cluster|cluster3``.
    """
    env_url = os.environ.get("TASKQ_TEST_REDIS_URL")
    if env_url:
        if not answers(env_url):
            pytest.fail(
                f"TASKQ_TEST_REDIS_URL={redact_url(env_url)} does not answer PING",
                pytrace=False,
            )
        _announce(request, env_url, "TASKQ_TEST_REDIS_URL")
        yield env_url
        return

    mode = _redis_mode(request.config)
    if mode != "single":
        _need_redis_server("--taskq-redis=" + mode)
        masters = 3 if mode == "cluster3" else 1
        with LocalCluster(masters=masters) as cluster:
            what = f"a private {masters}-master Redis Cluster started from PATH"
            _announce(request, cluster.url, what)
            yield cluster.url
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


def _need_redis_server(what: str) -> None:
    if shutil.which("redis-server") is None:
        _no_redis(f"redis-server is not on PATH; {what} needs private Redis servers")


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
        _need_redis_server("this test")
        server = LocalRedis(appendonly=appendonly, extra_args=extra_args)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.close()


@pytest.fixture(scope="session")
def redis_cluster_factory() -> Iterator[RedisClusterFactory]:
    """Factory for private Redis Clusters, e.g. for resharding and failover tests.

    Every cluster it creates is closed (nodes stopped, directories removed) at
    session end.

    Yields:
        A callable ``(masters=1, replicas_per_master=0) -> LocalCluster``
        returning a started cluster.
    """
    clusters: list[LocalCluster] = []

    def make(masters: int = 1, replicas_per_master: int = 0) -> LocalCluster:
        _need_redis_server("this test")
        cluster = LocalCluster(masters, replicas_per_master)
        clusters.append(cluster)
        cluster.start()
        return cluster

    yield make
    for cluster in clusters:
        cluster.close()


@pytest.fixture(scope="session")
def redis_sentinel_factory() -> Iterator[RedisSentinelFactory]:
    """Factory for private master + replica + sentinel set-ups, for failover tests.

    Every set-up it creates is closed at session end.

    Yields:
        A callable ``(service="mymaster") -> LocalSentinel`` returning a started one.
    """
    sentinels: list[LocalSentinel] = []

    def make(service: str = "mymaster") -> LocalSentinel:
        _need_redis_server("this test")
        sentinel = LocalSentinel(service)
        sentinels.append(sentinel)
        sentinel.start()
        return sentinel

    yield make
    for sentinel in sentinels:
        sentinel.close()


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
    delete_prefixed(redis_url, prefix)


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

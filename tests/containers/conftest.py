"""Fixtures of the container tests: an engine (found or started), the images, and a
compose project per test.

Without an engine that can be had here (no root to install or start dockerd, say) every
test skips with one line saying why, CI included: these tests need a machine that can run
containers. Once an engine answers, a failure to make the base image or to build the
worker image fails the tests, like any other failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from taskq.localredis import free_port
from tests.containers import engine as eng
from tests.containers.stack import Stack, world_writable

#: The worker image the session builds from deploy/Dockerfile.
WORKER_IMAGE = "taskq-worker:test"


@pytest.fixture(scope="package")
def engine() -> Iterator[eng.Engine]:
    if os.environ.get("TASKQ_TEST_NO_CONTAINERS"):
        pytest.skip("container tests: TASKQ_TEST_NO_CONTAINERS is set")
    try:
        found = eng.find_or_start()
    except eng.Unavailable as exc:
        pytest.skip(f"container tests: no Docker engine: {exc}")
    yield found
    eng.stop(found)


@pytest.fixture(scope="package")
def base(engine: eng.Engine) -> str:
    """The tests' base image (Debian bookworm, python3-venv, redis-server)."""
    return eng.base_image(engine)


@pytest.fixture(scope="package")
def worker_image(engine: eng.Engine, base: str) -> str:
    """deploy/Dockerfile built offline (``--network none``) from the wheelhouse."""
    eng.fill_wheelhouse()
    eng.build_worker_image(engine, WORKER_IMAGE, base)
    return WORKER_IMAGE


StackFactory = Callable[..., Stack]


@pytest.fixture
def stack(
    engine: eng.Engine, base: str, worker_image: str, tmp_path: Path
) -> Iterator[StackFactory]:
    """Make the test's compose project (``stack(lease=...)``); it is taken down after
    the test, its logs printed (pytest shows them when the test failed)."""
    made: list[Stack] = []

    def make(lease: float = 15.0) -> Stack:
        s = Stack(
            engine=engine,
            project=f"taskqtest{uuid.uuid4().hex[:8]}",
            port=free_port(),
            ledger_dir=world_writable(tmp_path / f"ledger{len(made)}"),
            image=worker_image,
            base=base,
            lease=lease,
        )
        made.append(s)
        from tests.containers import ledger_app

        ledger_app.app.configure(redis_url=s.url)
        return s

    yield make
    for s in made:
        try:
            print(s.logs()[-20000:])
        finally:
            s.down()

"""A worker app for tests of ``taskq worker`` pools: signals, a dead supervisor, deadlines.

Like :mod:`tests.apps`, it reads TASKQ_REDIS_URL and TASKQ_PREFIX from the environment.
Tasks announce themselves on a Redis list (``started_key()``) so a test can block on
that list, never sleep, until a run is really running.
"""

from __future__ import annotations

import time

import taskq

app = taskq.App()


def started_key() -> str:
    """Redis list on which a running ``hold``/``spin`` announces its name."""
    return f"{app.settings.prefix}:tests:started"


def release_key(name: str) -> str:
    """Redis list whose first element releases ``hold(name)``."""
    return f"{app.settings.prefix}:tests:release:{name}"


def _announce(name: str) -> None:
    app.broker.execute("RPUSH", started_key(), name)


@app.task
def hold(name: str, seconds: float = 20.0) -> str:
    """Announce, then block until released (``"released"``) or ``seconds`` pass."""
    _announce(name)
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        # Short blocking reads: each stays below the client's socket timeout.
        if app.broker.execute("BLPOP", release_key(name), min(left, 2.0)) is not None:
            return "released"
    return "expired"


@app.task(timeout_seconds=1)
def spin(name: str, n: int = 3 * 10**8) -> int:
    """Announce, then hold the GIL in one C call far past the 1 s limit."""
    _announce(name)
    return sum(range(n))


@app.task
def grind(name: str, n: int = 10**9) -> int:
    """Announce, then hold the GIL in one C call for many seconds (no time limit)."""
    _announce(name)
    return sum(range(n))

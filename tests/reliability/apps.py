"""The worker app of the fault-injection suite: ``taskq worker tests.reliability.apps:app``.

Redis, prefix and lease come from the environment (``TASKQ_REDIS_URL``, ``TASKQ_PREFIX``,
``TASKQ_LEASE_SECONDS``); the ledger directory from ``TASKQ_RELIABILITY_LEDGER``. Every
task writes ``start``/``finish`` ledger lines (:mod:`tests.reliability.ledger`) keyed by
its first argument, so the checker can tell what really ran, independently of Redis. The
long tasks also announce on :func:`started_key` that their body runs, for a test to block on.

The events stream is kept uncapped in practice (``events_maxlen``) so a test can read the
full history of every run afterwards and look for state regressions.
"""

from __future__ import annotations

import os
import time

import taskq
from tests.reliability import ledger

app = taskq.App(events_maxlen=1_000_000)


def started_key() -> str:
    """Redis list on which the long tasks announce that their body is running."""
    return f"{app.settings.prefix}:reliability:started"


def _announce(key: str) -> None:
    app.broker.execute("RPUSH", started_key(), key)


@app.task
def short(key: str, ms: float = 0.0) -> str:
    """A short task: sleeps ``ms`` milliseconds between its ledger lines."""
    token = ledger.start(key)
    if ms > 0:
        time.sleep(ms / 1000)
    ledger.finish(key, token)
    return key


@app.task
def long_sleep(key: str, seconds: float) -> str:
    """Sleeps ``seconds`` (GIL released) between its ledger lines."""
    token = ledger.start(key)
    _announce(key)
    time.sleep(seconds)
    ledger.finish(key, token)
    return key


@app.task
def spin(key: str, seconds: float) -> int:
    """A CPU-bound pure-Python loop holding the GIL for ``seconds`` (apart from switches)."""
    token = ledger.start(key)
    _announce(key)
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        for i in range(10_000):  # bytecode only: no call that releases the GIL
            n = (n * 31 + i) % 1_000_003
    ledger.finish(key, token)
    return n


@app.task(max_deliveries=3)
def kill_own_worker(key: str) -> None:
    """SIGKILLs the worker process that runs it, on every delivery (a poison task)."""
    ledger.start(key)
    os.kill(os.getpid(), 9)


@app.task(timeout_seconds=1, retries=1)
def blocked_in_c(key: str, seconds: float = 30.0) -> str:
    """Blocks in C (``time.sleep``) far longer than its 1 s ``timeout_seconds``."""
    token = ledger.start(key)
    _announce(key)
    time.sleep(seconds)
    ledger.finish(key, token)
    return key

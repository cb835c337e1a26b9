"""A worker app for tests that start real `taskq worker` processes.

It reads TASKQ_REDIS_URL and TASKQ_PREFIX from the environment the test sets.
"""

from __future__ import annotations

import hashlib
import os
import threading

import taskq

app = taskq.App()


@app.task
def record(i: int, ledger: str) -> int:
    """Append one line to a ledger file outside Redis (O_APPEND: one atomic write)."""
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{i} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    return i


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def die() -> None:
    """Kill the worker process running it, as a segfault or the OOM killer would."""
    os._exit(17)


# -- a flow fanning out to ledger-writing children (tests/integration/test_flow_faults.py) --

#: In a worker started with this set to N, child runs i >= N write their "start" line,
#: announce themselves on ``held_key()`` and then block until the process is killed.
HOLD_CHILDREN_FROM = "TASKQ_TEST_HOLD_CHILDREN_FROM"
#: In a worker started with this set, the flow body announces itself on ``held_key()``
#: and blocks (after enqueueing its children) until the process is killed.
HOLD_FLOW = "TASKQ_TEST_HOLD_FLOW"


def held_key() -> str:
    """Redis list on which held runs announce themselves (under the app's prefix)."""
    return f"{app.settings.prefix}:tests:held"


def _append(ledger: str, line: str) -> None:
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _hold(name: str) -> None:
    app.broker.execute("RPUSH", held_key(), name)
    threading.Event().wait()  # until SIGKILL


@app.task
def ledger_child(i: int, ledger: str) -> int:
    """Write "start <i> <pid>", do a little work, write "end <i> <pid>" (O_APPEND)."""
    _append(ledger, f"start {i} {os.getpid()}\n")
    hold_from = os.environ.get(HOLD_CHILDREN_FROM)
    if hold_from is not None and i >= int(hold_from):
        _hold(f"child {i}")
    digest = hashlib.sha256(str(i).encode() * 2000).digest()
    _append(ledger, f"end {i} {os.getpid()}\n")
    return i * i + digest[0] - digest[0]


@app.flow
def ledger_fan_out(n: int, ledger: str) -> int:
    """Fan out ``n`` ledger children, then gather: the sum of their squares."""
    futures = ledger_child.map(range(n), ledger=ledger)
    if os.environ.get(HOLD_FLOW):
        _hold("flow")
    return sum(f.result() for f in futures)


# -- runs that end every way, for the metrics test (tests/integration/test_metrics.py) --


@app.task
def boom() -> None:
    raise RuntimeError("boom")


@app.task(retries=1, retry_delay_seconds=0.1)
def flaky() -> str:
    """Fails its first attempt; its retry (through the delay queue) completes."""
    if taskq.context().attempt == 1:
        raise ValueError("first attempt fails")
    return "ok"


def _blpop(key: str) -> bytes:
    """One element of a Redis list, waited for (blocking reads of 5 s, a minute in all)."""
    for _ in range(12):
        got = app.broker.execute("BLPOP", key, 5)
        if got is not None:
            return bytes(got[1])
    raise TimeoutError(f"nothing on {key} within 60 s")


@app.task
def hold(key: str) -> int:
    """Say so on ``<key>:arrived`` (the pid), then wait for a token on ``<key>:go``."""
    app.broker.execute("RPUSH", f"{key}:arrived", os.getpid())
    _blpop(f"{key}:go")
    return os.getpid()

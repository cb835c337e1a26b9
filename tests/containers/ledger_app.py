"""The app the container tests' workers run (mounted into the image from tests/).

``record(key, hold)`` writes a ledger line when it starts and when it ends (the
reliability suite's ledger, :mod:`tests.reliability.ledger`), holding ``hold`` seconds
between them: the work whose loss or duplication the tests look for. Each container
writes under its own directory, ``$TASKQ_RELIABILITY_LEDGER/<container id>/``, so the
ledger names the container (pids repeat from one container to the next) and the
process as ``<container id>/<pid>.log``.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import taskq
from tests.reliability import ledger

app = taskq.App()  # TASKQ_REDIS_URL from the environment


def container_id() -> str:
    """This container's id, read from the bind mount of its /etc/hostname (the
    hostname itself is the host's under host networking); "host" outside a container."""
    with Path("/proc/self/mountinfo").open() as mounts:
        for line in mounts:
            m = re.search(r"/containers/([0-9a-f]{64})/hostname ", line)
            if m:
                return m.group(1)
    return "host"


_base = os.environ.get(ledger.LEDGER_ENV)
_cid = container_id()
if _base and os.path.basename(_base) != _cid:  # (a child process inherits it already set)
    _mine = os.path.join(_base, _cid)
    os.makedirs(_mine, exist_ok=True)
    os.environ[ledger.LEDGER_ENV] = _mine


@app.task
def record(key: str, hold: float = 0.0) -> str:
    """One ledger execution of ``key``; returns the pid that ran it."""
    token = ledger.start(key)
    if hold:
        time.sleep(hold)  # the task's own work, not a test waiting
    ledger.finish(key, token)
    return str(os.getpid())

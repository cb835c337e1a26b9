"""The worker's heartbeat file and ``taskq health``, the probe that reads it.

The supervisor of ``taskq worker --heartbeat-file PATH`` touches PATH about every
second while its loop runs. A probe only compares the file's age with a limit: it
needs neither Redis (a Redis outage must not get healthy workers restarted: they
reconnect on their own) nor the app, so it follows whatever app the worker runs.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger("taskq.health")

#: Seconds between two touches of the heartbeat file.
HEARTBEAT_INTERVAL = 1.0


class Heartbeat:
    """Touches ``path`` at most every :data:`HEARTBEAT_INTERVAL` seconds.

    Args:
        path: The heartbeat file; created if missing.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._last = float("-inf")
        self._failing = False

    def beat(self) -> None:
        """Touch the file if the last touch is an interval old; never raises."""
        now = time.monotonic()
        if now - self._last < HEARTBEAT_INTERVAL:
            return
        self._last = now
        try:
            self.path.touch()
            os.utime(self.path)  # touch() leaves an existing file's mtime on some systems
        except OSError as exc:
            if not self._failing:  # once, not every second
                log.warning("cannot touch heartbeat file %s: %s", self.path, exc)
            self._failing = True
        else:
            self._failing = False

    def remove(self) -> None:
        """Delete the file (a stopped worker is not healthy)."""
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot remove heartbeat file %s: %s", self.path, exc)


def check(path: str | os.PathLike[str], max_age: float) -> tuple[bool, str]:
    """Whether the heartbeat at ``path`` is fresher than ``max_age`` seconds, and a line
    saying so."""
    try:
        age = time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
        return False, f"no heartbeat file {path} (is a worker running with --heartbeat-file?)"
    except OSError as exc:
        return False, f"cannot read heartbeat file {path}: {exc}"
    age = max(0.0, age)
    if age > max_age:
        return False, f"heartbeat {path} is {age:.1f} s old (more than {max_age:g} s)"
    return True, f"heartbeat {path} is {age:.1f} s old"

"""A real ``taskq worker`` pool for integration tests, watched through its log output.

The pool runs in its own session (so a test may signal its whole process group, as a
terminal's Ctrl-C does); a reader thread collects its output lines, which a test waits
on with a condition, never a sleep.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


class Pool:
    """``taskq worker APP --log-level INFO *args`` as a subprocess.

    Args:
        env: Its environment (TASKQ_REDIS_URL, TASKQ_PREFIX, PYTHONPATH).
        args: More CLI arguments (``--processes``, ``--grace``, ...).
        app_spec: The app it runs.
    """

    def __init__(
        self, env: dict[str, str], args: Sequence[str], app_spec: str = "tests.pool_apps:app"
    ) -> None:
        cmd = [sys.executable, "-m", "taskq", "worker", app_spec, "--log-level", "INFO", *args]
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._eof = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def wait_line(self, match: Callable[[str], bool], timeout: float = 60.0) -> str:
        """Block until an output line matches; fail the test after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        i = 0
        with self._cond:
            while True:
                for line in self.lines[i:]:
                    if match(line):
                        return line
                i = len(self.lines)
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    pytest.fail(f"no matching pool output line:\n{self.output()}")
                self._cond.wait(left)

    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def workers(self) -> list[int]:
        """Pids of the supervisor's worker processes (not multiprocessing's resource tracker)."""
        try:
            raw = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        except OSError:
            return []
        out = []
        for pid in map(int, raw.split()):
            with contextlib.suppress(OSError):
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    out.append(pid)
        return out

    def close(self) -> None:
        """Stop the pool: SIGTERM twice (no grace), then SIGKILL its process group."""
        if self.proc.poll() is None:
            for _ in range(2):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(1)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)  # its own session: only what it started
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self._reader.join(timeout=10)


def alive(pid: int) -> bool:
    """Whether a process (not yet reaped, or not ours) exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


def wait_gone(pids: Sequence[int], timeout: float) -> list[int]:
    """Wait (polling, bounded) for processes to exit; the pids still alive after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in pids if alive(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)

"""Small helpers shared by ``bench.run`` and the measurement modules it calls.

Kept apart from ``bench/run.py`` so that ``bench.lateness`` and ``bench.flows`` need not
import the runner (which imports them).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Protocol

import redis

import taskq

ROOT = Path(__file__).resolve().parent.parent
QUEUE = "default"

#: Worker log lines expected on the bench's private server (it runs without persistence).
BENIGN_LOG = ("has appendonly no",)


class BenignFilter(logging.Filter):
    """Drops the log records in :data:`BENIGN_LOG` (for in-process workers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(b in record.getMessage() for b in BENIGN_LOG)


BENIGN_FILTER = BenignFilter()


def quiet_benign_logs() -> None:
    """Hide :data:`BENIGN_LOG` records of in-process workers (idempotent)."""
    worker_log = logging.getLogger("taskq.worker")
    if BENIGN_FILTER not in worker_log.filters:
        worker_log.addFilter(BENIGN_FILTER)


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def taskq_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("taskq")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "from taskq.cli import main; main()"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summarize_log(text: str) -> dict[str, int]:
    """Worker log lines grouped by message with ids and numbers blanked out.

    Lines in :data:`BENIGN_LOG` (expected on the private server) are left out.
    """
    out: dict[str, int] = {}
    for line in text.splitlines():
        if not line.strip() or any(b in line for b in BENIGN_LOG):
            continue
        msg = re.sub(r"^\S+ \S+ \d+ ", "", line)  # date, time, pid
        msg = re.sub(r"\brun \S+", "run #", msg)  # run ids (16 random characters)
        msg = re.sub(r"b'[^']*'|\b[0-9a-f-]{6,}\b|\d+", "#", msg)
        out[msg] = out.get(msg, 0) + 1
    return out


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            say(f"  process {proc.pid} ignored SIGTERM for 60 s; killing it")
            proc.kill()
            proc.wait()


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its live descendants so far, from ``/proc``.

    For a pool that is still running (``getrusage(RUSAGE_CHILDREN)`` only counts
    children that have exited). NaN where ``/proc`` is not available.
    """
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return math.nan
    for name in entries:
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        # fields[0] is the state (field 3); ppid is field 4, utime 14, stime 15.
        parent[int(name)] = int(fields[1])
        cpu[int(name)] = (int(fields[11]) + int(fields[12])) / tick
    if pid not in cpu:
        return math.nan
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += cpu.get(p, 0.0)
        todo += [c for c, pp in parent.items() if pp == p]
    return total


class WorkerPool:
    """A non-burst ``taskq worker bench.tasks:app`` subprocess on one key prefix.

    Use as a context manager; :attr:`log` holds its summarized stderr after exit.
    """

    def __init__(self, url: str, prefix: str, processes: int, concurrency: int = 8) -> None:
        self.url = url
        self.prefix = prefix
        self.processes = processes
        self.concurrency = concurrency
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: dict[str, int] = {}
        self.returncode: int | None = None
        self._logfile: IO[bytes] | None = None

    def __enter__(self) -> WorkerPool:
        env = {**os.environ, "TASKQ_PREFIX": self.prefix, "TASKQ_REDIS_URL": self.url}
        cmd = [
            *taskq_cmd(),
            "worker",
            "bench.tasks:app",
            "--processes",
            str(self.processes),
            "--concurrency",
            str(self.concurrency),
            "--redis-url",
            self.url,
            "--log-level",
            "WARNING",
        ]
        self._logfile = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=self._logfile, stderr=subprocess.STDOUT
        )
        return self

    def cpu_seconds(self) -> float:
        """CPU used so far by the supervisor and its worker processes."""
        return math.nan if self.proc is None else tree_cpu_seconds(self.proc.pid)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.returncode = self.proc.returncode
        if self._logfile is not None:
            self._logfile.seek(0)
            text = self._logfile.read().decode(errors="replace")
            self._logfile.close()
            self.log = summarize_log(text)
            if self.returncode not in (0, -signal.SIGTERM, None):
                say(f"  worker pool exit {self.returncode}:\n{text[-2000:]}")


#: Commands the bench's own task sends (never counted as script-internal).
TASK_COMMANDS = {"zadd", "incrby", "incr"}


@functools.cache
def script_commands() -> frozenset[str]:
    """Redis commands called from inside taskq's Lua scripts, read from the .lua files.

    INFO commandstats counts those on their own AND inside EVALSHA's time, so they are
    left out of per-run totals (commands the bench task sends itself excepted).
    """
    names: set[str] = set()
    for path in (Path(taskq.__file__).parent / "scripts").glob("*.lua"):
        text = path.read_text()
        names.update(re.findall(r"redis\.p?call\(\s*'([A-Za-z]+)'", text))
        names.update(re.findall(r"\{'([A-Z]+)',", text))
    return frozenset(n.lower() for n in names) - TASK_COMMANDS


class BenchLike(Protocol):
    """What the measurement modules use of ``bench.run.Bench``."""

    url: str
    r: redis.Redis
    sizes: Any

    def fresh(self, tag: str) -> str: ...

    def redis_cpu(self) -> float: ...

    def commandstats(self) -> dict[str, tuple[int, int]]: ...


def server_ms(r: redis.Redis) -> int:
    """The server's clock (Redis TIME) in ms, as the scripts compute it."""
    sec, usec = r.time()
    return int(sec) * 1000 + int(usec) // 1000


def entry_ms(entry_id: bytes | str) -> int:
    """The millisecond part of a stream entry id (server time of the XADD)."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.partition("-")[0])


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has been busy (all processes), from ``/proc/stat``."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return math.nan
    # cpu user nice system idle iowait irq softirq steal ...
    busy = sum(int(first[i]) for i in (1, 2, 3, 6, 7, 8) if i < len(first))
    return busy / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU of this process and its children that have exited (worker pools)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

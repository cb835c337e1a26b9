"""The worker app for the Redis-, network- and input-fault tests, and the harness that runs it.

Worker processes run it with ``python -m taskq worker tests.reliability.netapps:app``.
Redis, prefix and lease come from ``TASKQ_REDIS_URL``, ``TASKQ_PREFIX`` and
``TASKQ_LEASE_SECONDS``; socket timeout and blocking-read length from
``TASKQ_NET_SOCKET_TIMEOUT`` / ``TASKQ_NET_BLOCK_SECONDS``; the ledger file from
``TASKQ_NET_LEDGER``. The ``work`` task appends ``<key> <pid>`` to the ledger with one
``O_APPEND`` write per execution, so executions are counted outside Redis.

The harness half (:class:`Pool`, :func:`cpu_seconds`, ...) is used by the tests only.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import redis

import taskq
from taskq.message import Message, encode_message

ROOT = Path(__file__).parents[2]
APP_SPEC = "tests.reliability.netapps:app"

#: ``TASKQ_RELIABILITY=full`` selects the full sizes; anything else the reduced ones.
FULL = os.environ.get("TASKQ_RELIABILITY", "").strip().lower() == "full"


def size(reduced: int, full: int) -> int:
    return full if FULL else reduced


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    return float(raw) if raw else default


app = taskq.App(
    events_maxlen=1_000_000,  # keep every transition: the tests read whole histories
    socket_timeout=_env_float("TASKQ_NET_SOCKET_TIMEOUT", 10.0),
    block_seconds=_env_float("TASKQ_NET_BLOCK_SECONDS", 2.0),
)

LEDGER_ENV = "TASKQ_NET_LEDGER"


@app.task
def work(key: str, ms: float = 0.0) -> str:
    """Record one execution of ``key`` in the ledger, then take ``ms`` milliseconds."""
    fd = os.open(os.environ[LEDGER_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{key} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    if ms > 0:
        time.sleep(ms / 1000)
    return key


# -- harness ------------------------------------------------------------------------------


def read_ledger(path: Path) -> tuple[Counter[str], Counter[str]]:
    """``(executions per key, executions per pid)`` written to the ledger so far."""
    keys: Counter[str] = Counter()
    pids: Counter[str] = Counter()
    if path.exists():
        for line in path.read_text().splitlines():
            key, pid = line.split()
            keys[key] += 1
            pids[pid] += 1
    return keys, pids


def worker_env(redis_url: str, prefix: str, ledger: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, TASKQ_REDIS_URL=redis_url, TASKQ_PREFIX=prefix)
    env[LEDGER_ENV] = str(ledger)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [extra.pop("PYTHONPATH", ""), os.environ.get("PYTHONPATH")])]
    )
    env.update(extra)
    return env


_CONSUMING = re.compile(r"^\S+ \S+ (\d+) taskq\.worker INFO worker \S+ consuming")


class Pool:
    """One ``taskq worker`` supervisor (a real subprocess) and what it prints.

    Args:
        env: Its environment (see :func:`worker_env`).
        processes: ``--processes``.
        concurrency: ``--concurrency``.
        name: A label for the printed figures.
    """

    def __init__(
        self, env: dict[str, str], *, processes: int = 1, concurrency: int = 4, name: str = "pool"
    ) -> None:
        self.name = name
        self.processes = processes
        self.lines: list[str] = []
        self.worker_pids: list[int] = []
        self._cond = threading.Condition()
        cmd = [sys.executable, "-m", "taskq", "worker", APP_SPEC]
        cmd += ["--processes", str(processes), "--concurrency", str(concurrency)]
        cmd += ["--log-level", "INFO", "--grace", "5"]
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"{name}-stderr", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                m = _CONSUMING.match(line)
                if m:
                    self.worker_pids.append(int(m.group(1)))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_ready(self, timeout: float = 60.0) -> list[int]:
        """Block until every worker process announced it is consuming; their pids."""
        with self._cond:
            ok = self._cond.wait_for(
                lambda: len(self.worker_pids) >= self.processes or self.proc.poll() is not None,
                timeout,
            )
            if not ok or len(self.worker_pids) < self.processes:
                tail = "\n".join(self.lines[-30:])
                raise AssertionError(f"{self.name} did not start:\n{tail}")
            return list(self.worker_pids)

    def matching(self, pattern: str) -> list[str]:
        with self._cond:
            return [line for line in self.lines if pattern in line]

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM the supervisor (it stops its workers) and wait; its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        self._reader.join(10)
        return code

    def tail(self, n: int = 40) -> str:
        with self._cond:
            return "\n".join(self.lines[-n:])


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by processes ``pids`` (from /proc/<pid>/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / ticks


QUEUE = "default"


def payload(run_id: str, ms: float = 0.0) -> bytes:
    """The stream payload of one run of :func:`work` keyed by its own run id."""
    return encode_message(Message(run_id, work.name, [run_id], {"ms": ms} if ms else {}))


def enqueue(producer: taskq.App, run_ids: list[str], ms: float = 0.0) -> None:
    """Enqueue runs of :func:`work` (client-made ids) in one bulk call."""
    producer.broker.producer.enqueue(QUEUE, [(rid, payload(rid, ms), "") for rid in run_ids])


def wait_all(producer: taskq.App, run_ids: list[str], timeout: float) -> list[str]:
    """Block (on Redis) until every run has an outcome or ``timeout`` passed; the unfinished."""
    deadline = time.monotonic() + timeout
    return [
        rid
        for rid in run_ids
        if producer.broker.producer.wait_result(QUEUE, rid, max(0.0, deadline - time.monotonic()))
        is None
    ]


def history(client: redis.Redis, producer: taskq.App) -> tuple[Counter[str], list[int]]:
    """From the events stream: per run id, how many enqueue events (``Pending`` without an
    attempt: one per stream entry the enqueue script added); and the server-ms stamps
    of every ``Running``/``Retrying`` transition."""
    enqueued: Counter[str] = Counter()
    running: list[int] = []
    for eid, fields in client.xrange(producer.keys.events(QUEUE)):
        state = fields.get(b"s")
        if state == b"Pending" and b"a" not in fields:
            for rid in fields[b"r"].decode().split(" "):  # one event per enqueue call
                enqueued[rid] += 1
        elif state in (b"Running", b"Retrying"):
            running.append(int(eid.split(b"-")[0]))
    return enqueued, running


def server_ms(client: redis.Redis) -> int:
    secs, micros = client.time()
    return int(secs) * 1000 + int(micros) // 1000

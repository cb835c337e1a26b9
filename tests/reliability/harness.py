"""Support for the process-fault scenarios: worker pools as real processes, Redis readers,
scenario sizes and the figures every scenario prints (and, in a full run, records).

Nothing here sleeps to wait for work: pools are watched through their log output (a
reader thread per pool, waited on with a condition), runs through blocking reads of the
events stream.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from taskq.events import Event, read_events
from taskq.protocol import split_event
from taskq.testing import RedisServerFactory
from tests.reliability import apps, ledger

ROOT = Path(__file__).parents[2]
APP_SPEC = "tests.reliability.apps:app"
#: Where a full run writes its figures (``TASKQ_RELIABILITY_RESULTS`` overrides it).
RESULTS = Path(
    os.environ.get("TASKQ_RELIABILITY_RESULTS") or Path(__file__).with_name("RESULTS.md")
)
RESULTS_SECTION = "## Process faults (test_process_faults.py)"

#: ``TASKQ_RELIABILITY=full`` selects the full sizes; anything else the reduced (CI) ones.
FULL = os.environ.get("TASKQ_RELIABILITY", "").strip().lower() == "full"


def size(reduced: Any, full: Any) -> Any:
    """The reduced value, or the full one under ``TASKQ_RELIABILITY=full``."""
    return full if FULL else reduced


def seed() -> int:
    """The random seed of a scenario: ``TASKQ_RELIABILITY_SEED`` or a fresh one (printed)."""
    raw = os.environ.get("TASKQ_RELIABILITY_SEED")
    return int(raw) if raw else random.SystemRandom().randrange(1 << 31)


# -- a private Redis and the environment of one scenario ----------------------------------


@dataclass
class Scenario:
    """One scenario's private prefix, ledger directory, worker environment and Redis."""

    url: str
    prefix: str
    lease: float
    ledger_dir: Path
    env: dict[str, str]
    client: redis.Redis
    queue: str = "default"
    pools: list[Pool] = field(default_factory=list)

    def pool(self, name: str, **kwargs: Any) -> Pool:
        p = Pool(name, self.env, self.ledger_dir.parent, **kwargs)
        self.pools.append(p)
        return p

    # Redis views -----------------------------------------------------------------------

    def key(self, what: str) -> str:
        return f"{self.prefix}:{{{self.queue}}}:{what}"

    def server_ms(self) -> int:
        sec, usec = self.client.time()
        return int(sec) * 1000 + int(usec) // 1000

    def records(self, run_ids: Sequence[str]) -> list[dict[str, str]]:
        """``HGETALL`` of each run record, pipelined, decoded."""
        out: list[dict[str, str]] = []
        for i in range(0, len(run_ids), 1000):
            pipe = self.client.pipeline(transaction=False)
            for rid in run_ids[i : i + 1000]:
                pipe.hgetall(self.key(f"run:{rid}"))
            out += [{k.decode(): v.decode() for k, v in r.items()} for r in pipe.execute()]
        return out

    def histories(self) -> dict[str, list[tuple[int, str, dict[str, str]]]]:
        """Every event of the queue by run id: ``(server ms, state, fields)``, oldest first."""
        out: dict[str, list[tuple[int, str, dict[str, str]]]] = defaultdict(list)
        last = "-"
        while True:
            batch = self.client.xrange(self.key("events"), min=last, count=5000)
            if last != "-":
                batch = batch[1:]
            if not batch:
                return out
            for eid, raw in batch:
                entry = {k.decode(): v.decode() for k, v in raw.items()}
                for f in split_event(entry):  # a batch entry tells several runs
                    out[f.get("r", "")].append((int(eid.split(b"-")[0]), f.get("s", ""), f))
            last = batch[-1][0].decode()

    def wait_final(self, run_ids: Iterable[str], timeout: float, after: str = "0-0") -> str:
        """Block on the events stream until every run reached a final state; return the
        last event id read. Fails the test after ``timeout`` seconds."""
        waiting = set(run_ids)
        deadline = time.monotonic() + timeout
        broker = apps.app.broker
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(
                    f"{len(waiting)} run(s) not final after {timeout} s: {sorted(waiting)[:5]}"
                )
            for ev in read_events(broker, self.queue, after, 5000, block=min(left, 2.0)):
                after = ev.id
                if ev.state in ledger.FINAL_STATES:
                    waiting.discard(ev.run_id)
        return after

    def wait_event(
        self, match: Callable[[Event], bool], timeout: float, after: str = "0-0"
    ) -> Event:
        """Block on the events stream until an event matches; fail after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            for ev in read_events(apps.app.broker, self.queue, after, 1000, block=min(left, 2.0)):
                after = ev.id
                if match(ev):
                    return ev
        pytest.fail(f"no matching event within {timeout} s")

    def wait_started(self, n: int, timeout: float = 60.0) -> list[str]:
        """Block until ``n`` more long task bodies announced they run; their keys."""
        keys: list[str] = []
        deadline = time.monotonic() + timeout
        while len(keys) < n:
            left = deadline - time.monotonic()
            got = self.client.blpop([apps.started_key()], timeout=max(left, 0.01))
            if got is None:
                pytest.fail(f"only {len(keys)} of {n} task bodies started within {timeout} s")
            keys.append(got[1].decode())
        return keys

    def queue_sizes(self) -> tuple[int, int]:
        return apps.app.broker.inspect.queue_sizes(self.queue)

    def drain(self) -> str:
        """Run a burst worker pool (one process) until the queues are drained; its output."""
        proc = subprocess.run(
            [*worker_cmd(1, 4), "--burst"],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout + proc.stderr


@pytest.fixture
def scenario_factory(
    redis_server_factory: RedisServerFactory, tmp_path: Path
) -> Iterator[Callable[[float], Scenario]]:
    """``make(lease)``: a fresh private redis-server, prefix and ledger for one scenario.

    Every pool started through the scenario is stopped (its whole process group killed
    if it will not stop) when the test ends.
    """
    made: list[Scenario] = []

    def make(lease: float) -> Scenario:
        server = redis_server_factory()
        prefix = f"taskq-rel-{uuid.uuid4().hex[:8]}"
        ledger_dir = tmp_path / "ledger"
        ledger_dir.mkdir()
        env = dict(
            os.environ,
            TASKQ_REDIS_URL=server.url,
            TASKQ_PREFIX=prefix,
            TASKQ_LEASE_SECONDS=str(lease),
            PYTHONPATH=str(ROOT),
        )
        env[ledger.LEDGER_ENV] = str(ledger_dir)
        apps.app.configure(redis_url=server.url, prefix=prefix, lease_seconds=lease)
        sc = Scenario(server.url, prefix, lease, ledger_dir, env, redis.Redis.from_url(server.url))
        made.append(sc)
        return sc

    yield make
    for sc in made:
        for p in sc.pools:
            p.close()
        sc.client.close()
    apps.app.close()


# -- worker pools -------------------------------------------------------------------------


def worker_cmd(processes: int, concurrency: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "taskq",
        "worker",
        APP_SPEC,
        "--processes",
        str(processes),
        "--concurrency",
        str(concurrency),
    ]


class Pool:
    """A ``taskq worker`` supervisor in a session of its own, its output read by a thread.

    Args:
        name: For messages.
        env: The worker environment.
        logdir: Where the pool's output is also copied (``<name>.log``), for post-mortems.
        processes, concurrency, grace: The CLI options.
    """

    def __init__(
        self,
        name: str,
        env: dict[str, str],
        logdir: Path,
        *,
        processes: int = 1,
        concurrency: int = 4,
        grace: float | None = None,
    ) -> None:
        self.name = name
        cmd = [*worker_cmd(processes, concurrency), "--log-level", "INFO"]
        if grace is not None:
            cmd += ["--grace", str(grace)]
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
        self._copy = (logdir / f"{name}.log").open("w")
        self._reader = threading.Thread(target=self._read, name=f"pool-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._copy.write(line)
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    # Output ----------------------------------------------------------------------------

    def wait_line(self, match: Callable[[str], bool], timeout: float, start: int = 0) -> str:
        """Block until an output line (from index ``start``) matches; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            i = start
            while True:
                while i < len(self.lines):
                    if match(self.lines[i]):
                        return self.lines[i]
                    i += 1
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    tail = "\n".join(self.lines[-20:])
                    pytest.fail(f"pool {self.name}: no matching line within {timeout} s:\n{tail}")
                self._cond.wait(left)

    def count(self, text: str) -> int:
        with self._cond:
            return sum(text in ln for ln in self.lines)

    def consuming_pids(self) -> set[int]:
        """Pids of worker processes that logged that they are consuming."""
        with self._cond:
            return {int(ln.split()[2]) for ln in self.lines if " consuming [" in ln}

    def wait_consuming(self, n: int = 1, timeout: float = 60.0) -> set[int]:
        """Block until ``n`` live worker processes of this pool are consuming."""
        deadline = time.monotonic() + timeout
        while True:
            live = self.consuming_pids() & set(self.workers())
            if len(live) >= n:
                return live
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"pool {self.name}: {len(live)} of {n} worker(s) consuming")
            with self._cond:
                seen = len(self.lines)
                self._cond.wait_for(
                    lambda seen=seen: len(self.lines) > seen or self._eof, min(left, 1.0)
                )

    # Processes -------------------------------------------------------------------------

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

    def signal_supervisor(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def close(self) -> None:
        """Stop the pool: SIGTERM, then SIGKILL its process group if it lingers."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(20)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)  # its own session: only what it started
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self._reader.join(timeout=10)
        self._copy.close()


# -- figures ------------------------------------------------------------------------------


class Figures:
    """Figures of every scenario in the session: printed at once, written to RESULTS.md at
    the end of a full run (``TASKQ_RELIABILITY=full``) as one section of that file.

    A scenario calls :meth:`record` before its assertions and :meth:`passed` after them,
    so a failed scenario's figures are written too, marked as such."""

    def __init__(self) -> None:
        self.blocks: dict[str, list[str]] = {}
        self.status: dict[str, str] = {}

    def record(self, scenario: str, figures: dict[str, Any]) -> None:
        lines = [f"{k}: {_fmt(v)}" for k, v in figures.items()]
        print(f"\n[{scenario}]\n  " + "\n  ".join(lines))
        self.blocks[scenario] = lines
        self.status[scenario] = "FAILED (an assertion did not hold)"

    def passed(self, scenario: str, status: str = "passed") -> None:
        self.status[scenario] = status

    def write(self) -> None:
        if not self.blocks:
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        body = [
            RESULTS_SECTION,
            "",
            f"Full run of {stamp} on {os.cpu_count()} cores against taskq {_revision()}:",
            "`TASKQ_RELIABILITY=full .venv/bin/pytest tests/reliability -m reliability`.",
            "",
        ]
        for scenario, lines in self.blocks.items():
            body += [f"### {scenario}: {self.status[scenario]}", ""]
            body += [f"- {ln}" for ln in lines] + [""]
        old = RESULTS.read_text() if RESULTS.exists() else "# Reliability suite: recorded results\n"
        RESULTS.write_text(_replace_section(old, RESULTS_SECTION, "\n".join(body)))


def _revision() -> str:
    """``<commit>`` of the code under test, ``+ uncommitted changes`` when taskq/ is dirty
    (``TASKQ_RELIABILITY_REVISION`` overrides it, e.g. for a run from an exported tree)."""
    if os.environ.get("TASKQ_RELIABILITY_REVISION"):
        return os.environ["TASKQ_RELIABILITY_REVISION"]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "taskq"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "(unknown revision)"
    return f"{head or '(no git)'}{' + uncommitted changes in taskq/' if dirty else ''}"


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _replace_section(text: str, heading: str, section: str) -> str:
    """``text`` with the ``## heading`` section replaced by ``section`` (or appended)."""
    lines = text.rstrip("\n").split("\n")
    if heading in lines:
        i = lines.index(heading)
        j = next((k for k in range(i + 1, len(lines)) if lines[k].startswith("## ")), len(lines))
        lines[i:j] = section.rstrip("\n").split("\n") + ([""] if j < len(lines) else [])
    else:
        lines += ["", *section.rstrip("\n").split("\n")]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def figures() -> Iterator[Figures]:
    """The session's figures; written to RESULTS.md at the end of a full run."""
    f = Figures()
    yield f
    if FULL:
        f.write()

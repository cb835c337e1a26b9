"""One measured drain for ``bench.scale``: enqueue, a burst pool, CPU, read-back.

Also the bare redis-py consumer it is compared with, and access to the bench's app
(``bench.scale_tasks``), which is imported once the partition count is known.
"""

from __future__ import annotations

import importlib
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from time import perf_counter
from types import ModuleType

import redis

from bench import servers
from bench.common import ROOT, busy_cpu_seconds, say, summarize_log, taskq_cmd
from bench.run import bare_pipeline_xadd, sample_payload
from taskq.protocol import RecordField, started_field

#: Runs per ``map`` call (and per pipeline when reading records back).
CHUNK = 10_000
#: Bare consumer's batch, as in ``bench.run``.
BARE_BATCH = 100
#: A pool that has not drained by then is stuck (the bench reports it and goes on).
POOL_TIMEOUT = 900


@dataclass
class Layout:
    """Where a set-up's runs go.

    Attributes:
        name: As the report shows it.
        queues: The queues underneath (a partitioned queue: its partitions).
        consume: What ``taskq worker -Q`` is given.
        enqueue: Enqueues ``n`` runs; returns nothing (the streams are counted after).
        note: How the layout is made (emulation, hash tags), for the report.
    """

    name: str
    queues: list[str]
    consume: list[str]
    enqueue: Callable[[int], None]
    note: str = ""


@dataclass
class Drain:
    """One pool's drain (``n == 0``: an empty queue, the pool's start-up cost)."""

    setup: str
    processes: int
    n: int
    completed: int = 0
    pool_wall_s: float = 0.0
    to_drained_s: float = float("nan")
    window_s: float = float("nan")
    worker_cpu_s: float = 0.0
    redis_cpu_s: list[float] = field(default_factory=list)
    redis_info_cpu_s: list[float] = field(default_factory=list)
    entries: list[int] = field(default_factory=list)
    machine_busy_s: float = float("nan")
    returncode: int = 0
    log: dict[str, int] = field(default_factory=dict)
    idle: Drain | None = None


@dataclass
class Bare:
    """The bare redis-py consumer on one node."""

    n: int
    done: int
    wall_s: float
    client_cpu_s: float
    redis_cpu_s: float


def load_tasks(partitions: int) -> ModuleType:
    """Import ``bench.scale_tasks`` with the hot queue split ``partitions`` ways.

    Its app reads ``TASKQ_PARTITIONS`` when it is built, at import, as in every worker
    process (which inherit the variable), so the variable is set first.
    """
    os.environ["TASKQ_PARTITIONS"] = f"hot={partitions}"
    return importlib.import_module("bench.scale_tasks")


def tasks() -> ModuleType:
    """``bench.scale_tasks``, once :func:`load_tasks` has imported it."""
    return sys.modules["bench.scale_tasks"]


def fresh(s: servers.Setup, tag: str, lay: Layout) -> str:
    """Empty every master and point the bench's app at a new prefix; the prefix."""
    for c in s.clients():
        c.flushall()
        c.close()
    prefix = f"s{time.monotonic_ns() % 10**9}-{tag}"
    tasks().app.configure(redis_url=s.url, prefix=prefix)
    return prefix


def entries_per_master(s: servers.Setup, lay: Layout) -> list[int]:
    """Stream entries (= runs enqueued) on each master, counted where they live."""
    keys = tasks().app.keys
    counts = [0] * len(s.ports)
    clients = s.clients()
    for q in lay.queues:
        i = s.master_of(keys.stream(q))
        counts[i] += int(clients[i].xlen(keys.stream(q)))
    for c in clients:
        c.close()
    return counts


def drain(s: servers.Setup, lay: Layout, processes: int, concurrency: int, n: int) -> Drain:
    """Enqueue ``n`` runs, run one burst pool to the end, measure it."""
    prefix = fresh(s, f"{processes}p", lay)
    lay.enqueue(n)
    tasks().app.close()
    d = Drain(lay.name, processes, n, entries=entries_per_master(s, lay))
    env = {
        **os.environ,
        "TASKQ_PREFIX": prefix,
        "TASKQ_REDIS_URL": s.url,
    }
    cmd = [*taskq_cmd(), "worker", "bench.scale_tasks:app", "-Q", ",".join(lay.consume)]
    cmd += ["--processes", str(processes), "--concurrency", str(concurrency)]
    cmd += ["--burst", "--log-level", "WARNING"]
    clients = s.clients()
    for c in clients:
        c.config_resetstat()
    info0 = [info_cpu(c) for c in clients]
    proc0 = [servers.proc_cpu_seconds(pid) for pid in s.pids]
    busy0, ru0 = busy_cpu_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    t0_epoch, t0 = time.time(), perf_counter()
    done = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=POOL_TIMEOUT, check=False
    )
    d.pool_wall_s = perf_counter() - t0
    ru1, d.machine_busy_s = resource.getrusage(resource.RUSAGE_CHILDREN), busy_cpu_seconds() - busy0
    d.worker_cpu_s = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
    d.redis_cpu_s = [
        servers.proc_cpu_seconds(pid) - c0 for pid, c0 in zip(s.pids, proc0, strict=True)
    ]
    d.redis_info_cpu_s = [info_cpu(c) - c0 for c, c0 in zip(clients, info0, strict=True)]
    d.returncode, d.log = done.returncode, summarize_log(done.stderr)
    if done.returncode != 0:
        say(f"  worker pool exit {done.returncode}; stderr tail:\n{done.stderr[-2000:]}")
    if n:
        first, last, d.completed = read_back(s, lay, clients)
        d.window_s = last - first
        d.to_drained_s = last - t0_epoch
        if d.completed != n:
            say(f"  WARNING: {d.completed:,} of {n:,} runs Completed after the drain")
    for c in clients:
        c.close()
    return d


def info_cpu(c: redis.Redis) -> float:
    """The server's own CPU seconds (INFO cpu: used_cpu_user + used_cpu_sys)."""
    info = c.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def read_back(
    s: servers.Setup, lay: Layout, clients: list[redis.Redis]
) -> tuple[float, float, int]:
    """(earliest start, latest finish, runs Completed), server clock, in epoch seconds.

    A run's record holds its start (``t1``, server ms); a queue's last event is its
    last finish. Read on each run's own master, in pipelines, after the drain.
    """
    keys = tasks().app.keys
    first, last, completed = float("inf"), 0.0, 0
    for q in lay.queues:
        c = clients[s.master_of(keys.stream(q))]
        tail = c.xrevrange(keys.events(q), count=1)
        if tail:
            last = max(last, int(tail[0][0].split(b"-")[0]) / 1000)
        for batch in record_keys(c, keys.run(q, "*")):
            pipe = c.pipeline(transaction=False)
            for k in batch:
                pipe.hmget(k, RecordField.STATE, started_field(1))
            for state, t1 in pipe.execute():
                completed += state == b"Completed"
                if t1 is not None:
                    first = min(first, int(t1) / 1000)
    return first, last, completed


def record_keys(c: redis.Redis, pattern: str) -> Iterator[list[bytes]]:
    """The run record keys matching ``pattern`` on one node, in batches."""
    batch: list[bytes] = []
    for k in c.scan_iter(match=pattern, count=CHUNK):
        batch.append(k)
        if len(batch) == CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


def bare(s: servers.Setup, n: int) -> Bare:
    """The bare ceiling: one redis-py consumer over ``n`` pre-added entries, no task."""
    r = redis.Redis.from_url(s.url)
    r.flushall()
    stream, group = "bare:drain", "g"
    payload = sample_payload(tasks().noop, (12_345,))
    bare_pipeline_xadd(r, stream, payload, n, 1_000)
    r.xgroup_create(stream, group, id="0")
    cpu0, ru0 = info_cpu(r), resource.getrusage(resource.RUSAGE_SELF)
    done, t0 = 0, perf_counter()
    while True:
        reply = r.xreadgroup(group, "c", {stream: ">"}, count=BARE_BATCH)
        if not reply or not reply[0][1]:
            break
        ids = [eid for eid, _ in reply[0][1]]
        pipe = r.pipeline(transaction=False)
        pipe.xack(stream, group, *ids)
        pipe.xdel(stream, *ids)
        pipe.execute()
        done += len(ids)
    wall = perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    client = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
    result = Bare(n, done, wall, client, info_cpu(r) - cpu0)
    r.close()
    return result


@dataclass(frozen=True)
class Params:
    """What to measure; every size is a parameter so a bigger machine runs bigger."""

    processes: tuple[int, ...] = (1, 2, 4)
    masters: int = 3
    queues: int = 8
    partitions: int = 8
    runs: int = 80_000
    concurrency: int = 8
    reps: int = 2
    setups: tuple[str, ...] = ("single", "queues", "partitions")


@dataclass
class SetupResult:
    """Every drain of one set-up, and how it was laid out."""

    name: str
    layout: Layout
    setup: servers.Setup
    drains: list[Drain] = field(default_factory=list)
    bare: list[Bare] = field(default_factory=list)
    slots: dict[str, int] = field(default_factory=dict)
    redis_version: str = "?"

"""taskq side by side with bare redis-py doing the same Redis operations.

Usage::

    .venv/bin/python -m bench.run            # full run, a few minutes
    .venv/bin/python -m bench.run --quick    # ~10x smaller N, a smoke run

Everything runs in ONE process tree against ONE private ``redis-server``
(:class:`taskq.localredis.LocalRedis` on a free loopback port; the shared Redis on
6379 is never touched). The private server is FLUSHALLed and a fresh key prefix is
used before every measurement. Each figure is the best (rates) or the median
(latency, bytes) of three repetitions, taskq and bare interleaved. The results,
plus cProfile breakdowns of single submit and of a 1-process drain, are written
to ``bench/RESULTS.md`` (overwritten).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import math
import os
import platform
import pstats
import resource
import signal
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

import msgpack
import redis

import taskq
from bench import flows, lateness, tasks
from bench.common import (
    QUEUE,
    ROOT,
    busy_cpu_seconds,
    own_cpu_seconds,
    percentile,
    say,
    script_commands,
    stop,
    summarize_log,
    taskq_cmd,
)
from taskq.localredis import LocalRedis
from taskq.message import Message, encode_message, new_run_id

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
#: Points to the scale-out results, which ``bench.scale`` writes to their own file.
SCALE_LINK = (
    "Scale-out (worker processes, Redis Cluster queues and partitions, where the ceiling "
    "is): [SCALE.md](SCALE.md), written by `.venv/bin/python -m bench.scale`. A/B "
    "of each hot-path change against the commit before it: [AB.md](AB.md), by "
    "`.venv/bin/python -m bench.ab`. A rate limit under load from several worker "
    "processes: [RATELIMIT.md](RATELIMIT.md), by `.venv/bin/python -m bench.ratelimit`."
)
#: Calls per alternating block in the single-call enqueue measurement.
SUBMIT_BLOCK = 500


@dataclass(frozen=True)
class Sizes:
    """How much work each measurement does."""

    submit: int = 20_000
    map_total: int = 100_000
    map_chunk: int = 10_000
    pipe_chunk: int = 1_000
    drain: int = 20_000
    drain_batch: int = 100
    latency: int = 1_000
    memory: int = 100_000
    profile_submit: int = 20_000
    profile_drain: int = 20_000
    profile_drain_cpu: int = 10_000
    lateness_bursts: int = 20
    lateness_burst: int = 10
    flow_children: int = 10_000
    reps: int = 3


FULL = Sizes()
QUICK = Sizes(
    submit=2_000,
    map_total=10_000,
    drain=2_000,
    latency=100,
    memory=10_000,
    profile_submit=2_000,
    profile_drain=2_000,
    profile_drain_cpu=1_000,
    lateness_bursts=5,
    flow_children=1_000,
)


def sample_payload(task: taskq.Task[Any, Any], args: tuple[Any, ...]) -> bytes:
    """A payload of exactly the size taskq puts in the stream for ``task(*args)``."""
    return encode_message(Message(new_run_id(), task.name, list(args), {}, {}))


# -- bookkeeping --------------------------------------------------------------------------


@dataclass
class Pair:
    """Repetitions of one metric, for taskq and for bare redis-py."""

    taskq: list[float] = field(default_factory=list)
    bare: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def best(self, higher_is_better: bool = True) -> tuple[float, float]:
        pick = max if higher_is_better else min
        return pick(self.taskq), pick(self.bare)

    def median(self) -> tuple[float, float]:
        return statistics.median(self.taskq), statistics.median(self.bare)


@dataclass
class DrainRun:
    n: int
    done: int
    drain_s: float
    wall_s: float
    worker_cpu_s: float
    redis_cpu_s: float
    commandstats: dict[str, tuple[int, int]]
    returncode: int
    outcomes: dict[str, int] = field(default_factory=dict)
    log: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Runs per second of drain time; NaN unless every run was recorded."""
        if self.done != self.n or not self.drain_s > 0:
            return math.nan
        return self.n / self.drain_s

    def worker_cpu_per_run_us(self, idle: DrainRun | None) -> float:
        """Worker CPU per run, start-up (measured on an empty queue) taken out."""
        base = idle.worker_cpu_s if idle is not None else 0.0
        return 1e6 * (self.worker_cpu_s - base) / max(self.n, 1)


class Bench:
    """Shared state: the private server, an admin client, fresh prefixes."""

    def __init__(self, url: str, sizes: Sizes) -> None:
        self.url = url
        self.sizes = sizes
        self.r = redis.Redis.from_url(url)  # bare redis-py, default settings (hiredis parser)
        self._n = 0
        self.version_at_start = taskq_version()
        self.version_at_end = self.version_at_start
        self.rtt_start = self.rtt_end = "?"
        # Other processes on the machine (other sessions' tests, ...) skew every figure.
        self.load_start = os.getloadavg()[0]
        self.busy0, self.own0, self.redis0 = busy_cpu_seconds(), own_cpu_seconds(), self.redis_cpu()
        self.t0 = time.monotonic()
        self.others = ""
        self.failures: list[str] = []
        self.work_payload = sample_payload(tasks.work, (12_345,))
        self.add_payload = sample_payload(tasks.add, (12_345, 12_345))

    def ping_rtt(self, n: int = 2_000) -> str:
        """Distribution of sequential redis-py PING round trips, as text."""
        times = []
        for _ in range(n):
            t0 = perf_counter()
            self.r.ping()
            times.append(1e6 * (perf_counter() - t0))
        q = [percentile(times, x) for x in (0.1, 0.5, 0.9, 0.99)]
        return "p10 {:.0f} us, p50 {:.0f} us, p90 {:.0f} us, p99 {:.0f} us".format(*q)

    def fresh(self, tag: str) -> str:
        """FLUSHALL the private server and point ``tasks.app`` at a new prefix."""
        self.r.flushall()
        self._n += 1
        prefix = f"b{self._n}-{tag}"
        tasks.app.configure(redis_url=self.url, prefix=prefix)
        return prefix

    def bare_client(self) -> redis.Redis:
        self.r.flushall()
        return redis.Redis.from_url(self.url)

    def used_memory(self) -> int:
        return int(self.r.info("memory")["used_memory"])

    def redis_cpu(self) -> float:
        info = self.r.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def commandstats(self) -> dict[str, tuple[int, int]]:
        out = {}
        for name, st in self.r.info("commandstats").items():
            out[name.removeprefix("cmdstat_")] = (int(st["calls"]), int(st["usec"]))
        return out


def interleave(label: str, reps: int, fa: Callable[[], float], fb: Callable[[], float]) -> Pair:
    pair = Pair()
    for i in range(reps):
        a = fa()
        pair.taskq.append(a)
        b = fb()
        pair.bare.append(b)
        say(f"  {label} rep {i + 1}/{reps}: taskq {a:,.1f}  bare {b:,.1f}")
    return pair


def enqueue_map(task: taskq.Task[Any, Any], n: int, chunk: int) -> list[taskq.Future[Any]]:
    futures: list[taskq.Future[Any]] = []
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        if task is tasks.add:
            futures += task.map(range(lo, hi), range(lo, hi))
        else:
            futures += task.map(range(lo, hi))
    return futures


def bare_pipeline_xadd(r: redis.Redis, stream: str, payload: bytes, n: int, chunk: int) -> None:
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        pipe.xadd(stream, {"m": payload})
        if (i + 1) % chunk == 0:
            pipe.execute()
    pipe.execute()


# -- 1. single-call enqueue ---------------------------------------------------------------


def m_submit(b: Bench) -> Pair:
    """Single calls, taskq and bare alternating in blocks of ``SUBMIT_BLOCK`` calls.

    Round-trip times on this VM are bimodal (see the PING distribution in the
    report), and the mix drifts over seconds; alternating small blocks inside each
    repetition gives both sides the same conditions.
    """
    n = b.sizes.submit
    say(f"1. single-call enqueue: {n:,} x task.submit(i) vs {n:,} x r.xadd, 3 reps")
    stats: dict[str, dict[str, tuple[int, int]]] = {}
    pair = Pair()
    payload = {"m": b.work_payload}
    for rep in range(b.sizes.reps):
        b.fresh("submit")
        r = redis.Redis.from_url(b.url)
        for i in range(10):  # connect + load the script outside the timing
            tasks.work.submit(i)
            r.xadd("bare:submit", payload)
        t_taskq = t_bare = c_taskq = c_bare = 0.0
        submit, xadd, cpu = tasks.work.submit, r.xadd, time.process_time
        for lo in range(0, n, SUBMIT_BLOCK):
            hi = min(n, lo + SUBMIT_BLOCK)
            c0, t0 = cpu(), perf_counter()
            for i in range(lo, hi):
                submit(i)
            c1, t1 = cpu(), perf_counter()
            for _ in range(lo, hi):
                xadd("bare:submit", payload)
            c2, t2 = cpu(), perf_counter()
            t_taskq += t1 - t0
            t_bare += t2 - t1
            c_taskq += c1 - c0
            c_bare += c2 - c1
        pair.extra["client_cpu_us"] = (1e6 * c_taskq / n, 1e6 * c_bare / n)
        r.close()
        pair.taskq.append(n / t_taskq)
        pair.bare.append(n / t_bare)
        say(
            f"  submit/s rep {rep + 1}/{b.sizes.reps}: taskq {pair.taskq[-1]:,.0f}  "
            f"bare {pair.bare[-1]:,.0f}  (ratio {t_bare / t_taskq:.2f})"
        )
    # Server-side cost per call, from INFO commandstats over separate untimed passes.
    b.fresh("submit-stats")
    tasks.work.submit(0)
    b.r.config_resetstat()
    for i in range(n):
        tasks.work.submit(i)
    stats["taskq"] = b.commandstats()
    r = b.bare_client()
    r.xadd("bare:submit", payload)
    b.r.config_resetstat()
    for _ in range(n):
        r.xadd("bare:submit", payload)
    stats["bare"] = b.commandstats()
    r.close()
    pair.extra["commandstats"] = stats
    return pair


# -- 2. map enqueue -----------------------------------------------------------------------


def m_map(b: Bench) -> Pair:
    s = b.sizes
    say(
        f"2. map enqueue: {s.map_total:,} runs in map() calls of {s.map_chunk:,} vs "
        f"pipelined XADD ({s.pipe_chunk:,} per execute)"
    )

    cost: dict[str, tuple[float, float, float]] = {}

    def measured(side: str, fn: Callable[[], Any]) -> float:
        """Run ``fn``; record client CPU, redis-server CPU and command time per run."""
        b.r.config_resetstat()
        s0, c0, t0 = b.redis_cpu(), time.process_time(), perf_counter()
        fn()
        elapsed = perf_counter() - t0
        client = time.process_time() - c0
        server = b.redis_cpu() - s0
        cmd = server_usec_per_op(b.commandstats(), s.map_total)
        cost[side] = (1e6 * client / s.map_total, 1e6 * server / s.map_total, cmd)
        return s.map_total / elapsed

    def taskq_once() -> float:
        b.fresh("map")
        tasks.work.map(range(600))  # connect + load scripts outside the timing
        return measured("taskq", lambda: enqueue_map(tasks.work, s.map_total, s.map_chunk))

    def bare_once() -> float:
        r = b.bare_client()
        r.ping()
        rate = measured(
            "bare",
            lambda: bare_pipeline_xadd(r, "bare:map", b.work_payload, s.map_total, s.pipe_chunk),
        )
        r.close()
        return rate

    pair = interleave("map runs/s", s.reps, taskq_once, bare_once)
    pair.extra["cost"] = cost
    return pair


# -- 3. drain -----------------------------------------------------------------------------


def drain_taskq(
    b: Bench,
    processes: int,
    n: int | None = None,
    concurrency: int = 8,
    task: taskq.Task[Any, Any] = tasks.work,
) -> DrainRun:
    """One burst-worker drain of ``n`` runs of ``task`` (``n=0``: start-up and shut-down
    cost only). Only ``tasks.work`` records the drain window (other bodies: NaN)."""
    s = b.sizes
    n = s.drain if n is None else n
    prefix = b.fresh(f"drain{processes}p")
    futures = enqueue_map(task, n, s.map_chunk)
    tasks.app.close()
    env = {**os.environ, "TASKQ_PREFIX": prefix, "TASKQ_REDIS_URL": b.url}
    cmd = [
        *taskq_cmd(),
        "worker",
        "bench.tasks:app",
        "--processes",
        str(processes),
        "--concurrency",
        str(concurrency),
        "--burst",
        "--redis-url",
        b.url,
        "--log-level",
        "WARNING",
    ]
    b.r.config_resetstat()
    cpu0 = b.redis_cpu()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = perf_counter()
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    wall = perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    redis_cpu = b.redis_cpu() - cpu0
    stats = b.commandstats()
    log_lines = summarize_log(proc.stderr)
    if proc.returncode != 0:
        say(f"  worker exit {proc.returncode}; stderr tail:\n{proc.stderr[-2000:]}")
    elif log_lines:
        say("  worker stderr: " + "; ".join(f"{k} (x{v})" for k, v in log_lines.items()))
    outcomes = outcome_counts(futures)
    if n and outcomes.get("Completed", 0) != n:
        say(f"  WARNING: run outcomes after the drain: {outcomes}")
    if task is tasks.work:
        done = int(b.r.get(tasks.count_key()) or 0)
    else:
        done = outcomes.get("Completed", 0)
    first = b.r.zscore(tasks.marks_key(), "first")
    last = b.r.zscore(tasks.marks_key(), "last")
    drain = (last - first) if first is not None and last is not None else float("nan")
    if done != n:
        say(f"  WARNING: {done} of {n} runs recorded")
    cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    return DrainRun(
        n, done, drain, wall, cpu, redis_cpu, stats, proc.returncode, outcomes, log_lines
    )


def outcome_counts(futures: list[taskq.Future[Any]]) -> dict[str, int]:
    """How many runs ended in which state, read in one round trip (no waiting)."""
    if not futures:
        return {}
    res = taskq.wait(futures, timeout=0)
    counts: dict[str, int] = {}
    for f in res.done:
        counts[f.state.name] = counts.get(f.state.name, 0) + 1
    if res.not_done:
        counts["(no outcome yet)"] = len(res.not_done)
    tasks.app.close()
    return counts


def drain_bare(b: Bench) -> DrainRun:
    s = b.sizes
    r = b.bare_client()
    stream, group = "bare:drain", "g"
    bare_pipeline_xadd(r, stream, b.work_payload, s.drain, s.pipe_chunk)
    r.xgroup_create(stream, group, id="0")
    b.r.config_resetstat()
    cpu0 = b.redis_cpu()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    done = 0
    t0 = perf_counter()
    while True:
        reply = r.xreadgroup(group, "c", {stream: ">"}, count=s.drain_batch)
        if not reply or not reply[0][1]:
            break
        ids = [eid for eid, _ in reply[0][1]]
        pipe = r.pipeline(transaction=False)
        pipe.xack(stream, group, *ids)
        pipe.xdel(stream, *ids)
        pipe.execute()
        done += len(ids)
    elapsed = perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    run = DrainRun(s.drain, done, elapsed, elapsed, cpu, b.redis_cpu() - cpu0, b.commandstats(), 0)
    r.close()
    return run


def task_body_rate(b: Bench) -> tuple[float, float]:
    """``work.fn(i)`` called in a loop in this thread: the task's own cost, no queue at
    all. Returns (calls per second, CPU per call in us: this process, user + sys)."""
    b.fresh("body")
    n = b.sizes.drain
    tasks.work.fn(0)
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = perf_counter()
    for i in range(n):
        tasks.work.fn(i)
    elapsed = perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    return n / elapsed, 1e6 * cpu / n


def m_drain(b: Bench) -> tuple[Pair, Pair, dict[str, DrainRun]]:
    s = b.sizes
    say(
        f"3. drain: {s.drain:,} pre-enqueued runs; `taskq worker --burst --concurrency 8` "
        f"with 1 and 2 processes vs bare XREADGROUP COUNT {s.drain_batch} + XACK/XDEL"
    )
    one, two = Pair(), Pair()
    last: dict[str, DrainRun] = {}
    for procs in (1, 2):
        idle = drain_taskq(b, procs, 0)
        last[f"idle{procs}"] = idle
        say(
            f"  empty-queue burst worker, {procs}p (start-up cost): wall {idle.wall_s:.2f} s, "
            f"CPU {idle.worker_cpu_s:.2f} s"
        )
    for i in range(s.reps):
        for procs, pair in ((1, one), (2, two)):
            run = drain_taskq(b, procs)
            pair.taskq.append(run.rate)
            pair.extra.setdefault("runs", []).append(run)
            last[f"taskq{procs}"] = run
            say(
                f"  drain {procs}p rep {i + 1}/{s.reps}: {run.rate:,.0f} runs/s "
                f"(drain {run.drain_s:.2f} s, subprocess wall {run.wall_s:.2f} s, "
                f"done {run.done:,})"
            )
        body, body_cpu = task_body_rate(b)
        one.extra.setdefault("body", []).append(body)
        one.extra.setdefault("body_cpu", []).append(body_cpu)
        # The same drain with a no-op body: the worker's own cost per run, nothing else.
        noop = drain_taskq(b, 1, task=tasks.noop)
        one.extra.setdefault("noop_runs", []).append(noop)
        say(
            f"  no-op drain 1p rep {i + 1}/{s.reps}: worker CPU "
            f"{noop.worker_cpu_per_run_us(last['idle1']):.0f} us per run, redis-server "
            f"{1e6 * noop.redis_cpu_s / noop.n:.0f} us per run (done {noop.done:,})"
        )
        bare = drain_bare(b)
        one.bare.append(bare.rate)
        two.bare.append(bare.rate)
        one.extra.setdefault("bare_runs", []).append(bare)
        last["bare"] = bare
        say(
            f"  bare drain rep {i + 1}/{s.reps}: {bare.rate:,.0f} entries/s; task body alone "
            f"(work.fn in a loop, 1 thread, no queue): {body:,.0f} calls/s, "
            f"{body_cpu:.0f} us CPU per call"
        )
    return one, two, last


# -- 4. latency ---------------------------------------------------------------------------


def bare_consumer(url: str, stream: str, reply: str) -> None:
    """Bare counterpart of an idle worker (run in a subprocess by the latency bench)."""
    r = redis.Redis.from_url(url)
    while True:
        got = r.xreadgroup("g", "c", {stream: ">"}, count=8, block=2000)
        for _, entries in got or ():
            for eid, _fields in entries:
                started = time.time()
                pipe = r.pipeline(transaction=False)
                pipe.rpush(reply, repr(started))
                pipe.xack(stream, "g", eid)
                pipe.xdel(stream, eid)
                pipe.execute()


def m_latency(b: Bench) -> tuple[Pair, Pair]:
    s = b.sizes
    say(f"4. enqueue->start latency: {s.reps} x {s.latency:,} sequential submits, idle worker")
    taskq_reps: list[list[float]] = []
    bare_reps: list[list[float]] = []

    prefix = b.fresh("latency")
    env = {**os.environ, "TASKQ_PREFIX": prefix, "TASKQ_REDIS_URL": b.url}
    cmd = [
        *taskq_cmd(),
        "worker",
        "bench.tasks:app",
        "--processes",
        "1",
        "--concurrency",
        "8",
        "--redis-url",
        b.url,
        "--log-level",
        "WARNING",
    ]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            tasks.stamp.submit().result(timeout=60)
            for i in range(s.reps):
                samples = []
                for _ in range(s.latency):
                    t0 = time.time()
                    f = tasks.stamp.submit()
                    started = f.result(timeout=30)
                    samples.append(started - t0)
                taskq_reps.append(samples)
                say(
                    f"  taskq rep {i + 1}/{s.reps}: p50 {1e3 * statistics.median(samples):.3f} ms"
                    f"  p99 {1e3 * percentile(samples, 0.99):.3f} ms"
                )
        finally:
            stop(proc)
            if proc.returncode not in (0, -signal.SIGTERM):
                log.seek(0)
                say(f"  worker exit {proc.returncode}:\n{log.read().decode()[-2000:]}")

    r = b.bare_client()
    stream, reply = "bare:latency", "bare:reply"
    r.xgroup_create(stream, "g", id="$", mkstream=True)
    code = "import sys; from bench.run import bare_consumer; bare_consumer(*sys.argv[1:])"
    proc = subprocess.Popen([sys.executable, "-c", code, b.url, stream, reply], cwd=ROOT)
    try:
        r.xadd(stream, {"m": b"warm"})
        if r.blpop([reply], timeout=60) is None:
            raise RuntimeError("bare latency consumer did not answer")
        for i in range(s.reps):
            samples = []
            for _ in range(s.latency):
                t0 = time.time()
                r.xadd(stream, {"m": b.work_payload})
                got = r.blpop([reply], timeout=30)
                if got is None:
                    raise RuntimeError("bare latency consumer stopped answering")
                samples.append(float(got[1]) - t0)
            bare_reps.append(samples)
            say(
                f"  bare rep {i + 1}/{s.reps}: p50 {1e3 * statistics.median(samples):.3f} ms"
                f"  p99 {1e3 * percentile(samples, 0.99):.3f} ms"
            )
    finally:
        stop(proc)
        r.close()

    p50, p99 = Pair(), Pair()
    for samples in taskq_reps:
        p50.taskq.append(1e3 * statistics.median(samples))
        p99.taskq.append(1e3 * percentile(samples, 0.99))
    for samples in bare_reps:
        p50.bare.append(1e3 * statistics.median(samples))
        p99.bare.append(1e3 * percentile(samples, 0.99))
    return p50, p99


# -- 5. memory ----------------------------------------------------------------------------


def m_memory(b: Bench) -> Pair:
    s = b.sizes
    n = s.memory
    say(f"5. Redis bytes per queued task: {n:,} x add.map(...) vs {n:,} bare XADDs")
    pair = Pair()
    for i in range(s.reps):
        b.fresh("memory")
        tasks.add.submit(0, 0)  # scripts loaded and connection made before "before"
        b.r.flushall()
        before = b.used_memory()
        futures = enqueue_map(tasks.add, n, s.map_chunk)
        tasks.app.close()  # drop the producer connection and its buffers
        after = b.used_memory()
        per = (after - before) / n
        pair.taskq.append(per)
        if i == 0:
            k = tasks.app.keys
            stream = b.r.memory_usage(k.stream(QUEUE), samples=0) or 0
            events = b.r.memory_usage(k.events(QUEUE), samples=0) or 0
            run = b.r.memory_usage(k.run(QUEUE, futures[0].run_id), samples=0) or 0
            pair.extra["breakdown"] = {
                "stream entry (payload in stream)": stream / n,
                "run record key (HASH s=Pending), MEMORY USAGE": run,
                "events stream (capped ~10,000 entries), amortized": events / n,
                "rest (keyspace dict, allocator rounding)": per - stream / n - run - events / n,
            }
            pair.extra["keys"] = int(b.r.dbsize())
        del futures

        r = b.bare_client()
        r.ping()
        before = b.used_memory()
        bare_pipeline_xadd(r, "bare:memory", b.add_payload, n, s.pipe_chunk)
        r.close()
        after = b.used_memory()
        pair.bare.append((after - before) / n)
        say(f"  rep {i + 1}/{s.reps}: taskq {pair.taskq[-1]:.1f} B  bare {pair.bare[-1]:.1f} B")
    return pair


# -- profiles -----------------------------------------------------------------------------


@dataclass
class ProfileReport:
    title: str
    wall_s: float
    stats: pstats.Stats
    n: int
    note: str = ""


def profile_submit(b: Bench) -> ProfileReport:
    n = b.sizes.profile_submit
    say(f"profile: {n:,} x task.submit under cProfile")
    b.fresh("prof-submit")
    for i in range(10):
        tasks.work.submit(i)
    prof = cProfile.Profile()
    t0 = perf_counter()
    prof.enable()
    for i in range(n):
        tasks.work.submit(i)
    prof.disable()
    wall = perf_counter() - t0
    say(f"  {n / wall:,.0f} submits/s under the profiler")
    return ProfileReport("single submit", wall, pstats.Stats(prof), n)


def profile_drain(b: Bench, cpu: bool = False) -> list[ProfileReport]:
    """Profile an in-process burst Worker: every thread gets its own cProfile.

    ``cpu=False``: wall clock, reported per thread group (fetch loop, task threads).
    ``cpu=True``: per-thread CPU time (``time.thread_time``), all threads merged: where
    the worker process burns its CPU (and so the GIL). Waiting costs nothing here, and
    time spent waiting to re-acquire the GIL is not billed to the socket call it follows.
    """
    n = b.sizes.profile_drain_cpu if cpu else b.sizes.profile_drain
    kind = "CPU time" if cpu else "wall clock"
    say(f"profile ({kind}): in-process Worker(burst=True, concurrency=8) draining {n:,} runs")
    b.fresh("prof-drain-cpu" if cpu else "prof-drain")
    enqueue_map(tasks.work, n, b.sizes.map_chunk)
    worker = taskq.Worker(tasks.app, burst=True, concurrency=8)
    per_thread: dict[int, cProfile.Profile] = {}
    # Profile each pool thread from the call the worker hands it; taskq's internals may
    # be renamed under us, so fall back from Worker._run_sync to Engine.run.
    owner: Any = worker if hasattr(worker, "_run_sync") else worker.engine
    attr = "_run_sync" if owner is worker else "run"
    original = getattr(owner, attr)

    def new_profile() -> cProfile.Profile:
        return cProfile.Profile(time.thread_time) if cpu else cProfile.Profile()

    def profiled(*args: Any, **kwargs: Any) -> Any:
        prof = per_thread.get(threading.get_ident())
        if prof is None:
            prof = per_thread[threading.get_ident()] = new_profile()
        prof.enable()
        try:
            return original(*args, **kwargs)
        finally:
            prof.disable()

    setattr(owner, attr, profiled)
    main = new_profile()
    t0 = perf_counter()
    c0 = time.process_time()
    main.enable()
    worker.run()
    main.disable()
    wall = perf_counter() - t0
    proc_cpu = time.process_time() - c0
    done = int(b.r.get(tasks.count_key()) or 0)
    say(
        f"  drained {done:,} in {wall:.2f} s ({done / wall:,.0f}/s under the profiler; "
        f"process CPU {proc_cpu:.1f} s)"
    )
    if not per_thread:
        say("  WARNING: no pool thread was profiled (taskq's worker internals changed?)")
    threads = f"{len(per_thread)} pool threads"
    if cpu:
        merged = pstats.Stats(main, *per_thread.values())
        note = (
            f"Fetch loop + {threads} merged; percentages are of the process's profiled CPU "
            f"time ({proc_cpu:.1f} s of process CPU in total, profiler overhead included)."
        )
        return [ProfileReport("drain, 1 process: CPU time, all threads", wall, merged, done, note)]
    fetch = ProfileReport(
        "drain, 1 process: fetch loop (main thread, wall clock)",
        wall,
        pstats.Stats(main),
        done,
        "Percentages are of the fetch loop's wall time.",
    )
    note = (
        f"{threads}; percentages are of their summed busy wall time. With 8 threads on one "
        "GIL, the wait to re-acquire the GIL after a socket call is billed to that call "
        "(`sendall`, `recv_into`), so read the CPU-time profile for the cost split."
    )
    pool = pstats.Stats(*per_thread.values())
    return [
        fetch,
        ProfileReport("drain, 1 process: task threads (wall clock)", wall, pool, done, note),
    ]


def _label(key: tuple[str, int, str]) -> str:
    filename, line, func = key
    if filename == "~":
        return func
    path = filename
    for base in (sysconfig.get_paths()["purelib"] + "/", str(ROOT) + "/"):
        if path.startswith(base):
            path = path[len(base) :]
            break
    else:
        stdlib = sysconfig.get_paths()["stdlib"] + "/"
        if path.startswith(stdlib):
            path = path[len(stdlib) :]
    return f"{path}:{line}({func})"


def top_rows(rep: ProfileReport, by: str, limit: int) -> list[tuple[str, int, float, float, float]]:
    """(function, calls, cumulative s, cumulative %, self %) rows, biggest first."""
    raw: dict[Any, Any] = rep.stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values()) or 1.0
    rows = [(_label(k), v[1], v[3], 100 * v[3] / total, 100 * v[2] / total) for k, v in raw.items()]
    idx = 3 if by == "cum" else 4
    rows.sort(key=lambda r: r[idx], reverse=True)
    return rows[:limit]


def share(rep: ProfileReport, filename_end: str, func: str) -> float:
    """Cumulative % of the profile spent in ``func`` defined in a file ending ``filename_end``."""
    raw: dict[Any, Any] = rep.stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values()) or 1.0
    cum = sum(v[3] for k, v in raw.items() if k[0].endswith(filename_end) and k[2] == func)
    return 100 * cum / total


def self_share(rep: ProfileReport, func_contains: str) -> float:
    raw: dict[Any, Any] = rep.stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values()) or 1.0
    return 100 * sum(v[2] for k, v in raw.items() if func_contains in k[2]) / total


def by_package(rep: ProfileReport) -> list[tuple[str, float]]:
    """Self time grouped by where the code lives, biggest first (% of the profile)."""
    raw: dict[Any, Any] = rep.stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values()) or 1.0
    purelib = sysconfig.get_paths()["purelib"]
    groups: dict[str, float] = {}
    for (filename, _line, func), v in raw.items():
        if filename == "~":
            if "'_socket.socket' objects" in func or "poll' of 'select" in func:
                g = "socket I/O syscalls (incl. GIL re-acquire)"
            elif "lock" in func or "acquire" in func or "wait" in func:
                g = "locks / condition waits"
            elif "msgpack" in func or "hiredis" in func:
                g = "C extensions (msgpack, hiredis)"
            else:
                g = "other builtins"
        elif filename.startswith(purelib + "/redis/"):
            g = "redis-py (Python code)"
        elif "/taskq/" in filename:
            g = "taskq"
        elif "/bench/" in filename:
            g = "bench (the task body, harness)"
        elif "threading" in filename or "concurrent" in filename or "queue" in filename:
            g = "stdlib threading / concurrent.futures"
        else:
            g = "other Python (stdlib)"
        groups[g] = groups.get(g, 0.0) + v[2]
    return sorted(((g, 100 * x / total) for g, x in groups.items()), key=lambda gx: -gx[1])


def present(rep: ProfileReport, filename_end: str, func: str) -> bool:
    raw: dict[Any, Any] = rep.stats.stats  # type: ignore[attr-defined]
    return any(k[0].endswith(filename_end) and k[2] == func for k in raw)


def headline(rep: ProfileReport, picks: Iterable[tuple[str, str, str]]) -> list[str]:
    """``what: cum%`` for each pick that occurs in the profile (taskq's code may change)."""
    return [f"{what} {share(rep, f, fn):.0f}%" for what, f, fn in picks if present(rep, f, fn)]


def print_profile(rep: ProfileReport) -> None:
    say(f"  top of '{rep.title}' by cumulative time:")
    for label, calls, cum, pct, selfpct in top_rows(rep, "cum", 12):
        print(f"    {pct:5.1f}%  self {selfpct:5.1f}%  {cum:7.3f}s  {calls:>8}  {label}")


# -- report -------------------------------------------------------------------------------


def taskq_version() -> str:
    """HEAD of the checkout plus a hash of taskq/'s files as they are on disk right now."""
    import hashlib

    digest = hashlib.sha1()
    for path in sorted((ROOT / "taskq").rglob("*")):
        if path.is_file() and path.suffix in (".py", ".lua"):
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "taskq"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        head, dirty = "?", ""
    state = " + uncommitted changes in taskq/" if dirty else ""
    return f"{head}{state} (taskq/ content hash {digest.hexdigest()[:10]})"


def content_hash(version: str) -> str:
    """The taskq/ content hash inside a :func:`taskq_version` string (commits may differ)."""
    return version.rpartition("content hash ")[2]


def machine(b: Bench) -> list[str]:
    info = b.r.info("server")
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from redis.utils import HIREDIS_AVAILABLE

    try:
        import hiredis

        hiredis_v = f"yes (hiredis {hiredis.__version__}, used as redis-py's parser)"
    except ImportError:
        hiredis_v = "no"
    if not HIREDIS_AVAILABLE:
        hiredis_v += " (but redis-py does not use it)"
    return [
        f"- nproc: {os.cpu_count()}" + (f" ({cpu})" if cpu else ""),
        f"- OS: {platform.platform()}",
        f"- Python: {platform.python_version()} ({platform.python_implementation()})",
        f"- redis-server: {info['redis_version']} (private LocalRedis on 127.0.0.1:{b.r.connection_pool.connection_kwargs['port']}, "  # noqa: E501
        f"malloc {b.r.info('memory').get('mem_allocator', '?')}, no persistence)",
        f"- redis-py: {redis.__version__}; hiredis present: {hiredis_v}",
        f"- loopback round trip (2,000 sequential redis-py PINGs): at start {b.rtt_start}; "
        f"at end {b.rtt_end}. A bimodal spread (fast when client and server share a core, "
        "slow when a wake-up crosses cores) makes single-call rates drift between runs; "
        "compare ratios, not absolute rates, across runs.",
        f"- msgpack: {'.'.join(map(str, msgpack.version))}",
        f"- taskq: {b.version_at_start}",
        f"- other load on the machine: {b.others}",
    ] + (
        [f"- **WARNING: taskq/ changed during this run**; at the end: {b.version_at_end}"]
        if content_hash(b.version_at_end) != content_hash(b.version_at_start)
        else []
    )


def others_text(b: Bench) -> str:
    """How busy the rest of the machine was during the run (other processes' CPU)."""
    wall = time.monotonic() - b.t0
    busy = busy_cpu_seconds() - b.busy0
    ours = own_cpu_seconds() - b.own0 + (b.redis_cpu() - b.redis0)
    other = max(0.0, busy - ours)
    return (
        f"1-min load average {b.load_start:.2f} at start, {os.getloadavg()[0]:.2f} at end; "
        f"processes outside this bench used {other:.0f} CPU-seconds during its {wall:.0f} s "
        f"(= {other / wall:.2f} of {os.cpu_count()} cores on average; from /proc/stat minus "
        "this process, its exited children and redis-server). Anything well above 0 skews "
        "the figures, the rates and tail latencies most."
    )


def fmt_rate(x: float) -> str:
    return f"{x:,.0f} /s"


def met(ok: bool, stretch: bool | None = None) -> str:
    if not ok:
        return "**no**"
    return "yes (stretch too)" if stretch else "yes"


def median_or_nan(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def write_results(
    b: Bench,
    quick: bool,
    started: float,
    sub: Pair,
    mp: Pair,
    d1: Pair,
    d2: Pair,
    drains: dict[str, DrainRun],
    p50: Pair,
    p99: Pair,
    mem: Pair,
    late: lateness.Lateness,
    fan: flows.FlowBench,
    profiles: list[ProfileReport],
) -> str:
    s = b.sizes
    sub_t, sub_b = sub.best()
    map_t, map_b = mp.best()
    d1_t, d1_b = d1.best()
    d2_t = d2.best()[0]
    scale = d2_t / d1_t if d1_t else 0.0
    l50_t, l50_b = p50.median()
    l99_t, l99_b = p99.median()
    mem_t, mem_b = mem.median()
    body_rate = max(d1.extra.get("body", [math.nan]))
    body_cpu = median_or_nan(d1.extra.get("body_cpu", []))
    idle1 = drains.get("idle1")
    noop_cpu = median_or_nan(
        [r.worker_cpu_per_run_us(idle1) for r in d1.extra.get("noop_runs", [])]
    )
    work_cpu = median_or_nan([r.worker_cpu_per_run_us(idle1) for r in d1.extra.get("runs", [])])
    redis_work = median_or_nan([1e6 * r.redis_cpu_s / r.n for r in d1.extra.get("runs", [])])
    redis_noop = median_or_nan([1e6 * r.redis_cpu_s / r.n for r in d1.extra.get("noop_runs", [])])
    redis_bare = median_or_nan([1e6 * r.redis_cpu_s / r.n for r in d1.extra.get("bare_runs", [])])

    rows = [
        (
            f"1. single-call enqueue (`submit`, N={s.submit:,})",
            fmt_rate(sub_t),
            fmt_rate(sub_b),
            f"{sub_t / sub_b:.2f}x",
            ">= 1.0x (stretch 1.5x)",
            met(sub_t / sub_b >= 1.0, sub_t / sub_b >= 1.5),
        ),
        (
            f"2. `map` enqueue (N={s.map_total:,}, calls of {s.map_chunk:,})",
            fmt_rate(map_t),
            fmt_rate(map_b),
            f"{map_t / map_b:.2f}x",
            ">= 0.75x",
            met(map_t / map_b >= 0.75),
        ),
        (
            f"3a. drain, 1 worker process, bench body (N={s.drain:,}); bare column: the "
            "body's own loop (3d)",
            fmt_rate(d1_t),
            fmt_rate(body_rate),
            f"{d1_t / body_rate:.2f}x",
            ">= 0.8x",
            met(d1_t / body_rate >= 0.8),
        ),
        (
            f"3b. drain, 2 worker processes (N={s.drain:,})",
            fmt_rate(d2_t),
            fmt_rate(body_rate),
            f"{d2_t / body_rate:.2f}x",
            "(see 3c)",
            "-",
        ),
        (
            f"3c. drain scaling, 2 processes / 1 process ({os.cpu_count()} cores, shared "
            "with redis-server)",
            f"{scale:.2f}x",
            "-",
            f"{scale:.2f}x",
            ">= 1.7x",
            met(scale >= 1.7),
        ),
        (
            "3d. (info) the task body alone: `work.fn(i)` in a loop, 1 thread, no queue; "
            "bare column: a bare redis-py drain (XREADGROUP COUNT 100 + XACK/XDEL, no body)",
            f"{fmt_rate(body_rate)}, {body_cpu:.0f} us CPU",
            fmt_rate(d1_b),
            "-",
            "-",
            "-",
        ),
        (
            "3e. worker CPU per run, no-op body (1 process, start-up taken out)",
            f"{noop_cpu:.0f} us",
            "-",
            "-",
            "<= 30 us",
            met(noop_cpu <= 30),
        ),
        (
            "3f. worker CPU per run, bench body, less the body's own CPU (3d)",
            f"{work_cpu:.0f} - {body_cpu:.0f} = {work_cpu - body_cpu:.0f} us",
            "-",
            "-",
            "<= 30 us",
            met(work_cpu - body_cpu <= 30),
        ),
        (
            "3g. redis-server CPU per run, bench-body drain (the body's own commands "
            "included); bare column: per entry of the bare drain",
            f"{redis_work:.0f} us",
            f"{redis_bare:.1f} us",
            f"{redis_work / redis_bare:.0f}x" if redis_bare else "-",
            "<= 30 us",
            met(redis_work <= 30),
        ),
        (
            "3h. (info) redis-server CPU per run, no-op drain",
            f"{redis_noop:.0f} us",
            "-",
            "-",
            "-",
            "-",
        ),
        (
            f"4a. enqueue->start latency p50 (idle worker, {s.latency:,} sequential)",
            f"{l50_t:.3f} ms",
            f"{l50_b:.3f} ms",
            f"{l50_t / l50_b:.2f}x",
            "<= 2.0x",
            met(l50_t / l50_b <= 2.0),
        ),
        (
            "4b. enqueue->start latency p99",
            f"{l99_t:.3f} ms",
            f"{l99_b:.3f} ms",
            f"{l99_t / l99_b:.2f}x",
            "<= 3 ms",
            met(l99_t <= 3.0),
        ),
        (
            f"5. Redis bytes per queued task (N={s.memory:,})",
            f"{mem_t:.0f} B",
            f"{mem_b:.0f} B",
            f"{mem_t / mem_b:.2f}x",
            "<= 150 B",
            met(mem_t <= 150),
        ),
        late.row(),
        fan.row(),
    ]

    out: list[str] = []
    w = out.append
    now = dt.datetime.now(dt.UTC).astimezone()
    w("# taskq benchmark results")
    w("")
    w(
        f"Generated by `.venv/bin/python -m bench.run{' --quick' if quick else ''}` on "
        f"{now:%Y-%m-%d %H:%M %Z} ({'QUICK smoke run, ~10x smaller N' if quick else 'full run'}; "
        f"took {time.time() - started:.0f} s). This file is overwritten on every run."
    )
    w("")
    w(SCALE_LINK)
    w("")
    w("## Machine")
    w("")
    out += machine(b)
    w("")
    w("## Results")
    w("")
    w("| metric | taskq | bare redis-py | ratio | target | met? |")
    w("|---|---:|---:|---:|---|---|")
    for row in rows:
        w("| " + " | ".join(row) + " |")
    w("")
    w(
        "Ratio is taskq / bare. For rates higher is better; for latency, CPU and bytes lower "
        "is better. Targets are issue 13's. Rows 3a-3b compare the drain with the task "
        "body's own loop (3d), not with the bare drain; rows 3e-3h are per run, medians of "
        "the repetitions (worker CPU: the worker command's rusage less the same command on "
        "an empty queue; redis-server CPU: `INFO cpu`). Row 6 has no bare counterpart (its "
        "target is absolute); row 7 compares taskq with taskq (a flow's children vs the same tasks "
        "without a flow) and its ratio is a time ratio, lower is better. Rates: best of "
        f"{s.reps} repetitions; latency and bytes: median of {s.reps} repetitions. "
        "taskq and bare repetitions are interleaved, against the same private redis-server, "
        "FLUSHALLed (and a fresh key prefix) before each measurement."
    )
    w("")
    w("## Notes")
    w("")
    for failure in b.failures:
        w(f"- **FAILED** {failure}")

    def reps(p: Pair, unit: str = "", digits: int = 0) -> str:
        def f(v: list[float]) -> str:
            return ", ".join(f"{x:,.{digits}f}" for x in v)

        return f"taskq [{f(p.taskq)}]{unit}, bare [{f(p.bare)}]{unit}"

    w(
        "- **1. submit**: `work.submit(i)` in a loop vs `r.xadd(stream, "
        f"{{'m': payload}})` with a {len(b.work_payload)}-byte payload (taskq's own payload "
        f"size). All repetitions: {reps(sub, ' /s')}."
    )
    cs = sub.extra.get("commandstats", {})
    if "taskq" in cs and "bare" in cs:
        ratios = ", ".join(f"{x / y:.2f}" for x, y in zip(sub.taskq, sub.bare, strict=True))
        cpu_t, cpu_b = sub.extra["client_cpu_us"]
        w(
            f"  - taskq and bare alternate in blocks of {SUBMIT_BLOCK} calls within each "
            f"repetition; per-repetition ratios: {ratios}. Per call, last repetition: wall "
            f"{1e6 / sub.taskq[-1]:.1f} us (taskq) vs "
            f"{1e6 / sub.bare[-1]:.1f} us (bare); Redis command time "
            f"{server_usec_per_op(cs['taskq'], s.submit):.1f} us vs "
            f"{server_usec_per_op(cs['bare'], s.submit):.1f} us; client CPU (this process, "
            f"user+sys, incl. the socket syscalls) {cpu_t:.1f} us vs {cpu_b:.1f} us. taskq: "
            f"{stats_text(cs['taskq'], s.submit)}."
        )
    w(
        "- **2. map**: `work.map(range(10_000))` x N/10,000 vs a redis-py "
        f"pipeline (transaction=False) of {s.pipe_chunk:,} XADDs per execute. "
        f"All repetitions: {reps(mp, ' /s')}."
    )
    mc = mp.extra.get("cost", {})
    if "taskq" in mc and "bare" in mc:
        w(
            "  - per run, last repetition: client CPU {:.1f} us (taskq) vs {:.1f} us (bare); "
            "redis-server CPU {:.1f} us vs {:.1f} us; Redis command time {:.1f} us vs "
            "{:.1f} us. The two overlap only partly (client builds, then waits).".format(
                mc["taskq"][0],
                mc["bare"][0],
                mc["taskq"][1],
                mc["bare"][1],
                mc["taskq"][2],
                mc["bare"][2],
            )
        )
    one = drains.get("taskq1")
    two_reps = ", ".join(f"{x:,.0f}" for x in d2.taskq)
    two = drains.get("taskq2")
    bare = drains.get("bare")
    w(
        "- **3. drain**: N runs of `bench.tasks.work` (one pipelined round trip: INCR + "
        "ZADD LT first + ZADD GT last) pre-enqueued with `map`, then "
        "`taskq worker bench.tasks:app --processes P --concurrency 8 --burst` as a "
        "subprocess. Drain time = latest task finish - earliest task start, recorded by the "
        "tasks in Redis, so process start-up is excluded. Bare ceiling: one process looping "
        f"XREADGROUP COUNT {s.drain_batch} + pipelined XACK/XDEL over N pre-added entries "
        "(no task work at all). "
        f"1 process: {reps(d1, ' /s')}; 2 processes: [{two_reps}] /s."
    )
    idle1, idle2 = drains.get("idle1"), drains.get("idle2")
    for run_list, label in (
        (d1.extra.get("runs", []), "1-process drain"),
        (d2.extra.get("runs", []), "2-process drain"),
    ):
        for run in run_list:
            if run.outcomes.get("Completed", 0) != run.n or run.log:
                logs = "; ".join(f"`{k}` x{v}" for k, v in run.log.items())
                w(
                    f"  - **{label} anomaly** (n={run.n:,}, {run.drain_s:.1f} s): outcomes "
                    f"{run.outcomes}; worker stderr: {logs or 'empty'}"
                )
    if one and two and bare:
        w(
            "  - CPU, last repetition (worker CPU = supervisor + worker processes, minus the "
            "CPU of the same command on an empty queue: "
            f"{idle1.worker_cpu_s if idle1 else float('nan'):.2f} s for 1 process, "
            f"{idle2.worker_cpu_s if idle2 else float('nan'):.2f} s for 2). "
            f"1 process: {one.drain_s / one.n * 1e6:.0f} us of drain wall per run, worker "
            f"{one.worker_cpu_per_run_us(idle1):.0f} us CPU per run, redis-server "
            f"{1e6 * one.redis_cpu_s / one.n:.0f} us CPU per run. 2 processes: "
            f"{two.drain_s / two.n * 1e6:.0f} us wall per run, workers "
            f"{two.worker_cpu_per_run_us(idle2):.0f} us CPU per run, redis-server "
            f"{1e6 * two.redis_cpu_s / two.n:.0f} us. Bare: {bare.drain_s / bare.n * 1e6:.1f} us "
            f"wall, client {1e6 * bare.worker_cpu_s / bare.n:.1f} us CPU, redis-server "
            f"{1e6 * bare.redis_cpu_s / bare.n:.1f} us CPU per entry. The machine has "
            f"{os.cpu_count()} cores, shared by the worker processes, redis-server and the "
            "bench process (idle while workers drain)."
        )
        w(
            "  - redis-server per run, 1-process drain (INFO commandstats): "
            + commandstats_text(one)
            + "; bare: "
            + commandstats_text(bare)
            + "."
        )
    w(
        f"- **4. latency**: an idle `taskq worker --processes 1 --concurrency 8` (not burst); "
        "t0 = time.time(); `stamp.submit()`; the task returns time.time() at its start; "
        "latency = returned - t0, waiting for `f.result()` before the next submit. Bare: a "
        "consumer subprocess blocked in XREADGROUP BLOCK; t0; XADD; the consumer stamps "
        "time.time(), RPUSHes it and XACK/XDELs in one pipeline; the producer BLPOPs it. "
        f"p50 per repetition: {reps(p50, ' ms', 3)}; p99: {reps(p99, ' ms', 3)}."
    )
    bd = mem.extra.get("breakdown", {})
    w(
        "- **5. bytes**: INFO memory used_memory before and after `add.map(...)` of N runs "
        "(no worker), producer connection closed before reading, divided by N; bare: the same "
        f"number of pipelined XADDs of a {len(b.add_payload)}-byte payload. "
        f"All repetitions: {reps(mem, ' B', 1)}."
    )
    if bd:
        parts = "; ".join(f"{k} {v:.0f} B" for k, v in bd.items())
        w(
            f"  - taskq per run, first repetition ({mem.extra.get('keys', '?'):,} keys for "
            f"{s.memory:,} runs): {parts}."
        )
    out += late.notes()
    out += fan.notes()
    w("")
    w("## Where the time goes")
    w("")
    w(
        "cProfile (deterministic, so absolute times are inflated, proportions roughly hold). "
        "`cum %` = time inside the function and its callees as a share of the profiled "
        "thread(s)' total; `self %` = time in the function's own code. In wall-clock "
        "profiles, socket calls (`recv_into`, `sendall`, `poll`) are time blocked on Redis "
        "round trips (and, with several threads, on re-acquiring the GIL afterwards). The "
        "drain profiles run `taskq.Worker(app, burst=True, concurrency=8).run()` in this "
        "process (same code path as one `taskq worker` process), each pool thread with its "
        "own profiler."
    )
    w("")
    w("Summary, computed from this run:")
    w("")
    out += where_summary(sub, mp, drains, profiles)
    out += fan.where()
    w("")
    for rep in profiles:
        w(f"### {rep.title}")
        w("")
        w(f"{rep.n:,} runs, {rep.wall_s:.2f} s wall under the profiler. {rep.note}".strip())
        w("")
        w("- " + "; ".join(summary(rep)))
        w("- self time by package: " + "; ".join(f"{g} {x:.0f}%" for g, x in by_package(rep)))
        w("")
        w("| function | calls | cum s | cum % | self % |")
        w("|---|---:|---:|---:|---:|")
        for label, calls, cum, pct, selfpct in top_rows(rep, "cum", 16):
            w(f"| `{label}` | {calls:,} | {cum:.3f} | {pct:.1f} | {selfpct:.1f} |")
        w("")
        w("Biggest self time:")
        w("")
        w("| function | calls | self % |")
        w("|---|---:|---:|")
        for label, calls, _cum, _pct, selfpct in top_rows(rep, "self", 8):
            w(f"| `{label}` | {calls:,} | {selfpct:.1f} |")
        w("")
    text = "\n".join(out)
    RESULTS.write_text(text)
    return text


def server_usec_per_op(stats: dict[str, tuple[int, int]], n: int) -> float:
    """Top-level command time per operation (script-internal commands not counted twice)."""
    nested = script_commands() if "evalsha" in stats else frozenset()
    return sum(
        u
        for k, (_, u) in stats.items()
        if k not in ("info", "config|resetstat") and k not in nested
    ) / max(n, 1)


def where_summary(
    sub: Pair, mp: Pair, drains: dict[str, DrainRun], profiles: list[ProfileReport]
) -> list[str]:
    """A few bullets that put the profiles and the CPU/command counters side by side."""
    lines = []
    by_title = {p.title: p for p in profiles}
    ps = by_title.get("single submit")
    cs = sub.extra.get("commandstats", {})
    if ps is not None and "client_cpu_us" in sub.extra and "taskq" in cs:
        sock = self_share(ps, "_socket.socket")
        cpu_t, cpu_b = sub.extra["client_cpu_us"]
        n = ps.n
        lines.append(
            f"- **single submit**: {sock:.0f}% of `submit`'s wall time is inside socket calls "
            f"(the round trip), {100 - sock:.0f}% is Python; cumulative shares: "
            + ", ".join(
                headline(
                    ps,
                    [
                        ("`Task._message`", "taskq/task.py", "_message"),
                        ("`encode_message`", "taskq/message.py", "encode_message"),
                        (
                            "`Producer.enqueue` (incl. the round trip)",
                            "taskq/broker/producer.py",
                            "enqueue",
                        ),
                        ("`Future()`", "taskq/futures.py", "__init__"),
                    ],
                )
            )
            + f". Per call: client CPU {cpu_t:.1f} us vs {cpu_b:.1f} us for a bare "
            f"`r.xadd`; Redis command time {server_usec_per_op(cs['taskq'], n):.1f} us vs "
            f"{server_usec_per_op(cs.get('bare', {}), n):.1f} us. Both sides pay one round trip "
            "per call, which dominates, so the ratio stays near 1.0 (taskq's client CPU is "
            "lower, its server work higher); going well past 1.0x needs fewer round trips "
            "than calls (e.g. coalescing submits that arrive close together)."
        )
    mc = mp.extra.get("cost", {})
    if "taskq" in mc and "bare" in mc:
        (ct, st, kt), (cb, sb, kb) = mc["taskq"], mc["bare"]
        lines.append(
            f"- **map**: per run, client CPU {ct:.1f} us vs {cb:.1f} us (bare) and redis-server "
            f"CPU {st:.1f} us vs {sb:.1f} us (command time {kt:.1f} vs {kb:.1f} us). One `map` "
            "call builds every payload first (so a bad item enqueues nothing), then sends its "
            "batches as they are packed and reads every reply at the end, so client and server "
            f"overlap only partly: at most {ct + st:.1f} us vs {cb + sb:.1f} us per run. The "
            "server side (enqueue script: a record, the entry and an event per run instead of "
            "one XADD) is the larger share."
        )
    cpu = next((p for p in profiles if "CPU" in p.title), None)
    one, idle1 = drains.get("taskq1"), drains.get("idle1")
    two, idle2 = drains.get("taskq2"), drains.get("idle2")
    if cpu is not None:
        body = share(cpu, "bench/tasks.py", "work")
        run = share(cpu, "taskq/engine.py", "run")
        consume = share(cpu, "taskq/worker.py", "_consume")
        lines.append(
            f"- **drain, where one worker process spends CPU**: the task body (one redis-py "
            f"pipeline) {body:.0f}%; taskq {run - body + consume:.0f}% (fetch loop "
            f"{consume:.0f}%: "
            + ", ".join(
                headline(
                    cpu,
                    [
                        ("XREADGROUP", "taskq/broker/consumer.py", "read"),
                        ("admit/start script", "taskq/admission.py", "admit"),
                        ("hand-off to the pool", "concurrent/futures/thread.py", "submit"),
                    ],
                )
            )
            + f"; in the pool threads around the task: {run - body:.0f}%, mostly "
            + ", ".join(headline(cpu, [("finish script", "taskq/engine.py", "handle_success")]))
            + ")."
        )
    if one is not None:
        wall1 = 1e6 * one.drain_s / one.n
        cpu1 = one.worker_cpu_per_run_us(idle1)
        red1 = 1e6 * one.redis_cpu_s / one.n
        text = (
            f"- **drain, what bounds it** (last repetition): 1 process: {wall1:.0f} us of wall "
            "per run, the "
            f"worker used {cpu1:.0f} us CPU per run (= {cpu1 / wall1:.2f} cores) and "
            f"redis-server {red1:.0f} us (= {red1 / wall1:.2f} cores)."
        )
        if two is not None:
            wall2 = 1e6 * two.drain_s / two.n
            cpu2 = two.worker_cpu_per_run_us(idle2)
            red2 = 1e6 * two.redis_cpu_s / two.n
            text += (
                f" 2 processes: {wall2:.0f} us wall per run, workers {cpu2:.0f} us + "
                f"redis-server {red2:.0f} us CPU per run = {(cpu2 + red2) / wall2:.2f} of "
                f"{os.cpu_count()} cores busy."
            )
        cores = os.cpu_count() or 1
        bound = cores / (cpu1 + red1) * wall1
        text += (
            f" At the 1-process CPU cost per run ({cpu1 + red1:.0f} us, worker + Redis), "
            f"{cores} cores could at most run {bound:.2f}x the 1-process rate, whatever the "
            "number of processes: the scaling target needs less CPU per run (or Redis on "
            "other cores), not more processes."
        )
        lines.append(text)
        cmd = server_usec_per_op(one.commandstats, one.n)
        lines.append(
            f"- **drain, Redis side**: {cmd:.1f} us of command time and {red1:.0f} us of "
            f"redis-server CPU per run, against {server_usec_per_op(drains['bare'].commandstats, drains['bare'].n):.1f} us "  # noqa: E501
            f"and {1e6 * drains['bare'].redis_cpu_s / drains['bare'].n:.1f} us for the bare "
            f"ceiling; one Redis core alone would top out near {1e6 / red1:,.0f} runs/s at "
            "this cost per run."
            if "bare" in drains
            else ""
        )
    return [line for line in lines if line]


def commandstats_text(run: DrainRun) -> str:
    return stats_text(run.commandstats, run.n)


def stats_text(stats: dict[str, tuple[int, int]], n: int) -> str:
    interesting = {k: v for k, v in stats.items() if k not in ("info", "config|resetstat")}
    total = server_usec_per_op(stats, n)
    parts = [
        f"{name} {calls / n:.2f} x {usec / max(calls, 1):.1f} us"
        + (" (inside scripts)" if "evalsha" in stats and name in script_commands() else "")
        for name, (calls, usec) in sorted(interesting.items(), key=lambda kv: -kv[1][1])
        if calls / n >= 0.01
    ]
    return f"{total:.1f} us of Redis command time per run: {', '.join(parts)}"


def summary(rep: ProfileReport) -> list[str]:
    reads = self_share(rep, "method 'recv")
    waits = (
        f"in socket reads (recv/recv_into, self) {reads:.0f}%, "
        f"socket writes (sendall, self) {self_share(rep, 'sendall'):.0f}%"
    )
    if rep.title == "single submit":
        picks = [
            ("Task.submit", "taskq/task.py", "submit"),
            ("Task._message (run id, options check)", "taskq/task.py", "_message"),
            ("encode_message (msgpack)", "taskq/message.py", "encode_message"),
            ("Producer.enqueue", "taskq/broker/producer.py", "enqueue"),
            ("Connection.call (EVALSHA)", "taskq/broker/connection.py", "call"),
            ("Connection.send", "taskq/broker/connection.py", "send"),
            ("wire round trip", "taskq/broker/wire.py", "_roundtrip"),
            ("redis-py execute_command", "redis/client.py", "execute_command"),
            ("Future()", "taskq/futures.py", "__init__"),
        ]
    elif "CPU" in rep.title:
        picks = [
            ("fetch loop (Worker._consume)", "taskq/worker.py", "_consume"),
            ("Consumer.read (XREADGROUP)", "taskq/broker/consumer.py", "read"),
            ("Admission.admit (decode + start.lua)", "taskq/admission.py", "admit"),
            ("task threads (Engine.run)", "taskq/engine.py", "run"),
            ("the task body (bench.tasks.work)", "bench/tasks.py", "work"),
            ("Engine.handle_success (finish.lua)", "taskq/engine.py", "handle_success"),
            ("Connection.call (all EVALSHAs)", "taskq/broker/connection.py", "call"),
            ("Connection.send (all taskq commands)", "taskq/broker/connection.py", "send"),
            ("wire round trips", "taskq/broker/wire.py", "_roundtrip"),
            ("redis-py execute_command", "redis/client.py", "execute_command"),
            ("redis-py pipeline execute (the task's own round trip)", "redis/client.py", "execute"),
            (
                "thread pool handoff (ThreadPoolExecutor.submit)",
                "concurrent/futures/thread.py",
                "submit",
            ),
        ]
    elif "fetch loop" in rep.title:
        picks = [
            ("Worker._consume", "taskq/worker.py", "_consume"),
            ("waiting for a free slot (_wait_for_slot)", "taskq/worker.py", "_wait_for_slot"),
            ("Consumer.read (XREADGROUP)", "taskq/broker/consumer.py", "read"),
            ("Admission.admit (decode + start.lua)", "taskq/admission.py", "admit"),
            ("Consumer.start", "taskq/broker/consumer.py", "start"),
            ("Worker._dispatch", "taskq/worker.py", "_dispatch"),
        ]
    else:
        picks = [
            ("Engine.run", "taskq/engine.py", "run"),
            ("the task body (bench.tasks.work)", "bench/tasks.py", "work"),
            ("Engine.handle_success", "taskq/engine.py", "handle_success"),
            ("Consumer.finish (finish.lua)", "taskq/broker/consumer.py", "finish"),
            ("encode_outcome", "taskq/message.py", "encode_outcome"),
        ]
    return [*headline(rep, picks), waits]


# -- main ---------------------------------------------------------------------------------


def failed_pair() -> Pair:
    return Pair([math.nan], [math.nan])


def attempt(b: Bench, what: str, fn: Callable[[], Any], fallback: Any) -> Any:
    """Run one measurement; on failure, record it (and the traceback tail) and go on."""
    try:
        return fn()
    except Exception as exc:
        import traceback

        tail = "".join(traceback.format_exception(exc)[-3:]).strip().replace("\n", " / ")
        say(f"FAILED: {what}: {type(exc).__name__}: {exc}")
        b.failures.append(f"{what}: {type(exc).__name__}: {exc} ({tail[-600:]})")
        tasks.app.close()
        return fallback


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="~10x smaller N (smoke run)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    started = time.time()
    with LocalRedis() as server:
        say(f"private redis-server at {server.url} (pid {server.pid})")
        b = Bench(server.url, sizes)
        b.rtt_start = b.ping_rtt()
        say(f"PING round trip: {b.rtt_start}")
        try:
            sub = attempt(b, "1. submit", lambda: m_submit(b), failed_pair())
            mp = attempt(b, "2. map", lambda: m_map(b), failed_pair())
            d1, d2, drains = attempt(
                b, "3. drain", lambda: m_drain(b), (failed_pair(), failed_pair(), {})
            )
            p50, p99 = attempt(
                b, "4. latency", lambda: m_latency(b), (failed_pair(), failed_pair())
            )
            mem = attempt(b, "5. bytes", lambda: m_memory(b), failed_pair())
            late = attempt(b, "6. retry lateness", lambda: lateness.measure(b), lateness.failed())
            fan = attempt(b, "7. flow fan-out", lambda: flows.measure(b), flows.failed())
            profiles: list[ProfileReport] = []
            profiles += attempt(b, "profile submit", lambda: [profile_submit(b)], [])
            profiles += attempt(b, "profile drain (wall)", lambda: profile_drain(b), [])
            profiles += attempt(b, "profile drain (CPU)", lambda: profile_drain(b, cpu=True), [])
            for rep in profiles:
                print_profile(rep)
            b.rtt_end = b.ping_rtt()
            b.others = others_text(b)
            b.version_at_end = taskq_version()
            if content_hash(b.version_at_end) != content_hash(b.version_at_start):
                say(f"WARNING: taskq/ changed during the run: {b.version_at_start} -> now")
            text = write_results(
                b, args.quick, started, sub, mp, d1, d2, drains, p50, p99, mem, late, fan, profiles
            )
        finally:
            tasks.app.close()
            b.r.close()
    table = text.split("## Results", 1)[1].split("## Notes", 1)[0]
    print(table.strip())
    if b.failures:
        say(f"{len(b.failures)} measurement(s) FAILED; see the Notes in {RESULTS}")
    say(f"wrote {RESULTS} ({time.time() - started:.0f} s)")
    return 1 if b.failures else 0


if __name__ == "__main__":
    sys.exit(main())

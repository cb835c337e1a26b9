"""7. Flow overhead: a flow fanning out N no-op children vs the same N bare tasks.

The flow is ``bench.tasks.fanout(n)``: ``noop.map(range(n))``, ``taskq.wait`` on the
futures, then the sum of their results. The bare case is ``noop.map(range(n))`` from
this process, no flow. Both run on the same non-burst pool
(``taskq worker --processes P --concurrency 8``, started beforehand and warmed up),
bare and flow repetitions interleaved.

Times come from the server clock (Redis TIME, ms), never this process's:

- bare: earliest child start (``t1`` of the run records) to the latest child finish
  (the id of its ``Completed`` event in the events stream);
- flow: the flow's start (``t1`` of its record) to its end (its ``Completed`` event),
  so the flow's own start, fan-out, suspension, resume, replay and sum are included.

The bench process waits cheaply meanwhile (the bare case polls XLEN every 5 ms, the
flow case blocks on the flow's result), so it takes little CPU from the pool.

A profile (round trips and scripts per child, and a CPU profile) comes from an
in-process burst ``taskq.Worker`` draining a pre-submitted flow and a pre-enqueued
bare batch, with ``Connection.send`` wrapped to count what goes over the wire.
"""

from __future__ import annotations

import cProfile
import math
import pstats
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

import taskq
from bench import tasks
from bench.common import (
    QUEUE,
    BenchLike,
    WorkerPool,
    entry_ms,
    quiet_benign_logs,
    say,
    script_commands,
)
from taskq import scripts

#: Target: the flow may take at most this much longer than the bare tasks.
TARGET_RATIO = 1.25
SCRIPT_NAMES = (
    scripts.ENQUEUE,
    scripts.START,
    scripts.FINISH,
    scripts.RETRY,
    scripts.PROMOTE,
    scripts.RENEW,
    scripts.SUSPEND,
    scripts.NOTIFY,
    scripts.RESET,
    scripts.HANDBACK,
    scripts.DEAD,
)
#: Redis commands the bench itself sends while a repetition runs (not the pool's work).
BENCH_COMMANDS = {"xlen", "info", "config|resetstat", "blmove", "lindex", "hget", "xrevrange"}


@dataclass
class Fanout:
    """One repetition of one kind ('bare' or 'flow') on one pool."""

    kind: str
    processes: int
    n: int
    start_ms: int = 0
    end_ms: int = 0
    child_first_ms: int = 0
    child_last_ms: int = 0
    wall_s: float = math.nan
    worker_cpu_s: float = math.nan
    redis_cpu_s: float = math.nan
    stats: dict[str, tuple[int, int]] = field(default_factory=dict)
    ok: bool = False
    problem: str = ""
    record: dict[str, str] = field(default_factory=dict)

    @property
    def window_s(self) -> float:
        if not self.ok or self.end_ms <= self.start_ms:
            return math.nan
        return (self.end_ms - self.start_ms) / 1000

    @property
    def rate(self) -> float:
        return self.n / self.window_s

    def per_child_us(self, value_s: float) -> float:
        return 1e6 * value_s / self.n


@dataclass
class WireCount:
    """What went over the wire during one in-process burst drain."""

    n: int
    wall_s: float = 0.0
    round_trips: Counter[str] = field(default_factory=Counter)
    commands: Counter[str] = field(default_factory=Counter)
    flow_round_trips: Counter[str] = field(default_factory=Counter)
    flow_commands: Counter[str] = field(default_factory=Counter)
    cpu: pstats.Stats | None = None
    cpu_total_s: float = 0.0

    def per_child(self, counter: Counter[str]) -> float:
        return sum(counter.values()) / self.n


@dataclass
class FlowBench:
    n: int = 0
    reps: dict[int, list[tuple[Fanout, Fanout]]] = field(default_factory=dict)
    log: dict[str, int] = field(default_factory=dict)
    wire: dict[str, WireCount] = field(default_factory=dict)

    def best(self, processes: int) -> tuple[Fanout | None, Fanout | None]:
        """The representative repetition: the one with the median flow/bare time ratio.

        Bare and flow run back to back in each repetition, so their ratio is taken
        within a repetition (under the same conditions), not best against best.
        """
        pairs = [
            (b, f)
            for b, f in self.reps.get(processes, [])
            if not math.isnan(b.window_s) and not math.isnan(f.window_s)
        ]
        if not pairs:
            return None, None
        pairs.sort(key=lambda bf: bf[1].window_s / bf[0].window_s)
        return pairs[(len(pairs) - 1) // 2]

    def ratio(self, processes: int) -> float:
        bare, flow = self.best(processes)
        if bare is None or flow is None:
            return math.nan
        return flow.window_s / bare.window_s

    def row(self) -> tuple[str, str, str, str, str, str]:
        cols: list[tuple[str, str, str]] = []
        oks = []
        for p in (1, 2):
            bare, flow = self.best(p)
            r = self.ratio(p)
            cols.append(
                (
                    f"{flow.rate:,.0f}" if flow else "nan",
                    f"{bare.rate:,.0f}" if bare else "nan",
                    f"{r:.2f}x",
                )
            )
            oks.append(r <= TARGET_RATIO)
        return (
            f"7. flow fan-out {self.n:,} no-op children, 1 / 2 processes: children/s (bare "
            "column: the same tasks, no flow, same pool; ratio = flow time / bare time)",
            f"{cols[0][0]} / {cols[1][0]} /s",
            f"{cols[0][1]} / {cols[1][1]} /s",
            f"{cols[0][2]} / {cols[1][2]}",
            f"<= {TARGET_RATIO:.2f}x",
            "yes" if all(oks) and self.reps else "**no**",
        )

    def notes(self) -> list[str]:
        out = [
            f"- **7. flow fan-out**: the flow `bench.tasks.fanout({self.n:,})` "
            f"(`noop.map(range(n))`, `taskq.wait(futures)`, sum of the results) vs "
            f"`noop.map(range({self.n:,}))` from the bench process, no flow, on the same "
            "non-burst `taskq worker --processes P --concurrency 8` pool (started beforehand, "
            "warmed up), bare and flow repetitions interleaved. Server clock only: bare = "
            "earliest child start (record `t1`) to the latest child's `Completed` event; flow "
            "= the flow's `t1` to its own `Completed` event (start, fan-out, suspension, "
            "resume, replay and sum included). Children/s = N / that time. Table: the "
            "repetition with the median flow/bare ratio (each repetition runs bare, then "
            "the flow, back to back), its children/s and ratio."
        ]
        for p, pairs in sorted(self.reps.items()):
            bare, flow = self.best(p)
            times = "; ".join(
                f"bare {b.window_s:.3f} s, flow {f.window_s:.3f} s ({f.window_s / b.window_s:.2f}x)"
                for b, f in pairs
            )
            out.append(f"  - {p} process{'es' if p > 1 else ''}, every repetition: {times}.")
            if bare is not None and flow is not None:
                over = flow.per_child_us(flow.window_s - bare.window_s)
                head = (flow.child_first_ms - flow.start_ms) / 1000
                body = (flow.child_last_ms - flow.child_first_ms) / 1000
                tail = (flow.end_ms - flow.child_last_ms) / 1000
                out.append(
                    "    Median repetition: "
                    f"{bare.per_child_us(bare.window_s):.0f} us per bare task vs "
                    f"{flow.per_child_us(flow.window_s):.0f} us per flow child, overhead "
                    f"{over:+.0f} us per child. The flow's time: start to first child start "
                    f"{head:.3f} s, first to last child finish {body:.3f} s "
                    f"({flow.n / body if body > 0 else math.nan:,.0f} children/s), last child "
                    f"to the flow's end (resume, replay of {flow.n:,} outcomes, sum, finish) "
                    f"{tail:.3f} s; flow record: resumes={flow.record.get('resumes', '?')}, "
                    f"waits={flow.record.get('wn', '?')}."
                )
                out.append(
                    "    Per child, that repetition: pool CPU (supervisor + workers, /proc) "
                    f"{bare.per_child_us(bare.worker_cpu_s):.0f} us bare vs "
                    f"{flow.per_child_us(flow.worker_cpu_s):.0f} us flow; redis-server CPU "
                    f"{bare.per_child_us(bare.redis_cpu_s):.0f} us vs "
                    f"{flow.per_child_us(flow.redis_cpu_s):.0f} us; Redis command time "
                    f"{command_us(bare.stats) / bare.n:.1f} us vs "
                    f"{command_us(flow.stats) / flow.n:.1f} us; client-observed wall "
                    f"{bare.wall_s:.2f} s vs {flow.wall_s:.2f} s."
                )
            for b, f in pairs:
                for x in (b, f):
                    if x.problem:
                        out.append(f"  - **{x.kind}, {p}p: {x.problem}**")
        if self.log:
            logs = "; ".join(f"`{k}` x{v}" for k, v in self.log.items())
            out.append(f"  - worker log: {logs}")
        return out

    def where(self) -> list[str]:
        """Bullets for 'Where the time goes': what one child costs on the wire and in CPU."""
        bare, flow = self.wire.get("bare"), self.wire.get("flow")
        if bare is None or flow is None:
            return []

        def rts(w: WireCount, c: Counter[str]) -> str:
            return ", ".join(f"{k} {v / w.n:.2f}" for k, v in c.most_common() if v / w.n >= 0.005)

        body = ", ".join(f"{k} {v:,}" for k, v in flow.flow_round_trips.most_common())
        lines = self.overhead_summary()
        lines += [
            f"- **flow fan-out, per child on the wire** (an in-process `taskq.Worker`, "
            f"concurrency 8, not burst, {flow.n:,} children; the worker threads' "
            "`Connection.send` calls counted): bare task "
            f"{bare.per_child(bare.round_trips):.2f} round trips ({rts(bare, bare.round_trips)}); "
            f"flow child {flow.per_child(flow.round_trips):.2f} round trips outside the flow run "
            f"itself ({rts(flow, flow.round_trips)}). Script calls per child: bare "
            f"{rts(bare, script_calls(bare.commands))}; flow "
            f"{rts(flow, script_calls(flow.commands))}. "
            "A flow child on its flow's queue (one hash tag, as here) pays one `finish` that "
            "records the outcome, notifies the flow (the fan-in step) and acks, as a bare "
            "task's `finish` records and acks; a child on another queue pays `finish`, "
            "`notify` and the ack as three round trips, in that order.",
            f"- **flow fan-out, the flow run itself** (its worker thread, start to finish): "
            f"{sum(flow.flow_round_trips.values()):,} round trips for {flow.n:,} children "
            f"({body}): the enqueue of the children, "
            "the inline wait (each child's `notify` LPUSHes the flow's ping list, so the "
            "blocked body wakes, then reads the new outcomes: LRANGE + HMGET), the "
            "suspension, and the replay after the resume (one HGETALL of every outcome), "
            "then its own `finish`.",
        ]
        if flow.cpu is not None and bare.cpu is not None:
            picks = [
                ("finish script", "/taskq/broker", "finish"),
                ("notify script", "/taskq/broker", "notify"),
                ("ack (XACK + XDEL)", "/taskq/broker", "ack"),
                ("start script", "/taskq/broker", "start"),
                ("XREADGROUP", "/taskq/broker", "read"),
                ("the flow run (body, waits, suspend, replay)", "/taskq/engine", "run_flow"),
            ]
            lines.append(
                f"- **flow fan-out, CPU** (same runs under cProfile with per-thread CPU time; "
                f"profiled CPU {bare.cpu_total_s:.2f} s bare vs {flow.cpu_total_s:.2f} s flow, "
                f"{1e6 * bare.cpu_total_s / bare.n:.0f} vs {1e6 * flow.cpu_total_s / flow.n:.0f} "
                "us per child with the profiler's overhead): bare "
                + ", ".join(cpu_shares(bare, picks))
                + "; flow "
                + ", ".join(cpu_shares(flow, picks))
                + f". Server-clock time under the profiler: {bare.wall_s:.2f} s bare vs "
                f"{flow.wall_s:.2f} s flow."
            )
        return lines

    def overhead_summary(self) -> list[str]:
        """Where the flow's extra time per child goes, from the median 1-process pair."""
        bare, flow = self.best(1)
        wb, wf = self.wire.get("bare"), self.wire.get("flow")
        if bare is None or flow is None or wb is None or wf is None:
            return []
        over = flow.per_child_us(flow.window_s - bare.window_s)
        pool = flow.per_child_us(flow.worker_cpu_s) - bare.per_child_us(bare.worker_cpu_s)
        red = flow.per_child_us(flow.redis_cpu_s) - bare.per_child_us(bare.redis_cpu_s)
        cmd = (command_us(flow.stats) - command_us(bare.stats)) / flow.n
        trips = wf.per_child(wf.round_trips) - wb.per_child(wb.round_trips)
        ratio = flow.window_s / bare.window_s
        allowed = bare.per_child_us(bare.window_s * (TARGET_RATIO - 1))
        return [
            f"- **flow fan-out, what the flow adds** (1 process, the median repetition): "
            f"{over:+.0f} us of wall per child ({ratio:.2f}x the bare time; the target "
            f"{TARGET_RATIO:.2f}x allows {allowed:.0f} us). Per child the pool spends "
            f"{pool:+.0f} us more CPU and redis-server "
            f"{red:+.0f} us more ({cmd:+.1f} us of command time), for {trips:+.2f} round "
            "trips: the fan-in step inside each child's `finish`. The flow run itself (fan-out, "
            "inline wait, suspension, resume, replay of every outcome, sum) is a small share: "
            f"{(flow.child_first_ms - flow.start_ms) + (flow.end_ms - flow.child_last_ms)} ms "
            "outside the children's window. The machine has 2 cores shared by the pool and "
            "redis-server, so extra CPU per child is extra wall per child.",
        ]


def failed() -> FlowBench:
    return FlowBench()


def command_us(stats: dict[str, tuple[int, int]]) -> float:
    """Top-level Redis command time, less the bench's own reads (script internals once)."""
    nested = script_commands()
    return float(
        sum(u for k, (_, u) in stats.items() if k not in nested and k not in BENCH_COMMANDS)
    )


def script_calls(commands: Counter[str]) -> Counter[str]:
    return Counter({k: v for k, v in commands.items() if k.islower()})


def cpu_shares(w: WireCount, picks: Sequence[tuple[str, str, str]]) -> list[str]:
    assert w.cpu is not None
    raw: dict[Any, Any] = w.cpu.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values()) or 1.0
    out = []
    for what, file_part, func in picks:
        cum = sum(v[3] for k, v in raw.items() if file_part in k[0] and k[2] == func)
        if cum:
            out.append(f"{what} {100 * cum / total:.0f}%")
    return out


# -- pool measurements ---------------------------------------------------------------------


def last_final_event(b: BenchLike, match: Callable[[str], bool]) -> int:
    """Server ms of the newest Completed event whose run id ``match``es (0 if none)."""
    key = tasks.app.keys.events(QUEUE)
    last = "+"
    while True:
        batch: Any = b.r.xrevrange(key, max=last, count=500)
        if not batch:
            return 0
        for eid, fields in batch:
            runs = fields[b"r"].decode().split(" ")  # a batch entry names several runs
            if fields.get(b"s") == b"Completed" and any(match(rid) for rid in runs):
                return entry_ms(eid)
        if len(batch) < 500:
            return 0
        last = "(" + batch[-1][0].decode()


def first_start(b: BenchLike, run_ids: Sequence[str]) -> int:
    keys = tasks.app.keys
    pipe = b.r.pipeline(transaction=False)
    for rid in run_ids:
        pipe.hget(keys.run(QUEUE, rid), "t1")
    starts = [int(x) for x in pipe.execute() if x is not None]
    if len(starts) != len(run_ids):
        raise RuntimeError(f"{len(run_ids) - len(starts)} child run(s) have no start time")
    return min(starts)


def bare_once(b: BenchLike, pool: WorkerPool, n: int) -> Fanout:
    x = Fanout("bare", pool.processes, n)
    stream = tasks.app.keys.stream(QUEUE)
    b.r.config_resetstat()
    cpu0, rcpu0, t0 = pool.cpu_seconds(), b.redis_cpu(), perf_counter()
    futures = tasks.noop.map(range(n))
    deadline = time.monotonic() + 300
    while b.r.xlen(stream) > 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    x.wall_s = perf_counter() - t0
    x.worker_cpu_s, x.redis_cpu_s = pool.cpu_seconds() - cpu0, b.redis_cpu() - rcpu0
    x.stats = b.commandstats()
    done = taskq.wait(futures, timeout=60)
    total = sum(f.result() for f in done.done)
    if done.not_done or total != n * (n - 1) // 2:
        x.problem = f"{len(done.not_done)} unfinished, sum {total}"
        return x
    ids = {f.run_id for f in futures}
    x.start_ms = x.child_first_ms = first_start(b, [f.run_id for f in futures])
    x.end_ms = x.child_last_ms = last_final_event(b, ids.__contains__)
    x.ok = x.end_ms > 0
    return x


def flow_once(b: BenchLike, pool: WorkerPool, n: int) -> Fanout:
    x = Fanout("flow", pool.processes, n)
    b.r.config_resetstat()
    cpu0, rcpu0, t0 = pool.cpu_seconds(), b.redis_cpu(), perf_counter()
    future = tasks.fanout.submit(n)
    value = future.result(timeout=300)
    x.wall_s = perf_counter() - t0
    x.worker_cpu_s, x.redis_cpu_s = pool.cpu_seconds() - cpu0, b.redis_cpu() - rcpu0
    x.stats = b.commandstats()
    if value != n * (n - 1) // 2:
        x.problem = f"flow returned {value}"
        return x
    fid = future.run_id
    x.record = tasks.app.broker.producer.run_record(QUEUE, fid)
    x.start_ms = int(x.record["t1"])
    x.end_ms = last_final_event(b, fid.__eq__)
    x.child_first_ms = first_start(b, [f"{fid}.{i}" for i in range(1, n + 1)])
    x.child_last_ms = last_final_event(b, lambda r: r.startswith(fid + "."))
    x.ok = x.end_ms > 0
    return x


# -- wire counts and CPU profile -----------------------------------------------------------


def _label(cmd: Sequence[Any], names: dict[str, str]) -> str:
    head = cmd[0].decode() if isinstance(cmd[0], bytes) else str(cmd[0])
    head = head.upper()
    if head == "EVALSHA":
        return names.get(str(cmd[1]), "?script")
    return head


def wire_count(b: BenchLike, kind: str, n: int) -> WireCount:
    """Run ``n`` children (a flow's, or bare tasks) on an in-process non-burst Worker.

    The worker runs in threads of this process with ``Connection.send`` counted (only the
    worker's threads, not this thread's submit and wait) and every worker thread under
    a per-thread CPU-time profiler. A burst worker would not do: after an empty read it
    waits for a run to end before reading again, so a flow blocking inline for its
    children would stall it for ``inline_wait_seconds``.
    """
    quiet_benign_logs()
    b.fresh(f"flow-wire-{kind}")
    block = tasks.app.settings.block_seconds
    tasks.app.configure(block_seconds=0.2)  # the worker notices stop() sooner
    names = {scripts.load(s).sha: s for s in SCRIPT_NAMES}
    w = WireCount(n)
    lock = threading.Lock()
    broker = tasks.app.broker.connection
    original = broker.send
    bench_thread = threading.get_ident()

    def counting_send(commands: Sequence[Sequence[Any]]) -> list[Any]:
        if threading.get_ident() != bench_thread:
            labels = [_label(c, names) for c in commands]
            trip = "+".join(dict.fromkeys(labels))
            in_flow = getattr(in_flow_run, "on", False)
            with lock:
                (w.flow_round_trips if in_flow else w.round_trips)[trip] += 1
                (w.flow_commands if in_flow else w.commands).update(labels)
        return original(commands)

    worker = taskq.Worker(tasks.app, concurrency=8)
    per_thread: dict[int, cProfile.Profile] = {}
    run_sync: Any = getattr(worker, "_run_sync", None)

    def profiled(d: Any) -> None:
        prof = per_thread.get(threading.get_ident())
        if prof is None:
            prof = per_thread[threading.get_ident()] = cProfile.Profile(time.thread_time)
        prof.enable()
        try:
            run_sync(d)
        finally:
            prof.disable()

    in_flow_run = threading.local()
    run_flow: Any = getattr(worker.engine, "run_flow", None)

    def marked_run_flow(d: Any) -> None:
        in_flow_run.on = True
        try:
            run_flow(d)
        finally:
            in_flow_run.on = False

    main = cProfile.Profile(time.thread_time)
    crashed: list[BaseException] = []

    def fetch_loop() -> None:
        main.enable()
        try:
            worker.run()
        except BaseException as exc:
            crashed.append(exc)
            raise
        finally:
            main.disable()

    def check() -> None:
        if crashed or not thread.is_alive():
            raise RuntimeError(f"the in-process worker died: {crashed[:1]!r}")

    broker.send = counting_send  # type: ignore[method-assign]
    # Private hooks (taskq's internals may be renamed under us: then no per-thread
    # profile, or no split between the flow run and its children).
    if hasattr(worker, "_run_sync"):
        worker._run_sync = profiled  # type: ignore[method-assign]
    if hasattr(worker.engine, "run_flow"):
        worker.engine.run_flow = marked_run_flow  # type: ignore[method-assign]
    thread = threading.Thread(target=fetch_loop, name="bench-worker", daemon=True)
    c0 = time.process_time()
    thread.start()
    try:
        if kind == "flow":
            future = tasks.fanout.submit(n)
            got = None
            for _ in range(120):
                check()
                if future.wait(timeout=1).is_final():
                    got = future.result(timeout=0)
                    break
            if got != n * (n - 1) // 2:
                raise RuntimeError(f"profiled flow returned {got}")
            rec = tasks.app.broker.producer.run_record(QUEUE, future.run_id)
            start, end = int(rec["t1"]), last_final_event(b, future.run_id.__eq__)
        else:
            futures = tasks.noop.map(range(n))
            stream, deadline = tasks.app.keys.stream(QUEUE), time.monotonic() + 120
            while b.r.xlen(stream) > 0 and time.monotonic() < deadline:
                check()
                time.sleep(0.005)
            ids = {f.run_id for f in futures}
            start = first_start(b, list(ids))
            end = last_final_event(b, ids.__contains__)
        w.cpu_total_s = time.process_time() - c0
    finally:
        worker.stop()
        thread.join(timeout=30)
        del broker.send
        tasks.app.configure(block_seconds=block)
    w.wall_s = (end - start) / 1000
    w.cpu = pstats.Stats(main, *per_thread.values())
    tasks.app.close()
    return w


# -- entry point ---------------------------------------------------------------------------


def measure(b: BenchLike) -> FlowBench:
    s = b.sizes
    n = s.flow_children
    say(
        f"7. flow fan-out: fanout({n:,}) vs noop.map(range({n:,})) on a running pool, "
        f"1 and 2 processes x {s.reps} reps"
    )
    out = FlowBench(n=n)
    for processes in (1, 2):
        prefix = b.fresh(f"flow{processes}p")
        pairs: list[tuple[Fanout, Fanout]] = []
        with WorkerPool(b.url, prefix, processes) as pool:
            # Warm-up: the pool is up, every script loaded, every thread made.
            taskq.wait(tasks.noop.map(range(200)), timeout=60)
            if tasks.fanout.submit(50).result(timeout=60) != 50 * 49 // 2:
                raise RuntimeError("warm-up flow returned a wrong sum")
            for i in range(s.reps):
                bare = bare_once(b, pool, n)
                flow = flow_once(b, pool, n)
                pairs.append((bare, flow))
                say(
                    f"  {processes}p rep {i + 1}/{s.reps}: bare {bare.window_s:.3f} s "
                    f"({bare.rate:,.0f}/s), flow {flow.window_s:.3f} s ({flow.rate:,.0f}/s), "
                    f"ratio {flow.window_s / bare.window_s:.2f}"
                    + (f" [{bare.problem} {flow.problem}]" if bare.problem or flow.problem else "")
                )
        out.reps[processes] = pairs
        for k, v in pool.log.items():
            out.log[k] = out.log.get(k, 0) + v
        tasks.app.close()
    say(f"  profile: in-process Worker, {n:,} bare tasks, then a flow of {n:,} children")
    for kind in ("bare", "flow"):
        w = wire_count(b, kind, n)
        out.wire[kind] = w
        say(
            f"  {kind}: {w.wall_s:.2f} s under the profiler; round trips per child "
            f"{w.per_child(w.round_trips):.2f} (+ {sum(w.flow_round_trips.values()):,} by "
            f"the flow run): {dict(w.round_trips.most_common(8))}"
        )
    return out

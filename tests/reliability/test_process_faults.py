"""Process faults (research/reliability.md §7.1): worker processes SIGKILLed, SIGTERMed,
SIGSTOPped, killed by their own task, and stuck in C past their timeout.

Every scenario runs real ``taskq worker`` processes against a private ``redis-server``
and checks them against a ledger written outside Redis by the task bodies
(:mod:`tests.reliability.ledger`). Waits block on Redis (the events stream) or on a
pool's log output; the only sleeps space out injected faults. Timings asserted are
server-clock times from the run records (``t<n>``, server ms) and event ids.

Sizes: reduced by default (CI, a few minutes in all); full with::

    TASKQ_RELIABILITY=full .venv/bin/pytest tests/reliability -m reliability

which also writes the figures to ``tests/reliability/RESULTS.md`` (its "Process faults"
section). Every scenario prints its figures (use ``-s`` to see them) and its random seed;
``TASKQ_RELIABILITY_SEED=<n>`` replays a seed.
"""

# The fixtures come from harness.py (not a conftest.py, which this directory shares with
# other fault suites); pytest finds them imported here, and their parameters shadow them.
# ruff: noqa: F811

from __future__ import annotations

import contextlib
import os
import random
import signal
import statistics
import threading
import time
from typing import Any

import pytest

from tests.reliability import apps, ledger
from tests.reliability.harness import (  # noqa: F401  (fixtures)
    Figures,
    Scenario,
    figures,
    scenario_factory,
    seed,
    size,
)

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(900)]

#: ``block_seconds``: how long a worker's fetch loop may sit in XREADGROUP before it
#: looks at expired leases again (taskq.config default).
BLOCK_SECONDS = 2.0


def ms_of(event_id: str) -> int:
    return int(event_id.split("-")[0])


def attempts(record: dict[str, str]) -> int:
    return int(record.get("a", "0"))


def check_ledger(
    sc: Scenario,
    keys: list[str],
    run_ids: list[str],
    killed_pids: set[int],
) -> tuple[ledger.Report, list[dict[str, str]]]:
    """Ledger against the run records and the full event histories of ``run_ids``."""
    records = sc.records(run_ids)
    hist = sc.histories()
    report = ledger.check(
        ledger.read(sc.ledger_dir),
        keys,
        runs=dict(zip(keys, records, strict=True)),
        histories={
            k: [s for _, s, _ in hist.get(r, [])] for k, r in zip(keys, run_ids, strict=True)
        },
        killed_pids=killed_pids,
    )
    return report, records


def stop_pools(sc: Scenario, timeout: float = 60.0) -> None:
    for p in sc.pools:
        if p.proc.poll() is None:
            p.signal_supervisor(signal.SIGTERM)
    for p in sc.pools:
        p.wait(timeout)


# -- R2: SIGKILL storm --------------------------------------------------------------------


def test_sigkill_storm(scenario_factory: Any, figures: Figures) -> None:
    """N short tasks on 4 pools (1 process x 4 slots each); K worker processes SIGKILLed at
    random moments, each restarted by its supervisor; lease 2 s.

    Recovery bound: a killed worker's delivery becomes reclaimable ``lease`` after its
    last renewal (which is at or after the attempt's start); a live worker looks for
    expired leases at most every ``lease/2``, but only between fetches, and an idle fetch
    blocks up to ``block_seconds`` (2 s). So a crashed attempt n is followed by attempt
    n+1 within ``lease + lease/2 + block_seconds`` plus 1 s of slack for the work itself
    (starting the attempt, a busy pool finishing a task to free a slot): 6 s here. The
    matrix's tighter target (lease + claim interval + 1 s = 3.7 s) is printed, not asserted.
    """
    n, kills, lease, slots = size(2000, 10_000), size(10, 50), 2.0, 4
    s = seed()
    rng = random.Random(s)
    sc = scenario_factory(lease)
    pools = [sc.pool(f"w{i}", concurrency=slots) for i in range(4)]
    for p in pools:
        p.wait_consuming()
    keys = [f"k{i}" for i in range(n)]
    # Tasks of U(0, 250) ms keep 16 slots busy for about as long as the kills take.
    futures = apps.short.map(keys, [round(rng.uniform(0, 250), 1) for _ in keys])
    run_ids = [f.run_id for f in futures]
    t0 = time.monotonic()

    done = threading.Event()
    killed: list[tuple[int, int, str, int]] = []  # (pid, server ms, pool, unread entries)

    def killer() -> None:
        krng = random.Random(s + 1)
        while len(killed) < kills:
            if done.wait(krng.uniform(0.3, 2.0)):  # spacing the faults, not waiting for work
                return
            candidates = [
                (p, pid) for p in pools for pid in p.workers() if pid in p.consuming_pids()
            ]
            if not candidates:
                continue
            pool, pid = krng.choice(candidates)
            length, pending = sc.queue_sizes()
            backlog = length - pending  # entries not yet delivered to any worker
            at = sc.server_ms()
            signal_pid(pid, signal.SIGKILL)
            killed.append((pid, at, pool.name, backlog))

    thread = threading.Thread(target=killer, name="killer")
    thread.start()
    try:
        sc.wait_final(run_ids, timeout=size(300, 900))
    finally:
        done.set()
        thread.join()
    elapsed = time.monotonic() - t0
    stop_pools(sc)
    drain_log = sc.drain()
    sizes = sc.queue_sizes()

    killed_pids = {pid for pid, _, _, _ in killed}
    report, records = check_ledger(sc, keys, run_ids, killed_pids)
    states = {r.get("s") for r in records}
    kill_times = sorted(at for _, at, _, _ in killed)
    unread_at = {at: b for _, at, _, b in killed}
    gaps, since_kill, unexplained = [], [], []
    worst: tuple[int, int] = (0, 0)  # (ms from kill to the next attempt, unread at the kill)
    for rid, rec in zip(run_ids, records, strict=True):
        for a in range(1, attempts(rec)):
            if not rec.get(f"x{a}", "").startswith("Crashed"):
                continue
            t_a, t_next = int(rec[f"t{a}"]), int(rec[f"t{a + 1}"])
            gaps.append(t_next - t_a)
            during = [k for k in kill_times if t_a <= k <= t_next]
            if during:
                since_kill.append(t_next - during[-1])
                worst = max(worst, (t_next - during[-1], unread_at[during[-1]]))
            else:
                unexplained.append(rid)
    bound = lease + lease / 2 + BLOCK_SECONDS + 1.0
    restarts = sum(p.count("restarting") for p in pools)
    figures.record(
        "R2 SIGKILL storm",
        {
            "seed": s,
            "tasks": n,
            "kills": len(killed),
            "kills_with_unread_backlog": sum(1 for *_, b in killed if b > 0),
            "supervisor_restarts": restarts,
            **report.figures(),
            "in_flight_bound": kills * slots,
            "crashed_attempts": len(gaps),
            "crashes_without_kill": len(unexplained),
            "recovery_gap_max_s(t<n+1>-t<n>)": max(gaps, default=0) / 1000,
            "recovery_gap_median_s": statistics.median(gaps) / 1000 if gaps else 0.0,
            "recovery_since_kill_max_s": max(since_kill, default=0) / 1000,
            "unread_backlog_at_that_kill": worst[1],
            "recovery_bound_asserted_s": bound,
            "matrix_target_3.7s_met": max(gaps, default=0) / 1000 <= 3.7,
            "stale_deliveries_dropped(log)": sum(p.count("was taken over") for p in pools),
            "fenced_outcomes(log)": sum(p.count("was fenced off") for p in pools),
            "run_seconds": round(elapsed, 1),
            "final_states": sorted(map(str, states)),
            "queue_sizes_after_drain": sizes,
        },
    )
    print(report.summary())
    assert len(killed) == kills
    assert restarts == sum(p.count("exited with -9; restarting") for p in pools), "other crashes"
    assert report.lost == [], report.summary()
    assert report.unattributed == [] and report.orphan_starts == {}, report.summary()
    assert report.duplicate_executions <= kills * slots
    assert report.regressed == {}, report.summary()
    assert states == {"Completed"}
    assert unexplained == [], f"Crashed attempts with no kill in between: {unexplained[:5]}"
    assert max(gaps, default=0) / 1000 <= bound
    assert sizes == (0, 0), drain_log
    figures.passed("R2 SIGKILL storm")


def signal_pid(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it died meanwhile (restart in progress)
        os.kill(pid, sig)


# -- R7: tasks 10x the lease, sleeping and CPU-bound --------------------------------------


def test_long_tasks_keep_their_lease(scenario_factory: Any, figures: Figures) -> None:
    """Tasks running 10x the lease (lease 1 s), half of them pure-Python loops holding the
    GIL, on 2 worker processes: the lease keeper thread renews them all, so nothing is
    reclaimed: 0 duplicates and every run finishes on attempt 1."""
    lease = 1.0
    per_kind, seconds, slots = size(2, 4), size(10.0, 15.0), size(2, 4)
    sc = scenario_factory(lease)
    pool = sc.pool("long", processes=2, concurrency=slots)
    pool.wait_consuming(2)
    spin_keys = [f"spin{i}" for i in range(per_kind)]
    sleep_keys = [f"sleep{i}" for i in range(per_kind)]
    futures = apps.spin.map(spin_keys, [seconds] * per_kind) + apps.long_sleep.map(
        sleep_keys, [seconds] * per_kind
    )
    keys, run_ids = spin_keys + sleep_keys, [f.run_id for f in futures]
    t0 = time.monotonic()
    sc.wait_final(run_ids, timeout=seconds * 4 + 30)
    elapsed = time.monotonic() - t0
    stop_pools(sc)

    report, records = check_ledger(sc, keys, run_ids, set())
    hist = sc.histories()
    run_ms = [hist[r][-1][0] - int(rec["t1"]) for r, rec in zip(run_ids, records, strict=True)]
    pids = {ln.pid for ln in ledger.read(sc.ledger_dir)}
    figures.record(
        "R7 long tasks (10x lease)",
        {
            "lease_s": lease,
            "tasks": f"{per_kind} CPU-bound + {per_kind} sleeping, {seconds} s each",
            "worker_processes_used": len(pids),
            **report.figures(),
            "attempts": sorted(attempts(r) for r in records),
            "reclaims_logged": pool.count("reclaimed"),
            "leases_lost_logged": pool.count("another worker took"),
            "run_time_max_s": max(run_ms) / 1000,
            "wall_s": round(elapsed, 1),
        },
    )
    assert report.lost == [] and report.duplicates == {}, report.summary()
    assert report.regressed == {}, report.summary()
    assert all(r.get("s") == "Completed" and attempts(r) == 1 for r in records), records
    assert not any(k.startswith("x") for r in records for k in r), "an attempt failed/crashed"
    assert all([s for _, s, _ in hist[r]] == ["Pending", "Running", "Completed"] for r in run_ids)
    assert pool.count("another worker took") == 0 and pool.count("reclaimed") == 0
    figures.passed("R7 long tasks (10x lease)")


# -- R4: SIGTERM during load --------------------------------------------------------------


def exit_timer(pool: Any) -> list[float]:
    """Starts a thread noting (monotonic) when ``pool``'s supervisor exits."""
    out: list[float] = []

    def wait() -> None:
        pool.wait(120)
        out.append(time.monotonic())

    threading.Thread(target=wait, daemon=True).start()
    return out


def test_sigterm_hands_back_unfinished_runs(scenario_factory: Any, figures: Figures) -> None:
    """Pool A (grace 2 s) runs short tasks and a few 5 s ones; pool B runs short tasks
    too. SIGTERM A's supervisor while both are busy: the short runs A is running finish
    within grace (0 lost, 0 duplicates); the long ones are handed back at the end of grace
    (an ``Interrupted`` attempt, Pending again) and B, idle by then, starts each within
    1 s of its hand-back (server clock: the hand-back's Pending event vs ``t2``).

    A is SIGTERMed when about 100 short runs are left, so B has drained them before the
    grace ends: a handed-back run is re-added at the *end* of the stream, and behind a
    backlog it waits its turn (the 1 s bound holds only for a worker with a free slot).
    """
    grace, lease, long_s = 2.0, 2.0, 5.0
    n_short, n_long, left_at_term = size(300, 1000), size(3, 6), 100
    s = seed()
    rng = random.Random(s)
    sc = scenario_factory(lease)
    a = sc.pool("A", concurrency=n_long + 4, grace=grace)
    (a_pid,) = a.wait_consuming()
    long_keys = [f"long{i}" for i in range(n_long)]
    long_ids = [f.run_id for f in apps.long_sleep.map(long_keys, [long_s] * n_long)]
    assert sorted(sc.wait_started(n_long, timeout=30)) == sorted(long_keys)  # on A
    b = sc.pool("B", concurrency=n_long + 8)
    b.wait_consuming()
    short_keys = [f"short{i}" for i in range(n_short)]
    short_ids = [
        f.run_id
        for f in apps.short.map(short_keys, [round(rng.uniform(5, 60), 1) for _ in short_keys])
    ]
    completed = 0

    def load_nearly_done(ev: Any) -> bool:
        nonlocal completed
        completed += ev.state == "Completed"
        return completed >= n_short - left_at_term

    sc.wait_event(load_nearly_done, timeout=60)
    backlog = sc.queue_sizes()
    term_ms = sc.server_ms()
    t_term = time.monotonic()
    a_exit = exit_timer(a)
    a.signal_supervisor(signal.SIGTERM)
    sc.wait_final(long_ids + short_ids, timeout=60)
    a_code = a.wait(60)
    stop_pools(sc)

    keys, run_ids = long_keys + short_keys, long_ids + short_ids
    report, records = check_ledger(sc, keys, run_ids, {a_pid})
    hist = sc.histories()
    handbacks, redeliveries = [], []
    for rid, rec in zip(long_ids, records[:n_long], strict=True):
        pend = [ms for ms, st, f in hist[rid] if st == "Pending" and f.get("et") == "Interrupted"]
        handbacks.append(pend[0] if pend else None)
        if pend and "t2" in rec:
            redeliveries.append(int(rec["t2"]) - pend[0])
    short_report = ledger.check(ledger.read(sc.ledger_dir), short_keys)
    a_short_runs = sum(
        1 for ln in ledger.read(sc.ledger_dir) if ln.pid == a_pid and ln.key.startswith("short")
    )
    late = [
        ln.key
        for ln in ledger.read(sc.ledger_dir)
        if ln.pid == a_pid and ln.event == "finish" and ln.key.startswith("long")
    ]
    figures.record(
        "R4 SIGTERM during load",
        {
            "seed": s,
            "short_tasks": n_short,
            "long_tasks": f"{n_long} x {long_s} s",
            "grace_s": grace,
            "backlog_at_sigterm(stream,pending)": backlog,
            "short_task_lines_on_A": a_short_runs,
            **report.figures(),
            "short_duplicates": short_report.duplicate_executions,
            "handback_after_sigterm_s": [
                round((h - term_ms) / 1000, 3) if h else None for h in handbacks
            ],
            "redelivery_after_handback_ms": redeliveries,
            "long_bodies_finished_on_A_after_handback": len(late),
            "pool_A_exit_code": a_code,
            "pool_A_exit_after_sigterm_s": round(a_exit[0] - t_term, 2) if a_exit else None,
        },
    )
    assert report.lost == [], report.summary()
    assert short_report.duplicates == {} and short_report.lost == [], short_report.summary()
    assert report.regressed == {}, report.summary()
    assert all(r.get("s") == "Completed" for r in records)
    for key, rec in zip(long_keys, records[:n_long], strict=True):
        assert rec.get("x1", "").startswith("Interrupted"), (key, rec)
        assert attempts(rec) == 2, (key, rec)
    assert None not in handbacks
    # The grace period starts once the fetch loop sees the stop: after the XREADGROUP in
    # progress returns, so up to block_seconds after the signal when the stream is empty.
    latest = (grace + BLOCK_SECONDS + 1.0) * 1000
    assert all(grace * 1000 - 50 <= h - term_ms <= latest for h in handbacks if h), handbacks
    assert len(redeliveries) == n_long and all(0 <= d <= 1000 for d in redeliveries), redeliveries
    assert a_code == 0
    figures.passed("R4 SIGTERM during load")


def test_sigterm_ends_task_bodies_with_the_grace_period(
    scenario_factory: Any, figures: Figures
) -> None:
    """After grace the unfinished runs are handed back and the stopping process ends at
    once, so a handed-back run does not go on executing here while another worker runs it.

    The stop is seen when the blocking read returns (at most half a lease: 1 s here), then
    the grace runs; the bound below allows one more second for the process to exit.
    """
    grace, long_s = 1.0, 6.0
    sc = scenario_factory(2.0)
    a = sc.pool("A", concurrency=1, grace=grace)
    (a_pid,) = a.wait_consuming()
    apps.long_sleep.map(["long"], [long_s])
    sc.wait_started(1, timeout=30)
    t_term = time.monotonic()
    a.signal_supervisor(signal.SIGTERM)
    a.wait(60)
    exit_s = time.monotonic() - t_term
    lines = ledger.read(sc.ledger_dir)
    figures.record(
        "R4b SIGTERM: process exit after grace",
        {
            "grace_s": grace,
            "task_s": long_s,
            "exit_after_sigterm_s": round(exit_s, 2),
            "body_finished_after_handback": any(ln.event == "finish" for ln in lines),
        },
    )
    assert not any(ln.event == "finish" and ln.pid == a_pid for ln in lines)
    assert exit_s < grace + 1.0 + 1.0, exit_s
    figures.passed("R4b SIGTERM: process exit after grace")


# -- R9: a stalled worker (SIGSTOP) is fenced ---------------------------------------------


def test_sigstopped_worker_is_fenced(scenario_factory: Any, figures: Figures) -> None:
    """SIGSTOP the worker process running a task for 3x the lease (lease 1 s), and on
    until another pool has reclaimed the run; SIGCONT. The other worker completes it
    (attempt 2); the stalled worker's late completion is fenced (``fenced`` >= 1), the
    state never leaves Completed, and exactly one Completed outcome exists."""
    lease, task_s = 1.0, 3.0
    sc = scenario_factory(lease)
    x = sc.pool("X", concurrency=1)
    (x_pid,) = x.wait_consuming()
    (fut,) = apps.long_sleep.map(["stalled"], [task_s])
    rid = fut.run_id
    sc.wait_started(1, timeout=30)
    after = sc.wait_event(lambda ev: ev.run_id == rid and ev.state == "Running", timeout=5).id
    y = sc.pool("Y", concurrency=1)
    (y_pid,) = y.wait_consuming()
    stop_ms = sc.server_ms()
    os.kill(x_pid, signal.SIGSTOP)
    t_stop = time.monotonic()
    try:
        reclaim = sc.wait_event(
            lambda ev: ev.run_id == rid and ev.state == "Running", timeout=30, after=after
        )
        left = 3 * lease - (time.monotonic() - t_stop)
        if left > 0:
            time.sleep(left)  # the fault lasts at least 3x the lease: not a wait for work
    finally:
        stopped_s = time.monotonic() - t_stop
        os.kill(x_pid, signal.SIGCONT)
    x.wait_line(lambda ln: "was fenced off" in ln, timeout=30)
    assert fut.result(timeout=30) == "stalled"
    stop_pools(sc)

    (rec,) = sc.records([rid])
    history = sc.histories()[rid]
    states = [st for _, st, _ in history]
    report = ledger.check(
        ledger.read(sc.ledger_dir),
        ["stalled"],
        runs={"stalled": rec},
        histories={"stalled": states},
        killed_pids={x_pid},
    )
    result_len = sc.client.llen(sc.key(f"run:{rid}").replace(":run:", ":result:"))
    figures.record(
        "R9 SIGSTOP zombie fencing",
        {
            "lease_s": lease,
            "stopped_s": round(stopped_s, 2),
            "reclaimed_after_stop_s": (ms_of(reclaim.id) - stop_ms) / 1000,
            "state": rec.get("s"),
            "attempt": rec.get("a"),
            "x1": rec.get("x1"),
            "fenced": rec.get("fenced"),
            "history": states,
            "result_entries": result_len,
            "ledger_finishes": report.finishes["stalled"],
            **report.figures(),
        },
    )
    assert rec.get("s") == "Completed" and attempts(rec) == 2
    assert rec.get("x1", "").startswith("Crashed")
    assert int(rec.get("fenced", "0")) >= 1
    assert states.count("Completed") == 1 and states[-1] == "Completed"
    assert report.regressed == {} and report.unattributed == [], report.summary()
    assert result_len == 1
    assert rec.get("w", "").split("-")[-2] == str(y_pid)
    figures.passed("R9 SIGSTOP zombie fencing")


# -- R6: a task that SIGKILLs its own worker ----------------------------------------------


def test_worker_killing_task_is_dead_lettered(scenario_factory: Any, figures: Figures) -> None:
    """A task SIGKILLs its worker process on every delivery (``max_deliveries=3``), among
    normal tasks on two pools (lease 1 s). It is dead-lettered after exactly 3 deliveries
    (3 ledger starts; run Failed with ``DeadLettered``; an entry in the dead-letter stream
    naming max_deliveries), the normal tasks all complete (those killed alongside it are
    re-run), the pools stop restarting processes, and tasks submitted afterwards complete."""
    lease = 1.0
    n_before, n_after = size(300, 1000), size(50, 200)
    s = seed()
    rng = random.Random(s)
    sc = scenario_factory(lease)
    pools = [sc.pool(f"p{i}", concurrency=4) for i in range(2)]
    for p in pools:
        p.wait_consuming()
    (poison,) = apps.kill_own_worker.map(["poison"])
    before_keys = [f"a{i}" for i in range(n_before)]
    # U(50, 150) ms: the normal load lasts about as long as the poison's three deliveries,
    # so some normal runs die with it and are re-run.
    before = apps.short.map(before_keys, [round(rng.uniform(50, 150), 1) for _ in before_keys])
    t0 = time.monotonic()
    sc.wait_final([poison.run_id] + [f.run_id for f in before], timeout=120)
    dead_after = time.monotonic() - t0
    restarts_at_dead = sum(p.count("restarting") for p in pools)
    after_keys = [f"b{i}" for i in range(n_after)]
    after = apps.short.map(after_keys, [round(rng.uniform(0, 20), 1) for _ in after_keys])
    sc.wait_final([f.run_id for f in after], timeout=60)
    restarts = sum(p.count("restarting") for p in pools)
    stop_pools(sc)

    lines = ledger.read(sc.ledger_dir)
    poison_pids = {ln.pid for ln in lines if ln.key == "poison"}
    keys = before_keys + after_keys
    run_ids = [f.run_id for f in before + after]
    report, records = check_ledger(sc, keys, run_ids, poison_pids)
    (prec,) = sc.records([poison.run_id])
    dead = [
        {k.decode(): v.decode(errors="replace") for k, v in f.items()}
        for _, f in sc.client.xrange(sc.key("dead"))
    ]
    poison_states = [st for _, st, _ in sc.histories()[poison.run_id]]
    figures.record(
        "R6 poison (kills its worker), max_deliveries=3",
        {
            "seed": s,
            "normal_tasks": f"{n_before} alongside + {n_after} after",
            "poison_ledger_starts": report.starts.get("poison", 0)
            or sum(1 for ln in lines if ln.key == "poison"),
            "poison_state": prec.get("s"),
            "poison_attempts": prec.get("a"),
            "poison_dead_reason": prec.get("dead"),
            "poison_history": poison_states,
            "dead_letter_entries": len(dead),
            "worker_restarts(at dead-letter, end)": (restarts_at_dead, restarts),
            "seconds_to_dead_letter": round(dead_after, 1),
            **report.figures(),
        },
    )
    assert sum(1 for ln in lines if ln.key == "poison") == 3
    assert prec.get("s") == "Failed" and "max_deliveries" in prec.get("dead", "")
    result = poison.result(timeout=5, raise_on_failure=False)
    assert getattr(getattr(result, "error", None), "type", None) == "DeadLettered", result
    assert len(dead) == 1 and "max_deliveries" in dead[0]["reason"]
    assert dead[0]["run"] == poison.run_id
    assert restarts == restarts_at_dead == 3, "one restart per poison delivery, then none"
    assert sum(p.count("exited with -9; restarting") for p in pools) == 3
    assert report.lost == [] and report.regressed == {}, report.summary()
    assert report.unattributed == [] and report.orphan_starts == {}, report.summary()
    assert all(r.get("s") == "Completed" for r in records)
    figures.passed("R6 poison (kills its worker), max_deliveries=3")


# -- R8: a task blocked in C past its timeout ---------------------------------------------


def test_task_blocked_in_c_times_out_and_process_is_replaced(
    scenario_factory: Any, figures: Figures
) -> None:
    """``time.sleep(30)`` with ``timeout_seconds=1, retries=1`` on a CLI worker: attempt 1
    is recorded timed out (``TaskTimeoutError``) within 1 s of the limit by the server
    clock (AwaitingRetry event - ``t1`` <= 2 s) and retried; attempt 2 times out too and
    the run ends Failed with TaskTimeoutError. Each time the worker process, whose thread
    cannot be stopped, hands its other runs back and is replaced by the supervisor; short
    tasks submitted with it and after it all complete."""
    lease, limit = 2.0, 1.0
    n_with, n_after = size(150, 600), size(50, 200)
    s = seed()
    rng = random.Random(s)
    sc = scenario_factory(lease)
    pool = sc.pool("T", concurrency=4)
    pool.wait_consuming()
    (stuck,) = apps.blocked_in_c.map(["stuck"], [30.0])
    # Two 2 s tasks and shorts of U(20, 80) ms: some are running on the process when it
    # is replaced, and must be handed back rather than wait for their lease.
    held = apps.long_sleep.map(["held0", "held1"], [2.0, 2.0])
    with_keys = [f"w{i}" for i in range(n_with)]
    with_futs = held + apps.short.map(with_keys, [round(rng.uniform(20, 80), 1) for _ in with_keys])
    with_keys = ["held0", "held1", *with_keys]
    t0 = time.monotonic()
    sc.wait_final([stuck.run_id] + [f.run_id for f in with_futs], timeout=90)
    failed_after = time.monotonic() - t0
    after_keys = [f"z{i}" for i in range(n_after)]
    after_futs = apps.short.map(after_keys, [0.0] * n_after)
    sc.wait_final([f.run_id for f in after_futs], timeout=60)
    replaced = pool.count("replaced after a task timed out")
    stop_pools(sc)

    lines = ledger.read(sc.ledger_dir)
    stuck_pids = {ln.pid for ln in lines if ln.key == "stuck"}
    keys = with_keys + after_keys
    report, records = check_ledger(sc, keys, [f.run_id for f in with_futs + after_futs], stuck_pids)
    (rec,) = sc.records([stuck.run_id])
    hist = sc.histories()[stuck.run_id]
    retry_ms = next(ms for ms, st, _ in hist if st == "AwaitingRetry")
    fail_ms = next(ms for ms, st, _ in hist if st == "Failed")
    took1 = (retry_ms - int(rec["t1"])) / 1000
    took2 = (fail_ms - int(rec["t2"])) / 1000
    retry_wait = (int(rec["t2"]) - retry_ms) / 1000
    crashes = pool.count("; restarting")
    interrupted = sum(r.get("x1", "").startswith("Interrupted") for r in records)
    figures.record(
        "R8 timeout while blocked in C",
        {
            "seed": s,
            "timeout_seconds": limit,
            "attempt1_recorded_after_s(server)": took1,
            "attempt2_recorded_after_s(server)": took2,
            "x1": rec.get("x1"),
            "x2": rec.get("x2"),
            "state": rec.get("s"),
            "history": [st for _, st, _ in hist],
            "retry_started_after_s(t2-AwaitingRetry)": retry_wait,
            "processes_replaced": replaced,
            "other_process_exits": crashes,
            "other_runs_handed_back": interrupted,
            "stuck_ledger_starts": sum(1 for ln in lines if ln.key == "stuck"),
            "seconds_to_failed": round(failed_after, 1),
            **report.figures(),
        },
    )
    assert "TaskTimeoutError: timed out" in rec.get("x1", "")
    assert "TaskTimeoutError: timed out" in rec.get("x2", "")
    assert rec.get("s") == "Failed" and attempts(rec) == 2
    assert limit <= took1 <= limit + 1.0 and limit <= took2 <= limit + 1.0
    result = stuck.result(timeout=5, raise_on_failure=False)
    assert "TaskTimeoutError" in str(getattr(getattr(result, "error", None), "type", "")), result
    assert replaced == 2 and crashes == 0
    assert interrupted >= 2, "the runs held by the replaced process were handed back"
    assert report.lost == [] and report.regressed == {}, report.summary()
    assert report.unattributed == [] and report.orphan_starts == {}, report.summary()
    assert all(r.get("s") == "Completed" for r in records)
    figures.passed("R8 timeout while blocked in C")

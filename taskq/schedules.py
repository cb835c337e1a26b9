"""Periodic tasks declared in code, fired by the workers: no beat process.

``@app.task(schedule="*/5 * * * *")`` (a cron expression, parsed by ``cronsim``) or
``schedule=timedelta(minutes=5)`` (an interval, its ticks at whole multiples of it since
the Unix epoch), with ``schedule_tz="Europe/Paris"`` (cron only; default UTC) and
``missed_ticks="once"`` or ``"skip"``.

**Exactly once per tick.** Every worker process consuming a scheduled task's queue runs a
:class:`ScheduleRunner` thread. The run of tick ``T`` has the run id ``<task>@<T in ms>``,
so whichever workers enqueue it, the enqueue script (which refuses a known run id) adds
one run; the time is the Redis server's (a worker whose clock is ahead never fires early).
The last tick fired is kept in Redis (``<queue tag>:sched``, one field per task), written
after the run is enqueued: a worker killed in between leaves the tick to be enqueued again
by the next one, which the run id turns into nothing.

**Never skipped by a restart; missed ticks.** A tick that came due while a worker was
watching the schedule (or at most ``TOLERANCE`` seconds before it started) fires, however late
the worker's thread gets to it, and ticks fire in order, each once (a thread that wakes late
fires the ticks it slept through). A tick that came due before the watching worker started and was
not fired by anyone (every worker was down) is missed: with ``missed_ticks="once"`` (the
default) the latest missed tick runs once on catch-up; with ``"skip"`` none does, and the
schedule goes on with its next tick. Older missed ticks never run: at most one catch-up run. A
schedule seen for the first time starts then: its first tick is the first one after that moment.

A scheduled task takes no arguments. ``taskq schedules MODULE:APP`` lists the schedules,
their last fired tick and their next.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from taskq.errors import ConfigurationError, TaskqError
from taskq.message import encode_message

if TYPE_CHECKING:
    from taskq.app import App
    from taskq.task import Task

log = logging.getLogger("taskq.schedules")

MISSED_POLICIES = ("once", "skip")
#: How long before a worker started watching a tick may have come due and still count as
#: on time (a restart within it misses nothing), in seconds.
TOLERANCE = 2.0
#: Most ticks one schedule fires in one look (a worker far behind catches up over looks).
MAX_TICKS_PER_LOOK = 100


@dataclass(frozen=True)
class Schedule:
    """A task's validated schedule: a cron expression or an interval in seconds."""

    cron: str | None = None
    every: float | None = None
    tz: str = "UTC"
    missed: str = "once"

    def _zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def next_after(self, t_ms: int) -> int:
        """The first tick strictly after ``t_ms`` (Unix ms)."""
        if self.every is not None:
            step = round(self.every * 1000)
            return (t_ms // step + 1) * step
        assert self.cron is not None
        start = datetime.fromtimestamp(t_ms / 1000, tz=self._zone())
        # cronsim counts from whole minutes: a tick equal to t_ms is not "after" it.
        for tick in CronSim(self.cron, start):
            ms = int(tick.timestamp() * 1000)
            if ms > t_ms:
                return ms
        raise ConfigurationError(f"schedule {self.cron!r} has no next tick")  # pragma: no cover

    def latest_at_or_before(self, t_ms: int) -> int:
        """The last tick at or before ``t_ms``."""
        if self.every is not None:
            step = round(self.every * 1000)
            return t_ms // step * step
        assert self.cron is not None
        start = datetime.fromtimestamp(t_ms / 1000, tz=self._zone()) + timedelta(microseconds=1)
        tick = next(CronSim(self.cron, start, reverse=True))
        return int(tick.timestamp() * 1000)

    def next_due(
        self, last_ms: int, now_ms: int, watching_since_ms: int
    ) -> tuple[int, bool] | None:
        """The next tick to deal with, given the last one fired: ``(tick, fire)``, or None
        while none is due.

        Ticks are dealt with in order: the first one after ``last_ms``, if it came due
        while a worker was watching (at or after ``watching_since_ms`` less
        :data:`TOLERANCE`), fires (``fire`` True), however late this look is. Ticks that
        came due before that are missed, and are dealt with as one: the latest of them,
        which fires with ``missed="once"`` and is only recorded with ``"skip"``.
        """
        nxt = self.next_after(last_ms)
        if nxt > now_ms:
            return None
        boundary = watching_since_ms - round(TOLERANCE * 1000)
        if nxt >= boundary:
            return nxt, True
        return self.latest_at_or_before(min(now_ms, boundary - 1)), self.missed == "once"

    def describe(self) -> str:
        if self.every is not None:
            return f"every {self.every:g} s"
        return f"cron {self.cron!r} ({self.tz})"


def build_schedule(value: Any, tz: Any = None, missed: Any = None) -> Schedule | None:
    """Validate ``schedule``, ``schedule_tz`` and ``missed_ticks``.

    Raises:
        ConfigurationError: A bad expression, interval, time zone or policy.
    """
    if value is None:
        if tz is not None or missed is not None:
            raise ConfigurationError("schedule_tz and missed_ticks need a schedule")
        return None
    missed = "once" if missed is None else missed
    if missed not in MISSED_POLICIES:
        raise ConfigurationError(f"missed_ticks must be one of {MISSED_POLICIES}, got {missed!r}")
    if isinstance(value, str):
        zone = "UTC" if tz is None else tz
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ConfigurationError(f"schedule_tz {zone!r} is not a known time zone") from None
        try:
            CronSim(value, datetime.now(UTC))
        except CronSimError as exc:
            raise ConfigurationError(
                f"schedule {value!r} is not a cron expression: {exc}"
            ) from None
        return Schedule(cron=value, tz=zone, missed=missed)
    if tz is not None:
        raise ConfigurationError("schedule_tz applies to a cron schedule, not an interval")
    every = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(every, bool) or not isinstance(every, int | float) or not every >= 0.001:
        raise ConfigurationError(
            "schedule must be a cron expression, or an interval (seconds or timedelta, "
            f"at least 1 ms), got {value!r}"
        )
    return Schedule(every=float(every), missed=missed)


def tick_run_id(task_name: str, tick_ms: int) -> str:
    """The run id of a schedule's tick: the same from every worker."""
    return f"{task_name}@{tick_ms}"


class ScheduleRunner:
    """The thread that fires the schedules of ``tasks`` (those on a worker's queues).

    Args:
        app: The app.
        tasks: Its scheduled tasks this worker consumes.
    """

    def __init__(
        self, app: App, tasks: Sequence[Task[Any, Any]], since_ms: int | None = None
    ) -> None:
        self.app = app
        self.tasks = list(tasks)
        #: When this worker started watching (server ms; default: its first step).
        self.since_ms = since_ms
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="taskq-schedules", daemon=True)
        self.fired = 0

    def start(self) -> None:
        if self.tasks:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.step()
            except Exception as exc:  # Redis away, or its connections closed at exit
                if self._stop.is_set():
                    break
                level = logging.WARNING if isinstance(exc, TaskqError) else logging.ERROR
                log.log(level, "schedules: %s; retrying", exc, exc_info=level > logging.WARNING)
                wait = 1.0
            self._stop.wait(wait)

    def step(self) -> float:
        """Fire what is due now; the seconds until the next tick (at most 1)."""
        broker = self.app.broker
        now_ms = broker.control.server_ms()
        if self.since_ms is None:
            self.since_ms = now_ms
        soonest = now_ms + 1000
        for task in self.tasks:
            sched = task.options.schedule
            assert sched is not None
            queue = self.home(task)
            last = broker.control.last_tick(queue, task.name)
            if last is None:  # first seen: it starts now
                broker.control.record_tick(queue, task.name, sched.latest_at_or_before(now_ms))
                soonest = min(soonest, sched.next_after(now_ms))
                continue
            for _ in range(MAX_TICKS_PER_LOOK):  # in order, each tick once
                due = sched.next_due(last, now_ms, self.since_ms)
                if due is None:
                    break
                tick, fire = due
                if fire:
                    self.fire(task, queue, tick)
                else:
                    broker.control.record_tick(queue, task.name, tick)
                    log.info("schedule of %s: missed ticks skipped", task.name)
                last = tick
            soonest = min(soonest, sched.next_after(now_ms))
        return max(0.001, (soonest - now_ms) / 1000)

    def home(self, task: Task[Any, Any]) -> str:
        """The physical queue of a scheduled task's runs and tick record."""
        return self.app.spread.pick(task.queue, task.name)

    def fire(self, task: Task[Any, Any], queue: str, tick_ms: int) -> None:
        """Enqueue tick ``tick_ms``'s run (idempotent by its run id), then record it."""
        rid = tick_run_id(task.name, tick_ms)
        msg = task.make_message((), {}, run_id=rid)
        payload = encode_message(msg, self.app.broker.limits)
        producer = self.app.broker.producer
        added = producer.enqueue(queue, [(rid, payload, "")], task.options.priority, task.name)
        self.app.broker.control.record_tick(queue, task.name, tick_ms)
        if added and added[0] == 1:
            self.fired += 1
            log.info("schedule of %s: tick %s fired (run %s)", task.name, tick_ms, rid)


def schedule_lines(app: App) -> list[str]:
    """What ``taskq schedules`` prints: per scheduled task, its schedule, the last tick
    fired and the next."""
    lines = []
    now_ms = int(time.time() * 1000)
    for name in sorted(app.registry):
        task = app.registry[name]
        sched = task.options.schedule
        if sched is None:
            continue
        queue = app.spread.pick(task.queue, task.name)
        last = app.broker.control.last_tick(queue, name)
        when = "never" if last is None else _fmt(last, sched)
        nxt = sched.next_after(max(now_ms, last or 0))
        lines.append(
            f"{name}  {sched.describe()}  missed={sched.missed}  last={when}  "
            f"next={_fmt(nxt, sched)}"
        )
    return lines or ["no scheduled tasks"]


def _fmt(ms: int, sched: Schedule) -> str:
    zone = ZoneInfo(sched.tz)
    return datetime.fromtimestamp(ms / 1000, tz=zone).isoformat(timespec="seconds")

"""Futures: handles on submitted runs whose results arrive through Redis.

``Future.result()`` blocks on Redis (BLMOVE of the run's one-element result list
back onto itself), so it wakes the moment the outcome is written and nothing
polls on a timer. ``wait`` and ``as_completed`` read every finished outcome in one
round trip, then block on the queue's events stream (XREAD) for the rest. Every wait
is read-only: no waiter, killed or not, can take a result or change its TTL.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar, overload

from taskq.errors import (
    ChildFailedError,
    ConfigurationError,
    ErrorInfo,
    ResultInTaskError,
    ResultNotPersistedError,
    ResultTimeoutError,
    TaskCancelledError,
    TaskFailedError,
    TaskqError,
)
from taskq.message import Outcome, decode_outcome
from taskq.protocol import CancelReply, ErrorType, RecordField, StateName, WaitMode
from taskq.states import NAME_TO_TYPE, State, StateType

if TYPE_CHECKING:
    from taskq.broker import Broker

R = TypeVar("R")

#: Most runs one blocking wait of ``as_completed`` watches at once.
_WATCH_BATCH = 512
#: Longest time ``as_completed`` goes without re-reading every pending future (seconds).
_FULL_REFRESH = 1.0


#: Characters no run id taskq makes contains (SCAN glob syntax, hash-tag braces, blanks).
_BAD_ID_CHARS = frozenset("*?[]\\{}") | frozenset(" \t\r\n")


def check_run_id(run_id: object) -> str:
    """Return ``run_id`` if it can name a run, else raise.

    Raises:
        ConfigurationError: Not a string of 1-256 characters, or holding glob
            characters, braces or whitespace (no run id taskq makes has them).
    """
    if (
        not isinstance(run_id, str)
        or not 0 < len(run_id) <= 256
        or any(c in _BAD_ID_CHARS for c in run_id)
    ):
        raise ConfigurationError(f"invalid run id {run_id!r}")
    return run_id


#: Set by the worker's engine around a plain task's call (never around a flow body,
#: which suspends instead of blocking): the id of the run executing here.
current_task_run: ContextVar[str | None] = ContextVar("taskq_current_task_run", default=None)


@contextlib.contextmanager
def running_task(run_id: str) -> Iterator[None]:
    """Mark this thread (or asyncio task) as running the plain task run ``run_id``,
    under which waits for results are refused."""
    token = current_task_run.set(run_id)
    try:
        yield
    finally:
        current_task_run.reset(token)


def _refuse_in_task(what: str) -> None:
    """Raise if a worker is running a plain task here: a task that blocks on a result
    holds its slot meanwhile, and with every slot so held nothing runs the awaited
    runs (Celery refuses this too). Refused always, even for an outcome already
    known, so the rule does not depend on timing."""
    run_id = current_task_run.get()
    if run_id is not None:
        raise ResultInTaskError(
            f"{what} inside task run {run_id}: waiting for a result inside a task holds "
            "its worker slot and can deadlock the pool. Use an @app.flow, which suspends "
            "instead of blocking, or submit the follow-up work from this task and return "
            "(a Future given as an argument is waited for too, so it is refused here)"
        )


class WaitGroup(Protocol):
    """Where waits on some futures go instead of straight to Redis.

    A durable flow run is one (``taskq.flows.run.FlowRun``): its waits may suspend
    the flow, and it yields children in their recorded order, so a replay agrees.
    """

    def wait(self, ids: Sequence[str], mode: WaitMode) -> None:
        """Return once all (or any) of the runs ``ids`` ended."""
        ...

    def as_completed(self, futures: Iterable[Future[R]]) -> Iterator[Future[R]]:
        """Yield ``futures`` in the order their runs ended."""
        ...


class Future(Generic[R]):
    """A submitted run.

    Attributes:
        run_id: The run's id.
        queue: The physical queue it was sent to: of a partitioned queue, the
            partition's name (``hot#3.0``), where its keys are.
        task_name: The registered name of its task.
    """

    __slots__ = ("_broker", "_outcome", "queue", "run_id", "task_name")

    def __init__(self, broker: Broker, queue: str, run_id: str, task_name: str) -> None:
        self._broker = broker
        self.queue = queue
        self.run_id = run_id
        self.task_name = task_name
        self._outcome: Outcome | None = None

    def __repr__(self) -> str:
        return f"Future(task={self.task_name!r}, run_id={self.run_id!r}, queue={self.queue!r})"

    @property
    def wait_group(self) -> WaitGroup | None:
        """Where waits on this future go instead of Redis (None: straight to Redis)."""
        return None

    def _set(self, raw: bytes | None) -> Outcome | None:
        if raw is not None and self._outcome is None:
            self._outcome = decode_outcome(raw)
        return self._outcome

    def cancel(self, reason: str = "") -> CancelReply:
        """Cancel the run (see :mod:`taskq.cancel` and :meth:`taskq.App.cancel`)."""
        from taskq.cancel import cancel_run

        return cancel_run(self._broker, self.queue, self.run_id, reason)

    def done(self) -> bool:
        """True once the run has a final outcome (one round trip unless already known)."""
        if self._outcome is None:
            self._set(self._broker.producer.peek_results(self.queue, [self.run_id])[0])
        return self._outcome is not None

    def wait(self, timeout: float | None = None) -> State:
        """Block until the run is final or ``timeout`` seconds pass; return its state.

        Raises:
            ResultInTaskError: Called inside a task running on a worker.
        """
        _refuse_in_task("Future.wait()")
        if self._outcome is None:
            self._set(self._broker.producer.wait_result(self.queue, self.run_id, timeout))
        return self.state

    @overload
    def result(self, timeout: float | None = None, raise_on_failure: Literal[True] = True) -> R: ...

    @overload
    def result(
        self, timeout: float | None = None, *, raise_on_failure: Literal[False]
    ) -> R | TaskqError: ...

    @overload
    def result(self, timeout: float | None, raise_on_failure: Literal[False]) -> R | TaskqError: ...

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> R | TaskqError:
        """The run's return value, blocking until it exists.

        Args:
            timeout: Seconds to wait; None waits as long as it takes.
            raise_on_failure: When False, a failed or cancelled run's error is
                returned instead of raised.

        Raises:
            ResultTimeoutError: No outcome within ``timeout``.
            TaskFailedError: The run ended Failed (error data attached).
            TaskCancelledError: The run ended Cancelled.
            ResultInTaskError: Called inside a task running on a worker (use a flow).
        """
        _refuse_in_task("Future.result()")
        outcome = self._outcome
        if outcome is None:
            outcome = self._set(self._broker.producer.wait_result(self.queue, self.run_id, timeout))
        if outcome is None:
            head = f"run {self.run_id} has no result after {timeout} s"
            raise ResultTimeoutError(_explain(head, [self]))
        error = outcome_error(self.run_id, outcome)
        if error is None:
            if not outcome.kept:
                raise not_kept(self.run_id, self.task_name)
            return outcome.value  # type: ignore[no-any-return]
        if raise_on_failure:
            raise error
        return error

    @property
    def state(self) -> State:
        """The run's current state, read from Redis (final states are cached)."""
        if self._outcome is not None:
            o = self._outcome
            error = outcome_error(self.run_id, o) or (
                None if o.kept else not_kept(self.run_id, self.task_name)
            )
            return State(
                o.state, o.attempt, o.error, value=o.value, run_id=self.run_id, exception=error
            )
        record = self._broker.producer.run_record(self.queue, self.run_id)
        if not record:
            raw = self._broker.producer.peek_results(self.queue, [self.run_id])[0]
            if self._set(raw) is not None:
                return self.state
            return State(StateName.UNKNOWN.value)
        err = None
        if RecordField.DEAD in record:
            err = ErrorInfo(ErrorType.DEAD_LETTERED.value, record[RecordField.DEAD])
        name = record.get(RecordField.STATE, StateName.PENDING.value)
        attempt = int(record.get(RecordField.ATTEMPT, 0))
        return State(name, attempt, err, dict(record), run_id=self.run_id)


def not_kept(run_id: str, task_name: str) -> ResultNotPersistedError:
    """The error a completed run's result read raises when its value was not kept."""
    return ResultNotPersistedError(
        f"run {run_id} completed, but task {task_name!r} has persist_result=False: "
        "no value was kept"
    )


def outcome_error(run_id: str, outcome: Outcome, *, child: bool = False) -> TaskqError | None:
    """The error a result read raises for ``outcome`` (None when it completed).

    Args:
        run_id: The run the outcome is of.
        outcome: Its final outcome.
        child: Read inside its flow: every bad end is a :class:`ChildFailedError`
            (a cancelled child too), as a flow body catches one type.

    Returns:
        :class:`TaskCancelledError` for a cancelled run, :class:`TaskFailedError`
        for any other end but Completed (or Cached), else None.
    """
    kind = NAME_TO_TYPE.get(outcome.state)
    if kind is StateType.COMPLETED:
        return None
    if child:
        error = outcome.error or ErrorInfo("UnknownError", f"child ended {outcome.state}")
        return ChildFailedError(run_id, error, outcome.attempt)
    if kind is StateType.CANCELLED:
        reason = outcome.error.message if outcome.error else ""
        return TaskCancelledError(run_id, reason)
    error = outcome.error or ErrorInfo("UnknownError", f"run ended {outcome.state}")
    return TaskFailedError(run_id, error, outcome.attempt)


def _explain(head: str, pending: Sequence[Future[Any]]) -> str:
    """A timeout's message: ``head``, then what Redis knows, read on the timeout only
    (one round trip per queue, at most three queues): the first unfinished run's
    state and, per queue, how recently a worker read from it."""
    first = pending[0]
    queues = list(dict.fromkeys((id(f._broker), f.queue) for f in pending))[:3]
    facts = []
    for key in queues:
        f = next(f for f in pending if (id(f._broker), f.queue) == key)
        try:
            got = f._broker.inspect.wait_facts(f.queue, [first.run_id] if f is first else [])
        except TaskqError:
            return head  # Redis went away meanwhile: the bare timeout is the truth then
        if f is first:
            state = got.states[0]
            facts.append(
                f"run {first.run_id} is {state}"
                if state is not None
                else f"run {first.run_id} is unknown on queue {first.queue!r} "
                "(no record: never submitted there, or expired)"
            )
        facts.append(_readers(f.queue, got.has_group, got.idle, f._broker.settings.block_seconds))
    return f"{head}: " + "; ".join(facts)


def _readers(queue: str, has_group: bool, idle: float | None, block: float) -> str:
    if not has_group:
        return f"no worker has ever consumed queue {queue!r} (no consumer group)"
    if idle is None:
        return f"no worker has taken a run from queue {queue!r} yet (no consumer in its group)"
    if idle <= 2 * block:  # a live idle worker reads at least every block_seconds
        return f"a worker read from queue {queue!r} {idle:.1f} s ago"
    return f"the last worker read from queue {queue!r} {idle:.1f} s ago"


@dataclass(frozen=True)
class DoneAndNotDone(Generic[R]):
    """What :func:`wait` returns."""

    done: set[Future[R]]
    not_done: set[Future[R]]


def _refresh(futures: Iterable[Future[Any]]) -> None:
    by_queue: dict[tuple[int, str], list[Future[Any]]] = {}
    for f in futures:
        if f._outcome is None:
            by_queue.setdefault((id(f._broker), f.queue), []).append(f)
    for group in by_queue.values():
        raws = group[0]._broker.producer.peek_results(group[0].queue, [f.run_id for f in group])
        for f, raw in zip(group, raws, strict=True):
            f._set(raw)


def as_completed(futures: Iterable[Future[R]], timeout: float | None = None) -> Iterator[Future[R]]:
    """Yield futures as their runs finish, finished ones first.

    Raises:
        ResultTimeoutError: Some runs were not final within ``timeout`` seconds.
        ResultInTaskError: Called inside a task running on a worker (raised at
            once, not at the first ``next``).
    """
    _refuse_in_task("as_completed()")
    return _as_completed(futures, timeout)


def _as_completed(futures: Iterable[Future[R]], timeout: float | None) -> Iterator[Future[R]]:
    pending = list(dict.fromkeys(futures))
    groups = {id(f.wait_group) for f in pending}
    group = pending[0].wait_group if pending else None
    if group is not None and len(groups) == 1:
        # Inside a flow: completion order is the recorded one, so a replay agrees.
        yield from group.as_completed(pending)
        return
    deadline = None if timeout is None else time.monotonic() + timeout
    # After a wake-up only the watched futures are re-read (one of them finished);
    # every pending one is re-read at the start, when a wait times out, and at least
    # every _FULL_REFRESH seconds (futures of other queues, or beyond the watched
    # batch), so many slowly finishing futures cost O(batch) per wake-up, not O(n).
    watched: list[Future[R]] = []
    full_at = 0.0
    while pending:
        now = time.monotonic()
        if not watched or now >= full_at:
            _refresh(pending)
            full_at = now + _FULL_REFRESH
        else:
            _refresh(watched)
        still = []
        for f in pending:
            if f._outcome is not None:
                yield f
            else:
                still.append(f)
        pending = still
        if not pending:
            return
        left = 2.0 if deadline is None else deadline - time.monotonic()
        if left <= 0:
            what = f"{len(pending)} run(s) unfinished after {timeout} s"
            raise ResultTimeoutError(_explain(what, pending))
        head = pending[0]
        same = [f for f in pending if f._broker is head._broker and f.queue == head.queue]
        watched = same[:_WATCH_BATCH]
        block = min(left, head._broker.settings.block_seconds)
        if head._broker.producer.wait_any(head.queue, [f.run_id for f in watched], block) is None:
            watched = []  # timed out: re-read everything


def wait(futures: Iterable[Future[R]], timeout: float | None = None) -> DoneAndNotDone[R]:
    """Block until every run is final or ``timeout`` passes; split the futures accordingly.

    Raises:
        ResultInTaskError: Called inside a task running on a worker.
    """
    _refuse_in_task("wait()")
    items = list(futures)
    group = items[0].wait_group if items else None
    if group is not None and all(f.wait_group is not None for f in items):
        # Inside a flow: one wait for all of them (the flow may suspend).
        group.wait([f.run_id for f in items], WaitMode.ALL)
        return DoneAndNotDone(set(items), set())
    try:
        for _ in as_completed(items, timeout):
            pass
    except ResultTimeoutError:
        pass
    done = {f for f in items if f._outcome is not None}
    return DoneAndNotDone(done, {f for f in items if f._outcome is None})


def resolve_futures(value: Any) -> Any:
    """Replace every Future in ``value`` (and in its lists, tuples and dicts) by its result.

    As in Prefect, a task given a Future receives the upstream run's value; an
    upstream run that failed raises its error here, at the call.
    """
    if isinstance(value, str | int | float | bytes | None):
        return value
    if isinstance(value, Future):
        _refuse_in_task("a Future passed as an argument (it is resolved by waiting for it)")
        return value.result()
    if isinstance(value, list | tuple):
        items = [resolve_futures(v) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        return {k: resolve_futures(v) for k, v in value.items()}
    return value

"""One execution of a flow body: its children, their futures, its waits.

:class:`FlowRun` submits children with deterministic ids and learns their outcomes;
a wait that cannot be met inline raises :class:`Suspend` (see :mod:`taskq.flows`).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ParamSpec, TypeVar

from taskq.cache import flow_parameters_digest
from taskq.errors import NonDeterministicFlowError
from taskq.futures import Future, WaitGroup, outcome_error
from taskq.futures import wait as wait_all
from taskq.message import Message, Outcome, decode_outcome, encode_message, pack
from taskq.partitions import stable_hash
from taskq.protocol import MetaKey, WaitMode
from taskq.states import NAME_TO_TYPE, State, StateType, returned_value
from taskq.task import Host, Task

P = ParamSpec("P")
R = TypeVar("R")


class Suspend(BaseException):
    """Unwinds a flow body that must wait for children (never seen by user code
    that catches ``Exception``)."""

    def __init__(self, waiting: list[str], mode: WaitMode) -> None:
        super().__init__(f"waiting for {len(waiting)} child run(s)")
        self.waiting = waiting
        self.mode = mode


def call_digest(task: str, args: Sequence[Any], kwargs: dict[str, Any]) -> bytes:
    """What a child call was, in 8 bytes: BLAKE2b of the msgpack of ``[task, args, kwargs]``."""
    return hashlib.blake2b(pack([task, args, kwargs]), digest_size=8).digest()


def call_body(flow: Task[Any, Any], args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """Run a flow body, sync or ``async def`` (the latter on a private event loop), and
    return what its return value means (:func:`returned_states`)."""
    if flow.is_async:
        return returned_states(asyncio.run(flow.fn(*args, **kwargs)))
    return returned_states(flow.fn(*args, **kwargs))


def returned_states(value: Any) -> Any:
    """What a flow body's return value means, as in Prefect: a returned state (or list
    of states) sets the outcome as for a task (:func:`taskq.states.returned_value`),
    and so does a returned future, or a list of futures (and states): each is waited
    for (in a durable flow the wait may suspend it) and stands for its final state.

    Raises:
        FailedStateReturned: A returned state, or a returned future's run, failed.
        Cancel: A returned state is Cancelled.
    """
    if isinstance(value, Future):
        value.wait()
        return returned_value(value.state)
    if (
        isinstance(value, list | tuple)
        and value
        and any(isinstance(v, Future) for v in value)
        and all(isinstance(v, Future | State) for v in value)
    ):
        wait_all([v for v in value if isinstance(v, Future)])
        states = [v.state if isinstance(v, Future) else v for v in value]
        return returned_value(states)
    return returned_value(value)


class ChildFuture(Future[R]):
    """A child's future inside a durable flow: waiting on it may suspend the flow."""

    __slots__ = ("_runner",)

    def __init__(self, runner: FlowRun, queue: str, run_id: str, task_name: str) -> None:
        super().__init__(runner.app.broker, queue, run_id, task_name)
        self._runner = runner

    @property
    def wait_group(self) -> WaitGroup:
        """Its flow run: waits on children go through it (and may suspend the flow)."""
        return self._runner

    def done(self) -> bool:
        """True once the child has an outcome its flow has learned (one read if not)."""
        return self._runner.outcome(self.run_id, refresh=True) is not None

    def wait(self, timeout: float | None = None) -> State:
        """Wait (suspending the flow if need be); ``timeout`` is ignored inside a flow."""
        self._runner.wait([self.run_id], WaitMode.ALL)
        return self.state

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> Any:
        """The child's value; raises :class:`ChildFailedError` if it ended badly.

        Inside a flow the wait may suspend the flow; ``timeout`` is ignored.
        """
        self._runner.wait([self.run_id], WaitMode.ALL)
        outcome = self._runner.outcome(self.run_id)
        assert outcome is not None
        exc = outcome_error(self.run_id, outcome, child=True)
        if exc is None:
            return outcome.value
        if raise_on_failure:
            raise exc
        return exc

    @property
    def state(self) -> State:
        """The child's state: its outcome once its flow has learned it, else from Redis."""
        o = self._runner.outcome(self.run_id)
        if o is not None:
            error = outcome_error(self.run_id, o, child=True)
            return State(
                o.state, o.attempt, o.error, value=o.value, run_id=self.run_id, exception=error
            )
        return super().state


class FlowRun:
    """The runtime of one execution of a flow body: it submits and awaits children.

    Args:
        app: The app.
        flow: The flow being run.
        run_id: The flow run's id (children are ``<run_id>.<n>``).
        queue: The flow's queue (its hash tag holds the fan-in keys).
        durable: True on a worker (children notify the flow, waits may suspend);
            False for a direct call in application code (waits block).
        can_block: Whether the worker has a free slot, so blocking inline can help.
        retrying: This execution is a retry: children that failed run again.
        params: The flow's ``(args, kwargs)``: children whose cache policy reads the flow's
            parameters get their digest (None: no flow parameters).
        level: The flow's priority level.
        log_prints: The flow's ``log_prints``: its children whose task leaves theirs
            unset inherit it (their messages carry it), as in Prefect.
    """

    def __init__(
        self,
        app: Host,
        flow: Task[Any, Any],
        run_id: str,
        queue: str,
        *,
        durable: bool,
        can_block: Callable[[], bool] = lambda: True,
        retrying: bool = False,
        level: int = 0,
        params: tuple[Sequence[Any], dict[str, Any]] | None = None,
        log_prints: bool = False,
    ) -> None:
        self.app = app
        self.params = params
        self._params_digest: bytes | None = None
        self.level = level
        self.log_prints = log_prints
        self.flow = flow
        self.run_id = run_id
        self.queue = queue
        self.durable = durable
        self.can_block = can_block
        self.retrying = retrying
        self.seq = 0
        self.inline_wait = float(flow.options.inline_wait_seconds)
        #: The physical queues its children went to (a partitioned queue's partitions).
        self.child_queues: dict[str, None] = {}
        # A child of a partitioned queue goes to partition (this + its seq) % N: the turns
        # of a round robin, so a flow's children spread evenly, yet the same on every
        # replay (a child enqueued again elsewhere would run twice).
        self._first_turn = stable_hash(run_id)
        self.spawned: list[str] = []
        self._outcomes: dict[str, Outcome] = {}
        self._seen = 0
        self._reset: set[str] = set()
        #: The call each child spawned in this execution makes, checked against the
        #: call its outcome records when that outcome is learned later.
        self._calls: dict[str, tuple[str, bytes]] = {}
        #: Set once the body is found non-deterministic: the flow fails with it even
        #: if the body catches it.
        self.violation: NonDeterministicFlowError | None = None

    # -- replay -------------------------------------------------------------------------

    def load(self) -> None:
        """Learn every child that already ended, in one round trip (two if any did)."""
        if not self.durable:
            return
        self._refresh()
        if self.retrying:
            bad = [c for c, o in self._outcomes.items() if not _completed(o)]
            if bad:
                self.app.broker.flows.flow_forget(self.queue, self.run_id, bad)
                self._outcomes, self._seen, self._reset = {}, 0, set(bad)
                self._refresh()

    def _refresh(self) -> None:
        order, raws = self.app.broker.flows.flow_outcomes(self.queue, self.run_id, self._seen)
        self._seen += len(order)
        for child in order:
            raw = raws.get(child)
            if raw is not None:
                outcome = self._outcomes[child] = decode_outcome(raw)
                call = self._calls.pop(child, None)
                if call is not None:
                    self._verify(child, outcome, call)

    def _verify(self, child: str, outcome: Outcome, call: tuple[str, bytes]) -> None:
        """Raise :class:`NonDeterministicFlowError` if ``child`` ended as another call."""
        recorded = outcome.call
        if recorded is None or recorded == call:
            return  # the same call (or one recorded before calls were recorded)
        self.violation = NonDeterministicFlowError(self.run_id, child, recorded[0], call[0])
        raise self.violation

    def outcome(self, child_id: str, refresh: bool = False) -> Outcome | None:
        """The outcome of child ``child_id`` if known (``refresh``: read new ones first)."""
        if child_id not in self._outcomes and refresh and self.durable:
            self._refresh()
        return self._outcomes.get(child_id)

    # -- children -----------------------------------------------------------------------

    def _next_id(self) -> str:
        self.seq += 1
        return f"{self.run_id}.{self.seq}"

    def params_digest(self) -> bytes | None:
        """The digest of the flow's parameters (computed once, when a child needs it)."""
        if self._params_digest is None and self.params is not None:
            args, kwargs = self.params
            digest = flow_parameters_digest(self.flow.fn, args, kwargs, self.run_id)
            self._params_digest = digest or b""
        return self._params_digest or None

    def _message(
        self,
        task: Task[Any, Any],
        rid: str,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        digest: bytes | None = None,
    ) -> Message:
        msg = task.make_message(args, kwargs, rid)
        if self.log_prints and task.options.log_prints is None:
            msg.meta.setdefault(MetaKey.LOG_PRINTS.value, True)
        if self.durable:
            # The flow's priority level travels too: its resume goes back to that stream.
            msg.meta[MetaKey.PARENT.value] = [self.queue, self.run_id, self.level]
            if digest is not None:
                msg.meta[MetaKey.CALL.value] = digest
        if task.options.cache.flow_parameters and (params := self.params_digest()) is not None:
            msg.meta[MetaKey.FLOW_PARAMETERS.value] = params
        return msg

    def map_children(
        self,
        task: Task[Any, Any],
        rows: Sequence[Sequence[Any]],
        kwargs: dict[str, Any] | Sequence[dict[str, Any]],
        due: str,
    ) -> list[Future[Any]]:
        """Enqueue one child per row (one bulk call); futures in input order. ``kwargs``
        is shared by every row, or one dict per row (mapped keyword arguments).

        On a partitioned queue each child goes to the partition its place in the flow
        picks (see ``_first_turn``), or its ``partition_key``'s: one bulk call per
        partition, pipelined.
        """
        futures: list[Future[Any]] = []
        parts: dict[str, list[tuple[str, bytes, str]]] = {}
        logical, spread = task.queue, self.app.spread
        key = task.options.partition_key
        durable, name = self.durable, task.name
        if not spread.partitioned(logical):
            self.child_queues[logical] = None
        for i, row in enumerate(rows):
            kw = kwargs if isinstance(kwargs, dict) else kwargs[i]
            rid = self._next_id()
            queue = spread.pick(logical, key, self._first_turn + self.seq)
            self.child_queues[queue] = None
            self.spawned.append(rid)
            futures.append(self._future(queue, rid, name))
            digest = call_digest(name, row, kw) if durable else None
            known = self._outcomes.get(rid)
            if known is not None:
                if digest is not None:
                    self._verify(rid, known, (name, digest))
                continue  # ended in an earlier execution: never enqueued again
            if digest is not None:
                self._calls[rid] = (name, digest)
            if rid in self._reset:
                self.app.broker.flows.reset_child(queue, rid)
                self._reset.discard(rid)
            msg = self._message(task, rid, row, kw, digest)
            runs = parts.setdefault(queue, [])
            runs.append((rid, encode_message(msg, self.app.broker.limits), due))
        producer, level = self.app.broker.producer, task.options.priority
        if len(parts) == 1:
            [(queue, runs)] = parts.items()
            producer.enqueue(queue, runs, level, name)
        elif parts:
            producer.enqueue_parts(parts.items(), level, name)
        return futures

    def submit_child(
        self, task: Task[Any, Any], args: Sequence[Any], kwargs: dict[str, Any], due: str
    ) -> Future[Any]:
        """Enqueue one child (see :meth:`map_children`)."""
        return self.map_children(task, [args], kwargs, due)[0]

    def _future(self, queue: str, rid: str, name: str) -> Future[Any]:
        if self.durable:
            return ChildFuture(self, queue, rid, name)
        return Future(self.app.broker, queue, rid, name)

    # -- waiting ------------------------------------------------------------------------

    def wait(self, ids: Sequence[str], mode: WaitMode) -> None:
        """Return once all (or any) of ``ids`` ended; otherwise block briefly, then suspend.

        A flow suspended by an "all" wait resumes when every child it has started
        so far has ended, not just ``ids``: resuming earlier would only replay the
        body to wait again, so ``for f in futures: f.result()`` costs one resume.
        """
        deadline = time.monotonic() + self.inline_wait
        block = self.app.settings.block_seconds
        refreshed = False
        while True:
            missing = [i for i in ids if i not in self._outcomes]
            if not missing or (mode == WaitMode.ANY and len(missing) < len(ids)):
                return
            if not refreshed:
                self._refresh()
                refreshed = True
                continue
            left = deadline - time.monotonic()
            if left <= 0 or not self.can_block():
                if mode == WaitMode.ALL:
                    missing = [c for c in self.spawned if c not in self._outcomes]
                raise Suspend(missing, mode)
            self.app.broker.flows.flow_ping_wait(self.queue, self.run_id, min(left, block))
            refreshed = False

    def as_completed(self, futures: Iterable[Future[R]]) -> Iterator[Future[R]]:
        """Yield children in the order they ended (the order a replay sees too)."""
        pending = {f.run_id: f for f in futures}
        rank = {c: i for i, c in enumerate(self._outcomes)}
        for rid in sorted((r for r in pending if r in rank), key=rank.__getitem__):
            yield pending.pop(rid)
        while pending:
            before = set(self._outcomes)
            self.wait(list(pending), WaitMode.ANY)
            for rid in [c for c in self._outcomes if c not in before and c in pending]:
                yield pending.pop(rid)


def _completed(outcome: Outcome) -> bool:
    return NAME_TO_TYPE.get(outcome.state) is StateType.COMPLETED

"""Runs one delivery: admit it, call the task, record the outcome.

Outcomes have names, as in Prefect's task engine: :meth:`Engine.handle_success`,
:meth:`Engine.handle_retry`, :meth:`Engine.handle_failure`,
:meth:`Engine.handle_cancel`. Each is one script call that also acks the
delivery. The engine is written once; only the call of the function differs
between threads (:meth:`Engine.run`) and the event loop (:meth:`Engine.run_async`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from taskq.app import App
from taskq.broker import Entry, FinishCall, delay_mark
from taskq.cache import TaskRunContext, bind_arguments
from taskq.errors import (
    Cancel,
    ConfigurationError,
    ErrorInfo,
    MessageError,
    Retry,
    TaskTimeoutError,
    UnknownTaskError,
    error_info,
)
from taskq.failures import log_failure, log_retry
from taskq.flows.flow import Flow
from taskq.flows.run import FlowRun, Suspend, call_body
from taskq.futures import running_task
from taskq.keys import PRIORITIES
from taskq.message import (
    PAYLOAD_FIELD,
    RUN_FIELD,
    Limits,
    Message,
    decode_message,
    decode_outcome,
    encode_outcome,
    peek_run_id,
)
from taskq.options import RETRY_OPTIONS
from taskq.retry import RetryPolicy, build_policy, retry_decision, retry_decision_async
from taskq.states import State, TaskRun
from taskq.task import Task, current_flow

log = logging.getLogger("taskq.engine")

#: Task names this process has warned about (a rolling deploy): one warning each.
_warned_unknown: set[str] = set()


@dataclass
class Delivery:
    """One admitted delivery: a decoded message that now holds attempt ``attempt``."""

    queue: str
    entry_id: bytes
    payload: bytes
    message: Message
    task: Task[Any, Any]
    attempt: int = 0
    resumed: bool = False
    retry_start: bool = False
    cache_key: str | None = None
    level: int = 0
    #: Its outcome waits in the worker's outbox, to be recorded with the next fetch.
    deferred: bool = False

    @property
    def parent(self) -> tuple[str, str, int] | None:
        """``(queue, flow run id, priority level)`` of the flow this run is a child of."""
        return parent_of(self.message)

    @property
    def run_id(self) -> str:
        return self.message.run_id

    @property
    def child_call(self) -> tuple[str, bytes] | None:
        """A flow child's call (task, argument digest), recorded in its outcome so that
        a replay of its flow can check it makes the same call."""
        digest = self.message.meta.get("c")
        return (self.message.task, digest) if isinstance(digest, bytes) else None

    @property
    def run(self) -> TaskRun:
        return TaskRun(self.run_id, self.queue, self.task.name, self.attempt)


def parent_of(msg: Message) -> tuple[str, str, int] | None:
    """The ``(queue, flow run id, flow priority level)`` a message names as its parent."""
    p = msg.meta.get("parent")
    if not isinstance(p, list) or len(p) not in (2, 3):
        return None
    queue, flow_id, *rest = p
    level = rest[0] if rest else 0
    if not (isinstance(queue, str) and isinstance(flow_id, str)):
        return None
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level < PRIORITIES:
        return None
    return queue, flow_id, level


class Engine:
    """Turns stream entries into task calls and their outcomes into script calls.

    Args:
        app: The app whose registry names the runnable tasks.
        worker_id: Recorded on every run this engine starts.
    """

    def __init__(
        self, app: App, worker_id: str, can_block: Callable[[], bool] = lambda: True
    ) -> None:
        self.app = app
        self.can_block = can_block
        #: Set by the worker: takes a ready ``finish`` call to send with its next fetch
        #: (returns False when it cannot, and the engine sends the call itself).
        self.defer: Callable[[Delivery, FinishCall], bool] | None = None
        self.broker = app.broker
        self.worker_id = worker_id
        s = app.settings
        self.limits = Limits(s.max_message_bytes, s.max_depth, s.max_args)
        #: Set by a burst worker: the delay-queue members it handed back for another
        #: worker, per queue (it does not wait for those to come due).
        self.parked: dict[str, set[bytes]] | None = None

    # -- admission ----------------------------------------------------------------------

    def admit(self, entries: Sequence[Entry], fresh: bool = True) -> list[Delivery]:
        """Decode a batch, dead-letter what cannot run, start the rest in one call per queue.

        ``fresh`` entries come from ``XREADGROUP >`` (first deliveries, so their
        delivery count is not looked up); reclaimed ones are checked against
        ``max_deliveries``. Returns the deliveries that now hold an attempt (or
        resume a flow) and must run.
        """
        by_lane: dict[tuple[str, int], list[Delivery]] = {}
        for queue, eid, fields, level in entries:
            d = self._decode(queue, eid, fields, level)
            if d is not None:
                by_lane.setdefault((queue, level), []).append(d)
        admitted: list[Delivery] = []
        for (queue, level), batch in by_lane.items():
            started = self.broker.consumer.start(
                queue,
                self.worker_id,
                [
                    (
                        d.entry_id,
                        d.run_id,
                        0 if fresh else d.task.options.max_deliveries,
                        str(d.message.meta.get("name", "")),
                    )
                    for d in batch
                ],
                level,
            )
            duplicates = []
            for d, (kind, attempt, deliveries) in zip(batch, started, strict=True):
                d.attempt, d.resumed, d.retry_start = attempt, kind == 2, kind == 4
                if kind in (1, 2, 4):
                    admitted.append(d)
                elif kind == 5:
                    log.warning("run %s: delivery %s was taken over; dropped", d.run_id, d.entry_id)
                elif kind == 3:
                    reason = (
                        f"delivered {deliveries} times, more than max_deliveries="
                        f"{d.task.options.max_deliveries} (the task may crash its worker)"
                    )
                    self._notify_dead(d.message, reason, attempt)
                    fields = {PAYLOAD_FIELD: d.payload, RUN_FIELD: d.run_id.encode()}
                    self._dead(queue, d.entry_id, fields, reason, d.run_id, level)
                else:
                    log.info("run %s already ended; duplicate delivery dropped", d.run_id)
                    self._renotify(d)
                    duplicates.append(d.entry_id)
            if duplicates:
                self.broker.consumer.ack(queue, duplicates, level)
        return admitted

    def _renotify(self, d: Delivery) -> None:
        """A duplicate of an ended flow child: its flow may not have heard (a crash
        between the outcome and the notification), so tell it again (idempotent)."""
        parent = d.parent
        if parent is None:
            return
        raw = self.broker.producer.peek_results(d.queue, [d.run_id])[0]
        if raw is not None:
            self.broker.flows.notify(parent[0], parent[1], d.run_id, raw, self._ttl(d), parent[2])

    def _decode(
        self, queue: str, eid: bytes, fields: dict[bytes, bytes], level: int
    ) -> Delivery | None:
        payload = fields.get(PAYLOAD_FIELD)
        if payload is None:
            reason = "entry has no 'm' payload field"
            self._dead(queue, eid, fields, reason, self._entry_run_id(fields), level)
            return None
        try:
            if len(payload) > self.limits.max_bytes + 64:  # before the MAC is computed
                size, limit = len(payload), self.limits.max_bytes
                raise MessageError(f"payload of {size} bytes exceeds the {limit} byte limit")
            body = self.broker.signer.verify(payload)
        except MessageError as exc:
            self._dead(queue, eid, fields, str(exc), self._entry_run_id(fields), level)
            return None
        try:
            msg = decode_message(body, self.limits)
        except MessageError as exc:
            # A trusted payload that breaks a limit: its run fails, so nobody waits for it.
            rid = peek_run_id(body) or self._entry_run_id(fields, trusted=True)
            self._dead(queue, eid, fields, str(exc), rid, level)
            return None
        try:
            task = self.app.get_task(msg.task)
        except UnknownTaskError as exc:
            self._unknown_task(queue, eid, fields, msg, str(exc), level)
            return None
        return Delivery(queue, eid, payload, msg, task, level=level)

    def _unknown_task(
        self,
        queue: str,
        eid: bytes,
        fields: dict[bytes, bytes],
        msg: Message,
        reason: str,
        level: int,
    ) -> None:
        """A run of a task this worker does not know: in a rolling deploy a newer worker
        may know it, so hand it back (``park.lua``) until ``unknown_task_grace`` is
        spent; then, or when the run has no record, dead-letter it with the reason."""
        payload = fields[PAYLOAD_FIELD]
        grace = self.app.settings.unknown_task_grace
        if grace > 0:
            code, waited = self.broker.consumer.park(
                queue, self.worker_id, eid, msg.run_id, payload, level
            )
            if code == 1:
                if msg.task not in _warned_unknown:
                    _warned_unknown.add(msg.task)
                    log.warning(
                        "%s: handing its runs back for a worker that knows it "
                        "(for up to unknown_task_grace=%g s each)",
                        reason,
                        grace,
                    )
                if self.parked is not None:
                    self.parked.setdefault(queue, set()).add(delay_mark(level) + payload)
                return
            if code != 0:
                return  # ended (its duplicate acked), or no longer ours
            if waited >= 0:
                reason += f" (waited {waited / 1000:.0f} s for a worker that knows it)"
        self._notify_dead(msg, reason)
        self._dead(queue, eid, fields, reason, msg.run_id, level)

    def _entry_run_id(self, fields: dict[bytes, bytes], trusted: bool = False) -> str | None:
        """The entry's ``r`` field: always when nothing is signed here, else only beside a
        payload that verified (``trusted``). ``r`` is outside the MAC: an unsigned,
        tampered or foreign entry could name any run, so its run is left alone."""
        raw = fields.get(RUN_FIELD)
        if raw is None or not (trusted or not self.broker.signer.enabled):
            return None
        if not 0 < len(raw) <= 256:
            return None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def _notify_dead(self, msg: Message, reason: str, attempts: int = 0) -> None:
        """A flow child about to be dead-lettered fails in its flow first, so the
        flow is never left waiting (a crash in between is repaired by redelivery).
        ``attempts``: those the run made, when known (0 otherwise)."""
        p = parent_of(msg)
        if p is not None:
            outcome = encode_outcome("Failed", attempts, error=ErrorInfo("DeadLettered", reason))
            self.broker.flows.notify(p[0], p[1], msg.run_id, outcome, level=p[2])

    def _dead(
        self,
        queue: str,
        eid: bytes,
        fields: dict[bytes, bytes],
        reason: str,
        run_id: str | None = None,
        level: int = 0,
    ) -> None:
        log.warning("dead-lettering entry %s on queue %s: %s", eid.decode(), queue, reason)
        self.broker.consumer.dead_letter(queue, eid, fields, reason, run_id, level)

    # -- execution ----------------------------------------------------------------------

    def run(self, d: Delivery) -> None:
        """Call a sync task (or any flow body) in this thread and record its outcome."""
        if isinstance(d.task, Flow):
            self._run_flow(d)
            return
        if d.task.options.cache.enabled and self._from_cache(d):
            return
        try:
            with running_task(d.run_id):  # waits for results are refused in it
                value = d.task.fn(*d.message.args, **d.message.kwargs)
        except BaseException as exc:
            self._handle_exception(d, exc)
        else:
            self.handle_success(d, value)

    async def run_async(self, d: Delivery) -> None:
        """Await an async task on the running loop and record its outcome.

        With a time limit the coroutine is cancelled when it passes it, and the
        attempt ends with :class:`TaskTimeoutError` (retried per the task's policy).
        """
        if d.task.options.cache.enabled and await asyncio.to_thread(self._from_cache, d):
            return
        limit = self.timeout_of(d)
        scope: asyncio.Timeout | None = None
        try:
            with running_task(d.run_id):  # waits for results are refused in it
                coro = d.task.fn(*d.message.args, **d.message.kwargs)
                if limit is None:
                    value = await coro
                else:
                    # asyncio.timeout (not wait_for): expired() tells the limit apart from a
                    # TimeoutError the task raises itself, which is an ordinary error.
                    async with asyncio.timeout(limit) as scope:
                        value = await coro
        except BaseException as exc:
            if scope is not None and scope.expired() and isinstance(exc, TimeoutError):
                exc = TaskTimeoutError(f"timed out after {limit} s")
            await self._handle_exception_async(d, exc)
        else:
            self.handle_success(d, value)

    def _run_flow(self, d: Delivery) -> None:
        """Run a flow body; replay it at once if its wait is already satisfied."""
        while True:
            runner = FlowRun(
                self.app,
                d.task,
                d.run_id,
                d.queue,
                durable=True,
                can_block=self.can_block,
                retrying=d.retry_start,
                level=d.level,
            )
            runner.load()
            token = current_flow.set(runner)
            try:
                value = call_body(d.task, d.message.args, d.message.kwargs)
            except Suspend as sig:
                if runner.violation is not None:  # caught by the body, and fatal still
                    self.handle_failure(d, runner.violation)
                    return
                got = self.broker.flows.suspend(
                    d.queue,
                    d.entry_id,
                    d.run_id,
                    d.attempt,
                    d.payload,
                    sig.waiting,
                    sig.mode,
                    runner.seq,
                    list(runner.child_queues),
                    self._ttl(d),
                    d.level,
                )
                if got == 2:
                    d.retry_start = False  # failed children were already reset
                    continue
                if got == 0:
                    log.warning("flow %s attempt %d was fenced off", d.run_id, d.attempt)
                return
            except BaseException as exc:
                self._handle_exception(d, runner.violation or exc)
                return
            finally:
                current_flow.reset(token)
            if runner.violation is not None:  # caught by the body, and fatal still
                self.handle_failure(d, runner.violation)
                return
            self.handle_success(d, value)
            return

    def _from_cache(self, d: Delivery) -> bool:
        """Complete the run as Cached if its cache key has a value; True if it did.

        Under SERIALIZABLE isolation a run whose key is being computed by another
        run waits for that run (up to the lock's life) and then reads the cache.
        """
        cache = d.task.options.cache
        context = TaskRunContext(d.task, d.run_id, d.queue)
        try:
            args = bind_arguments(d.task.fn, d.message.args, d.message.kwargs)
            d.cache_key = cache.key(context, args)
        except Exception:
            log.exception("cache key of run %s could not be computed; running it", d.run_id)
            return False
        if d.cache_key is None:
            return False
        refresh = d.message.meta.get("refresh_cache", cache.refresh)
        raw = None if refresh else self.broker.consumer.cache_get(d.queue, d.cache_key)
        if raw is None and cache.serializable and not refresh:
            ttl = self.app.settings.lease_seconds * 4
            holder = self.broker.consumer.cache_lock(d.queue, d.cache_key, d.run_id, ttl)
            if holder is not None and holder != d.run_id:
                self.broker.producer.wait_result(d.queue, holder, ttl)
                raw = self.broker.consumer.cache_get(d.queue, d.cache_key)
        if raw is None:
            return False
        value = decode_outcome(raw).value
        hooks = d.task.options.on_completion
        outcome = encode_outcome("Cached", d.attempt, value, call=d.child_call)
        if self._finish(d, "Cached", outcome, None, bool(hooks)):
            self._hooks(d, d.task.options.on_completion, State("Cached", d.attempt))
        return True

    def timeout_of(self, d: Delivery) -> float | None:
        """The attempt's time limit in seconds (per-submission override first)."""
        t = d.message.meta.get("timeout_seconds")
        if isinstance(t, int | float) and t > 0:
            return float(t)
        return d.task.options.timeout_seconds

    def handle_timeout(self, d: Delivery) -> None:
        """Record an attempt that overran its time limit: retried per the task's policy."""
        self._handle_exception(d, TaskTimeoutError(f"timed out after {self.timeout_of(d)} s"))

    def _handle_exception(self, d: Delivery, exc: BaseException) -> None:
        if isinstance(exc, Cancel):
            self.handle_cancel(d, exc.reason or "cancelled")
            return
        if not isinstance(exc, Exception | Retry):
            # KeyboardInterrupt, SystemExit: record, then let the process go on stopping.
            self.handle_failure(d, exc)
            raise exc
        policy = self._policy(d)
        self._retry_or_fail(d, exc, policy, retry_decision(d.task, policy, d.run, exc))

    async def _handle_exception_async(self, d: Delivery, exc: BaseException) -> None:
        """:meth:`_handle_exception` on the event loop: an async ``retry_condition_fn``
        is awaited on this loop rather than run on a loop of its own."""
        if not isinstance(exc, Exception | Retry):
            self._handle_exception(d, exc)
            return
        policy = self._policy(d)
        delay = await retry_decision_async(d.task, policy, d.run, exc)
        self._retry_or_fail(d, exc, policy, delay)

    def _retry_or_fail(
        self, d: Delivery, exc: BaseException, policy: RetryPolicy, delay: float | None
    ) -> None:
        if delay is None:
            self.handle_failure(d, exc)
        else:
            self.handle_retry(d, exc, delay, policy)

    def _policy(self, d: Delivery) -> RetryPolicy:
        """The task's retry policy, with per-submission overrides from the message."""
        policy = d.task.options.retry
        changes = {k: v for k, v in d.message.meta.items() if k in RETRY_OPTIONS}
        if not changes:
            return policy
        try:
            return build_policy({**d.task.options.retry_raw, **changes})
        except ConfigurationError as exc:
            log.warning("run %s carries bad retry options (%s); using the task's", d.run_id, exc)
            return policy

    # -- outcomes -----------------------------------------------------------------------

    def _ttl(self, d: Delivery) -> float | None:
        ttl = d.message.meta.get("result_ttl")
        return float(ttl) if isinstance(ttl, int | float) and ttl > 0 else d.task.options.result_ttl

    def handle_success(self, d: Delivery, value: Any) -> None:
        """Record Completed with the return value (Failed, not retried, if it cannot be
        serialized or its encoding is larger than ``max_result_bytes``)."""
        try:
            outcome = encode_outcome("Completed", d.attempt, value, call=d.child_call)
        except MessageError as exc:
            self.handle_failure(d, MessageError(f"task result cannot be stored: {exc}"))
            return
        limit = self.app.settings.max_result_bytes
        if len(outcome) > limit:
            # Deterministic, so never retried: the same value would be refused again.
            size = len(outcome)
            msg = f"task result of {size} bytes exceeds max_result_bytes={limit}"
            self.handle_failure(d, MessageError(msg))
            return
        if self._finish(d, "Completed", outcome, None, bool(d.task.options.on_completion)):
            self._hooks(d, d.task.options.on_completion, State("Completed", d.attempt))
        else:
            log.warning("run %s attempt %d was fenced off; result dropped", d.run_id, d.attempt)

    def _finish(
        self,
        d: Delivery,
        state: str,
        outcome: bytes,
        error: tuple[str, str] | None,
        need_result: bool = True,
    ) -> bool:
        """Record the final outcome; a flow child then notifies its flow, then acks.

        The order (outcome, notify, ack) means a crash at any point is repaired by
        redelivery: the duplicate is recognised as ended and re-notifies. When it is
        one script call and nobody needs to know whether it was fenced off (no hooks),
        the call may be handed to the worker (:attr:`defer`), which sends it with its
        next fetch; True is returned then.
        """
        parent = d.parent
        ttl = self._ttl(d)
        cache = None
        if d.cache_key is not None and state != "Cached":
            cache = (d.cache_key, d.task.options.cache.expiration)
        # A child on its flow's queue (one hash tag) ends in one script: outcome, notify,
        # ack. On another queue it takes three calls in that order (two hash tags).
        same_tag = parent is not None and parent[0] == d.queue
        call = self.broker.consumer.finish_call(
            d.queue,
            d.entry_id,
            d.run_id,
            d.attempt,
            state,
            outcome,
            error,
            ttl,
            ack=parent is None or same_tag,
            cache=cache,
            flow=(parent[1], parent[2]) if parent is not None and same_tag else None,
            level=d.level,
        )
        one_call = parent is None or same_tag
        if one_call and not need_result and self.defer is not None and self.defer(d, call):
            return True
        recorded = self.broker.consumer.finish(call)
        if recorded and parent is not None and not same_tag:
            self.broker.flows.notify(parent[0], parent[1], d.run_id, outcome, ttl, parent[2])
            self.broker.consumer.ack(d.queue, [d.entry_id], d.level)
        return recorded

    def handle_retry(
        self, d: Delivery, exc: BaseException, delay: float, policy: RetryPolicy
    ) -> None:
        """Ack the attempt and put the run in the delay queue (AwaitingRetry), in one script."""
        err = error_info(exc)
        got = self.broker.consumer.retry(
            d.queue,
            d.entry_id,
            d.run_id,
            d.attempt,
            delay,
            d.payload,
            (err.type, err.message),
            policy.deadline,
            d.level,
        )
        if got == 2:
            log.info("run %s: retry would pass its retry deadline; failing it", d.run_id)
            self.handle_failure(d, exc)
        elif got == 0:
            log.warning("run %s attempt %d was fenced off; retry dropped", d.run_id, d.attempt)
        elif log.isEnabledFor(logging.WARNING):
            log_retry(d.task.name, d.run_id, d.attempt, policy.retries + 1, err, delay)

    def handle_failure(self, d: Delivery, exc: BaseException) -> None:
        """Record Failed with the error as data (and log it at ERROR, with its traceback)."""
        err = error_info(exc)
        if log.isEnabledFor(logging.ERROR):  # the formatting costs nothing when filtered out
            log_failure(d.task.name, d.run_id, d.attempt, self._policy(d).retries + 1, err)
        outcome = encode_outcome("Failed", d.attempt, error=err, call=d.child_call)
        if self._finish(
            d, "Failed", outcome, (err.type, err.message), bool(d.task.options.on_failure)
        ):
            self._hooks(d, d.task.options.on_failure, State("Failed", d.attempt, err))

    def handle_cancel(self, d: Delivery, reason: str) -> None:
        """Record Cancelled; the run never retries."""
        err = ErrorInfo("Cancelled", reason)
        outcome = encode_outcome("Cancelled", d.attempt, error=err, call=d.child_call)
        self._finish(d, "Cancelled", outcome, ("Cancelled", reason), False)

    def _hooks(self, d: Delivery, hooks: Sequence[Any], state: State) -> None:
        for hook in hooks:
            try:
                hook(d.task, d.run, state)
            except Exception:
                log.exception("hook %r of task %s raised; ignored", hook, d.task.name)

"""Runs one admitted delivery: call the task, record the outcome.

Outcomes have names, as in Prefect's task engine: :meth:`Engine.handle_success`,
:meth:`Engine.handle_retry`, :meth:`Engine.handle_failure`,
:meth:`Engine.handle_cancel`, :meth:`Engine.handle_timeout` (and
:meth:`Engine.handle_exception`, which picks one for an error). Each is one script
call that also acks the delivery. The engine is written once; only the call of the
function differs between threads (:meth:`Engine.run`) and the event loop
(:meth:`Engine.run_async`). Deliveries come from :mod:`taskq.admission`; a flow body
runs through :mod:`taskq.flows.resume`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from time import perf_counter
from typing import TYPE_CHECKING, Any

from taskq import runlogs, tracing
from taskq.app import App
from taskq.cache import TaskRunContext, bind_arguments
from taskq.cancel import cancel_children
from taskq.context import flush_progress
from taskq.delivery import Delivery
from taskq.errors import (
    Cancel,
    ConfigurationError,
    ErrorInfo,
    MessageError,
    Retry,
    TaskTimeoutError,
    error_info,
)
from taskq.failures import failure_message, log_failure, log_retry, retry_message
from taskq.flows.deadline import limit_of
from taskq.flows.flow import Flow
from taskq.flows.resume import run_flow
from taskq.futures import running_task
from taskq.message import Message, decode_outcome, encode_message, encode_outcome
from taskq.options import RETRY_OPTIONS
from taskq.outbox import Outbox
from taskq.partitions import logical_queue
from taskq.protocol import ErrorType, MetaKey, RecordField, RetryReply, StateName
from taskq.results import TaskRunInfo, fill_key
from taskq.retry import RetryPolicy, build_policy, retry_decision, retry_decision_async
from taskq.states import State, returned_value

if TYPE_CHECKING:
    from taskq.metrics import Metrics

log = logging.getLogger("taskq.engine")


class Engine:
    """Calls the tasks of admitted deliveries and records their outcomes as script calls.

    Args:
        app: The app whose tasks run here.
        outbox: The worker's outbox, which may take a finish call to send with its
            next fetch (None: every call is sent at once).
        can_block: Whether a flow blocking inline could see its children run here.
        restart: Asked before a delivery goes on as its next attempt in place (a retry
            with no delay): its time limit starts again; False if it may not (its slot
            was given up: the attempt timed out meanwhile). None: always True.
        next_attempt: Told once the delivery holds that next attempt.
    """

    def __init__(
        self,
        app: App,
        outbox: Outbox | None = None,
        can_block: Callable[[], bool] = lambda: True,
        restart: Callable[[Delivery], bool] | None = None,
        next_attempt: Callable[[Delivery], None] | None = None,
    ) -> None:
        self.app = app
        self.outbox = outbox
        self.can_block = can_block
        self.restart = restart or (lambda d: True)
        self.next_attempt = next_attempt or (lambda d: None)
        self.broker = app.broker
        #: The worker's metrics (None: off; see :mod:`taskq.metrics`).
        self.metrics: Metrics | None = None

    # -- execution ----------------------------------------------------------------------

    def run(self, d: Delivery) -> None:
        """Call a sync task (or any flow body) in this thread and record its outcome."""
        if isinstance(d.task, Flow):
            self.run_flow(d)
            return
        options = d.task.options
        if d.recovered or options.on_running:
            self.starting(d)
        if options.cache.enabled and self._from_cache(d):
            return
        metrics = self.metrics
        while True:  # a retry with no delay runs again here, as the next attempt
            span = tracing.RunSpan(d) if tracing.tracer is not None else None
            token = runlogs.enter(d)  # the current run, for get_run_logger() and log_prints
            began = perf_counter() if metrics is not None else 0.0
            try:
                with running_task(d.run_id):  # waits for results are refused in it
                    value = returned_value(d.task.fn(*d.message.args, **d.message.kwargs))
            except BaseException as exc:
                runlogs.leave(token)
                if metrics is not None:
                    metrics.body(d, perf_counter() - began)
                if span is not None:
                    span.error(exc)
                try:
                    again = self.handle_exception(d, exc, in_place=True)
                finally:
                    if span is not None:
                        span.end(d)
                if again:
                    if options.on_running:
                        self.starting(d)
                    continue
            else:
                runlogs.leave(token)
                if metrics is not None:
                    metrics.body(d, perf_counter() - began)
                try:
                    self.handle_success(d, value)
                finally:
                    if span is not None:
                        span.end(d)
            return

    async def run_async(self, d: Delivery) -> None:
        """Await an async task on the running loop and record its outcome.

        With a time limit the coroutine is cancelled when it passes it, and the
        attempt ends with :class:`TaskTimeoutError` (retried per the task's policy).
        """
        options = d.task.options
        if d.recovered or options.on_running:
            self.starting(d)
        if options.cache.enabled and await asyncio.to_thread(self._from_cache, d):
            return
        limit = self.timeout_of(d)
        metrics = self.metrics
        while True:  # a retry with no delay runs again here, as the next attempt
            scope: asyncio.Timeout | None = None
            span = tracing.RunSpan(d) if tracing.tracer is not None else None
            token = runlogs.enter(d)  # this asyncio task's current run
            began = perf_counter() if metrics is not None else 0.0
            try:
                with running_task(d.run_id):  # waits for results are refused in it
                    coro = d.task.fn(*d.message.args, **d.message.kwargs)
                    if limit is None:
                        value = returned_value(await coro)
                    else:
                        # asyncio.timeout (not wait_for): expired() tells the limit apart
                        # from a TimeoutError the task raises itself, an ordinary error.
                        async with asyncio.timeout(limit) as scope:
                            value = returned_value(await coro)
            except BaseException as exc:
                runlogs.leave(token)
                if metrics is not None:
                    metrics.body(d, perf_counter() - began)
                if scope is not None and scope.expired() and isinstance(exc, TimeoutError):
                    exc = TaskTimeoutError(f"timed out after {limit} s")
                elif isinstance(exc, asyncio.CancelledError) and d.cancel_reason is not None:
                    exc = Cancel(d.cancel_reason)  # asked to stop (app.cancel)
                if span is not None:
                    span.error(exc)
                try:
                    again = await self._handle_exception_async(d, exc, in_place=True)
                finally:
                    if span is not None:
                        span.end(d)
                if again:
                    if options.on_running:
                        self.starting(d)
                    continue
            else:
                runlogs.leave(token)
                if metrics is not None:
                    metrics.body(d, perf_counter() - began)
                try:
                    self.handle_success(d, value)
                finally:
                    if span is not None:
                        span.end(d)
            return

    def run_flow(self, d: Delivery) -> None:
        """Run a flow body on this thread (see :func:`taskq.flows.resume.run_flow`); a
        resumed flow whose attempt has no time left times out instead (its deadline run
        resumed it: :mod:`taskq.flows.deadline`)."""
        if d.recovered or d.task.options.on_running:
            self.starting(d)
        if d.time_left is not None and d.time_left <= 0:
            self.handle_timeout(d)
            return
        if self.metrics is None:
            run_flow(self.app, d, self, self.can_block)
            return
        began = perf_counter()
        try:
            run_flow(self.app, d, self, self.can_block)
        finally:
            self.metrics.body(d, perf_counter() - began)

    def starting(self, d: Delivery) -> None:
        """The hooks of an attempt's start: ``on_crashed`` with the attempt before, when
        it was just recorded Crashed (its worker was lost), then ``on_running`` (not
        for a flow resuming after its children: that is the same attempt)."""
        options = d.task.options
        if d.recovered and options.on_crashed:
            crash = ErrorInfo(StateName.CRASHED.value, "worker lost (lease expired)")
            self._hooks(d, options.on_crashed, State(StateName.CRASHED.value, d.attempt - 1, crash))
        if options.on_running and not d.resumed:
            name = StateName.RETRYING if d.retry_start else StateName.RUNNING
            self._hooks(d, options.on_running, State(name.value, d.attempt))

    def _from_cache(self, d: Delivery) -> bool:
        """Complete the run as Cached if its cache key has a value; True if it did.

        Under SERIALIZABLE isolation a run whose key is being computed by another
        run waits for that run (up to the lock's life) and then reads the cache.
        """
        cache = d.task.options.cache
        parent = d.parent
        context = TaskRunContext(d.task, d.run_id, d.queue, parent.flow_id if parent else None)
        params = d.message.meta.get(MetaKey.FLOW_PARAMETERS)
        try:
            args = bind_arguments(d.task.fn, d.message.args, d.message.kwargs)
            d.cache_key = cache.key(
                context, args, params.hex() if isinstance(params, bytes) else None
            )
        except Exception:
            log.exception("cache key of run %s could not be computed; running it", d.run_id)
            return False
        if d.cache_key is None:
            return False
        home = self.cache_queue(d)
        caches = self.broker.caches
        refresh = d.message.meta.get(MetaKey.REFRESH_CACHE, cache.refresh)
        raw = None if refresh else caches.get(home, d.cache_key)
        if raw is None and cache.serializable and not refresh:
            ttl = self.app.settings.lease_seconds * 4
            holder, raw = caches.lock(home, d.cache_key, d.run_id, ttl)
            mine = holder is None or holder == d.run_id
            if raw is not None and mine:
                # The last holder stored the entry just before this run took the lock:
                # complete from it, and free the lock (a Cached outcome stores nothing).
                caches.store(home, d.cache_key, d.run_id, StateName.CACHED.value, raw, None)
            elif raw is None and not mine:
                assert holder is not None
                self.broker.producer.wait_result(self._queue_of(d, holder), holder, ttl)
                raw = caches.get(home, d.cache_key)
        if raw is None:
            return False
        value = decode_outcome(raw).value
        hooks = d.task.options.on_completion
        outcome = encode_outcome(StateName.CACHED.value, d.attempt, value, call=d.child_call)
        if d.result_storage_key is not None:
            try:
                self._store_named(d, d.result_storage_key, outcome)
            except ConfigurationError as exc:
                log.warning("run %s: its cached result is not stored by name: %s", d.run_id, exc)
        if self._finish(d, StateName.CACHED.value, outcome, None, bool(hooks)):
            self._hooks(d, d.task.options.on_completion, State(StateName.CACHED.value, d.attempt))
        return True

    def cache_queue(self, d: Delivery) -> str:
        """The queue whose hash tag holds ``d``'s cache entry and lock.

        The run's own queue, unless that is a partition: a cache entry must be found by
        runs on every partition, so each key has one home partition, ``crc32(key) % N``
        (:meth:`taskq.partitions.Spread.pick` with the key).
        """
        logical = logical_queue(d.queue)
        if d.cache_key is None or not self.app.spread.partitioned(logical):
            return d.queue
        return self.app.spread.pick(logical, d.cache_key)

    def _store_named(self, d: Delivery, template: str, outcome: bytes) -> None:
        """Store a completed outcome under its filled ``result_storage_key`` (on the
        name's home partition of a partitioned queue), before the outcome is recorded,
        so whoever sees the run end finds it; a crash in between costs a rerun that
        stores it again.

        Raises:
            ConfigurationError: The template cannot be filled for this run.
        """
        parent = d.parent
        args = bind_arguments(d.task.fn, d.message.args, d.message.kwargs)
        name = d.message.meta.get(MetaKey.NAME) or d.task.name
        info = TaskRunInfo(d.run_id, str(name), d.task.name)
        key = fill_key(template, args, info, parent.flow_id if parent is not None else None)
        logical = logical_queue(d.queue)
        home = (
            self.app.spread.pick(logical, key) if self.app.spread.partitioned(logical) else d.queue
        )
        self.broker.stored.store(home, key, outcome, d.result_ttl)

    def _queue_of(self, d: Delivery, run_id: str) -> str:
        """The partition of ``d``'s queue holding run ``run_id`` (``d``'s queue if none)."""
        logical = logical_queue(d.queue)
        if not self.app.spread.partitioned(logical):
            return d.queue
        names = self.app.spread.names(logical)
        return self.broker.producer.holder(names, run_id) or d.queue

    def limit_of(self, d: Delivery) -> float | None:
        """The attempt's time limit in seconds (per-submission override first)."""
        return limit_of(d)

    def timeout_of(self, d: Delivery) -> float | None:
        """How long this execution may run: the attempt's limit, or for a resumed flow
        what is left of it (a flow's limit covers its whole attempt)."""
        limit = self.limit_of(d)
        if limit is not None and d.time_left is not None:
            return max(0.001, min(limit, d.time_left))
        return limit

    def handle_timeout(self, d: Delivery) -> None:
        """Record an attempt that overran its time limit: retried per the task's policy. A
        flow's unfinished children are cancelled first (a retried flow runs them again)."""
        limit = self.limit_of(d)
        if isinstance(d.task, Flow):
            seq, queues = self._children(d)
            reason = f"its flow timed out after {limit} s"
            cancel_children(self.broker, d.queue, d.run_id, seq, queues, reason)
            exc = TaskTimeoutError(f"flow timed out after {limit} s (its whole attempt)")
        else:
            exc = TaskTimeoutError(f"timed out after {limit} s")
        self.handle_exception(d, exc)

    def _children(self, d: Delivery) -> tuple[int, list[str]]:
        """A flow's children so far: from its body's run here, else from its record (as
        of its last wait)."""
        if d.flow_run is not None:
            return d.flow_run.seq, list(d.flow_run.child_queues)
        record = self.broker.producer.run_record(d.queue, d.run_id)
        seq = int(record.get(RecordField.SEQ, 0) or 0)
        return seq, [q for q in record.get(RecordField.CHILD_QUEUES, "").split(",") if q]

    def handle_exception(self, d: Delivery, exc: BaseException, in_place: bool = False) -> bool:
        """Record an attempt that raised: Cancelled, retried or Failed, per its policy
        (``KeyboardInterrupt`` and ``SystemExit`` are recorded Failed, then re-raised).

        Args:
            in_place: The caller is the thread (or task) that ran the attempt and can
                run the next one at once: a retry with no delay is then started in
                place (:meth:`retry_now`) rather than through the delay queue.

        Returns:
            True when the next attempt started in place: the caller runs it now.
        """
        if isinstance(exc, Cancel):
            self.handle_cancel(d, exc.reason or "cancelled")
            return False
        if d.cancel_reason is not None and isinstance(exc, Exception | Retry):
            # Asked to stop, it ended with an error: it is cancelled, not retried.
            self.handle_cancel(d, d.cancel_reason)
            return False
        if not isinstance(exc, Exception | Retry):
            # KeyboardInterrupt, SystemExit: record, then let the process go on stopping.
            self.handle_failure(d, exc)
            raise exc
        policy = self._policy(d)
        delay = retry_decision(d.task, policy, d.run, exc)
        return self._retry_or_fail(d, exc, policy, delay, in_place)

    async def _handle_exception_async(
        self, d: Delivery, exc: BaseException, in_place: bool = False
    ) -> bool:
        """:meth:`handle_exception` on the event loop: an async ``retry_condition_fn``
        is awaited on this loop rather than run on a loop of its own."""
        if not isinstance(exc, Exception | Retry):
            return self.handle_exception(d, exc)
        policy = self._policy(d)
        delay = await retry_decision_async(d.task, policy, d.run, exc)
        return self._retry_or_fail(d, exc, policy, delay, in_place)

    def _retry_or_fail(
        self,
        d: Delivery,
        exc: BaseException,
        policy: RetryPolicy,
        delay: float | None,
        in_place: bool = False,
    ) -> bool:
        if delay is None:
            self.handle_failure(d, exc, policy)
            return False
        if delay == 0 and in_place and self.restart(d):
            return self.retry_now(d, exc, policy)
        self.handle_retry(d, exc, delay, policy)
        return False

    def retry_now(self, d: Delivery, exc: BaseException, policy: RetryPolicy) -> bool:
        """A retry with no delay: record the failed attempt and start the next one,
        Retrying, on this delivery (``retry_now.lua``), as Prefect retries at once; no
        ``AwaitingRetry`` stop. True when the caller should run it now.

        The caller has restarted the attempt's clock (:attr:`restart`). Flows keep
        retrying through the delay queue (``in_place`` is never set for them).
        """
        err = error_info(exc)
        of = policy.retries + 1
        runlogs.engine_line(d, logging.WARNING, retry_message(d.attempt, of, err, 0.0))
        got = self.broker.consumer.retry_now(
            d.queue, d.run_id, d.attempt, (err.type, err.message), policy.deadline
        )
        if got == RetryReply.PAST_DEADLINE:
            log.info("run %s: retry would pass its retry deadline; failing it", d.run_id)
            self.handle_failure(d, exc, policy)
            return False
        if self.metrics is not None:
            self.metrics.retried(d, got == RetryReply.SCHEDULED)
        if got == RetryReply.FENCED:
            log.warning("run %s attempt %d was fenced off; retry dropped", d.run_id, d.attempt)
            return False
        d.outcome = StateName.RETRYING.value
        if log.isEnabledFor(logging.WARNING):
            log_retry(d.task.name, d.run_id, d.attempt, of, err, 0.0)
        d.attempt += 1
        d.retry_start, d.recovered = True, False
        self.next_attempt(d)
        return True

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

    def handle_success(self, d: Delivery, value: Any) -> None:
        """Record Completed with the return value (Failed, not retried, if it cannot be
        serialized or its encoding is larger than ``max_result_bytes``)."""
        kept = d.persist_result
        try:
            outcome = encode_outcome(
                StateName.COMPLETED.value,
                d.attempt,
                value if kept else None,
                call=d.child_call,
                kept=kept,
            )
        except MessageError as exc:
            self.handle_failure(d, MessageError(f"task result cannot be stored: {exc}"))
            return
        if d.log is not None:  # the run logged: its lines, before its outcome
            runlogs.flush(d)
        limit = self.app.settings.max_result_bytes
        if len(outcome) > limit:
            # Deterministic, so never retried: the same value would be refused again.
            size = len(outcome)
            msg = f"task result of {size} bytes exceeds max_result_bytes={limit}"
            self.handle_failure(d, MessageError(msg))
            return
        if d.result_storage_key is not None:
            try:
                self._store_named(d, d.result_storage_key, outcome)
            except ConfigurationError as exc:  # deterministic: never retried
                self.handle_failure(d, exc)
                return
        if self._finish(
            d, StateName.COMPLETED.value, outcome, None, bool(d.task.options.on_completion)
        ):
            self._hooks(
                d, d.task.options.on_completion, State(StateName.COMPLETED.value, d.attempt)
            )
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
        the call may be left in the worker's :attr:`outbox`, which sends it with its
        next fetch; True is returned then. A cache entry whose home is another partition
        is stored (and its lock released) by a call of its own before the outcome, not
        fenced: a stale attempt may store a value too (a value computed for the same key).
        """
        if d.progress_pending is not None:  # its last progress report lands first
            flush_progress(d)
        parent = d.parent
        ttl = d.result_ttl
        cache = None
        if d.cache_key is not None and state != StateName.CACHED.value:
            cache = (d.cache_key, d.task.options.cache.expiration)
            home = self.cache_queue(d)
            if home != d.queue:
                # The key's home is another partition (hash tag): its own call, before the
                # outcome, so a SERIALIZABLE run woken by the outcome finds the entry. A
                # crash in between costs nothing: the redelivered run finds it (Cached).
                self.broker.caches.store(home, cache[0], d.run_id, state, outcome, cache[1])
                cache = None
        # A child on its flow's queue (one hash tag) ends in one script: outcome, notify,
        # ack. On another queue it takes three calls in that order (two hash tags).
        same_tag = parent is not None and parent.queue == d.queue
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
            flow=(parent.flow_id, parent.level) if parent is not None and same_tag else None,
            level=d.level,
        )
        one_call = parent is None or same_tag
        d.outcome = state
        if one_call and not need_result and self.outbox is not None and self.outbox.defer(d, call):
            return True
        recorded = self.broker.consumer.finish(call)
        if self.metrics is not None:
            self.metrics.ended(d, state, recorded)
        if recorded and parent is not None and not same_tag:
            self.broker.flows.notify(
                parent.queue, parent.flow_id, d.run_id, outcome, ttl, parent.level
            )
            self.broker.consumer.ack(d.queue, [d.entry_id], d.level)
        return recorded

    def handle_retry(
        self, d: Delivery, exc: BaseException, delay: float, policy: RetryPolicy
    ) -> None:
        """Ack the attempt and put the run in the delay queue (AwaitingRetry), in one script.

        The retry message goes to the run's log first (with the attempt's lines, one call),
        so that it comes before the lines of the next attempt.
        """
        err = error_info(exc)
        of = policy.retries + 1
        runlogs.engine_line(d, logging.WARNING, retry_message(d.attempt, of, err, delay))
        got = self.broker.consumer.retry(
            d.queue,
            d.entry_id,
            d.run_id,
            d.attempt,
            delay,
            self._retry_payload(d),
            (err.type, err.message),
            policy.deadline,
            d.level,
        )
        if self.metrics is not None and got != RetryReply.PAST_DEADLINE:
            self.metrics.retried(d, got == RetryReply.SCHEDULED)
        if got == RetryReply.PAST_DEADLINE:
            log.info("run %s: retry would pass its retry deadline; failing it", d.run_id)
            self.handle_failure(d, exc, policy)
        elif got == RetryReply.FENCED:
            log.warning("run %s attempt %d was fenced off; retry dropped", d.run_id, d.attempt)
        else:
            d.outcome = StateName.AWAITING_RETRY.value
            if log.isEnabledFor(logging.WARNING):
                log_retry(d.task.name, d.run_id, d.attempt, of, err, delay)

    def _retry_payload(self, d: Delivery) -> bytes:
        """The payload a retry waits with: the delivery's, less a rate-limit slot it held
        (that slot was its first start's: the retry must be given one of its own)."""
        meta = d.message.meta
        if MetaKey.RATE_SLOT not in meta:
            return d.payload
        kept = {k: v for k, v in meta.items() if k != MetaKey.RATE_SLOT}
        msg = Message(d.run_id, d.message.task, d.message.args, d.message.kwargs, kept)
        return self.broker.signer.sign(encode_message(msg, self.broker.limits))

    def handle_failure(
        self, d: Delivery, exc: BaseException, policy: RetryPolicy | None = None
    ) -> None:
        """Record Failed with the error as data (and log it at ERROR, with its traceback,
        to ``taskq.engine`` and to the run's log). ``policy``: the run's retry policy,
        when the caller has looked it up (it names the attempts allowed)."""
        err = error_info(exc)
        of = (policy or self._policy(d)).retries + 1
        if log.isEnabledFor(logging.ERROR):  # the formatting costs nothing when filtered out
            log_failure(d.task.name, d.run_id, d.attempt, of, err)
        runlogs.engine_line(d, logging.ERROR, failure_message(d.attempt, of, err))
        outcome = encode_outcome(StateName.FAILED.value, d.attempt, error=err, call=d.child_call)
        if self._finish(
            d,
            StateName.FAILED.value,
            outcome,
            (err.type, err.message),
            bool(d.task.options.on_failure),
        ):
            self._hooks(d, d.task.options.on_failure, State(StateName.FAILED.value, d.attempt, err))

    def handle_cancel(self, d: Delivery, reason: str) -> None:
        """Record Cancelled; the run never retries."""
        err = ErrorInfo(ErrorType.CANCELLED.value, reason)
        if d.log is not None:
            runlogs.flush(d)
        outcome = encode_outcome(StateName.CANCELLED.value, d.attempt, error=err, call=d.child_call)
        hooks = d.task.options.on_cancellation
        is_flow = isinstance(d.task, Flow)
        if self._finish(
            d,
            StateName.CANCELLED.value,
            outcome,
            (ErrorType.CANCELLED.value, reason),
            bool(hooks) or is_flow,
        ):
            if is_flow:  # a cancelled flow leaves no unfinished children
                seq, queues = self._children(d)
                cancel_children(self.broker, d.queue, d.run_id, seq, queues, reason)
            self._hooks(d, hooks, State(StateName.CANCELLED.value, d.attempt, err))

    def _hooks(self, d: Delivery, hooks: Sequence[Any], state: State) -> None:
        for hook in hooks:
            try:
                hook(d.task, d.run, state)
            except Exception:
                log.exception("hook %r of task %s raised; ignored", hook, d.task.name)

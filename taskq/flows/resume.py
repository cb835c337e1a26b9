"""A delivered flow on a worker: its replay, suspension and resume, and the notices a
flow gets about children that end outside their own run.

:func:`run_flow` executes the body against what its children recorded, suspends it
when a wait cannot be met, and replays it at once when its wait was met meanwhile.
:func:`renotify` and :func:`notify_dead` tell a flow of a child's end when the child's
own finish could not (a crash before the notice; a dead-lettered child).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from taskq import runlogs, tracing
from taskq.broker import Broker
from taskq.delivery import Delivery
from taskq.errors import ErrorInfo
from taskq.flows import deadline
from taskq.flows.run import FlowRun, Suspend, call_body
from taskq.message import Message, encode_outcome
from taskq.protocol import ErrorType, MetaKey, Parent, StateName, SuspendReply
from taskq.task import Host, current_flow

# The engine's logger: what a worker logs about a run stays under one name.
log = logging.getLogger("taskq.engine")


class Outcomes(Protocol):
    """Where a flow execution's end is recorded (the engine's named outcomes)."""

    def handle_success(self, d: Delivery, value: Any) -> None:
        """Record the body's return value."""

    def handle_failure(self, d: Delivery, exc: BaseException) -> None:
        """Record Failed, never retried (a non-deterministic replay)."""

    def handle_exception(self, d: Delivery, exc: BaseException) -> object:
        """Record what the body raised, through the flow's retry policy (a flow never
        retries in place: what it returns is not used)."""


def parent_of(msg: Message) -> tuple[str, str, int] | None:
    """The ``(queue, flow run id, flow priority level)`` a message names as its parent."""
    p = Parent.parse(msg.meta.get(MetaKey.PARENT))
    return None if p is None else (p.queue, p.flow_id, p.level)


def run_flow(host: Host, d: Delivery, outcomes: Outcomes, can_block: Callable[[], bool]) -> None:
    """Run a flow body; replay it at once if its wait is already satisfied.

    Its end is recorded through ``outcomes`` while the flow is still the current
    one, as its hooks have always seen it. Each execution is the current run of
    :mod:`taskq.runlogs` while the body runs; its log lines are written before it
    suspends (before another worker can resume it), or with its outcome.
    """
    while True:
        # One span per execution of the body (taskq.tracing), current while it runs:
        # the children it submits nest under it.
        span = tracing.RunSpan(d) if tracing.tracer is not None else None
        try:
            if not _execute(host, d, outcomes, can_block, span):
                return
        finally:
            if span is not None:
                span.end(d)


def _execute(
    host: Host,
    d: Delivery,
    outcomes: Outcomes,
    can_block: Callable[[], bool],
    span: tracing.RunSpan | None,
) -> bool:
    """One execution of a flow body; True when its wait was met meanwhile, so it must
    replay at once."""
    runner = FlowRun(
        host,
        d.task,
        d.run_id,
        d.queue,
        durable=True,
        can_block=can_block,
        retrying=d.retry_start,
        level=d.level,
        params=(d.message.args, d.message.kwargs),
        log_prints=d.log_prints,
    )
    runner.load()
    d.flow_run = runner  # what it spawns, for a cancel or a timeout of the flow
    token = current_flow.set(runner)
    run_token = runlogs.enter(d)
    try:
        value = call_body(d.task, d.message.args, d.message.kwargs)
    except Suspend as sig:
        runlogs.leave(run_token)
        if runner.violation is not None:  # caught by the body, and fatal still
            _failed(d, outcomes, runner.violation, span)
            return False
        runlogs.end_execution(d)
        if _suspend(host.broker, d, runner, sig) is SuspendReply.SATISFIED:
            d.retry_start = False  # failed children were already reset
            return True
        return False
    except BaseException as exc:
        runlogs.leave(run_token)
        if span is not None:
            span.error(runner.violation or exc)
        outcomes.handle_exception(d, runner.violation or exc)
        return False
    finally:
        current_flow.reset(token)
    runlogs.leave(run_token)
    if runner.violation is not None:  # caught by the body, and fatal still
        _failed(d, outcomes, runner.violation, span)
        return False
    outcomes.handle_success(d, value)
    return False


def _failed(
    d: Delivery, outcomes: Outcomes, exc: BaseException, span: tracing.RunSpan | None
) -> None:
    if span is not None:
        span.error(exc)
    outcomes.handle_failure(d, exc)


def _suspend(broker: Broker, d: Delivery, runner: FlowRun, sig: Suspend) -> SuspendReply:
    """Ack the delivery and record the wait set (``suspend.lua``)."""
    got = SuspendReply(
        broker.flows.suspend(
            d.queue,
            d.entry_id,
            d.run_id,
            d.attempt,
            d.payload,
            sig.waiting,
            sig.mode,
            runner.seq,
            list(runner.child_queues),
            d.result_ttl,
            d.level,
        )
    )
    if got is SuspendReply.FENCED:
        log.warning("flow %s attempt %d was fenced off", d.run_id, d.attempt)
        return got
    d.outcome = (
        StateName.AWAITING_CHILDREN.value
        if got is SuspendReply.SUSPENDED
        else StateName.RESUMING.value
    )
    if got is SuspendReply.SUSPENDED and (limit := deadline.limit_of(d)) is not None:
        deadline.schedule(broker, d, limit)  # its limit covers the wait too
    return got


def renotify(broker: Broker, d: Delivery) -> None:
    """A duplicate of an ended flow child: its flow may not have heard (a crash
    between the outcome and the notification), so tell it again (idempotent)."""
    parent = d.parent
    if parent is None:
        return
    raw = broker.producer.peek_results(d.queue, [d.run_id])[0]
    if raw is not None:
        broker.flows.notify(parent.queue, parent.flow_id, d.run_id, raw, d.result_ttl, parent.level)


def notify_dead(broker: Broker, msg: Message, reason: str, attempts: int = 0) -> None:
    """A flow child about to be dead-lettered fails in its flow first, so the
    flow is never left waiting (a crash in between is repaired by redelivery).
    ``attempts``: those the run made, when known (0 otherwise)."""
    p = parent_of(msg)
    if p is not None:
        error = ErrorInfo(ErrorType.DEAD_LETTERED.value, reason)
        outcome = encode_outcome(StateName.FAILED.value, attempts, error=error)
        broker.flows.notify(p[0], p[1], msg.run_id, outcome, level=p[2])

"""Cancelling runs from outside them: ``app.cancel(run_id)``, ``future.cancel()`` and
``taskq cancel RUN_ID``.

What a cancel does depends on where the run is (``cancel.lua`` decides atomically, so a
cancel racing the run's own end leaves exactly one final state):

* not started, waiting for a retry, or a flow waiting for its children: it ends
  ``Cancelled`` at once and never starts; its queued entry is dropped when a worker
  reads it. A flow child tells its flow, so the flow does not wait for it.
* running: it is asked to stop. The worker running it learns of it at once (the
  queue's cancel channel); the run sees :func:`cancel_requested` turn True, an
  ``async def`` task gets :class:`asyncio.CancelledError`, and a sync one that has
  not ended within ``cancel_grace_seconds`` is abandoned as a timed-out one is and
  recorded ``Cancelled``. If it ends first, its own end stands.
* ended: nothing changes.

Cancelling a flow cancels its unfinished children too (those it had spawned when it
last waited for them, and, when its worker records it ``Cancelled``, every one it
spawned), and their children in turn.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from taskq.broker import Broker
from taskq.errors import ErrorInfo
from taskq.message import encode_outcome
from taskq.protocol import CancelReply, ErrorType, RecordField, StateName
from taskq.runlogs import current_run

log = logging.getLogger("taskq.cancel")

#: How deep a cancel follows flows into their children's children.
MAX_DEPTH = 16


def cancel_requested() -> bool:
    """True inside a running run that was asked to stop (``app.cancel``); a task that
    checks it can clean up and ``raise taskq.Cancel()``. False outside a run."""
    d = current_run.get()
    return getattr(d, "cancel_reason", None) is not None


def cancelled_outcome(attempt: int, reason: str) -> bytes:
    """The outcome a cancel stores."""
    return encode_outcome(
        StateName.CANCELLED.value, attempt, error=ErrorInfo(ErrorType.CANCELLED.value, reason)
    )


def cancel_run(
    broker: Broker, queue: str, run_id: str, reason: str = "", _depth: int = 0
) -> CancelReply:
    """Cancel run ``run_id`` on ``queue`` (its physical queue); see the module.

    Returns:
        CANCELLED (it ended here), REQUESTED (it is running: asked to stop), ENDED
        (it had ended: nothing changed) or UNKNOWN (no record: unknown, or expired).
    """
    reason = reason or "cancelled"
    record = broker.producer.run_record(queue, run_id)
    if not record:
        return CancelReply.UNKNOWN
    attempt = int(record.get(RecordField.ATTEMPT, 0))
    outcome = cancelled_outcome(attempt, reason)
    ttl = broker.settings.result_ttl
    got = broker.control.cancel(queue, run_id, outcome, reason, ttl)
    if got is CancelReply.CANCELLED:
        tell_flow(broker, queue, run_id, outcome)
    if got in (CancelReply.CANCELLED, CancelReply.REQUESTED) and _depth < MAX_DEPTH:
        seq = int(record.get(RecordField.SEQ, 0) or 0)
        cq = [q for q in record.get(RecordField.CHILD_QUEUES, "").split(",") if q]
        cancel_children(broker, queue, run_id, seq, cq, reason, _depth + 1)
    return got


def cancel_children(
    broker: Broker,
    queue: str,
    flow_id: str,
    seq: int,
    child_queues: Sequence[str],
    reason: str,
    depth: int = 1,
) -> int:
    """Cancel children 1..``seq`` of flow ``flow_id``, each found on one of the (logical)
    ``child_queues`` or ``queue``; the number cancelled or asked to stop."""
    names = [n for q in [*child_queues, queue] for n in broker.settings.queue_names(q)]
    queues = list(dict.fromkeys(names))
    done = 0
    for n in range(1, seq + 1):
        child = f"{flow_id}.{n}"
        where = broker.producer.holder(queues, child)
        if where is None:
            continue
        got = cancel_run(broker, where, child, f"its flow was cancelled: {reason}", depth)
        done += got in (CancelReply.CANCELLED, CancelReply.REQUESTED)
    return done


def tell_flow(broker: Broker, queue: str, run_id: str, outcome: bytes) -> None:
    """A flow child ended here (cancelled): notify its flow, found on ``queue`` or by
    scanning (a child's id is ``<flow id>.<n>``). A crash before this is repaired when a
    worker drops the child's queued entry (it re-sends the notice)."""
    flow_id, dot, n = run_id.rpartition(".")
    if not dot or not n.isdigit():
        return
    flow_queue = queue if broker.producer.run_record(queue, flow_id) else None
    flow_queue = flow_queue or broker.producer.find_run(flow_id)
    if flow_queue is None:
        return
    level = int(broker.producer.run_record(flow_queue, flow_id).get(RecordField.LEVEL, 0) or 0)
    broker.flows.notify(flow_queue, flow_id, run_id, outcome, broker.settings.result_ttl, level)

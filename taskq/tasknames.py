"""Which task a run is of, for the read model (:mod:`taskq.overview`).

A queued run stores its task name only in its payload; its Pending / Scheduled event
names it too (``k``, :mod:`taskq.protocol`), and ``start.lua`` writes it on the run's
record with each attempt. Readers resolve a run's task from its event, else its
record, else its stream payload (while the entry is still in the stream), else None.
"""

from __future__ import annotations

from collections.abc import MutableMapping

from taskq.broker import Broker
from taskq.errors import MessageError
from taskq.message import decode_message
from taskq.protocol import RecordField
from taskq.signing import MAGIC, SIGNATURE_BYTES


def payload_task(broker: Broker, payload: bytes | None) -> tuple[str | None, bool]:
    """The task a stream payload names, and whether it decodes as a taskq message.

    A signed payload's signature is checked when this process has signing keys;
    without keys it is skipped: the name is only shown, never run.
    """
    if payload is None:
        return None, False
    try:
        if broker.signer.enabled:
            body = broker.signer.verify(payload)
        else:
            body = payload[SIGNATURE_BYTES:] if payload[:2] == MAGIC else payload
        return decode_message(body, broker.limits).task, True
    except MessageError:
        return None, False


def from_records(broker: Broker, queue: str, known: MutableMapping[str, str | None]) -> None:
    """Fill in, from their records (one round trip), the tasks of ``known``'s runs
    whose task is None (left None where the record has none)."""
    missing = [rid for rid, task in known.items() if task is None]
    rows = broker.inspect.run_fields(queue, missing, [RecordField.TASK])
    for rid, (task,) in zip(missing, rows, strict=True):
        if task:
            known[rid] = task

"""What ``taskq run RUN_ID`` prints: a run's state record, attempts and events."""

from __future__ import annotations

from datetime import UTC, datetime

from taskq.broker import Broker
from taskq.message import decode_outcome


def _when(ms: str) -> str:
    stamp = datetime.fromtimestamp(int(ms) / 1000, tz=UTC)
    return stamp.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def describe(broker: Broker, queue: str, run_id: str) -> list[str]:
    """Lines describing the run: state, one line per attempt, then its events.

    Returns:
        The lines, or an empty list when the run is unknown (or expired).
    """
    record = broker.producer.run_record(queue, run_id)
    if not record:
        return []
    attempts = int(record.get("a", 0))
    lines = [f"run {run_id}  queue={queue}  state={record.get('s', '?')}  attempts={attempts}"]
    if "n" in record:
        lines.append(f"  name: {record['n']}")
    if "due" in record and record.get("s") in ("Scheduled", "AwaitingRetry"):
        lines.append(f"  next attempt due {_when(record['due'])}")
    raw = broker.producer.peek_results(queue, [run_id])[0]
    final = decode_outcome(raw) if raw is not None else None
    for a in range(1, attempts + 1):
        start = record.get(f"t{a}")
        began = _when(start) if start else "?"
        if f"x{a}" in record:
            how = "failed: " + record[f"x{a}"]
        elif a == attempts and final is not None:
            how = final.state
        else:
            how = record.get("s", "?") if a == attempts else "?"
        lines.append(f"  attempt {a}: started {began}  {how}")
    if "dead" in record:
        lines.append(f"  dead-lettered: {record['dead']}")
    lines += _children(broker, queue, run_id, record)
    events = broker.inspect.run_events(queue, run_id)
    if events:
        lines.append("  events:")
        for eid, f in events:
            err = f"  {f['et']}: {f.get('em', '')}" if f.get("et") else ""
            due = f"  due {_when(f['due'])}" if "due" in f else ""
            lines.append(f"    {_when(eid.split('-')[0])}  {f.get('s', '?'):<13}{err}{due}")
    return lines


def _children(broker: Broker, queue: str, run_id: str, record: dict[str, str]) -> list[str]:
    """A flow's children ``<run_id>.1 ..`` with their states (empty for a task)."""
    seq = int(record.get("seq", 0))
    _, outcomes = broker.flows.flow_outcomes(queue, run_id, 0)
    queues = [q for q in record.get("cq", "").split(",") if q] or [queue]
    total = max(seq, len(outcomes))
    if not total:
        return []
    lines = [f"  children: {total}"]
    for n in range(1, total + 1):
        child = f"{run_id}.{n}"
        if child in outcomes:
            state = decode_outcome(outcomes[child]).state
        else:
            state = next(
                (r.get("s", "?") for q in queues if (r := broker.producer.run_record(q, child))),
                "unknown",
            )
        lines.append(f"    {child}  {state}")
    return lines

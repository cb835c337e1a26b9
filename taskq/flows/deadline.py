"""A flow's ``timeout_seconds`` covers its whole attempt, time waiting for children
included, as in Prefect.

The limit is measured from the attempt's start (``t<n>`` in the record, server clock):

* while the body runs, the worker's timeout watchdog holds it to the time left of the
  attempt (:func:`time_left`, read when a resumed flow is admitted);
* while it waits for its children, a **deadline run** is due when the limit runs out:
  a delayed run of the built-in task ``taskq.flow_deadline`` on the flow's queue, with
  the id ``<flow id>.deadline.<attempt>`` (so one per attempt, however often the flow
  suspends), enqueued when a flow with a limit first suspends in an attempt. When it
  runs, it resumes the flow if it still waits in that attempt (``flow_expire.lua``);
* a flow admitted with no time left is not replayed: its unfinished children are
  cancelled (:mod:`taskq.cancel`) and the attempt ends with
  :class:`~taskq.errors.TaskTimeoutError`, retried per the flow's policy (a retried
  flow runs its cancelled children again).

A flow without ``timeout_seconds`` pays nothing of this. The deadline run is a plain
run (it is no child of the flow): every worker knows its task, which is not in the app's
registry (it is not listed by ``taskq tasks``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taskq.message import Message, encode_message
from taskq.options import build
from taskq.protocol import MetaKey

if TYPE_CHECKING:
    from taskq.broker import Broker
    from taskq.delivery import Delivery
    from taskq.task import Host, Task

#: The built-in task of deadline runs.
DEADLINE_TASK = "taskq.flow_deadline"
#: How long a deadline run's record is kept after it ran (seconds).
DEADLINE_TTL = 3600.0


def deadline_task(host: Host) -> Task[Any, Any]:
    """The built-in task of ``host``'s deadline runs."""
    from taskq.task import Task

    def flow_deadline(queue: str, flow_id: str, attempt: int, level: int) -> bool:
        return host.broker.flows.expire(queue, flow_id, attempt, level)

    options = build(DEADLINE_TASK, {"name": DEADLINE_TASK, "result_ttl": DEADLINE_TTL})
    return Task(host, flow_deadline, options)


def limit_of(d: Delivery) -> float | None:
    """A run's time limit in seconds (per-submission override first; None: none)."""
    t = d.message.meta.get(MetaKey.TIMEOUT)
    if isinstance(t, int | float) and t > 0:
        return float(t)
    return d.task.options.timeout_seconds


def time_left(broker: Broker, d: Delivery, limit: float) -> float:
    """Seconds left of flow ``d``'s attempt (of ``limit``), by the server's clock."""
    age = broker.flows.attempt_age(d.queue, d.run_id, d.attempt)
    return limit if age is None else limit - age


def schedule(broker: Broker, d: Delivery, limit: float) -> None:
    """Enqueue the deadline run of flow ``d``'s attempt, due when ``limit`` runs out
    (idempotent: the run id names the attempt, and a known id is refused)."""
    left = max(0.0, time_left(broker, d, limit))
    rid = f"{d.run_id}.deadline.{d.attempt}"
    msg = Message(rid, DEADLINE_TASK, [d.queue, d.run_id, d.attempt, d.level], {}, {})
    payload = encode_message(msg, broker.limits)
    due = f"d{round(left * 1000)}"
    broker.producer.enqueue(d.queue, [(rid, payload, due)], d.level, DEADLINE_TASK)

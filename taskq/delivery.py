"""``Delivery``: one stream entry admitted to run, as :mod:`taskq.admission` hands it
to :mod:`taskq.engine` (and the worker holds it until its outcome is recorded)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taskq.message import Message
from taskq.protocol import MetaKey, Parent
from taskq.states import TaskRun
from taskq.task import Task

if TYPE_CHECKING:
    from taskq.runlogs import RunLog


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
    #: Its attempt before was recorded Crashed as this one started (a lost worker).
    recovered: bool = False
    cache_key: str | None = None
    level: int = 0
    #: Its outcome waits in the worker's outbox, to be recorded with the next fetch.
    deferred: bool = False
    #: Why it was asked to stop (``app.cancel``) while running, and when its worker
    #: learned of it (monotonic seconds); None while not.
    cancel_reason: str | None = None
    cancel_at: float = 0.0
    #: A flow's current execution here (a ``FlowRun``: what it spawned so far, for a
    #: cancel or a timeout of the flow); None before its body ran here.
    flow_run: Any = None
    #: The concurrency slot it holds, ``(home queue, key)`` (None: none).
    conc_slot: tuple[str, str] | None = None
    #: A progress report not written yet (``taskq.context().progress``), and when the
    #: last one was written (monotonic seconds).
    progress_pending: tuple[float, str] | None = None
    progress_at: float = 0.0
    #: A resumed flow's time left of its attempt's ``timeout_seconds`` (None: no limit,
    #: or not a resumed flow): see :mod:`taskq.flows.deadline`.
    time_left: float | None = None
    #: The log lines its attempt buffered (None until it logs one; see taskq.runlogs).
    log: RunLog | None = None
    #: The final state its attempt's outcome records, once decided (for metrics and
    #: traces; None before).
    outcome: str | None = None

    @property
    def parent(self) -> Parent | None:
        """The flow this run is a child of (None for a top-level run)."""
        return Parent.parse(self.message.meta.get(MetaKey.PARENT))

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self.message.run_id

    @property
    def child_call(self) -> tuple[str, bytes] | None:
        """A flow child's call (task, argument digest), recorded in its outcome so that
        a replay of its flow can check it makes the same call."""
        digest = self.message.meta.get(MetaKey.CALL)
        return (self.message.task, digest) if isinstance(digest, bytes) else None

    @property
    def run(self) -> TaskRun:
        """The run as task hooks and retry conditions see it."""
        return TaskRun(self.run_id, self.queue, self.task.name, self.attempt)

    @property
    def log_prints(self) -> bool:
        """Whether ``print()`` in its body goes to its log: as its message says (a flow
        child inheriting its flow's, a ``with_options`` change), else as its task says."""
        value = self.message.meta.get(MetaKey.LOG_PRINTS)
        return value if isinstance(value, bool) else self.task.options.log_prints is True

    @property
    def result_ttl(self) -> float | None:
        """How long its result is kept (per-submission override first; None: forever)."""
        ttl = self.message.meta.get(MetaKey.RESULT_TTL)
        return (
            float(ttl) if isinstance(ttl, int | float) and ttl > 0 else self.task.options.result_ttl
        )

    @property
    def persist_result(self) -> bool:
        """Whether its value is kept (per-submission override first). A flow child's
        always is: its flow reads it through Redis."""
        meta = self.message.meta
        if not meta:
            return self.task.options.persist_result
        if meta.get(MetaKey.PARENT) is not None:
            return True
        keep = meta.get(MetaKey.PERSIST_RESULT)
        return keep if isinstance(keep, bool) else self.task.options.persist_result

    @property
    def result_storage_key(self) -> str | None:
        """Its ``result_storage_key`` template (per-submission override first)."""
        meta = self.message.meta
        if meta and MetaKey.RESULT_STORAGE_KEY in meta:
            key = meta[MetaKey.RESULT_STORAGE_KEY]
            return key if isinstance(key, str) and key else None
        return self.task.options.result_storage_key

"""The contract between the Python side and the Lua scripts, named in one place.

What one side writes and the other reads: state names and sets, script reply codes,
the fields of run records, events and stream entries, and the message ``meta`` map.
The scripts (``taskq/scripts/*.lua``) spell the same names as literals, their state
sets in ``lib_states.lua``; ``tests/unit/test_protocol.py`` keeps the sides in
agreement. A leaf: it imports nothing from taskq. A changed value changes the wire
format (stored records, queued messages): change one only with a migration.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

#: Priority levels: 0 (the default) to ``PRIORITIES - 1``; each has a stream of its own.
PRIORITIES: Final = 10

#: Prefix of a delay-queue member of priority level L > 0: ``PRIORITY_MARK + b"<L>"``
#: before the payload (0xC1 is never the first byte of a msgpack value).
PRIORITY_MARK: Final = b"\xc1P"


class StateName(enum.StrEnum):
    """The state names the scripts store in a run record's ``s`` field."""

    SCHEDULED = "Scheduled"
    PENDING = "Pending"
    RUNNING = "Running"
    RETRYING = "Retrying"
    AWAITING_RETRY = "AwaitingRetry"
    AWAITING_CHILDREN = "AwaitingChildren"
    RESUMING = "Resuming"
    COMPLETED = "Completed"
    CACHED = "Cached"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    CRASHED = "Crashed"
    #: Never stored: what a reader reports for a run that has no record.
    UNKNOWN = "Unknown"


#: States that never change again (``lib_states.lua`` ``FINAL``).
FINAL: Final = frozenset(
    {StateName.COMPLETED, StateName.CACHED, StateName.FAILED, StateName.CANCELLED}
)
#: States of an attempt that holds the run: the fence (``lib_fence.lua``).
HELD: Final = frozenset({StateName.RUNNING, StateName.RETRYING})
#: States of a run that had no attempt yet, which no other worker can have taken.
NOT_STARTED: Final = frozenset({StateName.PENDING, StateName.SCHEDULED})
#: States of a flow waiting for, or just woken by, its children (start resumes them).
SUSPENDED: Final = frozenset({StateName.AWAITING_CHILDREN, StateName.RESUMING})
#: States of a run waiting in the delay queue (its record carries ``due``).
DELAYED: Final = frozenset({StateName.SCHEDULED, StateName.AWAITING_RETRY})
#: Final states of a child that a retried flow runs again (``reset.lua``).
RESETTABLE: Final = frozenset({StateName.FAILED, StateName.CANCELLED})


class ErrorType(enum.StrEnum):
    """Error types the scripts themselves record (an event's ``et``, an outcome's ``e``)."""

    DEAD_LETTERED = "DeadLettered"
    INTERRUPTED = "Interrupted"
    CRASHED = "Crashed"
    CANCELLED = "Cancelled"


# -- reply codes ------------------------------------------------------------------------


class StartKind(enum.IntEnum):
    """``start.lua``: the kind of each delivery, first of its ``{kind, attempt, deliveries}``."""

    DUPLICATE = 0
    STARTED = 1
    RESUMED = 2
    POISON = 3
    RETRYING = 4
    LOST = 5
    #: Started, a new attempt (Running) after the one before was recorded Crashed.
    RECOVERED = 6


class FinishReply(enum.IntEnum):
    """``finish.lua``."""

    FENCED = 0
    RECORDED = 1


class RetryReply(enum.IntEnum):
    """``retry.lua`` and ``retry_now.lua`` (SCHEDULED: the next attempt started, for the latter)."""

    FENCED = 0
    SCHEDULED = 1
    PAST_DEADLINE = 2


class CancelReply(enum.IntEnum):
    """``cancel.lua``: what a cancel found (and did)."""

    UNKNOWN = 0
    ENDED = 1
    REQUESTED = 2
    CANCELLED = 3


class SuspendReply(enum.IntEnum):
    """``suspend.lua``."""

    FENCED = 0
    SUSPENDED = 1
    SATISFIED = 2


class ParkReply(enum.IntEnum):
    """``park.lua``: the code, first of its ``{code, waited_ms}``."""

    EXPIRED = 0
    PARKED = 1
    ENDED = 2
    LOST = 3


class EnqueueReply(enum.IntEnum):
    """``enqueue.lua``: one per run."""

    KNOWN = 0
    ADDED = 1


class NotifyReply(enum.IntEnum):
    """``notify.lua`` (and ``lib_notify.lua``'s ``notify_flow``)."""

    WAITING = 0
    RESUMED = 1


class ResetReply(enum.IntEnum):
    """``reset.lua``."""

    KEPT = 0
    RESET = 1


class DeadReply(enum.IntEnum):
    """``dead.lua``."""

    MOVED = 1


class RequeueReply(enum.IntEnum):
    """``requeue.lua``: what became of one dead-letter entry, first of its ``{code, state}``."""

    #: The entry was no longer in the dead-letter stream (requeued or purged meanwhile).
    GONE = 0
    #: Back on its stream; its dead-lettered run reopened as its next attempt (Pending).
    REOPENED = 1
    #: Back on its stream; it named no run, or one with no record (expired): recorded Pending.
    ADDED = 2
    #: Not requeued, its entry removed: its run's record ended otherwise, or is live
    #: (the state is the reply's second element).
    ENDED = 3


#: finish.lua's markers: ARGV[11] leaves a flow child's delivery pending, ARGV[13]
#: notifies the child's flow inside the script.
KEEP_PENDING: Final = "1"
FLOW_CHILD: Final = "flow"


class WaitMode(enum.StrEnum):
    """How a suspended flow waits for its children (``suspend.lua`` ARGV[7], record ``wm``)."""

    ALL = "all"
    ANY = "any"


# -- fields -----------------------------------------------------------------------------


class RecordField(enum.StrEnum):
    """Fields of a run record (a hash; ``taskq.keys`` names its key)."""

    STATE = "s"
    ATTEMPT = "a"
    WORKER = "w"
    #: Stream entry id of the delivery the run holds.
    ENTRY = "e"
    #: Display name (``task_run_name``).
    NAME = "n"
    #: When a delayed run comes due (server ms).
    DUE = "due"
    #: Why the run was dead-lettered.
    DEAD = "dead"
    #: How often the run was parked for a worker that knows its task, and since when.
    PARKED = "u"
    PARKED_SINCE = "u0"
    #: A suspended flow's payload (re-enqueued on resume).
    PAYLOAD = "p"
    WAIT_MODE = "wm"
    #: Number of the flow's current wait, and of the last wait that resumed it.
    WAIT_NUMBER = "wn"
    RESUMED_WAIT = "rn"
    RESUMES = "resumes"
    #: Highest child sequence number a suspended flow had spawned.
    SEQ = "seq"
    #: Queues a flow's children run on, comma-separated.
    CHILD_QUEUES = "cq"
    #: How many late writes of stale attempts were fenced off.
    FENCED = "fenced"
    #: Why the run was cancelled (or asked to stop, while running).
    CANCEL = "cx"
    #: A suspended flow's priority level (its resume goes back to that stream).
    LEVEL = "l"
    #: The running attempt's latest progress report: fraction done, and its message.
    PROGRESS = "pg"
    PROGRESS_MESSAGE = "pm"
    #: The run's task name, written by ``start.lua`` with each new attempt (a queued
    #: run's record does not have it: its Pending / Scheduled event does).
    TASK = "k"


#: Longest task name (bytes) ``start.lua`` records on a run (``k``): Redis keeps a hash
#: compact (listpack) only while every value is at most ``hash-max-listpack-value``
#: (64 by default), and a run record must stay compact. A longer name is found in the
#: run's Pending event or its payload instead.
RECORD_TASK_MAX_BYTES: Final = 64

#: Per-attempt record fields: ``t<n>`` start time (server ms), ``x<n>`` the error.
STARTED_PREFIX: Final = "t"
ERROR_PREFIX: Final = "x"


def started_field(attempt: int) -> str:
    """The record field holding when ``attempt`` started (server ms)."""
    return f"{STARTED_PREFIX}{attempt}"


def error_field(attempt: int) -> str:
    """The record field holding ``attempt``'s error, as ``"Type: message"``."""
    return f"{ERROR_PREFIX}{attempt}"


class EventField(enum.StrEnum):
    """Fields of an entry of a queue's events stream.

    One entry may tell the same transition of several runs (a worker's batch, or the
    runs one ``map`` call enqueued): then ``r`` holds their run ids and ``a`` (where the
    state has one) their attempts, each list separated by single spaces (run ids have
    none), in the same order; such an entry has no error fields.
    :func:`split_event` turns any entry into one field map per run.
    """

    #: The run id, or several (space-separated) in a batch entry.
    RUN = "r"
    STATE = "s"
    #: The attempt, or one per run (space-separated) in a batch entry.
    ATTEMPT = "a"
    ERROR_TYPE = "et"
    ERROR_MESSAGE = "em"
    DUE = "due"
    #: How many children a flow that suspended waits for.
    WAITING = "waiting"
    #: Why a run is Scheduled again ("rate limit": deferred to its rate-limit slot).
    WHY = "why"
    #: A ``Progress`` entry's fraction done and message (it names no state change).
    PROGRESS = "pg"
    PROGRESS_MESSAGE = "pm"
    #: The task name of the runs of a Pending or Scheduled entry (``enqueue.lua``; one
    #: task per entry), and of a run an operator requeued (``requeue.lua``).
    TASK = "k"
    #: Present (1) on the Pending event of a run an operator requeued from the
    #: dead-letter stream (``taskq dead requeue``).
    REQUEUED = "rq"


#: The ``s`` of an events-stream entry that reports a running attempt's progress: not a
#: state (the run stays in its state), so no reader waiting for states stops at it.
PROGRESS_EVENT: Final = "Progress"


#: What separates the run ids (and the attempts) of a batch entry of the events stream.
EVENT_RUN_SEP = " "


def split_event(fields: dict[str, str]) -> list[dict[str, str]]:
    """The per-run field maps of one events-stream entry (one map unless it is a batch)."""
    runs = fields.get(EventField.RUN, "")
    if EVENT_RUN_SEP not in runs:
        return [fields]
    if EventField.ATTEMPT not in fields:  # enqueued runs (Pending) have no attempt yet
        return [{**fields, EventField.RUN: rid} for rid in runs.split(EVENT_RUN_SEP)]
    attempts = fields[EventField.ATTEMPT].split(EVENT_RUN_SEP)
    return [
        {**fields, EventField.RUN: rid, EventField.ATTEMPT: a}
        for rid, a in zip(runs.split(EVENT_RUN_SEP), attempts, strict=True)
    ]


class EntryField(enum.StrEnum):
    """Fields of a task stream entry (one delivery)."""

    #: The message (msgpack, see ``taskq.message``).
    PAYLOAD = "m"
    #: The run id, readable without decoding the payload.
    RUN = "r"


class DeadField(enum.StrEnum):
    """Fields ``dead.lua`` adds before a dead-lettered entry's own fields."""

    REASON = "reason"
    ID = "id"
    RUN = "run"
    #: The priority level of the stream the entry came from (entries dead-lettered
    #: before it existed have none: level 0); a requeue puts it back there.
    PRIORITY = "priority"


class OutcomeField(enum.StrEnum):
    """Keys of an outcome map (``taskq.message.encode_outcome``; ``dead.lua`` writes one)."""

    STATE = "s"
    ATTEMPT = "a"
    ERROR = "e"
    VALUE = "v"
    CALL = "c"
    #: Present (1) when the run's value was not kept (``persist_result=False``).
    UNKEPT = "n"


# -- message meta -----------------------------------------------------------------------


class MetaKey(enum.StrEnum):
    """Keys of a message's ``meta`` map, other than the retry overrides."""

    RESULT_TTL = "result_ttl"
    TIMEOUT = "timeout_seconds"
    REFRESH_CACHE = "refresh_cache"
    NAME = "name"
    #: ``log_prints`` a flow child inherits from its flow (written only when the child's
    #: task leaves it unset, and the flow's is on).
    LOG_PRINTS = "log_prints"
    PARENT = "parent"
    #: A flow child's call digest (bytes), checked when its flow replays.
    CALL = "c"
    #: The rate-limit slot (server ms) a deferred run was given: back at it (not much
    #: later), it starts without taking another.
    RATE_SLOT = "rs"
    #: How often a run found its concurrency key full (its next wait doubles).
    CONC_WAITS = "cw"
    #: ``persist_result`` changed per submission (``with_options``).
    PERSIST_RESULT = "persist_result"
    #: ``result_storage_key`` changed per submission (``with_options``).
    RESULT_STORAGE_KEY = "result_storage_key"
    #: The digest of a flow's parameters (16 bytes), sent with a child only when the
    #: child's cache policy reads them (``FLOW_PARAMETERS``).
    FLOW_PARAMETERS = "fp"
    #: The W3C ``traceparent`` of the span that submitted the run (only with tracing
    #: on, inside a span: :mod:`taskq.tracing`), and its ``tracestate`` if any.
    TRACE_PARENT = "tp"
    TRACE_STATE = "ts"


#: Retry options a message may override (the options of ``taskq.options`` of the same names).
RETRY_OVERRIDES: Final = (
    "retries",
    "retry_delay_seconds",
    "retry_jitter_factor",
    "retry_condition_fn",
    "retry_on",
    "no_retry_on",
    "retry_deadline_seconds",
)


@dataclass(frozen=True)
class Parent:
    """The flow a child run belongs to.

    Attributes:
        queue: The flow's queue.
        flow_id: The flow's run id.
        level: The flow's priority level (its resume goes back to that stream).
    """

    queue: str
    flow_id: str
    level: int = 0

    @classmethod
    def parse(cls, value: Any) -> Parent | None:
        """The parent a meta ``parent`` value names.

        Args:
            value: ``[queue, flow_id, level]``, or ``[queue, flow_id]`` (level 0).

        Returns:
            The parent, or None when ``value`` is malformed or the level out of range.
        """
        if not isinstance(value, list) or len(value) not in (2, 3):
            return None
        queue, flow_id, *rest = value
        level = rest[0] if rest else 0
        if not (isinstance(queue, str) and isinstance(flow_id, str)):
            return None
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level < PRIORITIES:
            return None
        return cls(queue, flow_id, level)


def _positive(value: Any) -> bool:
    # bool passes as an int here, as it always has where the engine reads these.
    return isinstance(value, int | float) and value > 0


@dataclass
class Meta:
    """A message's ``meta`` map, typed.

    :meth:`from_dict` puts a value in its typed field when it has the type the
    producers write and passes the engine's checks; any other value, and any key this
    version does not know, stays in ``extra``, so :meth:`to_dict` gives back the same
    map. (Exception: a two-element ``parent``, written before the flow's level
    travelled, is read as level 0 and written back with it. Note for callers that
    switch to it: the engine today also takes a non-bool ``refresh_cache`` by its
    truth and a non-str ``name`` through ``str``; here those stay in ``extra``.)
    Keys come out in the order the producers write them (task overrides, run name,
    the flow's fields), so such a map round-trips to the same msgpack bytes.

    Attributes:
        result_ttl: Per-submission ``result_ttl`` (seconds).
        timeout_seconds: Per-submission ``timeout_seconds``.
        refresh_cache: Per-submission ``refresh_cache``.
        retry: Per-submission retry options, by option name.
        name: The run's display name (``task_run_name``).
        log_prints: ``log_prints`` inherited from the run's flow.
        parent: The flow this run is a child of.
        call: A flow child's call digest.
        flow_parameters: The digest of a flow child's flow's parameters.
        extra: Everything else, as it came.
    """

    result_ttl: int | float | None = None
    timeout_seconds: int | float | None = None
    refresh_cache: bool | None = None
    retry: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    log_prints: bool | None = None
    parent: Parent | None = None
    call: bytes | None = None
    flow_parameters: bytes | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Meta:
        """The typed view of a message's ``meta`` map.

        Args:
            raw: The map as decoded from the message (never changed).

        Returns:
            The meta; nothing is refused (see the class docstring).
        """
        meta = cls()
        for key, value in raw.items():
            if not meta._take(key, value):
                meta.extra[key] = value
        return meta

    def _take(self, key: str, value: Any) -> bool:
        """Store ``value`` in its typed field; False when it has none or is malformed."""
        if key in RETRY_OVERRIDES:
            self.retry[key] = value
        elif key == MetaKey.RESULT_TTL and _positive(value):
            self.result_ttl = value
        elif key == MetaKey.TIMEOUT and _positive(value):
            self.timeout_seconds = value
        elif key == MetaKey.REFRESH_CACHE and isinstance(value, bool):
            self.refresh_cache = value
        elif key == MetaKey.NAME and isinstance(value, str):
            self.name = value
        elif key == MetaKey.LOG_PRINTS and isinstance(value, bool):
            self.log_prints = value
        elif key == MetaKey.PARENT and (parent := Parent.parse(value)) is not None:
            self.parent = parent
        elif key == MetaKey.CALL and isinstance(value, bytes):
            self.call = value
        elif key == MetaKey.FLOW_PARAMETERS and isinstance(value, bytes):
            self.flow_parameters = value
        else:
            return False
        return True

    def to_dict(self) -> dict[str, Any]:
        """The ``meta`` map to put in a message (empty when nothing is set)."""
        out: dict[str, Any] = {}
        if self.result_ttl is not None:
            out[MetaKey.RESULT_TTL.value] = self.result_ttl
        if self.timeout_seconds is not None:
            out[MetaKey.TIMEOUT.value] = self.timeout_seconds
        if self.refresh_cache is not None:
            out[MetaKey.REFRESH_CACHE.value] = self.refresh_cache
        out.update(self.retry)
        if self.name is not None:
            out[MetaKey.NAME.value] = self.name
        if self.log_prints is not None:
            out[MetaKey.LOG_PRINTS.value] = self.log_prints
        if self.parent is not None:
            p = self.parent
            out[MetaKey.PARENT.value] = [p.queue, p.flow_id, p.level]
        if self.call is not None:
            out[MetaKey.CALL.value] = self.call
        if self.flow_parameters is not None:
            out[MetaKey.FLOW_PARAMETERS.value] = self.flow_parameters
        out.update(self.extra)
        return out

"""Run states: a few types, richer display names (as in Prefect).

A state's *type* drives the logic; its *name* is what users see. ``AwaitingRetry``
is a SCHEDULED type, ``Retrying`` a RUNNING one, ``Cached`` a COMPLETED one.

The transition rules are enforced in the Lua scripts (``taskq/scripts``); the
names and the final set are :mod:`taskq.protocol`'s, and this module classifies
them for Python callers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from taskq.errors import ErrorInfo
from taskq.protocol import FINAL, StateName


class StateType(enum.Enum):
    """The seven state types."""

    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CRASHED = "CRASHED"
    CANCELLED = "CANCELLED"


#: Display name -> type. Names are what the scripts store in the run record.
NAME_TO_TYPE: dict[str, StateType] = {
    StateName.SCHEDULED: StateType.SCHEDULED,
    StateName.AWAITING_RETRY: StateType.SCHEDULED,
    StateName.AWAITING_CHILDREN: StateType.SCHEDULED,
    StateName.RESUMING: StateType.PENDING,
    StateName.PENDING: StateType.PENDING,
    StateName.RUNNING: StateType.RUNNING,
    StateName.RETRYING: StateType.RUNNING,
    StateName.COMPLETED: StateType.COMPLETED,
    StateName.CACHED: StateType.COMPLETED,
    StateName.FAILED: StateType.FAILED,
    StateName.CRASHED: StateType.CRASHED,
    StateName.CANCELLED: StateType.CANCELLED,
}

TERMINAL_TYPES = frozenset({StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED})
#: The names of the terminal types: the scripts' final set (tests/unit/test_protocol.py
#: checks that the two agree).
FINAL_NAMES: frozenset[str] = FINAL


@dataclass(frozen=True)
class State:
    """A run's state as read from Redis.

    Attributes:
        name: Display name, e.g. ``"Completed"`` or ``"AwaitingRetry"``.
        type: The state type.
        attempt: The attempt number the state belongs to (0 before the first start).
        error: The error of a failed attempt, if any.
        data: Other fields of the run record (timestamps, worker id, ...).
        exception: The live exception, only inside the worker that caught it
            (for ``retry_condition_fn``); never stored.
    """

    name: str
    attempt: int = 0
    error: ErrorInfo | None = None
    data: dict[str, Any] = field(default_factory=dict)
    exception: BaseException | None = field(default=None, compare=False, repr=False)

    @property
    def type(self) -> StateType:
        return NAME_TO_TYPE.get(self.name, StateType.PENDING)

    def is_final(self) -> bool:
        """True for Completed, Failed and Cancelled: the state can never change again."""
        return self.type in TERMINAL_TYPES

    def is_completed(self) -> bool:
        return self.type is StateType.COMPLETED

    def is_failed(self) -> bool:
        return self.type in (StateType.FAILED, StateType.CRASHED)

    def __repr__(self) -> str:
        return f"State(name={self.name!r}, type={self.type.value}, attempt={self.attempt})"


@dataclass(frozen=True)
class TaskRun:
    """What hooks and ``retry_condition_fn`` receive about a run."""

    id: str
    queue: str
    task_name: str
    attempt: int

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

from taskq.errors import (
    Cancel,
    ErrorInfo,
    FailedStateReturned,
    TaskCancelledError,
    TaskFailedError,
    TaskqError,
    error_info,
)
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
        exception: The exception :meth:`result` raises: the live one where this
            process caught it (for ``retry_condition_fn``, a direct call's
            ``return_state=True``), or the error a read of the stored outcome raises;
            never stored.
        value: A completed state's value (see :meth:`result`).
        run_id: The run the state is of ("" where unknown; ``"local"`` for a direct call).
    """

    name: str
    attempt: int = 0
    error: ErrorInfo | None = None
    data: dict[str, Any] = field(default_factory=dict)
    exception: BaseException | None = field(default=None, compare=False, repr=False)
    #: The value a task body's returned ``Completed(value)`` carries (see :func:`Completed`).
    value: Any = field(default=None, compare=False, repr=False)
    run_id: str = field(default="", compare=False, repr=False)

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

    def result(self, raise_on_failure: bool = True) -> Any:
        """The state's value, as Prefect's ``State.result()``: a Completed (or Cached)
        state's value; a failed or cancelled state's error is raised (returned with
        ``raise_on_failure=False``).

        Raises:
            TaskFailedError: A Failed state read from Redis (``ChildFailedError`` in a
                flow); a state this process made holds the live exception instead.
            TaskCancelledError: A Cancelled state read from Redis.
            ResultNotPersistedError: Completed, but its task has ``persist_result=False``.
            TaskqError: The state is not final: there is no result yet.
        """
        error = self.exception
        if self.type is StateType.COMPLETED:
            if error is not None:  # completed, but its value was not kept
                raise error
            return self.value
        if error is None:
            if not self.is_final():
                raise TaskqError(
                    f"run {self.run_id or '?'} is {self.name}, not final: it has no result yet"
                )
            info = self.error or ErrorInfo("UnknownError", f"run ended {self.name}")
            if self.type is StateType.CANCELLED:
                error = TaskCancelledError(self.run_id, info.message)
            else:
                error = TaskFailedError(self.run_id, info, self.attempt)
        if raise_on_failure:
            raise error
        return error

    def __repr__(self) -> str:
        return f"State(name={self.name!r}, type={self.type.value}, attempt={self.attempt})"


@dataclass(frozen=True)
class TaskRun:
    """What hooks and ``retry_condition_fn`` receive about a run."""

    id: str
    queue: str
    task_name: str
    attempt: int


def Completed(value: Any = None) -> State:
    """A state a task body may return (as in Prefect): the run completes with ``value``."""
    return State(StateName.COMPLETED.value, value=value)


def Failed(message: str = "") -> State:
    """A state a task body may return (as in Prefect): the attempt fails with ``message``,
    retried per the task's policy like a raised error."""
    return State(
        StateName.FAILED.value, error=ErrorInfo(StateName.FAILED.value, message or "failed")
    )


def Cancelled(message: str = "") -> State:
    """A state a task body may return: the run ends Cancelled (as raising ``Cancel``)."""
    return State(
        StateName.CANCELLED.value,
        error=ErrorInfo(StateName.CANCELLED.value, message or "cancelled"),
    )


def returned_value(value: Any) -> Any:
    """What a task body's return value means, as in Prefect: a returned state sets the
    outcome (``Completed(v)``: the value ``v``; ``Failed``: the attempt fails;
    ``Cancelled``: the run is cancelled), and so does a non-empty list or tuple of
    states (failed if any failed, else the list of their values); anything else is
    the value itself.

    Raises:
        FailedStateReturned: A returned state, or one of a list, failed.
        Cancel: A returned state is Cancelled.
    """
    if isinstance(value, State):
        states = [value]
    elif isinstance(value, list | tuple) and value and all(isinstance(v, State) for v in value):
        states = list(value)
    else:
        return value
    cancelled = [s for s in states if s.type is StateType.CANCELLED]
    if cancelled:
        raise Cancel(cancelled[0].error.message if cancelled[0].error else "cancelled")
    failed = [s for s in states if not s.is_completed()]
    if failed:
        if isinstance(value, State):
            raise FailedStateReturned(failed[0].error.message if failed[0].error else "failed")
        raise FailedStateReturned(f"{len(failed)}/{len(states)} states failed.")
    if isinstance(value, State):
        return value.value
    return [s.value for s in states]


def local_state(attempt: int, value: Any = None, error: BaseException | None = None) -> State:
    """The final state of a direct (in-process) call made with ``return_state=True``:
    Completed with ``value``, or Failed (Cancelled for :class:`Cancel`) holding ``error``,
    which :meth:`State.result` raises as it was."""
    if error is None:
        return State(StateName.COMPLETED.value, attempt, value=value, run_id="local")
    info = error_info(error)
    name = StateName.CANCELLED if isinstance(error, Cancel) else StateName.FAILED
    return State(name.value, attempt, info, exception=error, run_id="local")

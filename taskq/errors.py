"""Every exception taskq raises, under one root.

::

    TaskqError
    ├── ConfigurationError        bad option, bad CLI argument, unknown task option
    ├── RedisUnavailableError     Redis did not answer (message names the URL, password redacted)
    ├── BrokerError               Redis answered with an error taskq did not expect
    │   └── RedisFullError        Redis reached maxmemory (noeviction) and refuses new work
    ├── MessageError              a stream entry that cannot be decoded or is too large / deep
    ├── ResultTimeoutError        Future.result(timeout=...) ran out of time
    ├── ResultInTaskError         a result waited for inside a running task (can deadlock the pool)
    ├── MissingContextError       get_run_logger() called outside a task or flow run
    ├── TaskTimeoutError          an attempt ran past its timeout_seconds (retried per policy)
    ├── TaskFailedError           the run ended Failed / Crashed; carries the error as data
    │   └── ChildFailedError      inside a flow: a child run ended Failed or Cancelled
    ├── TaskCancelledError        the run ended Cancelled
    ├── UnknownTaskError          a message names a task this app does not register
    └── NonDeterministicFlowError a flow's replay called another child than its first execution

    BaseException
    ├── Retry                     raised by a task body: "retry me" (control flow, not an error)
    └── Cancel                    raised by a task body: "stop for good"

``Retry`` and ``Cancel`` derive from :class:`BaseException` so that a task's own
``except Exception`` cannot swallow them.

redis-py errors are translated to these in exactly one place:
:meth:`taskq.broker.connection.Connection.translate`.
"""

from __future__ import annotations

import traceback as _tb
from dataclasses import dataclass
from datetime import timedelta


class TaskqError(Exception):
    """Root of every error taskq raises."""


class ConfigurationError(TaskqError, ValueError):
    """An option, argument or setting is invalid."""


class RedisUnavailableError(TaskqError, ConnectionError):
    """Redis could not be reached; the message names the URL without its password."""


class BrokerError(TaskqError):
    """Redis replied with an unexpected error (the reply text is in the message)."""


class MessageError(TaskqError, ValueError):
    """A payload could not be encoded or decoded within the configured limits."""


class ResultTimeoutError(TaskqError, TimeoutError):
    """A result did not arrive within the given timeout."""


class ResultInTaskError(TaskqError, RuntimeError):
    """A task running on a worker waited for a run's result (which can deadlock the pool)."""


class MissingContextError(TaskqError, RuntimeError):
    """:func:`taskq.get_run_logger` was called outside a task or flow run (Prefect's
    ``MissingContextError``)."""


class TaskTimeoutError(TaskqError, TimeoutError):
    """An attempt ran longer than its task's ``timeout_seconds``."""


class UnknownTaskError(TaskqError, LookupError):
    """A message names a task that is not registered in this app."""


class ResultNotPersistedError(TaskqError):
    """A run completed, but its task has ``persist_result=False``: no value was kept."""


class ResultNotFoundError(TaskqError, LookupError):
    """No result is stored under a ``result_storage_key`` (never written, or expired)."""


@dataclass(frozen=True)
class ErrorInfo:
    """An error carried as data: never re-instantiated from its type name.

    Attributes:
        type: The qualified exception type name, e.g. ``"ValueError"``.
        message: ``str(exc)``.
        traceback: The formatted traceback text, possibly empty.
    """

    type: str
    message: str
    traceback: str = ""

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"


def error_info(exc: BaseException) -> ErrorInfo:
    """An exception as data: qualified type name, message, traceback text."""
    cls = type(exc)
    name = (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )
    return ErrorInfo(name, str(exc), "".join(_tb.format_exception(exc))[-8000:])


class TaskFailedError(TaskqError):
    """A run ended Failed (or Crashed); ``result()`` raises this.

    Attributes:
        run_id: The failed run.
        error: The last attempt's error, as data.
        attempts: How many attempts ran.
    """

    def __init__(self, run_id: str, error: ErrorInfo, attempts: int) -> None:
        super().__init__(f"run {run_id} failed after {attempts} attempt(s): {error}")
        self.run_id = run_id
        self.error = error
        self.attempts = attempts


class ChildFailedError(TaskFailedError):
    """Raised inside a flow where it reads the result of a child that ended badly.

    Attributes:
        child_id: The child run's id (``<flow run id>.<sequence>``).
        error: The child's error as data (``error.type``, ``error.message``).
    """

    def __init__(self, child_id: str, error: ErrorInfo, attempts: int) -> None:
        super().__init__(child_id, error, attempts)
        self.child_id = child_id


class TaskCancelledError(TaskqError):
    """A run ended Cancelled; ``result()`` raises this."""

    def __init__(self, run_id: str, reason: str) -> None:
        super().__init__(f"run {run_id} was cancelled: {reason}")
        self.run_id = run_id
        self.reason = reason


class Retry(BaseException):
    """Raise inside a task to ask for another attempt.

    Args:
        delay: Seconds (or a timedelta) to wait before the next attempt; ``None``
            uses the task's retry policy.
        reason: Free text recorded on the run.
    """

    def __init__(self, delay: float | timedelta | None = None, reason: str = "") -> None:
        super().__init__(reason or "retry requested")
        self.delay = delay.total_seconds() if isinstance(delay, timedelta) else delay
        self.reason = reason


class Cancel(BaseException):
    """Raise inside a task to end the run as Cancelled, with no retry."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason or "cancelled")
        self.reason = reason


class FailedStateReturned(Exception):
    """A task body returned ``taskq.Failed(...)`` (or states of which some failed): the
    attempt fails with this message, and is retried per the task's policy, as in Prefect."""


class NonDeterministicFlowError(TaskqError):
    """A replayed flow body called something else than an earlier execution did.

    Durable replay hands each child call the stored outcome of the child with the
    same sequence number, which is only right if the body is deterministic. The
    flow run ends Failed with this error and is not retried.

    Attributes:
        flow_run_id: The flow run.
        child_id: The child whose recorded call differs (``<flow run id>.<n>``).
        recorded_task: The task that child ran in the earlier execution.
        called_task: The task the replay calls in its place.
    """

    def __init__(self, flow_run_id: str, child_id: str, recorded_task: str, called_task: str):
        what = (
            f"now {called_task} is called in its place"
            if called_task != recorded_task
            else f"now {called_task} is called with other arguments"
        )
        super().__init__(
            f"flow {flow_run_id} is not deterministic: child {child_id} was a call of "
            f"{recorded_task} in an earlier execution, {what} (flow bodies must make the "
            "same calls, in the same order, on every replay)"
        )
        self.flow_run_id = flow_run_id
        self.child_id = child_id
        self.recorded_task = recorded_task
        self.called_task = called_task


class RedisFullError(BrokerError):
    """Redis refused a write because it reached ``maxmemory`` (an ``OOM`` reply).

    With ``maxmemory-policy noeviction`` (what taskq recommends) a full Redis refuses
    new runs, but workers keep consuming: the scripts that drain the backlog may run
    under OOM, so memory falls back as the backlog drains. The message names the
    URL (password redacted) and what to do.
    """

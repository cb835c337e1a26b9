"""Run logs: :func:`get_run_logger` and ``log_prints``, kept in Redis with the run.

A worker sets the run it is executing as the current one (a :class:`~contextvars.ContextVar`,
so each task thread and each asyncio task has its own) for the time of the body. Inside:

- :func:`get_run_logger` returns a :class:`RunLogger`, a :class:`logging.LoggerAdapter` of
  the ``taskq.run`` logger whose records carry ``run_id``, ``task_name``, ``attempt`` and
  ``queue`` in ``extra``. Each record goes to Python logging as usual (where the levels and
  handlers of the app's logging config decide) and, at ``INFO`` and above (or from the level
  set on the ``taskq.run`` logger, when one is set), to the run's log.
- With ``log_prints=True`` on the task or flow, ``print()`` in the body is still printed,
  and its text (trailing whitespace stripped; an empty line skipped) also becomes an
  ``INFO`` line of the run's log (not a Python logging record: the text is on stdout
  already). A ``print(..., file=f)`` to another file than stdout or stderr is left alone.
  ``builtins.print`` is replaced once, by the first run with ``log_prints`` on, by a
  function that looks at the current run; a thread the body starts itself has no current
  run (threads do not inherit context variables), so its prints are not captured, while a
  :class:`RunLogger` handed to it keeps writing to its run.

A flow's children inherit its ``log_prints`` unless their task sets it (as in Prefect);
it travels in the child's message.

Lines are kept in memory during the attempt and written in one call
(``run_log.lua``: RPUSH, LTRIM, PEXPIRE) when the attempt ends, before its outcome is
recorded (and, mid-attempt, whenever 100 lines or 64 KB are waiting). The log keeps the
newest ``run_log_max_lines`` lines (default 1,000); a message longer than
``run_log_line_bytes`` (default 8 KB of UTF-8) is cut and ends with ``... [truncated]``.
Each write sets the log's time to live to the run's ``result_ttl`` plus a minute, so it
expires with the run record (whose time to live the outcome sets a moment later) and the
finish scripts do not touch it. A run parked longer than that between two writes (a long
retry delay) may lose the lines of its earlier attempts.

The engine's own messages, the retry and failure lines it logs to ``taskq.engine``, are
added to the run's log too, sent with the lines of the attempt in the same call, on the
retry and failure paths only. A flow body runs again from the top each time it resumes;
the lines its earlier executions of the same attempt wrote are not written again
(``run_log.lua`` counts them; bodies are deterministic).

Cost when unused: a run that neither logs through its run logger nor has ``log_prints``
on makes no Redis call for its log and does no work for it beyond setting the current run
and one check when its outcome is recorded. Outside a worker's run
:func:`get_run_logger` raises :class:`~taskq.errors.MissingContextError`, except in a task
or flow called directly in this process, where its records go to Python logging only
(such a call has no run record to keep a log with).
"""

from __future__ import annotations

import builtins
import io
import logging
import sys
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

from taskq.broker.logs import format_line
from taskq.errors import MissingContextError, TaskqError

if TYPE_CHECKING:
    from taskq.delivery import Delivery

#: The logger a run logger adapts (records carry the run in ``extra``).
RUN_LOGGER = "taskq.run"
#: Mid-attempt, the buffered lines are written once this many are waiting...
FLUSH_LINES = 100
#: ... or once they hold this many characters.
FLUSH_CHARS = 64 * 1024
#: The log outlives the run's ``result_ttl`` (counted from each write) by this much.
TTL_MARGIN_MS = 60_000
#: The end of a message cut at ``run_log_line_bytes``.
TRUNCATED = " ... [truncated]"

_logger = logging.getLogger(RUN_LOGGER)
log = logging.getLogger("taskq.engine")


class LocalRun:
    """A task or flow called directly in this process: it has a run logger (Python
    logging only), but no run log."""

    __slots__ = ("attempt", "progress", "queue", "run_id", "task_name")

    def __init__(self, task_name: str, queue: str, run_id: str | None = None) -> None:
        self.task_name = task_name
        self.queue = queue
        self.run_id = run_id
        self.attempt: int | None = None
        #: The latest ``taskq.context().progress`` report (kept here only).
        self.progress: tuple[float, str] | None = None


#: The run the current thread or asyncio task executes (None: none).
current_run: ContextVar[Delivery | LocalRun | None] = ContextVar("taskq_run", default=None)

_create = threading.Lock()


class RunLog:
    """The buffered log lines of one attempt of a run (of one execution, for a flow).

    Args:
        d: The delivery.
        flow: Whether it is a flow's (its body lines are counted across replays).
    """

    __slots__ = ("d", "flow", "limit", "lines", "lock", "sent", "size")

    def __init__(self, d: Delivery, flow: bool) -> None:
        self.d = d
        self.flow = flow
        self.limit = d.task.app.settings.run_log_line_bytes
        self.lines: list[str] = []
        self.size = 0
        #: Body lines of this execution already sent (the index of the next).
        self.sent = 0
        self.lock = threading.Lock()

    def add(self, level: int, message: str) -> None:
        """Buffer one line (writing the buffer if it is large)."""
        line = format_line(
            int(time.time() * 1000), level, self.d.attempt, clip(message, self.limit)
        )
        with self.lock:
            self.lines.append(line)
            self.size += len(line)
            full = len(self.lines) >= FLUSH_LINES or self.size >= FLUSH_CHARS
        if full:
            self.flush()

    def flush(self, extra: Sequence[str] = ()) -> None:
        """Write the buffered lines, then ``extra`` (the engine's), in one call.

        A failed write is logged at WARNING and its lines dropped: a run's log never
        fails the run.
        """
        with self.lock:
            lines, self.lines, self.size = self.lines, [], 0
            first, self.sent = self.sent, self.sent + len(lines)
        if not lines and not extra:
            return
        d = self.d
        settings = d.task.app.settings
        broker = d.task.app.broker
        ttl = broker.connection.ttl_ms(d.result_ttl) + TTL_MARGIN_MS
        try:
            broker.logs.append(
                d.queue,
                d.run_id,
                d.attempt,
                [*lines, *extra],
                ttl,
                settings.run_log_max_lines,
                body=len(lines) if self.flow else None,
                first=first,
            )
        except TaskqError as exc:
            log.warning(
                "run %s: %d log line(s) not written: %s", d.run_id, len(lines) + len(extra), exc
            )


def clip(message: str, limit: int) -> str:
    """``message`` if its UTF-8 is at most ``limit`` bytes, else cut to fit, ending with
    :data:`TRUNCATED` (never inside a character)."""
    if len(message) * 4 <= limit:
        return message
    data = message.encode("utf-8", "replace")
    if len(data) <= limit:
        return message
    return data[: limit - len(TRUNCATED)].decode("utf-8", "ignore") + TRUNCATED


def log_of(d: Delivery) -> RunLog:
    """The run's buffer for this attempt (made on first use)."""
    rl = d.log
    if rl is None:
        from taskq.flows.flow import Flow  # below the engine's imports: made rarely

        with _create:
            rl = d.log
            if rl is None:
                rl = d.log = RunLog(d, isinstance(d.task, Flow))
    return rl


def add_line(d: Delivery, level: int, message: str) -> None:
    """One line of the run's log (nothing when run logs are off)."""
    if d.task.app.settings.run_log_max_lines:
        log_of(d).add(level, message)


# -- the engine's side -----------------------------------------------------------------


def enter(d: Delivery) -> Token[Delivery | LocalRun | None]:
    """Make ``d`` the current run (for its body); pass the token to :func:`leave`."""
    if not _patched and d.log_prints:
        _patch_print()
    return current_run.set(d)


def leave(token: Token[Delivery | LocalRun | None]) -> None:
    """The body ended: no current run any more (lines stay buffered until :func:`flush`)."""
    current_run.reset(token)


def flush(d: Delivery) -> None:
    """Write what the attempt (or the flow's execution) buffered; a no-op when nothing."""
    rl = d.log
    if rl is not None:
        rl.flush()


def end_execution(d: Delivery) -> None:
    """A flow's execution suspends: write its lines, and start the next one afresh."""
    rl = d.log
    if rl is not None:
        rl.flush()
        d.log = None


def engine_line(d: Delivery, level: int, message: str) -> None:
    """Write the engine's ``message`` after the attempt's buffered lines, in one call
    (the retry and failure paths)."""
    settings = d.task.app.settings
    if settings.run_log_max_lines:
        line = format_line(
            int(time.time() * 1000), level, d.attempt, clip(message, settings.run_log_line_bytes)
        )
        log_of(d).flush([line])


# -- local calls -----------------------------------------------------------------------


def enter_local(task_name: str, queue: str, run_id: str | None = None) -> Token[Any]:
    """A task or flow called directly here: its run logger logs to Python logging only."""
    return current_run.set(LocalRun(task_name, queue, run_id))


# -- the run logger --------------------------------------------------------------------


class RunLogger(logging.LoggerAdapter[logging.Logger]):
    """A :class:`logging.LoggerAdapter` of the ``taskq.run`` logger for one run.

    Its records go to Python logging with ``extra`` holding ``run_id``, ``task_name``,
    ``attempt`` and ``queue`` (merged with the call's own ``extra``), and, from ``INFO``
    (or the level set on ``taskq.run``), to the run's log in Redis, whatever the level
    Python logging lets through.
    """

    def __init__(self, run: Delivery | LocalRun) -> None:
        if isinstance(run, LocalRun):
            context: dict[str, object] = {
                "run_id": run.run_id,
                "task_name": run.task_name,
                "attempt": run.attempt,
                "queue": run.queue,
            }
            self.delivery: Delivery | None = None
        else:
            context = {
                "run_id": run.run_id,
                "task_name": run.task.name,
                "attempt": run.attempt,
                "queue": run.queue,
            }
            self.delivery = run
        super().__init__(_logger, context)

    def log(  # type: ignore[override]
        self,
        level: int,
        msg: object,
        *args: object,
        exc_info: Any = None,
        stack_info: bool = False,
        stacklevel: int = 1,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        """Log ``msg % args`` at ``level`` (``info``, ``warning``, ``exception``... call this)."""
        if not isinstance(level, int):
            raise TypeError("level must be an integer")
        d = self.delivery
        keep = d is not None and level >= (self.logger.level or logging.INFO)
        if self.isEnabledFor(level):
            self.logger.log(
                level,
                msg,
                *args,
                exc_info=exc_info,
                stack_info=stack_info,
                stacklevel=stacklevel + 1,  # the caller, not this method
                extra={**(self.extra or {}), **(extra or {})},
            )
        if keep and d is not None:
            add_line(d, level, render(msg, args, exc_info))


def render(msg: object, args: Sequence[object], exc_info: Any = None) -> str:
    """The text of a record as :meth:`logging.LogRecord.getMessage` makes it, followed by
    the traceback of ``exc_info`` (an exception, a ``sys.exc_info()`` tuple, or true for
    the exception being handled)."""
    text = str(msg)
    if args:
        values: object = args
        if len(args) == 1 and isinstance(args[0], Mapping) and args[0]:
            values = args[0]
        try:
            text = text % values
        except Exception:
            text = f"{text} (log arguments that do not fit it: {args!r})"
    if exc_info:
        if isinstance(exc_info, BaseException):
            info: Any = (type(exc_info), exc_info, exc_info.__traceback__)
        elif isinstance(exc_info, tuple):
            info = exc_info
        else:
            info = sys.exc_info()
        if info[0] is not None:
            text += "\n" + "".join(traceback.format_exception(*info)).rstrip("\n")
    return text


def get_run_logger() -> RunLogger:
    """The logger of the run executing here (Prefect's ``get_run_logger``).

    In a task or flow body run by a worker, its records go to Python logging (the
    ``taskq.run`` logger) and to the run's log in Redis, shown by ``taskq run ID``. In a
    task or flow called directly in this process, to Python logging only.

    Raises:
        MissingContextError: Called outside a task or flow run (in a hook, after the body,
            in a thread the body started: pass the logger to it instead).
    """
    run = current_run.get()
    if run is None:
        raise MissingContextError(
            "get_run_logger() was called outside a task or flow run: call it in the body "
            "of a task or flow (or pass the logger it returned along); elsewhere use "
            "logging.getLogger(...)"
        )
    return RunLogger(run)


# -- print -----------------------------------------------------------------------------

_print = builtins.print
_patched = False


def _patch_print() -> None:
    """Replace ``builtins.print`` with :func:`print_as_log` (once, for every thread)."""
    global _patched, _print
    with _create:
        if not _patched:
            _print = builtins.print
            builtins.print = print_as_log
            _patched = True


def print_as_log(*args: Any, **kwargs: Any) -> None:
    """``print``, which in a run with ``log_prints`` on also adds the text to its log."""
    run = current_run.get()
    if (
        run is None
        or isinstance(run, LocalRun)
        or kwargs.get("file") not in (None, sys.stdout, sys.stderr)
        or not run.log_prints
    ):
        _print(*args, **kwargs)
        return
    buffer = io.StringIO()
    _print(*args, sep=kwargs.get("sep"), end=kwargs.get("end"), file=buffer)
    text = buffer.getvalue().rstrip()
    if text:
        add_line(run, logging.INFO, text)
    _print(*args, **kwargs)

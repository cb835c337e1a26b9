"""Run logs in Redis: a run's log lines appended by its worker (:mod:`taskq.runlogs`
buffers them during an attempt), read back by
:meth:`taskq.broker.inspection.Inspection.run_logs` for the CLI and the dashboard.

One list per run, ``<prefix>:{queue}:log:<run_id>``, on the queue's hash tag. Each line
is a string ``"<time ms> <level> <attempt> <message>"``: the worker's clock in Unix
milliseconds, the :mod:`logging` level number, the attempt, then the message (which may
hold spaces and newlines), readable with ``redis-cli LRANGE`` as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from taskq import scripts
from taskq.broker.connection import Connection, text


@dataclass(frozen=True)
class LogLine:
    """One line of a run's log.

    Attributes:
        time_ms: When it was logged (the worker's clock, Unix milliseconds).
        level: Its :mod:`logging` level (20 INFO, 30 WARNING, ...).
        attempt: The attempt that logged it.
        message: The message (a traceback follows it when one was logged).
    """

    time_ms: int
    level: int
    attempt: int
    message: str

    @property
    def level_name(self) -> str:
        """``INFO``, ``WARNING``, ... (``Level 25`` for a level without a name)."""
        return logging.getLevelName(self.level)

    @property
    def time(self) -> datetime:
        """:attr:`time_ms` as an aware UTC datetime."""
        return datetime.fromtimestamp(self.time_ms / 1000, tz=UTC)

    def to_dict(self) -> dict[str, object]:
        """The line as plain data (for JSON): time_ms, level, level_name, attempt, message."""
        return {
            "time_ms": self.time_ms,
            "level": self.level,
            "level_name": self.level_name,
            "attempt": self.attempt,
            "message": self.message,
        }


def format_line(time_ms: int, level: int, attempt: int, message: str) -> str:
    """A line as it is stored: ``"<time ms> <level> <attempt> <message>"``."""
    return f"{time_ms} {level} {attempt} {message}"


def parse_line(raw: bytes | str) -> LogLine:
    """A stored line read back (a malformed one becomes a line of level 0 holding it)."""
    line = text(raw)
    parts = line.split(" ", 3)
    try:
        return LogLine(int(parts[0]), int(parts[1]), int(parts[2]), parts[3])
    except (IndexError, ValueError):
        return LogLine(0, logging.NOTSET, 0, line)


class Logs:
    """Appends to run logs (workers).

    Args:
        conn: The connection layer.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.keys = conn.keys

    def append(
        self,
        queue: str,
        run_id: str,
        attempt: int,
        lines: Sequence[str],
        ttl_ms: int,
        cap: int,
        *,
        body: int | None = None,
        first: int = -1,
    ) -> int:
        """Append ``lines`` to the run's log, keep its newest ``cap`` and expire it after
        ``ttl_ms`` (``run_log.lua``: one round trip).

        Args:
            queue: The run's queue.
            run_id: The run.
            attempt: The attempt that logged them.
            lines: Formatted lines (:func:`format_line`).
            ttl_ms: Time to keep the log, from now.
            cap: Lines kept.
            body: A flow: how many of ``lines`` come from its body (the rest from the
                engine); None for a task.
            first: A flow: the index of the first of those within this execution of the
                body. Body lines the attempt's earlier executions wrote are dropped.

        Returns:
            The number of lines appended.
        """
        keys = [self.keys.run_log(queue, run_id)]
        if body is None:
            first, body = -1, len(lines)
        else:
            keys.append(self.keys.run_log_mark(queue, run_id))
        args = [cap, ttl_ms, attempt, first, body, *lines]
        return int(self.conn.call(scripts.RUN_LOG, keys, args))

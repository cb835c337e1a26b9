"""Results stored by name (``result_storage_key``, see :mod:`taskq.results`): one
string key per name under the queue's hash tag, holding a completed run's outcome."""

from __future__ import annotations

from taskq.broker.connection import Connection


class StoredResults:
    """Writes and reads of named results.

    Args:
        conn: The connection layer.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.keys = conn.keys

    def store(self, queue: str, name: str, outcome: bytes, ttl: float | None) -> None:
        """Store ``outcome`` under ``name`` on ``queue`` for ``ttl`` seconds (None: no
        expiry), replacing what was there."""
        key = self.keys.stored(queue, name)
        if ttl is None:
            self.conn.execute("SET", key, outcome)
        else:
            self.conn.execute("SET", key, outcome, "PX", max(1, round(ttl * 1000)))

    def get(self, queue: str, name: str) -> bytes | None:
        """The outcome stored under ``name`` on ``queue``, if any."""
        value: bytes | None = self.conn.execute("GET", self.keys.stored(queue, name))
        return value

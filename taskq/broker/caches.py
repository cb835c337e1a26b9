"""The task cache's calls: read an entry, take its SERIALIZABLE lock, store an entry
off the run's partition. A cache entry written with a run's outcome is part of that
run's ``finish`` call (:meth:`taskq.broker.consumer.Consumer.finish_call`)."""

from __future__ import annotations

from taskq import scripts
from taskq.broker.connection import Connection, text


class Caches:
    """Cache-key calls for workers.

    Args:
        conn: The connection layer.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.keys = conn.keys

    def get(self, queue: str, key: str) -> bytes | None:
        """The cached outcome under ``key``, if any."""
        value: bytes | None = self.conn.execute("GET", self.keys.cache(queue, key))
        return value

    def store(
        self,
        queue: str,
        key: str,
        run_id: str,
        state: str,
        outcome: bytes,
        expiration: float | None,
    ) -> None:
        """Store a Completed ``outcome`` under ``key`` on ``queue`` and release the key's
        lock if ``run_id`` holds it (``cache_store.lua``; idempotent): for a run whose
        cache key's home is another partition than its own, before its finish."""
        keys = [self.keys.cache(queue, key), self.keys.cache_lock(queue, key)]
        exp = -1 if expiration is None else int(expiration * 1000)
        self.conn.call(scripts.CACHE_STORE, keys, [run_id, state, outcome, exp])

    def lock(
        self, queue: str, key: str, run_id: str, ttl: float
    ) -> tuple[str | None, bytes | None]:
        """Take the key's lock for ``run_id``, then read the entry, in one round trip.

        Returns:
            ``(holder, entry)``: holder None if the lock was taken here, else the
            holder's run id; entry the cached outcome read after the lock, if any. A run
            that took the lock just after the previous holder stored the entry (and
            released the lock) finds the entry here, and must not compute it again.
        """
        lock, entry = self.keys.cache_lock(queue, key), self.keys.cache(queue, key)
        # One command (Redis >= 7.0): set only if absent, and return the old holder, so
        # nothing can take or free the lock between the try and the read. The entry is
        # read after it: a holder stores the entry and frees the lock in one script.
        holder, raw = self.conn.send(
            [("SET", lock, run_id, "NX", "GET", "PX", int(ttl * 1000)), ("GET", entry)]
        )
        if isinstance(holder, Exception):
            # Refused (a full Redis refuses SET): the lock was not taken; say who holds it.
            holder = self.conn.send([("GET", lock)])[0]
        cached = raw if isinstance(raw, bytes) else None
        return (None if holder is None else text(holder)), cached

"""A pub/sub subscription on a connection of its own (the delay-queue movers' wake-ups)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from taskq.broker.connection import Connection


class Subscription:
    """Wake-ups published on some channels; see :meth:`Connection.subscribe`."""

    def __init__(self, conn: Connection, channels: Sequence[str]) -> None:
        self._conn = conn
        self._channels = list(channels)
        self._pubsub: Any = None

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for a message; True if one came.

        A fresh (re)subscription also returns True once Redis confirmed it: a
        message published before then was missed, so the caller must look again.

        Raises:
            RedisUnavailableError: The connection failed (the next call resubscribes).
        """
        with self._conn.translate():
            try:
                if self._pubsub is None:
                    pubsub = self._conn.client.pubsub()
                    pubsub.subscribe(*self._channels)
                    confirmed = 0
                    while confirmed < len(self._channels):
                        msg = pubsub.get_message(timeout=timeout)
                        if msg is None:
                            pubsub.close()
                            return False
                        confirmed += msg.get("type") == "subscribe"
                    self._pubsub = pubsub
                    return True
                msg = self._pubsub.get_message(timeout=timeout)
                return msg is not None and msg.get("type") == "message"
            except BaseException:
                self.close()
                raise

    def message(self, timeout: float) -> bytes | None:
        """Block up to ``timeout`` seconds for one message; its data (None: none came, or
        this call (re)subscribed, after which what was published before is missed).

        Raises:
            RedisUnavailableError: The connection failed (the next call resubscribes).
        """
        with self._conn.translate():
            try:
                if self._pubsub is None:
                    self.wait(timeout)  # subscribes, and says nothing of earlier messages
                    return None
                msg = self._pubsub.get_message(timeout=timeout)
                if msg is None or msg.get("type") != "message":
                    return None
                data = msg.get("data")
                return data if isinstance(data, bytes) else None
            except BaseException:
                self.close()
                raise

    def close(self) -> None:
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                self._pubsub.close()
            self._pubsub = None

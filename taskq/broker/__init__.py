"""The Redis side of taskq: one connection layer and role objects composed on top of it.

:class:`Broker` holds a :class:`~taskq.broker.connection.Connection` (the only code that
talks to Redis, which translates every redis-py error) and one object per role, each
holding that connection:

- ``broker.producer`` (:mod:`~taskq.broker.producer`): enqueue, run records, result waits;
- ``broker.consumer`` (:mod:`~taskq.broker.consumer`): fetch, start, finish, retry,
  renew, reclaim, hand back, release, dead-letter, park;
- ``broker.caches`` (:mod:`~taskq.broker.caches`): the task cache's reads, lock and stores;
- ``broker.stored`` (:mod:`~taskq.broker.stored`): results stored by name (``result_storage_key``);
- ``broker.control`` (:mod:`~taskq.broker.control`): cancel, and the stop requests of runs;
- ``broker.delay`` (:mod:`~taskq.broker.delay`): the mover's promote, delayed counts;
- ``broker.flows`` (:mod:`~taskq.broker.flows`): suspend, notify, reset, fan-in reads;
- ``broker.logs`` (:mod:`~taskq.broker.logs`): appends to run logs;
- ``broker.inspect`` (:mod:`~taskq.broker.inspection`): read-only views for the CLI.

Everything above this package sees :class:`~taskq.errors.RedisUnavailableError` and
:class:`~taskq.errors.BrokerError`, never a redis-py exception, and never builds a
script call.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from taskq.broker.caches import Caches
from taskq.broker.connection import Connection, Entry
from taskq.broker.consumer import Consumer, FinishCall
from taskq.broker.control import Control
from taskq.broker.deadletters import DeadLetters
from taskq.broker.delay import Delays, delay_mark
from taskq.broker.flows import Flows
from taskq.broker.inspection import Inspection, WaitFacts
from taskq.broker.logs import Logs
from taskq.broker.producer import ENQUEUE_BATCH, Producer
from taskq.broker.stored import StoredResults
from taskq.broker.subscription import Subscription
from taskq.broker.workers import WorkerRegistry
from taskq.config import Settings
from taskq.keys import Keyspace
from taskq.message import Limits
from taskq.signing import Signer

__all__ = [
    "ENQUEUE_BATCH",
    "Broker",
    "Entry",
    "FinishCall",
    "Subscription",
    "WaitFacts",
    "delay_mark",
]


class Broker:
    """Redis access for one process: a connection and the roles that use it.

    Args:
        settings: Connection and limit settings.
        keys: The keyspace (prefix) to use.
    """

    def __init__(self, settings: Settings, keys: Keyspace) -> None:
        self.settings = settings
        self.keys = keys
        self.connection = Connection(settings, keys)
        self.url = self.connection.url
        self.signer = Signer(settings.signing_keys)
        self.producer = Producer(self.connection, self.signer)
        self.consumer = Consumer(self.connection)
        self.caches = Caches(self.connection)
        self.stored = StoredResults(self.connection)
        self.control = Control(self.connection)
        self.delay = Delays(self.connection)
        self.flows = Flows(self.connection)
        self.logs = Logs(self.connection)
        self.inspect = Inspection(self.connection)
        self.workers = WorkerRegistry(self.connection)
        self.dead = DeadLetters(self.connection)

    @cached_property
    def limits(self) -> Limits:
        """The message limits of these settings: producers encode within them."""
        s = self.settings
        return Limits(s.max_message_bytes, s.max_depth, s.max_args)

    @property
    def client(self) -> Any:
        """The redis-py client, for tests and tools (see :attr:`Connection.client`)."""
        return self.connection.client

    def send(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Raw commands in one round trip, for tests and tools (see :meth:`Connection.send`)."""
        return self.connection.send(commands)

    def execute(self, *args: Any) -> Any:
        """One raw command, for tests and tools; an error reply raises :class:`BrokerError`."""
        return self.connection.execute(*args)

    def ping(self) -> None:
        """Raise :class:`~taskq.errors.RedisUnavailableError` unless Redis answers."""
        self.connection.ping()

    def subscribe(self, channels: Sequence[str]) -> Subscription:
        """A pub/sub subscription to ``channels`` (on a connection of its own)."""
        return Subscription(self.connection, channels)

    def close(self) -> None:
        """Close this process's connections (they reopen on next use)."""
        self.connection.close()

"""Partition names: one logical queue spread over N hash tags (N Cluster slots).

A queue declared with ``partitions=N`` is N queues underneath, each with a hash tag of
its own, so each partition's keys (streams, delay queue, events, dead letters, run
records, results, flow keys) live in one Cluster slot and the N partitions can live on
N different masters. The name of partition ``i`` is ``<queue>#<i>.<salt>``: the
smallest ``salt`` (0, 1, 2, ...) whose slot falls in the ``i``-th of N equal slot
ranges. Masters made by ``redis-cli --cluster create`` own equal contiguous ranges, so
N partitions spread over M masters as evenly as N allows (8 over 3: 3, 2, 3), by
construction, not by luck. The names depend on the queue and N only: every producer
and worker computes the same ones, with no shared state.

``#`` cannot occur in a queue name users give (:func:`taskq.keys.check_name`), so a
partition name never collides with a queue's.

Which partition a new run goes to is :class:`Spread`'s choice: round robin (a counter
per queue in each process), ``crc32(partition_key) % N`` for runs that must keep their
order, or a turn given by the caller (a flow's children, whose partition a replay must
find again). A partition is a queue for every other purpose: its run stays there
through retries, delays and hand-backs, since workers use the delivery's own queue.
"""

from __future__ import annotations

import re
import threading
import zlib
from collections.abc import Mapping
from functools import lru_cache

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

#: Separates a queue's name from its partition's index in a partition name.
SEP = "#"

#: Most partitions a queue may have.
MAX_PARTITIONS = 1024


def slot_of(queue: str) -> int:
    """The Cluster slot of every key of ``queue`` (its hash tag is the queue name)."""
    return int(key_slot(queue.encode()))


@lru_cache(maxsize=4096)
def partition_name(queue: str, index: int, count: int) -> str:
    """The name of partition ``index`` (0-based) of ``queue`` split ``count`` ways.

    Raises:
        ValueError: ``count`` is out of 1..MAX_PARTITIONS or ``index`` out of range.
    """
    if not 1 <= count <= MAX_PARTITIONS:
        raise ValueError(f"partitions must be 1..{MAX_PARTITIONS}, got {count}")
    if not 0 <= index < count:
        raise ValueError(f"partition index {index} is not in 0..{count - 1}")
    low = index * REDIS_CLUSTER_HASH_SLOTS // count
    high = (index + 1) * REDIS_CLUSTER_HASH_SLOTS // count
    salt = 0
    while True:
        name = f"{queue}{SEP}{index}.{salt}"
        if low <= slot_of(name) < high:
            return name
        salt += 1


def partition_names(queue: str, count: int) -> list[str]:
    """Every partition name of ``queue`` split ``count`` ways, by index.

    ``count == 1`` is the queue itself, unpartitioned (its keys are those it had).
    """
    if count == 1:
        return [queue]
    return [partition_name(queue, i, count) for i in range(count)]


def logical_queue(name: str) -> str:
    """The queue a partition name belongs to (a plain queue name: itself)."""
    return name.split(SEP, 1)[0]


_PARTITION_RE = re.compile(r"^#[0-9]+\.[0-9]+$")


def is_partition_name(name: str) -> bool:
    """Whether ``name`` has the form of a partition name (``<queue>#<i>.<salt>``)."""
    head, sep, tail = name.partition(SEP)
    return bool(head) and bool(sep) and _PARTITION_RE.match(sep + tail) is not None


def stable_hash(key: str) -> int:
    """CRC32 of ``key``'s UTF-8 bytes: the same in every process (Python's ``hash()`` of
    a string is salted per process, and every producer must send a key to one place)."""
    return zlib.crc32(key.encode())


def key_index(key: str, count: int) -> int:
    """The partition index of ``key`` among ``count``: ``crc32(key) % count``."""
    return stable_hash(key) % count


class Spread:
    """Picks the partition of each new run, per logical queue.

    Args:
        counts: Partitions per queue (queues not named, or named with 1, are
            unpartitioned: every pick returns the queue itself).
    """

    def __init__(self, counts: Mapping[str, int]) -> None:
        self._names = {q: partition_names(q, n) for q, n in counts.items() if n > 1}
        # A turn per queue, not one for all: two partitioned queues submitted to in
        # turn would otherwise each see every other turn, and use half their partitions.
        self._next = dict.fromkeys(self._names, 0)
        self._lock = threading.Lock()

    def partitioned(self, queue: str) -> bool:
        """Whether ``queue`` has more than one partition."""
        return queue in self._names

    def names(self, queue: str) -> list[str]:
        """The physical queues of ``queue``, by partition index (``[queue]`` if unpartitioned)."""
        return self._names.get(queue) or [queue]

    def pick(self, queue: str, key: str | None = None, turn: int | None = None) -> str:
        """The partition of one new run of ``queue``.

        Args:
            queue: The logical queue.
            key: A ``partition_key``: the same key always picks the same partition.
            turn: Use partition ``turn % N`` (a caller that must pick the same one again).
                None: the next in this process's round robin.

        Returns:
            The physical queue (``queue`` itself when it is unpartitioned).
        """
        names = self._names.get(queue)
        if names is None:
            return queue
        if key is not None:
            return names[key_index(key, len(names))]
        if turn is None:
            turn = self._take(queue, 1)
        return names[turn % len(names)]

    def deal(self, queue: str, n: int, key: str | None = None) -> list[str]:
        """The partitions of ``n`` new runs of ``queue``, in order: consecutive turns of the
        round robin (so ``n`` runs over ``N`` partitions differ by at most one per
        partition), or all on the key's partition."""
        names = self._names.get(queue)
        if names is None:
            return [queue] * n
        if key is not None:
            return [names[key_index(key, len(names))]] * n
        start = self._take(queue, n)
        return [names[(start + i) % len(names)] for i in range(n)]

    def _take(self, queue: str, n: int) -> int:
        """The first of ``n`` consecutive turns of ``queue``'s round robin."""
        with self._lock:  # n turns at once: concurrent submitters never share one
            start = self._next[queue]
            self._next[queue] = start + n
        return start

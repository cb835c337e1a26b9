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
"""

from __future__ import annotations

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

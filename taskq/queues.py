"""Which physical queues a queue name stands for, as read from Redis.

A partitioned queue (:mod:`taskq.partitions`) is one logical queue over several
physical ones (``hot#0.<salt>``, ...). The CLI and the read model
(:mod:`taskq.overview`, :mod:`taskq.deadletters`) show it as one queue: these
helpers find its partitions (from the settings, else under the prefix) and group
physical names by their logical queue.
"""

from __future__ import annotations

from collections.abc import Sequence

from taskq.broker import Broker
from taskq.partitions import is_partition_name, logical_queue


def physical(broker: Broker, queue: str) -> list[str]:
    """The physical queues a CLI command given ``queue`` reads.

    Its partitions when the settings declare it partitioned (``TASKQ_PARTITIONS``);
    else, when ``queue`` itself has no stream, the partitions of it found under the
    prefix (so the CLI needs no ``TASKQ_PARTITIONS`` to show one); else ``[queue]``.
    """
    names = broker.settings.queue_names(queue)
    if len(names) > 1 or is_partition_name(queue):
        return names
    k = broker.keys
    if int(broker.execute("EXISTS", k.events(queue), k.stream(queue))):  # one hash tag
        return names
    found = [n for n in broker.inspect.queue_names() if logical_queue(n) == queue]
    return _by_index(found) or names


def _by_index(names: Sequence[str]) -> list[str]:
    """Partition names in the order of their index (``q#<i>.<salt>``); others first."""

    def index(name: str) -> int:
        return int(name.partition("#")[2].split(".")[0]) if is_partition_name(name) else -1

    return sorted(names, key=index)


def grouped(names: Sequence[str]) -> dict[str, list[str]]:
    """Physical queue names grouped by their logical queue, sorted; each group's
    partitions by index (an unpartitioned queue's group is itself)."""
    groups: dict[str, list[str]] = {}
    for name in sorted(names):
        groups.setdefault(logical_queue(name), []).append(name)
    return {q: _by_index(ns) for q, ns in sorted(groups.items())}

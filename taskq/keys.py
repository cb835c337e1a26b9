"""Every Redis key name taskq uses is built here, and nowhere else.

Keys share a configurable prefix (default ``taskq``) and a hash tag made of the
queue name, so that every key a script touches lives in one Cluster slot::

    taskq:{default}:stream          the task stream (backlog + in-flight only), priority 0
    taskq:{default}:stream:p<N>     the task stream of priority N (1-9; served before lower ones)
    taskq:{default}:delayed         ZSET of runs waiting for a time (retries, delay=)
    taskq:{default}:dead            dead-letter stream (never trimmed)
    taskq:{default}:events          capped stream of state transitions
    taskq:{default}:run:<run_id>    the run's state record (small hash)
    taskq:{default}:result:<run_id> one-element list holding the final outcome
    taskq:{default}:wake            pub/sub channel (not a key) waking delay-queue movers
    taskq:{default}:cancel          pub/sub channel (not a key): a running run was asked to stop
    taskq:{default}:idem:<key>      the run id holding an idempotency key, for dedup_ttl
    taskq:{default}:sched           hash: each scheduled task's last tick fired (Unix ms)
    taskq:{default}:rate:<bucket>   a rate-limit bucket's next free start slot (ms)
    taskq:{default}:conc:<key>      a concurrency key's slots: run id -> lease end (ms)
    taskq:{default}:cache:<key>     a cached outcome (and :lock while one is computed)
    taskq:{default}:stored:<name>   a completed outcome stored by name (result_storage_key)
    taskq:{default}:log:<run_id>    the run's log lines (capped list; only if it logged),
                                    and a flow's :mark (lines its replays already wrote)
    taskq:{default}:flow:<id>:...   a flow's fan-in keys (results, order, wait, ping), on
                                    the flow's queue tag

The worker registry (one hash tag of its own, ``~workers``, which no queue name can
be, so it never reads as a queue)::

    taskq:{~workers}:seen           ZSET: worker id -> its last heartbeat (server ms)
    taskq:{~workers}:info           HASH: worker id -> JSON (host, pid, queues, slots, ...)

A partition of a partitioned queue is a queue here: its name (``hot#3.1``, see
:mod:`taskq.partitions`) is its keys' hash tag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from taskq.errors import ConfigurationError
from taskq.protocol import PRIORITIES as PRIORITIES  # re-exported: defined in the protocol

_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")

#: The consumer group every worker of a queue joins (on each of its priority streams).
GROUP = "taskq"

#: The worker registry's hash tag: ``~`` is not allowed in a queue name.
WORKERS_TAG = "~workers"

#: Levels in the order workers serve them: highest first.
LEVELS_SERVED = tuple(range(PRIORITIES - 1, -1, -1))


def check_name(kind: str, value: str) -> str:
    """Return ``value`` if it is a valid queue name or prefix, else raise.

    Args:
        kind: What the value names, for the error message.
        value: The name to check.

    Raises:
        ConfigurationError: The name is empty, too long or has characters outside
            ``[A-Za-z0-9_.-]`` (braces would break the Cluster hash tag).
    """
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ConfigurationError(
            f"invalid {kind} {value!r}: use 1-128 characters from A-Z a-z 0-9 _ . -"
        )
    return value


@dataclass(frozen=True)
class Keyspace:
    """Builds key names for one prefix."""

    prefix: str = "taskq"

    def __post_init__(self) -> None:
        check_name("key prefix", self.prefix)

    def _tag(self, queue: str) -> str:
        return f"{self.prefix}:{{{queue}}}"

    def stream(self, queue: str, level: int = 0) -> str:
        """The task stream of ``queue`` at priority ``level``."""
        if level == 0:
            return f"{self._tag(queue)}:stream"
        return f"{self._tag(queue)}:stream:p{level}"

    def lane_of_stream(self, key: str) -> tuple[str, int]:
        """The ``(queue, priority level)`` of a task stream's key (:meth:`stream`)."""
        end = key.rindex("}:stream")
        tail = key[end + len("}:stream") :]
        return key[len(self.prefix) + 2 : end], int(tail[2:]) if tail else 0

    def streams(self, queue: str) -> list[str]:
        """Every priority stream of ``queue``, indexed by level (0 first)."""
        return [self.stream(queue, level) for level in range(PRIORITIES)]

    def delayed(self, queue: str) -> str:
        return f"{self._tag(queue)}:delayed"

    def dead(self, queue: str) -> str:
        return f"{self._tag(queue)}:dead"

    def events(self, queue: str) -> str:
        return f"{self._tag(queue)}:events"

    def run(self, queue: str, run_id: str) -> str:
        return f"{self._tag(queue)}:run:{run_id}"

    def result(self, queue: str, run_id: str) -> str:
        return f"{self._tag(queue)}:result:{run_id}"

    def run_log(self, queue: str, run_id: str) -> str:
        """List: the run's log lines, oldest first (capped; see :mod:`taskq.runlogs`)."""
        return f"{self._tag(queue)}:log:{run_id}"

    def run_log_mark(self, queue: str, run_id: str) -> str:
        """String ``<attempt>:<lines>``: how many log lines of a flow's attempt its
        executions wrote, so that a replay of the body does not write them again."""
        return f"{self._tag(queue)}:log:{run_id}:mark"

    def flow_results(self, queue: str, flow_id: str) -> str:
        """Hash: child run id -> outcome payload, for every child of the flow that ended."""
        return f"{self._tag(queue)}:flow:{flow_id}:results"

    def flow_order(self, queue: str, flow_id: str) -> str:
        """List: the flow's child run ids in the order they ended (replays follow it)."""
        return f"{self._tag(queue)}:flow:{flow_id}:order"

    def flow_wait(self, queue: str, flow_id: str) -> str:
        """Set: the children a suspended flow still waits for."""
        return f"{self._tag(queue)}:flow:{flow_id}:wait"

    def flow_ping(self, queue: str, flow_id: str) -> str:
        """Short list a flow blocking inline waits on (BLPOP); children push to it."""
        return f"{self._tag(queue)}:flow:{flow_id}:ping"

    def cache(self, queue: str, key: str) -> str:
        """A cached outcome, under the task's cache key."""
        return f"{self._tag(queue)}:cache:{key}"

    def cache_lock(self, queue: str, key: str) -> str:
        """Held by the run computing a SERIALIZABLE cache entry (its value: the run id)."""
        return f"{self._tag(queue)}:cache:{key}:lock"

    def stored(self, queue: str, name: str) -> str:
        """A result stored by name (``result_storage_key``)."""
        return f"{self._tag(queue)}:stored:{name}"

    def conc(self, queue: str, bucket: str) -> str:
        """A concurrency key's slots: run id -> end of its lease (sorted set, server ms)."""
        return f"{self._tag(queue)}:conc:{bucket}"

    def rate(self, queue: str, bucket: str) -> str:
        """A rate-limit bucket: the time of its next free start slot (ms)."""
        return f"{self._tag(queue)}:rate:{bucket}"

    def schedules(self, queue: str) -> str:
        """The last tick fired of each scheduled task of the queue (hash, Unix ms)."""
        return f"{self._tag(queue)}:sched"

    def idempotency(self, queue: str, key: str) -> str:
        """The run holding an idempotency key (``with_options(idempotency_key=...)``)."""
        return f"{self._tag(queue)}:idem:{key}"

    def cancel_channel(self, queue: str) -> str:
        """Pub/sub channel telling the queue's workers that a running run was asked to stop."""
        return f"{self._tag(queue)}:cancel"

    def wake_channel(self, queue: str) -> str:
        """Pub/sub channel on which the delay-queue movers of ``queue`` are woken."""
        return f"{self._tag(queue)}:wake"

    def workers_seen(self) -> str:
        """ZSET of the worker registry: worker id -> its last heartbeat (server ms)."""
        return f"{self._tag(WORKERS_TAG)}:seen"

    def workers_info(self) -> str:
        """HASH of the worker registry: worker id -> its entry (JSON)."""
        return f"{self._tag(WORKERS_TAG)}:info"

    def run_pattern(self, run_id: str) -> str:
        """A SCAN pattern matching the run record of ``run_id`` on any queue."""
        return f"{self.prefix}:{{*}}:run:{run_id}"

    def queue_of_run_key(self, key: str) -> str:
        """The queue named by the hash tag of a run-record key."""
        return key[len(self.prefix) + 2 : key.index("}:run:")]

    def pattern(self) -> str:
        """A SCAN pattern matching every key of this prefix."""
        return f"{self.prefix}:*"

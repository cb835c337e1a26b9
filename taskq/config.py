"""Settings, read once from arguments and ``TASKQ_*`` environment variables.

Durations are seconds here; they become milliseconds only at the Redis boundary.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from taskq.errors import ConfigurationError
from taskq.keys import check_name
from taskq.partitions import MAX_PARTITIONS, partition_names

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
DEFAULT_PREFIX = "taskq"
"""The Redis used when neither an argument nor ``TASKQ_REDIS_URL`` names one."""


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a number") from None


def _delays(value: Any) -> tuple[float, ...]:
    """``task_default_retry_delay_seconds`` as a tuple of seconds (a number or a list)."""
    items = (value,) if isinstance(value, int | float) and not isinstance(value, bool) else value
    try:
        delays = tuple(float(d) for d in items if not isinstance(d, bool))
        if len(delays) != len(items):
            raise TypeError
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"task_default_retry_delay_seconds must be a number or a list of numbers, got {value!r}"
        ) from None
    if any(d < 0 for d in delays):
        raise ConfigurationError(
            f"task_default_retry_delay_seconds holds a negative delay: {value!r}"
        )
    return delays


def _env_whole(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise ConfigurationError(f"{name}={raw!r} is not a whole number >= 0")
    return int(raw)


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name}={raw!r} is not true or false")


def _env_delays(name: str) -> tuple[float, ...]:
    """``"5"`` or ``"1,2,4"``: retry delays in seconds."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return ()
    try:
        delays = tuple(float(part) for part in raw.split(","))
    except ValueError:
        raise ConfigurationError(
            f"{name}={raw!r} is not a number or comma-separated numbers"
        ) from None
    if any(d < 0 for d in delays):
        raise ConfigurationError(f"{name}={raw!r} holds a negative delay")
    return delays


def check_partitions(value: Any, source: str = "partitions") -> dict[str, int]:
    """A queue -> partition count mapping, checked: valid queue names, counts 1..MAX_PARTITIONS.

    Args:
        value: The mapping given.
        source: What to name in an error (the setting, or the environment variable).

    Raises:
        ConfigurationError: Not a mapping, a bad queue name or a bad count.
    """
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{source} must map queue names to counts, got {value!r}")
    out: dict[str, int] = {}
    for queue, count in value.items():
        try:
            check_name("queue name", queue)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{source}: {exc}") from None
        if isinstance(count, bool) or not isinstance(count, int):
            raise ConfigurationError(
                f"{source}: the partitions of queue {queue!r} must be a whole number, got {count!r}"
            )
        if not 1 <= count <= MAX_PARTITIONS:
            raise ConfigurationError(
                f"{source}: queue {queue!r} must have 1 to {MAX_PARTITIONS} partitions, got {count}"
            )
        out[queue] = count
    return out


def parse_partitions(raw: str, source: str = "TASKQ_PARTITIONS") -> dict[str, int]:
    """``"hot=8,bulk=4"`` as ``{"hot": 8, "bulk": 4}`` (blanks ignored; empty: none).

    Raises:
        ConfigurationError: A malformed item, a queue named twice, a bad name or count;
            the message names ``source`` and the value.
    """
    counts: dict[str, Any] = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        queue, eq, count = (part.strip() for part in item.partition("="))
        if not eq or not queue:
            raise ConfigurationError(
                f"{source}={raw!r}: {item.strip()!r} is not QUEUE=COUNT (e.g. hot=8,bulk=4)"
            )
        if queue in counts:
            raise ConfigurationError(f"{source}={raw!r}: queue {queue!r} is named twice")
        counts[queue] = int(count) if count.isdigit() else count
    return check_partitions(counts, f"{source}={raw!r}")


@dataclass(frozen=True)
class Settings:
    """Everything an App needs to talk to Redis and run tasks.

    Attributes:
        redis_url: Where Redis is (``TASKQ_REDIS_URL``).
        prefix: Key prefix (``TASKQ_PREFIX``), default ``taskq``.
        default_queue: Queue of tasks that name none.
        result_ttl: Seconds a finished run's record and result are kept (default 1 day).
        events_maxlen: Approximate cap of each queue's events stream.
        max_message_bytes: Largest payload accepted, checked before decoding.
        max_result_bytes: Largest encoded result a run may store (default 1 MiB, as
            payloads); a larger one fails the run (not retried: it is deterministic).
        max_depth: Deepest nesting of arguments accepted.
        max_args: Most positional plus keyword arguments accepted.
        block_seconds: How long one blocking read waits; kept below ``socket_timeout``.
        lease_seconds: A delivery idle this long in the pending list (its worker stopped
            renewing it) is reclaimed by another worker. At least 1 s.
        socket_timeout: Socket timeout of the Redis connections.
        connect_timeout: Connect timeout of the Redis connections.
        signing_keys: HMAC keys (``TASKQ_SIGNING_KEYS``, comma-separated): the first
            signs, any verifies. Empty: messages are not signed.
        unknown_task_grace: Seconds a run of a task this worker does not know is handed
            back for a worker that knows it (a rolling deploy), before it is
            dead-lettered (``TASKQ_UNKNOWN_TASK_GRACE``, default 300; 0: at once).
        failover_timeout: On Redis Cluster or Sentinel, seconds a submit (or a result
            wait) keeps retrying while Redis is unreachable (a failover elects a new
            master in about the sentinels' or nodes' down-after time plus a second),
            before it raises
            :class:`~taskq.RedisUnavailableError` (``TASKQ_FAILOVER_TIMEOUT``, default 15;
            0: at once). Safe because an enqueue is idempotent by run id. A single
            node has no failover: a submit fails at once.
        wait_replicas: Replicas that must hold a submitted run before ``submit`` or ``map``
            returns (Redis ``WAIT`` on the connection that wrote it;
            ``TASKQ_WAIT_REPLICAS``, default 0: return at once). With 1 or more, a
            failover to a replica cannot lose a run whose submit returned.
        wait_replicas_timeout: Seconds ``WAIT`` may take; fewer replicas by then raise
            :class:`~taskq.RedisUnavailableError` (retried on Cluster and Sentinel within
            ``failover_timeout``: the enqueue is idempotent).
        task_default_retries: ``retries`` of every task that does not set it
            (``TASKQ_TASK_DEFAULT_RETRIES``, default 0; Prefect's
            ``PREFECT_TASK_DEFAULT_RETRIES``). Read when a task is defined.
        task_default_retry_delay_seconds: ``retry_delay_seconds`` of every task that
            does not set it (``TASKQ_TASK_DEFAULT_RETRY_DELAY_SECONDS``: ``5`` or
            ``1,2,4``; empty: 0).
        tasks_refresh_cache: ``refresh_cache`` of every task that does not set it
            (``TASKQ_TASKS_REFRESH_CACHE``; Prefect's ``PREFECT_TASKS_REFRESH_CACHE``).
        caching_disabled: Every task defined while it is set runs without its cache
            (no look-up, no store), whatever its cache options (``TASKQ_CACHING_DISABLED``).
        run_log_max_lines: Lines a run's log keeps, the newest (``get_run_logger()``,
            ``log_prints``, the engine's retry and failure messages;
            ``TASKQ_RUN_LOG_MAX_LINES``, default 1,000; 0: run logs are not written).
        run_log_line_bytes: Longest message of a run's log line, in UTF-8 bytes; a
            longer one is cut and ends with ``... [truncated]``
            (``TASKQ_RUN_LOG_LINE_BYTES``, default 8,192; at least 64).
        cancel_grace_seconds: How long a running sync run asked to stop (``app.cancel``)
            may go on before its worker abandons it, as a timed-out one, and records it
            Cancelled (``TASKQ_CANCEL_GRACE_SECONDS``, default 10; 0: at once).
        partitions: Queues split over several hash tags, and into how many
            (``TASKQ_PARTITIONS="hot=8,bulk=4"``); see :mod:`taskq.partitions`. Producers
            and workers must agree on it: the names of the partitions depend on the count.
            An App argument replaces the environment's value as a whole.
    """

    redis_url: str = DEFAULT_REDIS_URL
    prefix: str = DEFAULT_PREFIX
    default_queue: str = "default"
    result_ttl: float = 86_400.0
    events_maxlen: int = 10_000
    max_message_bytes: int = 1 << 20
    max_result_bytes: int = 1 << 20
    max_depth: int = 32
    max_args: int = 256
    block_seconds: float = 2.0
    lease_seconds: float = 15.0
    socket_timeout: float = 10.0
    connect_timeout: float = 5.0
    signing_keys: tuple[str, ...] = ()
    unknown_task_grace: float = 300.0
    failover_timeout: float = 15.0
    wait_replicas: int = 0
    wait_replicas_timeout: float = 1.0
    partitions: Mapping[str, int] = field(default_factory=dict)
    task_default_retries: int = 0
    task_default_retry_delay_seconds: tuple[float, ...] = ()
    tasks_refresh_cache: bool = False
    caching_disabled: bool = False
    run_log_max_lines: int = 1000
    run_log_line_bytes: int = 8192
    cancel_grace_seconds: float = 10.0

    def __post_init__(self) -> None:
        # A copy of its own, checked: the caller's dict may change later.
        object.__setattr__(self, "partitions", check_partitions(self.partitions))
        check_name("key prefix", self.prefix)
        check_name("queue name", self.default_queue)
        if self.result_ttl <= 0:
            raise ConfigurationError(f"result_ttl must be > 0 seconds, got {self.result_ttl}")
        if self.max_result_bytes < 1:
            raise ConfigurationError(f"max_result_bytes must be >= 1, got {self.max_result_bytes}")
        if self.lease_seconds < 1:
            raise ConfigurationError(f"lease_seconds must be >= 1, got {self.lease_seconds}")
        if self.block_seconds >= self.socket_timeout:
            raise ConfigurationError("block_seconds must be below socket_timeout")
        if self.wait_replicas < 0 or not self.wait_replicas_timeout > 0:
            raise ConfigurationError(
                "wait_replicas must be >= 0 and wait_replicas_timeout > 0 seconds, got "
                f"{self.wait_replicas} and {self.wait_replicas_timeout}"
            )
        if not self.failover_timeout >= 0:
            raise ConfigurationError(
                f"failover_timeout must be >= 0 seconds, got {self.failover_timeout}"
            )
        retries = self.task_default_retries
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigurationError(
                f"task_default_retries must be a whole number >= 0, got {retries!r}"
            )
        object.__setattr__(
            self,
            "task_default_retry_delay_seconds",
            _delays(self.task_default_retry_delay_seconds),
        )
        for flag in ("tasks_refresh_cache", "caching_disabled"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigurationError(
                    f"{flag} must be True or False, got {getattr(self, flag)!r}"
                )
        lines, size = self.run_log_max_lines, self.run_log_line_bytes
        if isinstance(lines, bool) or not isinstance(lines, int) or lines < 0:
            raise ConfigurationError(
                f"run_log_max_lines must be a whole number >= 0, got {lines!r}"
            )
        if isinstance(size, bool) or not isinstance(size, int) or size < 64:
            raise ConfigurationError(
                f"run_log_line_bytes must be a whole number >= 64, got {size!r}"
            )
        if not self.cancel_grace_seconds >= 0:
            raise ConfigurationError(
                f"cancel_grace_seconds must be >= 0 seconds, got {self.cancel_grace_seconds}"
            )
        if not self.unknown_task_grace >= 0:
            raise ConfigurationError(
                f"unknown_task_grace must be >= 0 seconds, got {self.unknown_task_grace}"
            )

    def queue_names(self, queue: str) -> list[str]:
        """The physical queues of logical ``queue``: its partitions' names, by index, or
        ``[queue]`` when it is not partitioned (its keys are then those it always had).

        This is the one map from a queue to the names its keys are built from.
        """
        return partition_names(queue, self.partitions.get(queue, 1))

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Settings from the environment, then ``overrides`` (``None`` values ignored)."""
        base = cls(
            redis_url=os.environ.get("TASKQ_REDIS_URL") or DEFAULT_REDIS_URL,
            prefix=os.environ.get("TASKQ_PREFIX") or DEFAULT_PREFIX,
            result_ttl=_env_float("TASKQ_RESULT_TTL", 86_400.0),
            lease_seconds=_env_float("TASKQ_LEASE_SECONDS", 15.0),
            unknown_task_grace=_env_float("TASKQ_UNKNOWN_TASK_GRACE", 300.0),
            cancel_grace_seconds=_env_float("TASKQ_CANCEL_GRACE_SECONDS", 10.0),
            failover_timeout=_env_float("TASKQ_FAILOVER_TIMEOUT", 15.0),
            wait_replicas=int(_env_float("TASKQ_WAIT_REPLICAS", 0)),
            signing_keys=tuple(
                k for k in os.environ.get("TASKQ_SIGNING_KEYS", "").split(",") if k.strip()
            ),
            partitions=parse_partitions(os.environ.get("TASKQ_PARTITIONS", "")),
            task_default_retries=_env_whole("TASKQ_TASK_DEFAULT_RETRIES", 0),
            task_default_retry_delay_seconds=_env_delays("TASKQ_TASK_DEFAULT_RETRY_DELAY_SECONDS"),
            tasks_refresh_cache=_env_bool("TASKQ_TASKS_REFRESH_CACHE", False),
            caching_disabled=_env_bool("TASKQ_CACHING_DISABLED", False),
            run_log_max_lines=_env_whole("TASKQ_RUN_LOG_MAX_LINES", 1000),
            run_log_line_bytes=_env_whole("TASKQ_RUN_LOG_LINE_BYTES", 8192),
        )
        given = {k: v for k, v in overrides.items() if v is not None}
        if "signing_keys" in given:
            given["signing_keys"] = tuple(given["signing_keys"])
        return replace(base, **given) if given else base

"""Settings, read once from arguments and ``TASKQ_*`` environment variables.

Durations are seconds here; they become milliseconds only at the Redis boundary.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from taskq.errors import ConfigurationError
from taskq.keys import check_name

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
        failover_timeout: On Redis Cluster or Sentinel, seconds a submit keeps retrying
            while Redis is unreachable (a failover elects a new master in about the
            sentinels' or nodes' down-after time plus a second), before it raises
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

    def __post_init__(self) -> None:
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
        if not self.unknown_task_grace >= 0:
            raise ConfigurationError(
                f"unknown_task_grace must be >= 0 seconds, got {self.unknown_task_grace}"
            )

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Settings from the environment, then ``overrides`` (``None`` values ignored)."""
        base = cls(
            redis_url=os.environ.get("TASKQ_REDIS_URL") or DEFAULT_REDIS_URL,
            prefix=os.environ.get("TASKQ_PREFIX") or DEFAULT_PREFIX,
            result_ttl=_env_float("TASKQ_RESULT_TTL", 86_400.0),
            lease_seconds=_env_float("TASKQ_LEASE_SECONDS", 15.0),
            unknown_task_grace=_env_float("TASKQ_UNKNOWN_TASK_GRACE", 300.0),
            failover_timeout=_env_float("TASKQ_FAILOVER_TIMEOUT", 15.0),
            wait_replicas=int(_env_float("TASKQ_WAIT_REPLICAS", 0)),
            signing_keys=tuple(
                k for k in os.environ.get("TASKQ_SIGNING_KEYS", "").split(",") if k.strip()
            ),
        )
        given = {k: v for k, v in overrides.items() if v is not None}
        if "signing_keys" in given:
            given["signing_keys"] = tuple(given["signing_keys"])
        return replace(base, **given) if given else base

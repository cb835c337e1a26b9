"""Task options: the names users may pass to ``@app.task(...)``, validated once.

Unknown names are refused at decoration time with a message naming the option
(and the closest known one), as dramatiq refuses options nobody owns.
"""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypedDict

from taskq.cache import CachePolicy, CacheSettings, build_cache
from taskq.concurrency import ConcurrencyLimit, build_concurrency
from taskq.durations import DELAY, POSITIVE, seconds
from taskq.errors import ConfigurationError
from taskq.keys import check_name
from taskq.protocol import PRIORITIES, RETRY_OVERRIDES, MetaKey
from taskq.ratelimits import RateLimit, build_rate
from taskq.results import check_template
from taskq.retry import DelaySpec, RetryPolicy, build_policy
from taskq.schedules import Schedule, build_schedule

if TYPE_CHECKING:
    from taskq.config import Settings

Hook = Callable[..., object]


class TaskOptionsDict(TypedDict, total=False):
    """The keyword options of ``@app.task`` and ``Task.with_options`` (for type checkers)."""

    name: str
    queue: str
    priority: int
    result_ttl: float | timedelta
    tags: Iterable[str]
    on_completion: list[Hook]
    on_failure: list[Hook]
    on_running: list[Hook]
    on_cancellation: list[Hook]
    on_crashed: list[Hook]
    retries: int
    retry_delay_seconds: DelaySpec
    retry_jitter_factor: float | None
    retry_condition_fn: Callable[..., bool | Awaitable[bool]] | None
    retry_on: type[BaseException] | Sequence[type[BaseException]]
    no_retry_on: type[BaseException] | Sequence[type[BaseException]]
    retry_deadline_seconds: float | timedelta | None
    max_deliveries: int
    task_run_name: str | Callable[[], str] | None
    timeout_seconds: float | timedelta | None
    cache_key_fn: Callable[..., str | None] | None
    cache_policy: CachePolicy | None
    cache_expiration: float | timedelta | None
    refresh_cache: bool
    delay: float | timedelta | None
    scheduled_at: datetime | None
    partition_key: str | None
    idempotency_key: str | None
    dedup_ttl: float | timedelta | None
    schedule: str | float | timedelta | None
    schedule_tz: str | None
    missed_ticks: str | None
    rate_limit: str | None
    rate_limit_key: Callable[..., Any] | None
    concurrency_limit: int | None
    concurrency_key: Callable[..., Any] | None
    persist_result: bool
    result_storage_key: str | None
    description: str | None
    version: str | None
    log_prints: bool | None


class FlowOptionsDict(TaskOptionsDict, total=False):
    """``@app.flow`` takes every task option plus these."""

    inline_wait_seconds: float


KNOWN = frozenset(TaskOptionsDict.__annotations__) | {"inline_wait_seconds"}
SCHEDULE_OPTIONS = ("schedule", "schedule_tz", "missed_ticks")
LIMIT_OPTIONS = ("rate_limit", "rate_limit_key", "concurrency_limit", "concurrency_key")
CACHE_OPTIONS = ("cache_key_fn", "cache_policy", "cache_expiration", "refresh_cache")
#: The retry options, which a message may also override: the protocol names them, as
#: they travel in a message's meta. (An alias for the modules that still use this name.)
RETRY_OPTIONS = RETRY_OVERRIDES
#: The state-change hooks, each a list of ``hook(task, task_run, state)`` callables.
HOOKS = ("on_completion", "on_failure", "on_running", "on_cancellation", "on_crashed")
#: Options only flows take.
FLOW_ONLY = ("inline_wait_seconds",)
#: Per-submission options: only ``with_options`` (or ``submit``) takes them.
#: (``partition_key`` at decoration would send every run to one partition.)
SUBMIT_ONLY = ("delay", "scheduled_at", "partition_key", "idempotency_key")
#: Options that travel in the message when ``with_options`` changes them: plain data only.
OVERRIDABLE = (
    "result_ttl",
    "retries",
    "retry_delay_seconds",
    "retry_jitter_factor",
    "retry_deadline_seconds",
)


@dataclass(frozen=True)
class TaskOptions:
    """Validated options of one task."""

    name: str
    queue: str | None = None
    priority: int = 0
    result_ttl: float | None = None
    tags: frozenset[str] = frozenset()
    on_completion: tuple[Hook, ...] = ()
    on_failure: tuple[Hook, ...] = ()
    on_running: tuple[Hook, ...] = ()
    on_cancellation: tuple[Hook, ...] = ()
    on_crashed: tuple[Hook, ...] = ()
    retry_raw: dict[str, Any] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_deliveries: int = 5
    task_run_name: str | Callable[[], str] | None = None
    timeout_seconds: float | None = None
    cache: CacheSettings = field(default_factory=CacheSettings)
    inline_wait_seconds: float = 0.5
    delay: float | None = None
    scheduled_at: datetime | None = None
    partition_key: str | None = None
    idempotency_key: str | None = None
    dedup_ttl: float | None = None
    schedule: Schedule | None = None
    rate: RateLimit | None = None
    concurrency: ConcurrencyLimit | None = None
    persist_result: bool = True
    result_storage_key: str | None = None
    description: str | None = None
    version: str | None = None

    def __post_init__(self) -> None:
        if not self.persist_result and self.cache.enabled:
            raise ConfigurationError(
                "persist_result=False keeps no value, so there is nothing to cache: "
                "drop the cache options or persist the result"
            )
        if not self.persist_result and self.result_storage_key is not None:
            raise ConfigurationError(
                "result_storage_key stores the value, which persist_result=False does not keep"
            )

    #: ``print()`` in the body goes to the run's log too (None: as the run's flow has it,
    #: else off). See :mod:`taskq.runlogs`.
    log_prints: bool | None = None

    def merged(self, changes: dict[str, Any]) -> TaskOptions:
        """A copy with ``changes`` (validated) applied."""
        if any(k in changes for k in SCHEDULE_OPTIONS):
            raise ConfigurationError(
                "a schedule belongs to the registered task: it cannot change per submission"
            )
        if any(k in changes for k in LIMIT_OPTIONS):
            raise ConfigurationError(
                "a rate or concurrency limit belongs to the registered task: it cannot "
                "change per submission"
            )
        norm = _normalize(changes)
        raw = {**self.retry_raw, **{k: v for k, v in changes.items() if k in RETRY_OVERRIDES}}
        norm["retry_raw"], norm["retry"] = raw, build_policy(raw)
        cache = {k: v for k, v in changes.items() if k in CACHE_OPTIONS}
        if cache:
            c = self.cache
            base: dict[str, Any] = {"cache_key_fn": c.key_fn, "cache_policy": c.policy}
            base |= {"cache_expiration": c.expiration, "refresh_cache": c.refresh}
            norm["cache"] = build_cache({**base, **cache})
        return replace(self, **norm)

    def overrides(self, base: TaskOptions) -> dict[str, Any]:
        """Options that differ from ``base`` and must travel with the message (its meta).

        Raises:
            ConfigurationError: A changed option cannot travel (a callable or a type).
        """
        out: dict[str, Any] = {}
        if self.result_ttl != base.result_ttl:
            out[MetaKey.RESULT_TTL.value] = self.result_ttl
        if self.timeout_seconds != base.timeout_seconds:
            out[MetaKey.TIMEOUT.value] = self.timeout_seconds
        if self.cache.refresh != base.cache.refresh:
            out[MetaKey.REFRESH_CACHE.value] = self.cache.refresh
        if self.persist_result != base.persist_result:
            out[MetaKey.PERSIST_RESULT.value] = self.persist_result
        if self.result_storage_key != base.result_storage_key:
            out[MetaKey.RESULT_STORAGE_KEY.value] = self.result_storage_key
        mc, bc = self.cache, base.cache
        if (mc.key_fn, mc.policy, mc.expiration) != (bc.key_fn, bc.policy, bc.expiration):
            raise ConfigurationError(
                "cache_key_fn / cache_policy / cache_expiration cannot be changed per submission; "
                "register a separate task instead"
            )
        for name in RETRY_OVERRIDES:
            mine, theirs = self.retry_raw.get(name), base.retry_raw.get(name)
            if mine is theirs or mine == theirs:
                continue
            if name not in OVERRIDABLE or callable(mine):
                raise ConfigurationError(
                    f"{name} cannot be changed per submission (the worker uses the registered "
                    "task's value); register a separate task instead"
                )
            out[name] = mine.total_seconds() if isinstance(mine, timedelta) else mine
        return out


def _hooks(name: str, value: Any) -> tuple[Hook, ...]:
    items = [value] if callable(value) else list(value)
    for h in items:
        if not callable(h):
            raise ConfigurationError(f"{name} must be a list of callables, got {h!r}")
    return tuple(items)


def check_known(options: dict[str, Any], *, decorator: bool = False, flow: bool = False) -> None:
    """Raise :class:`ConfigurationError` naming the first unknown option."""
    for key in options:
        if key in FLOW_ONLY and decorator and not flow:
            raise ConfigurationError(f"{key!r} is a flow option; use @app.flow")
        if key not in KNOWN or (decorator and key in SUBMIT_ONLY):
            close = difflib.get_close_matches(key, sorted(KNOWN - set(SUBMIT_ONLY)), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            if key in SUBMIT_ONLY:
                hint = " (it is per submission: use task.with_options(...) or submit(...))"
            known = ", ".join(sorted(KNOWN - set(SUBMIT_ONLY)))
            raise ConfigurationError(f"unknown task option {key!r}{hint}; known options: {known}")


def _normalize(options: dict[str, Any]) -> dict[str, Any]:
    check_known(options)
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key == "name":
            if not isinstance(value, str) or not value:
                raise ConfigurationError(f"name must be a non-empty string, got {value!r}")
            out[key] = value
        elif key == "queue":
            out[key] = check_name("queue name", value)
        elif key == "priority":
            out[key] = check_priority(value)
        elif key == "result_ttl":
            out[key] = seconds(key, value, POSITIVE)
        elif key == "tags":
            if isinstance(value, str):
                raise ConfigurationError("tags must be a collection of strings, not one string")
            out[key] = frozenset(str(t) for t in value)
        elif key in HOOKS:
            out[key] = _hooks(key, value)
        elif key == "max_deliveries":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(
                    f"max_deliveries must be a whole number >= 1, got {value!r}"
                )
            out[key] = value
        elif key == "task_run_name":
            if value is not None and not (isinstance(value, str) or callable(value)):
                raise ConfigurationError(
                    f"task_run_name must be a string or a callable, got {value!r}"
                )
            out[key] = value
        elif key == "timeout_seconds":
            out[key] = None if value is None else seconds(key, value, POSITIVE)
        elif key == "delay":
            out[key] = None if value is None else check_delay(value)
        elif key == "inline_wait_seconds":
            out[key] = check_delay(value)
        elif key == "partition_key":
            out[key] = check_partition_key(value)
        elif key == "idempotency_key":
            if value is not None and (not isinstance(value, str) or not 0 < len(value) <= 1024):
                raise ConfigurationError(
                    f"idempotency_key must be a string of 1 to 1024 characters, got {value!r}"
                )
            out[key] = value
        elif key == "dedup_ttl":
            out[key] = None if value is None else seconds(key, value, POSITIVE)
        elif key == "persist_result":
            if not isinstance(value, bool):
                raise ConfigurationError(f"persist_result must be True or False, got {value!r}")
            out[key] = value
        elif key == "result_storage_key":
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigurationError(
                    f"result_storage_key must be a non-empty template string, got {value!r}"
                )
            out[key] = None if value is None else check_template(value)
        elif key in ("description", "version"):
            if value is not None and not isinstance(value, str):
                raise ConfigurationError(f"{key} must be a string, got {value!r}")
            out[key] = value
        elif key == "log_prints":
            if value is not None and not isinstance(value, bool):
                raise ConfigurationError(f"log_prints must be True, False or None, got {value!r}")
            out[key] = value
        elif key == "scheduled_at":
            if value is not None and not isinstance(value, datetime):
                raise ConfigurationError(f"scheduled_at must be a datetime, got {value!r}")
            out[key] = value
    return out


def check_priority(value: Any) -> int:
    """A priority level: a whole number from 0 (the default) to 9 (served first)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < PRIORITIES:
        raise ConfigurationError(
            f"priority must be a whole number from 0 to {PRIORITIES - 1} "
            f"(higher runs first), got {value!r}"
        )
    return value


def check_partition_key(value: Any) -> str | None:
    """A ``partition_key``: None, or a string of 1 to 1024 characters.

    Not turned into a string here: ``1`` and ``"1"`` would pick one partition, and
    a key that is not a string is more likely a mistake than an id.
    """
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= 1024:
        raise ConfigurationError(
            f"partition_key must be a string of 1 to 1024 characters (or None), got {value!r}"
        )
    return value


def check_delay(value: Any) -> float:
    """A submission delay in seconds (>= 0)."""
    return seconds("delay", value, DELAY)


def with_defaults(options: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """A task's decorator options with the settings' defaults filled in (Prefect's
    ``PREFECT_TASK_DEFAULT_RETRIES`` and friends): retries, their delays and
    ``refresh_cache`` where the task sets none; no cache options at all while
    ``caching_disabled`` is set."""
    out = dict(options)
    if settings.task_default_retries and "retries" not in out:
        out["retries"] = settings.task_default_retries
    delays = settings.task_default_retry_delay_seconds
    if delays and "retry_delay_seconds" not in out:
        out["retry_delay_seconds"] = delays[0] if len(delays) == 1 else list(delays)
    if settings.tasks_refresh_cache and "refresh_cache" not in out:
        out["refresh_cache"] = True
    if settings.caching_disabled:
        for key in CACHE_OPTIONS:
            out.pop(key, None)
    return out


def build(default_name: str, options: dict[str, Any], *, flow: bool = False) -> TaskOptions:
    """Validate decorator options into a :class:`TaskOptions`."""
    check_known(options, decorator=True, flow=flow)
    norm = _normalize(options)
    norm["schedule"] = build_schedule(
        options.get("schedule"), options.get("schedule_tz"), options.get("missed_ticks")
    )
    norm["rate"] = build_rate(options.get("rate_limit"), options.get("rate_limit_key"))
    if flow and norm["rate"] is not None:
        raise ConfigurationError("rate_limit applies to tasks, not flows (limit the flow's tasks)")
    norm["concurrency"] = build_concurrency(
        options.get("concurrency_limit"), options.get("concurrency_key")
    )
    if flow and norm["concurrency"] is not None:
        raise ConfigurationError(
            "concurrency_limit applies to tasks, not flows (limit the flow's tasks)"
        )
    norm.setdefault("name", default_name)
    raw = {k: v for k, v in options.items() if k in RETRY_OVERRIDES}
    cache = build_cache({k: v for k, v in options.items() if k in CACHE_OPTIONS})
    return TaskOptions(**norm, retry_raw=raw, retry=build_policy(raw), cache=cache)

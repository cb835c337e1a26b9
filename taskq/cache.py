"""Result caching with Prefect's names: ``cache_key_fn``, ``cache_policy``,
``cache_expiration``, ``refresh_cache``.

A task with a cache key is looked up before it runs: a hit completes the run in
state ``Cached`` with the stored value, without calling the function. On
success the value is stored under the key, in the same script that records the
outcome. Caching applies to runs on workers (submitted runs and flow children);
a direct in-process call never consults the cache.

Policies combine with ``+``: ``INPUTS + TASK_SOURCE`` keys on both the arguments
and the function's source. Concurrency (the choice taskq makes): by default two
runs with the same key that start together both execute (READ_COMMITTED, as in
Prefect); ``policy.configure(isolation_level="SERIALIZABLE")`` makes the second
wait for the first, holding a per-key lock while it runs, and then complete as
``Cached`` — so they execute once.

On a partitioned queue (:mod:`taskq.partitions`) a key's entry and lock live on one home
partition, ``crc32(key) % N``, so runs on every partition find them. When that is not
the run's own partition, the entry is stored and the lock released by a call of its own
(``cache_store.lua``) just before the outcome is recorded; a worker that dies in between
leaves the run to be redelivered, and its next attempt completes ``Cached`` from the
stored entry. (After the outcome instead, a run waiting on the lock would wake on the
outcome and could miss the entry, and run the task a second time.)
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from taskq.durations import CACHE_EXPIRATION, seconds
from taskq.errors import ConfigurationError
from taskq.message import pack

ISOLATION_LEVELS = ("READ_COMMITTED", "SERIALIZABLE")


@dataclass(frozen=True)
class TaskRunContext:
    """What a ``cache_key_fn`` receives as its first argument."""

    task: Any
    run_id: str
    queue: str


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(8, "big"))
        h.update(p)
    return h.hexdigest()


def _source(fn: Callable[..., Any]) -> bytes:
    try:
        return inspect.getsource(fn).encode()
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        return code.co_code if code is not None else repr(fn).encode()


def task_input_hash(context: TaskRunContext, arguments: dict[str, Any]) -> str | None:
    """Prefect's helper: a key from the task's name, its code and its arguments.

    Use it as ``cache_key_fn=taskq.task_input_hash``. Returns None (no caching)
    when the arguments cannot be serialized.
    """
    try:
        args = pack(arguments)
    except Exception:
        return None
    task = context.task
    return _digest(task.name.encode(), _source(task.fn), args)


@dataclass(frozen=True)
class CachePolicy:
    """Which parts of a run its cache key covers; combine with ``+``."""

    parts: frozenset[str] = field(default_factory=frozenset)
    isolation_level: str = "READ_COMMITTED"

    def __add__(self, other: CachePolicy) -> CachePolicy:
        if not isinstance(other, CachePolicy):
            return NotImplemented
        if not self.parts or not other.parts:
            return CachePolicy(frozenset())  # NO_CACHE absorbs everything
        level = max(self.isolation_level, other.isolation_level, key=ISOLATION_LEVELS.index)
        return CachePolicy(self.parts | other.parts, level)

    def configure(self, *, isolation_level: str | None = None) -> CachePolicy:
        """A copy with another isolation level (``READ_COMMITTED`` or ``SERIALIZABLE``)."""
        level = isolation_level or self.isolation_level
        if level not in ISOLATION_LEVELS:
            raise ConfigurationError(
                f"isolation_level must be one of {ISOLATION_LEVELS}, got {level!r}"
            )
        return CachePolicy(self.parts, level)

    def key(self, context: TaskRunContext, arguments: dict[str, Any]) -> str | None:
        if not self.parts:
            return None
        chunks = [context.task.name.encode()]
        if "inputs" in self.parts:
            try:
                chunks.append(pack(arguments))
            except Exception:
                return None
        if "source" in self.parts:
            chunks.append(_source(context.task.fn))
        return _digest(*chunks)

    def __repr__(self) -> str:
        name = "+".join(sorted(self.parts)).upper() or "NO_CACHE"
        return f"CachePolicy({name}, {self.isolation_level})"


INPUTS = CachePolicy(frozenset({"inputs"}))
TASK_SOURCE = CachePolicy(frozenset({"source"}))
NO_CACHE = CachePolicy(frozenset())


@dataclass(frozen=True)
class CacheSettings:
    """A task's validated cache options."""

    key_fn: Callable[..., str | None] | None = None
    policy: CachePolicy | None = None
    expiration: float | None = None
    refresh: bool = False

    @property
    def enabled(self) -> bool:
        return self.key_fn is not None or bool(self.policy and self.policy.parts)

    @property
    def serializable(self) -> bool:
        return self.policy is not None and self.policy.isolation_level == "SERIALIZABLE"

    def key(self, context: TaskRunContext, arguments: dict[str, Any]) -> str | None:
        """The run's cache key (None: do not cache this run)."""
        if self.key_fn is not None:
            got = self.key_fn(context, arguments)
            return None if got is None else str(got)
        return self.policy.key(context, arguments) if self.policy else None


def build_cache(options: dict[str, Any]) -> CacheSettings:
    """Validate the cache options of a task."""
    key_fn = options.get("cache_key_fn")
    if key_fn is not None and not callable(key_fn):
        raise ConfigurationError(f"cache_key_fn must be callable, got {key_fn!r}")
    policy = options.get("cache_policy")
    if policy is not None and not isinstance(policy, CachePolicy):
        raise ConfigurationError(
            "cache_policy must be taskq.INPUTS, TASK_SOURCE, NO_CACHE or a sum of them, "
            f"got {policy!r}"
        )
    exp = options.get("cache_expiration")
    if exp is not None:
        exp = seconds("cache_expiration", exp, CACHE_EXPIRATION)
    refresh = options.get("refresh_cache", False)
    if not isinstance(refresh, bool):
        raise ConfigurationError(f"refresh_cache must be True or False, got {refresh!r}")
    return CacheSettings(key_fn, policy, None if exp is None else float(exp), refresh)


def bind_arguments(
    fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """The call's arguments by parameter name (what ``cache_key_fn`` receives)."""
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
    except (TypeError, ValueError):
        return {"args": args, "kwargs": kwargs}
    bound.apply_defaults()
    return dict(bound.arguments)

"""Result caching with Prefect's names: ``cache_key_fn``, ``cache_policy``,
``cache_expiration``, ``refresh_cache``.

A task with a cache key is looked up before it runs: a hit completes the run in
state ``Cached`` with the stored value, without calling the function. On
success the value is stored under the key, in the same script that records the
outcome. Caching applies to runs on workers (submitted runs and flow children);
a direct in-process call never consults the cache.

The policies (:mod:`taskq.cache_policies`) combine with ``+``: ``INPUTS + TASK_SOURCE``
keys on both the arguments and the function's code. Concurrency (the choice taskq
makes): by default two runs with the same key that start together both execute
(READ_COMMITTED, as in Prefect); ``policy.configure(isolation_level="SERIALIZABLE")``
makes the second wait for the first, holding a per-key lock while it runs, and then
complete as ``Cached`` — so they execute once.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from taskq.cache_policies import (
    FLOW_PARAMETERS,
    INPUTS,
    ISOLATION_LEVELS,
    NO_CACHE,
    RUN_ID,
    TASK_SOURCE,
    CachePolicy,
    CompoundCachePolicy,
    CompoundPolicy,
    FlowParameters,
    Inputs,
    NoCache,
    RunId,
    TaskRunContext,
    TaskSource,
)
from taskq.codehash import code_digest, digest
from taskq.durations import CACHE_EXPIRATION, seconds
from taskq.errors import ConfigurationError
from taskq.message import pack

__all__ = [
    "FLOW_PARAMETERS",
    "INPUTS",
    "ISOLATION_LEVELS",
    "NO_CACHE",
    "RUN_ID",
    "TASK_SOURCE",
    "CachePolicy",
    "CacheSettings",
    "CompoundCachePolicy",
    "CompoundPolicy",
    "FlowParameters",
    "Inputs",
    "NoCache",
    "RunId",
    "TaskRunContext",
    "TaskSource",
    "bind_arguments",
    "build_cache",
    "run_key",
    "flow_parameters_digest",
    "task_input_hash",
    "uses_flow_parameters",
]


_BUILT_IN = (Inputs, TaskSource, RunId, FlowParameters, CompoundCachePolicy)


def uses_flow_parameters(policy: Any) -> bool:
    """Whether ``policy`` (a CachePolicy or a duck-typed one) reads the flow's parameters."""
    method = getattr(policy, "uses_flow_parameters", None)
    return bool(method()) if callable(method) else True


def run_key(
    policy: Any, ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: str | None
) -> str | None:
    """The key run ``ctx`` is cached under by ``policy`` (see the module docstring)."""
    key = policy.compute_key(task_ctx=ctx, inputs=inputs, flow_parameters=flow_parameters)
    if key is None:
        return None
    if not isinstance(policy, _BUILT_IN):
        return str(key)
    parts = policy.policies if isinstance(policy, CompoundCachePolicy) else [policy]
    if any(isinstance(p, TaskSource) for p in parts):
        return str(key)
    return digest(b"task", str(ctx.task.name).encode(), str(key).encode())


def task_input_hash(context: TaskRunContext, arguments: dict[str, Any]) -> str | None:
    """Prefect's helper: a key from the task's code (not its name) and its arguments.

    Use it as ``cache_key_fn=taskq.task_input_hash``. Returns None (no caching)
    when the arguments cannot be serialized.
    """
    try:
        args = pack(arguments)
    except Exception:
        return None
    return digest(code_digest(context.task.fn).encode(), args)


@dataclass(frozen=True)
class CacheSettings:
    """A task's validated cache options.

    Attributes:
        key_fn: ``cache_key_fn`` (it wins over ``policy`` when both are given).
        policy: ``cache_policy``: a :class:`CachePolicy`, or any object with ``compute_key``.
        expiration: ``cache_expiration`` in seconds (None: no expiry).
        refresh: ``refresh_cache``.
        flow_parameters: Whether the key reads the flow's parameters: a flow sends their
            digest with each child of this task (meta ``fp``), and only then.
    """

    key_fn: Callable[..., str | None] | None = None
    policy: Any = None
    expiration: float | None = None
    refresh: bool = False
    flow_parameters: bool = False

    @property
    def enabled(self) -> bool:
        return self.key_fn is not None or not (
            self.policy is None or isinstance(self.policy, NoCache)
        )

    @property
    def serializable(self) -> bool:
        return getattr(self.policy, "isolation_level", None) == "SERIALIZABLE"

    def key(
        self,
        context: TaskRunContext,
        arguments: dict[str, Any],
        flow_parameters: str | None = None,
    ) -> str | None:
        """The run's cache key (None: do not cache this run).

        Args:
            context: The run.
            arguments: Its arguments by parameter name (:func:`bind_arguments`).
            flow_parameters: The hex digest of its flow's parameters (None: none).
        """
        if self.key_fn is not None:
            got = self.key_fn(context, arguments)
            return None if got is None else str(got)
        if self.policy is None:
            return None
        return run_key(self.policy, context, arguments, flow_parameters)


def build_cache(options: dict[str, Any]) -> CacheSettings:
    """Validate the cache options of a task."""
    key_fn = options.get("cache_key_fn")
    if key_fn is not None and not callable(key_fn):
        raise ConfigurationError(f"cache_key_fn must be callable, got {key_fn!r}")
    policy = options.get("cache_policy")
    if policy is not None and not callable(getattr(policy, "compute_key", None)):
        raise ConfigurationError(
            "cache_policy must be a cache policy (taskq.INPUTS, TASK_SOURCE, RUN_ID, "
            "FLOW_PARAMETERS, NO_CACHE, Inputs(exclude=[...]), a sum of them, a CachePolicy "
            f"subclass or an object with compute_key), got {policy!r}"
        )
    exp = options.get("cache_expiration")
    if exp is not None:
        exp = seconds("cache_expiration", exp, CACHE_EXPIRATION)
    refresh = options.get("refresh_cache", False)
    if not isinstance(refresh, bool):
        raise ConfigurationError(f"refresh_cache must be True or False, got {refresh!r}")
    settings = CacheSettings(key_fn, policy, None if exp is None else float(exp), refresh)
    if key_fn is None and settings.enabled and uses_flow_parameters(policy):
        settings = CacheSettings(key_fn, policy, settings.expiration, refresh, True)
    return settings


def flow_parameters_digest(
    fn: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any], run_id: str
) -> bytes | None:
    """What a flow's children carry of its parameters: 16 bytes of BLAKE2b of their msgpack.

    The parameters are the flow's arguments bound to its parameter names, defaults
    applied (so ``f(1)`` and ``f(x=1)`` agree). None when the flow has none (Prefect's
    ``FLOW_PARAMETERS`` gives no key then). Parameters msgpack cannot carry give a digest
    of the flow's run id instead: its children share entries only among themselves.
    """
    params = bind_arguments(fn, list(args), kwargs)
    if not params:
        return None
    try:
        data = b"p" + pack(params)
    except Exception:
        data = b"r" + run_id.encode()
    return hashlib.blake2b(data, digest_size=16).digest()


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

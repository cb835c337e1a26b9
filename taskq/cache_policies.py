"""Prefect's cache policies: what a run's cache key is computed from.

A policy's :meth:`CachePolicy.compute_key` returns a key (a string) or None, which
means "do not cache this run". The built-in ones: :data:`INPUTS` (the task's bound
arguments; :class:`Inputs` with ``exclude=`` or ``INPUTS - "name"`` leaves some out),
:data:`TASK_SOURCE` (the task's code, :func:`taskq.codehash.code_digest`),
:data:`RUN_ID` (the flow run the task runs in, else the run itself),
:data:`FLOW_PARAMETERS` (the parameters of the flow the run is a child of; None for a
top-level run or a flow without parameters) and :data:`NO_CACHE` (never a key).

``a + b`` is a :class:`CompoundCachePolicy` whose ``policies`` are the parts (nested
sums flattened, Inputs parts merged into one that excludes what any of them excluded);
its key covers every part that gives one, and is None when none does. ``NO_CACHE + x``
and ``x + NO_CACHE`` are ``x``, as in Prefect. Isolation levels: a sum takes the level
its parts set; parts that set different ones are refused (:class:`ConfigurationError`).

Any subclass of :class:`CachePolicy`, or any object with a
``compute_key(task_ctx, inputs, flow_parameters, **kwargs)`` method, is a custom policy.
``flow_parameters`` is, in taskq, the hex digest of the flow's parameters (the children
of a flow carry that digest, not the parameters), or None.

The key a run is stored under (:func:`run_key`): a custom policy's key as it is (tasks
may share entries deliberately, as with ``cache_key_fn``); a built-in policy's key
scoped to the task's name, unless it covers the task's code (``TASK_SOURCE``), which then
identifies the task, so a renamed function with the same body keeps its entries.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from taskq.codehash import code_digest, digest
from taskq.errors import ConfigurationError
from taskq.message import pack

ISOLATION_LEVELS = ("READ_COMMITTED", "SERIALIZABLE")


@dataclass(frozen=True)
class TaskRunContext:
    """What a ``cache_key_fn`` or a policy's ``compute_key`` receives as its first argument.

    Attributes:
        task: The task.
        run_id: The run's id.
        queue: The queue it runs on.
        flow_run_id: The run id of the flow it is a child of (None: a top-level run).
    """

    task: Any
    run_id: str
    queue: str
    flow_run_id: str | None = None


@dataclass(kw_only=True)
class CachePolicy:
    """Base of the cache policies: subclass it and implement :meth:`compute_key`."""

    #: ``READ_COMMITTED`` (the default when None) or ``SERIALIZABLE``.
    isolation_level: str | None = None

    def __post_init__(self) -> None:
        level = self.isolation_level
        if level is not None and level not in ISOLATION_LEVELS:
            raise ConfigurationError(
                f"isolation_level must be one of {ISOLATION_LEVELS}, got {level!r}"
            )

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: str | None,
        **kwargs: Any,
    ) -> str | None:
        """The run's key, or None: do not cache it."""
        raise NotImplementedError

    def uses_flow_parameters(self) -> bool:
        """Whether :meth:`compute_key` reads ``flow_parameters``: a flow then sends its
        parameters' digest with each child of this task. True unless a policy says not."""
        return True

    def configure(self, *, isolation_level: str | None = None) -> CachePolicy:
        """A copy with another isolation level (``READ_COMMITTED`` or ``SERIALIZABLE``)."""
        if isolation_level is None:
            return self
        return dataclasses.replace(self, isolation_level=isolation_level)

    def __add__(self, other: CachePolicy) -> CachePolicy:
        if isinstance(other, NoCache):
            return self
        if not isinstance(other, CachePolicy):
            return NotImplemented
        return CompoundCachePolicy(policies=(self, other))

    def __sub__(self, other: str) -> CachePolicy:
        """``policy - "name"``: leave parameter ``name`` out (only Inputs parts have any)."""
        if not isinstance(other, str):
            raise TypeError("only a parameter name (a str) can be subtracted from a policy")
        return self


@dataclass(kw_only=True)
class NoCache(CachePolicy):
    """Never a key: the run is not cached. Adding it to a policy gives that policy."""

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: str | None,
        **kwargs: Any,
    ) -> str | None:
        return None

    def uses_flow_parameters(self) -> bool:
        return False

    def __add__(self, other: CachePolicy) -> CachePolicy:
        return other


@dataclass(kw_only=True)
class Inputs(CachePolicy):
    """The run's arguments, bound to the task's parameter names, less ``exclude``."""

    exclude: Sequence[str] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.exclude, str):
            raise ConfigurationError(f"exclude must be a list of names, got {self.exclude!r}")
        object.__setattr__(self, "exclude", tuple(self.exclude))

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: str | None,
        **kwargs: Any,
    ) -> str | None:
        kept = {k: v for k, v in (inputs or {}).items() if k not in self.exclude}
        try:
            return digest(pack(kept))
        except Exception as exc:
            raise ValueError(
                f"the task's inputs cannot be hashed ({exc}); leave such a parameter out "
                '(cache_policy=INPUTS - "name") or use NO_CACHE'
            ) from exc

    def uses_flow_parameters(self) -> bool:
        return False

    def __sub__(self, other: str) -> CachePolicy:
        if not isinstance(other, str):
            raise TypeError("only a parameter name (a str) can be subtracted from a policy")
        return dataclasses.replace(self, exclude=(*self.exclude, other))


@dataclass(kw_only=True)
class TaskSource(CachePolicy):
    """The task's code (:func:`taskq.codehash.code_digest`), not its name."""

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: str | None,
        **kwargs: Any,
    ) -> str | None:
        return code_digest(task_ctx.task.fn)

    def uses_flow_parameters(self) -> bool:
        return False


@dataclass(kw_only=True)
class RunId(CachePolicy):
    """The run id of the flow the run is a child of, else the run's own (as Prefect)."""

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: str | None,
        **kwargs: Any,
    ) -> str | None:
        return task_ctx.flow_run_id or task_ctx.run_id

    def uses_flow_parameters(self) -> bool:
        return False


@dataclass(kw_only=True)
class FlowParameters(CachePolicy):
    """The parameters of the flow the run is a child of; None when it has none."""

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: str | None,
        **kwargs: Any,
    ) -> str | None:
        return flow_parameters or None


@dataclass(kw_only=True)
class CompoundCachePolicy(CachePolicy):
    """The sum of ``policies``: a key from every part's key (parts giving None left out)."""

    policies: Sequence[CachePolicy] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.isolation_level is None:  # a level set on the sum itself wins
            levels = {p.isolation_level for p in self.policies if p.isolation_level is not None}
            if len(levels) > 1:
                raise ConfigurationError(
                    "cannot combine cache policies with different isolation levels: "
                    f"{sorted(levels)}"
                )
            if levels:
                object.__setattr__(self, "isolation_level", levels.pop())
        flat: list[CachePolicy] = []
        excludes: list[str] = []
        merged = False
        for part in self.policies:
            for p in part.policies if isinstance(part, CompoundCachePolicy) else [part]:
                if isinstance(p, Inputs):
                    excludes += p.exclude
                    merged = True
                elif not isinstance(p, NoCache) and p not in flat:
                    flat.append(p)
        if merged:
            flat.append(Inputs(exclude=sorted(set(excludes))))
        object.__setattr__(self, "policies", tuple(flat))

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: str | None,
        **kwargs: Any,
    ) -> str | None:
        keys = []
        for p in self.policies:
            key = p.compute_key(
                task_ctx=task_ctx, inputs=inputs, flow_parameters=flow_parameters, **kwargs
            )
            if key is not None:
                keys.append(f"{type(p).__qualname__}:{key}".encode())
        return digest(*sorted(keys)) if keys else None

    def uses_flow_parameters(self) -> bool:
        return any(p.uses_flow_parameters() for p in self.policies)

    def __sub__(self, other: str) -> CachePolicy:
        if not isinstance(other, str):
            raise TypeError("only a parameter name (a str) can be subtracted from a policy")
        if not any(isinstance(p, Inputs) for p in self.policies):
            return self
        return dataclasses.replace(self, policies=(*self.policies, Inputs(exclude=[other])))


#: Prefect's other spelling of :class:`CompoundCachePolicy`.
CompoundPolicy = CompoundCachePolicy

INPUTS = Inputs()
TASK_SOURCE = TaskSource()
RUN_ID = RunId()
FLOW_PARAMETERS = FlowParameters()
NO_CACHE = NoCache()

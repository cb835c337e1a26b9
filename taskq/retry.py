"""Retry policy: Prefect's inputs, normalized once into a small pure value object.

``retry_delay_seconds`` may be a number (fixed delay), a list (one delay per
attempt; the last repeats when the list is shorter than ``retries``) or a
callable of the attempt number. A callable that returns a list (Prefect's style,
such as :func:`exponential_backoff`) is given the attempt number and its
``attempt``-th element is used, which for :func:`exponential_backoff` is
``factor * 2 ** (attempt - 1)``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import random
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from taskq.durations import NON_NEGATIVE, seconds
from taskq.errors import (
    Cancel,
    ConfigurationError,
    NonDeterministicFlowError,
    ResultInTaskError,
    Retry,
    error_info,
)
from taskq.protocol import StateName
from taskq.states import State, TaskRun

log = logging.getLogger("taskq.retry")

DelaySpec = float | int | timedelta | Sequence[float | int | timedelta] | Callable[[int], Any]

#: Most delays a ``retry_delay_seconds`` list may hold, and most ``exponential_backoff``
#: gives (as Prefect).
MAX_RETRY_DELAYS = 50


def jittered(delay: float, factor: float, rng: random.Random | None = None) -> float:
    """``delay`` with ``retry_jitter_factor`` ``factor`` applied, as Prefect does it.

    The delay is drawn from an exponential distribution of mean ``delay``, restricted to
    ``[delay * c, delay * (1 + factor)]``: never more than ``1 + factor`` times the delay,
    and the lower bound ``c`` (the point below the median holding as much probability as
    lies between the median and the upper bound) keeps the mean about ``delay`` whatever
    the factor. A delay of 0, or a factor of 0, stays as it is.
    """
    if delay <= 0 or factor <= 0:
        return delay
    upper = 1 + factor
    # c = log2(2^k / (2^k - 1)) for k = 1 + factor; 0 once 2^k dwarfs 1 (k >= 50).
    lower = 0.0 if upper >= 50 else math.log2(2**upper / (2**upper - 1))
    # Inverse CDF of Exp(mean 1) over [lower, upper], scaled by the delay.
    u_lo, u_hi = -math.expm1(-lower), -math.expm1(-upper)
    u = (rng or random).uniform(u_lo, u_hi)
    return delay * -math.log(max(1.0 - u, 1e-10))


def exponential_backoff(backoff_factor: float) -> Callable[[int], list[float]]:
    """Prefect's helper: ``exponential_backoff(f)(n) == [f, 2f, 4f, ...]`` (n delays, at
    most :data:`MAX_RETRY_DELAYS`; later retries repeat the last).

    Use it as ``retry_delay_seconds=taskq.exponential_backoff(backoff_factor=2)``.

    Raises:
        ConfigurationError: ``backoff_factor`` is negative or not a number.
    """
    factor = seconds("backoff_factor", backoff_factor, NON_NEGATIVE)

    def delays(retries: int) -> list[float]:
        return [factor * 2**r for r in range(min(retries, MAX_RETRY_DELAYS))]

    delays.__qualname__ = f"exponential_backoff({factor:g})"
    return delays


def _exc_types(name: str, value: Any) -> tuple[type[BaseException], ...]:
    items = (value,) if isinstance(value, type) else tuple(value)
    for t in items:
        if not (isinstance(t, type) and issubclass(t, BaseException)):
            raise ConfigurationError(f"{name} must be exception types, got {t!r}")
    return items


@dataclass(frozen=True)
class RetryPolicy:
    """When and how soon a failed attempt runs again.

    Attributes:
        retries: Extra attempts after the first (0: never retry).
        delays: Fixed list of delays (seconds), used when ``delay_fn`` is None.
        delay_fn: Callable of the attempt number, when given.
        jitter: ``retry_jitter_factor``: each delay is drawn as Prefect draws it (see
            :func:`jittered`): at most ``d * (1 + j)``, about ``d`` on average. None: no
            jitter.
        condition: ``retry_condition_fn``: ``(task, task_run, state) -> bool``, or a
            one-argument exception predicate; either may be ``async def``.
        retry_on: Retry only these exception types (empty: any).
        no_retry_on: Never retry these exception types.
        deadline: ``retry_deadline_seconds``: no retry may come due later than this
            many seconds after the first attempt started (server clock).
    """

    retries: int = 0
    delays: tuple[float, ...] = (0.0,)
    delay_fn: Callable[[int], Any] | None = None
    jitter: float | None = None
    condition: Callable[..., Any] | None = None
    retry_on: tuple[type[BaseException], ...] = ()
    no_retry_on: tuple[type[BaseException], ...] = ()
    deadline: float | None = None

    def base_delay(self, attempt: int) -> float:
        """The delay after failed attempt ``attempt`` (1-based), before jitter."""
        if self.delay_fn is not None:
            got = self.delay_fn(attempt)
            if isinstance(got, list | tuple):
                if not got:
                    return 0.0
                got = got[min(attempt, len(got)) - 1]
            return seconds("retry_delay_seconds(attempt)", got, NON_NEGATIVE)
        return self.delays[min(attempt, len(self.delays)) - 1]

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The delay after failed attempt ``attempt``, jitter applied (never negative)."""
        base = self.base_delay(attempt)
        return jittered(base, self.jitter, rng) if self.jitter else base

    def allows(self, exc: BaseException) -> bool:
        """Whether the exception types let a retry happen (``retry_on`` / ``no_retry_on``)."""
        if self.no_retry_on and isinstance(exc, self.no_retry_on):
            return False
        return not self.retry_on or isinstance(exc, self.retry_on)


def build_policy(options: dict[str, Any]) -> RetryPolicy:
    """Validate Prefect-style retry options into a :class:`RetryPolicy`.

    Raises:
        ConfigurationError: A value has the wrong type or is negative.
    """
    retries = options.get("retries", 0)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigurationError(f"retries must be a whole number >= 0, got {retries!r}")
    spec = options.get("retry_delay_seconds", 0)
    delays: tuple[float, ...] = (0.0,)
    delay_fn = None
    if callable(spec) and not isinstance(spec, timedelta):
        delay_fn = spec
    elif isinstance(spec, list | tuple):
        if not spec:
            raise ConfigurationError("retry_delay_seconds list must not be empty")
        if len(spec) > MAX_RETRY_DELAYS:
            raise ConfigurationError(
                f"retry_delay_seconds lists at most {MAX_RETRY_DELAYS} delays (as Prefect), "
                f"got {len(spec)}"
            )
        delays = tuple(seconds("retry_delay_seconds item", d, NON_NEGATIVE) for d in spec)
    else:
        delays = (seconds("retry_delay_seconds", spec, NON_NEGATIVE),)
    jitter = options.get("retry_jitter_factor")
    if jitter is not None:
        jitter = seconds("retry_jitter_factor", jitter, NON_NEGATIVE)
    condition = options.get("retry_condition_fn")
    if condition is not None and not callable(condition):
        raise ConfigurationError(f"retry_condition_fn must be callable, got {condition!r}")
    deadline = options.get("retry_deadline_seconds")
    return RetryPolicy(
        retries=retries,
        delays=delays,
        delay_fn=delay_fn,
        jitter=jitter,
        condition=condition,
        retry_on=_exc_types("retry_on", options.get("retry_on", ())),
        no_retry_on=_exc_types("no_retry_on", options.get("no_retry_on", ())),
        deadline=None
        if deadline is None
        else seconds("retry_deadline_seconds", deadline, NON_NEGATIVE),
    )


def takes_one_argument(fn: Callable[..., Any]) -> bool:
    """True for a simple exception predicate ``fn(exc)`` rather than ``fn(task, run, state)``."""
    try:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        return False
    return len(params) == 1


def _verdict(policy: RetryPolicy, run: TaskRun, exc: BaseException) -> tuple[bool, float | None]:
    """Everything but ``retry_condition_fn``: ``(True, delay or None)`` when that
    decides, ``(False, None)`` when the condition must be asked. A non-deterministic
    flow is never retried: its replay would make the same wrong call; nor is a task that
    waited for a result, which would be refused again."""
    if isinstance(exc, Cancel | NonDeterministicFlowError | ResultInTaskError):
        return True, None
    if run.attempt > policy.retries:
        return True, None
    if isinstance(exc, Retry):
        return True, policy.delay(run.attempt) if exc.delay is None else max(0.0, exc.delay)
    if not policy.allows(exc):
        return True, None
    if policy.condition is None:
        return True, policy.delay(run.attempt)
    return False, None


def _ask(task: Any, policy: RetryPolicy, run: TaskRun, exc: BaseException) -> Any:
    """Call ``retry_condition_fn``; its answer may be an awaitable (an ``async def`` one)."""
    assert policy.condition is not None
    if takes_one_argument(policy.condition):
        return policy.condition(exc)
    state = State(StateName.FAILED.value, run.attempt, error_info(exc), exception=exc)
    return policy.condition(task, run, state)


async def _awaited(pending: Awaitable[Any]) -> Any:
    return await pending


def _run_awaitable(pending: Awaitable[Any]) -> Any:
    """Run an awaitable to its end from sync code: on a fresh loop here, or, if this
    thread already runs a loop (a sync call made from async code), in a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_awaited(pending))
    with ThreadPoolExecutor(1, thread_name_prefix="taskq-retry-condition") as pool:
        return pool.submit(asyncio.run, _awaited(pending)).result()


def _close(pending: Any) -> None:
    """Close an answer that will never be awaited, so it raises no RuntimeWarning."""
    if inspect.iscoroutine(pending):
        pending.close()


def retry_decision(
    task: Any, policy: RetryPolicy, run: TaskRun, exc: BaseException
) -> float | None:
    """The delay before the next attempt after ``exc`` ended ``run.attempt``, or None.

    ``raise taskq.Retry(delay=...)`` retries whatever ``retry_on`` /
    ``no_retry_on`` / ``retry_condition_fn`` say, but counts as an attempt, so it
    too stops once ``retries`` are used up. ``Cancel`` never retries. An ``async
    def`` ``retry_condition_fn`` is run to its end with :func:`asyncio.run` (sync
    callers: worker threads, direct calls); on an event loop use
    :func:`retry_decision_async`, which awaits it there. A condition that raises
    means "don't retry".
    """
    decided, delay = _verdict(policy, run, exc)
    if decided:
        return delay
    ok: Any = None
    try:
        ok = _ask(task, policy, run, exc)
        if inspect.isawaitable(ok):
            ok = _run_awaitable(ok)
    except Exception:
        _close(ok)
        log.exception("retry_condition_fn of %s raised; not retrying", run.task_name)
        return None
    return policy.delay(run.attempt) if ok else None


async def retry_decision_async(
    task: Any, policy: RetryPolicy, run: TaskRun, exc: BaseException
) -> float | None:
    """:func:`retry_decision` for code on an event loop: an async condition is awaited here."""
    decided, delay = _verdict(policy, run, exc)
    if decided:
        return delay
    try:
        ok = _ask(task, policy, run, exc)
        if inspect.isawaitable(ok):
            ok = await ok
    except Exception:
        log.exception("retry_condition_fn of %s raised; not retrying", run.task_name)
        return None
    return policy.delay(run.attempt) if ok else None

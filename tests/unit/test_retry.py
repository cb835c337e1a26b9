import asyncio
import random
from datetime import timedelta

import pytest

import taskq
from taskq.errors import ConfigurationError
from taskq.retry import (
    RetryPolicy,
    build_policy,
    exponential_backoff,
    retry_decision,
    retry_decision_async,
)
from taskq.states import TaskRun


def run(attempt: int) -> TaskRun:
    return TaskRun("r", "default", "t", attempt)


def test_number_list_and_callable_delays() -> None:
    assert [build_policy({"retry_delay_seconds": 5}).base_delay(a) for a in (1, 2, 3)] == [5, 5, 5]
    listed = build_policy({"retries": 5, "retry_delay_seconds": [2, 5, 15]})
    assert [listed.base_delay(a) for a in range(1, 6)] == [2, 5, 15, 15, 15]
    fn = build_policy({"retry_delay_seconds": lambda a: a * 1.5})
    assert [fn.base_delay(a) for a in (1, 2, 3)] == [1.5, 3.0, 4.5]
    td = build_policy({"retry_delay_seconds": [timedelta(seconds=1), timedelta(minutes=1)]})
    assert td.delays == (1.0, 60.0)


def test_exponential_backoff_is_prefects_doubling_list() -> None:
    assert exponential_backoff(backoff_factor=10)(4) == [10, 20, 40, 80]
    policy = build_policy({"retries": 4, "retry_delay_seconds": exponential_backoff(3)})
    assert [policy.base_delay(a) for a in (1, 2, 3, 4)] == [3, 6, 12, 24]


@pytest.mark.parametrize(("delay", "factor"), [(42, 10), (42, 0.3), (10, 0.5), (1, 3)])
def test_jitter_keeps_the_mean_and_the_upper_bound_as_prefect(delay: float, factor: float) -> None:
    """Prefect's clamped Poisson: at most d*(1+j), and the mean stays d (a uniform draw
    over [d*(1-j), d*(1+j)] clipped at 0 would average 126 for d=42, j=10)."""
    rng = random.Random(11)
    policy = build_policy({"retry_delay_seconds": delay, "retry_jitter_factor": factor})
    samples = [policy.delay(1, rng) for _ in range(50_000)]
    assert max(samples) <= delay * (1 + factor)
    assert min(samples) > 0
    assert delay * 0.95 < sum(samples) / len(samples) < delay * 1.05


def test_no_more_than_50_retry_delays_as_prefect() -> None:
    build_policy({"retries": 60, "retry_delay_seconds": [1] * 50})
    with pytest.raises(ConfigurationError, match="at most 50 delays"):
        build_policy({"retries": 60, "retry_delay_seconds": [1] * 51})
    delays = exponential_backoff(1)(60)
    assert len(delays) == 50 and delays[-1] == 2**49
    policy = build_policy({"retries": 60, "retry_delay_seconds": exponential_backoff(1)})
    assert policy.base_delay(60) == 2**49  # later retries repeat the last delay


def test_jitter_stays_within_bounds_and_never_negative() -> None:
    rng = random.Random(7)
    policy = build_policy({"retry_delay_seconds": 10, "retry_jitter_factor": 0.5})
    samples = [policy.delay(1, rng) for _ in range(5000)]
    # Prefect's lower bound for j = 0.5 is 0.629 d: log2(2^1.5 / (2^1.5 - 1)).
    assert min(samples) >= 6.29 and max(samples) <= 15
    assert max(samples) - min(samples) > 8  # it really spreads
    wide = build_policy({"retry_delay_seconds": 1, "retry_jitter_factor": 3})
    assert min(wide.delay(1, rng) for _ in range(2000)) >= 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retries": -1}, "retries must be a whole number"),
        ({"retries": 1.5}, "retries must be a whole number"),
        ({"retry_delay_seconds": -2}, "must not be negative"),
        ({"retry_delay_seconds": [1, "x"]}, "retry_delay_seconds item"),
        ({"retry_delay_seconds": []}, "must not be empty"),
        ({"retry_jitter_factor": -0.1}, "must not be negative"),
        ({"retry_on": [KeyError, "nope"]}, "exception types"),
        ({"retry_condition_fn": 3}, "must be callable"),
        ({"retry_deadline_seconds": -5}, "must not be negative"),
    ],
)
def test_bad_retry_options_are_refused_at_decoration(
    options: dict[str, object], message: str
) -> None:
    app = taskq.App("redis://127.0.0.1:1/0")
    with pytest.raises(ConfigurationError, match=message):
        app.task(**options)(lambda: None)  # type: ignore[call-overload]


def test_exponential_backoff_refuses_a_negative_factor() -> None:
    with pytest.raises(ConfigurationError):
        exponential_backoff(-1)


def test_retries_are_counted_per_attempt() -> None:
    policy = RetryPolicy(retries=2, delays=(1.0,))
    exc = ValueError("x")
    assert [retry_decision(None, policy, run(a), exc) for a in (1, 2, 3)] == [1.0, 1.0, None]


def test_retry_on_and_no_retry_on() -> None:
    only = build_policy({"retries": 3, "retry_on": (ConnectionError, TimeoutError)})
    assert retry_decision(None, only, run(1), ConnectionResetError()) == 0.0
    assert retry_decision(None, only, run(1), ValueError()) is None
    never = build_policy({"retries": 3, "no_retry_on": KeyError})
    assert retry_decision(None, never, run(1), KeyError()) is None
    assert retry_decision(None, never, run(1), ValueError()) == 0.0


def test_retry_condition_fn_prefect_style_and_predicate() -> None:
    seen = []

    def prefect_style(task: object, task_run: TaskRun, state: taskq.State) -> bool:
        seen.append((task_run.attempt, state.name, state.error and state.error.type))
        return "transient" in str(state.exception)

    policy = build_policy({"retries": 3, "retry_condition_fn": prefect_style})
    assert retry_decision("t", policy, run(1), RuntimeError("transient glitch")) == 0.0
    assert retry_decision("t", policy, run(2), RuntimeError("permanent")) is None
    assert seen == [(1, "Failed", "RuntimeError"), (2, "Failed", "RuntimeError")]
    simple = build_policy(
        {"retries": 3, "retry_condition_fn": lambda exc: isinstance(exc, OSError)}
    )
    assert retry_decision(None, simple, run(1), OSError()) == 0.0
    assert retry_decision(None, simple, run(1), ValueError()) is None

    def broken(exc: BaseException) -> bool:
        raise RuntimeError("bug in the predicate")

    assert (
        retry_decision(
            None, build_policy({"retries": 3, "retry_condition_fn": broken}), run(1), ValueError()
        )
        is None
    )


def test_async_retry_condition_fn_is_awaited_in_sync_and_async_callers(
    recwarn: pytest.WarningsRecorder,
) -> None:
    async def transient(task: object, task_run: TaskRun, state: taskq.State) -> bool:
        await asyncio.sleep(0)
        return "transient" in str(state.exception)

    async def broken(exc: BaseException) -> bool:
        raise RuntimeError("bug in the predicate")

    policy = build_policy({"retries": 3, "retry_condition_fn": transient})
    bad = build_policy({"retries": 3, "retry_condition_fn": broken})
    # Sync callers (worker threads, direct calls): run with asyncio.run.
    assert retry_decision("t", policy, run(1), RuntimeError("transient glitch")) == 0.0
    assert retry_decision("t", policy, run(1), RuntimeError("permanent")) is None
    assert retry_decision("t", bad, run(1), ValueError()) is None

    async def on_a_loop() -> list[float | None]:
        return [
            await retry_decision_async("t", policy, run(1), RuntimeError("transient")),
            await retry_decision_async("t", policy, run(1), RuntimeError("permanent")),
            await retry_decision_async("t", bad, run(1), ValueError()),
            # A sync caller inside a running loop (a sync task called from async code).
            retry_decision("t", policy, run(1), RuntimeError("permanent")),
            retry_decision("t", policy, run(1), RuntimeError("transient")),
        ]

    assert asyncio.run(on_a_loop()) == [0.0, None, None, None, 0.0]
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_retry_signal_overrides_filters_but_respects_retries() -> None:
    policy = build_policy({"retries": 1, "retry_delay_seconds": 9, "no_retry_on": taskq.Retry})
    assert retry_decision(None, policy, run(1), taskq.Retry(delay=2)) == 2
    assert retry_decision(None, policy, run(1), taskq.Retry()) == 9
    assert retry_decision(None, policy, run(2), taskq.Retry(delay=2)) is None
    assert retry_decision(None, policy, run(1), taskq.Cancel()) is None


def test_direct_call_retries_in_process() -> None:
    app = taskq.App("redis://127.0.0.1:1/0")
    calls = []

    @app.task(retries=3, retry_delay_seconds=0)
    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("try again")
        return "ok"

    assert flaky() == "ok" and len(calls) == 3

    @app.task(retries=1)
    def always() -> None:
        raise ValueError("never works")

    with pytest.raises(ValueError, match="never works"):
        always()

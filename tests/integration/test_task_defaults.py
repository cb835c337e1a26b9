"""Task defaults from settings (Prefect's PREFECT_TASK_DEFAULT_RETRIES and friends): read
when a task is defined, from App arguments or the environment, with real workers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

import taskq
from taskq.errors import ConfigurationError
from taskq.testing import BurstWorker


@pytest.fixture
def make_app(redis_url: str, taskq_prefix: str) -> Iterator[type[taskq.App]]:
    made: list[taskq.App] = []

    def make(**settings: object) -> taskq.App:
        app = taskq.App(redis_url, prefix=taskq_prefix, **settings)
        made.append(app)
        return app

    yield make  # type: ignore[misc]
    for app in made:
        app.close()


def test_default_retries_and_delays_apply_where_a_task_sets_none(
    make_app: type[taskq.App], burst_worker: BurstWorker
) -> None:
    app = make_app(task_default_retries=2, task_default_retry_delay_seconds=[0.01, 0.02])
    calls: Counter[str] = Counter()

    @app.task
    def flaky() -> str:
        calls["flaky"] += 1
        if calls["flaky"] < 3:
            raise ConnectionError("down")
        return "ok"

    @app.task(retries=0)
    def strict() -> None:
        calls["strict"] += 1
        raise ConnectionError("down")

    assert flaky.options.retry.retries == 2 and flaky.options.retry.delays == (0.01, 0.02)
    ok, failed = flaky.submit(), strict.submit()
    burst_worker(app)
    assert ok.result(timeout=5) == "ok" and ok.state.attempt == 3
    with pytest.raises(taskq.TaskFailedError):
        failed.result(timeout=5)
    assert calls == {"flaky": 3, "strict": 1}  # a task's own retries=0 wins


def test_defaults_come_from_the_environment_when_the_app_is_made(
    redis_url: str, taskq_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKQ_TASK_DEFAULT_RETRIES", "3")
    monkeypatch.setenv("TASKQ_TASK_DEFAULT_RETRY_DELAY_SECONDS", "1,2,4")
    monkeypatch.setenv("TASKQ_TASKS_REFRESH_CACHE", "true")
    app = taskq.App(redis_url, prefix=taskq_prefix)
    s = app.settings
    assert (s.task_default_retries, s.task_default_retry_delay_seconds) == (3, (1.0, 2.0, 4.0))
    assert s.tasks_refresh_cache and not s.caching_disabled

    @app.task(cache_policy=taskq.INPUTS)
    def t(x: int) -> int:
        return x

    assert t.options.retry.retries == 3 and t.options.retry.delays == (1.0, 2.0, 4.0)
    assert t.options.cache.refresh
    for name, value, message in [
        ("TASKQ_TASK_DEFAULT_RETRIES", "-1", "not a whole number"),
        ("TASKQ_TASK_DEFAULT_RETRY_DELAY_SECONDS", "1,x", "comma-separated numbers"),
        ("TASKQ_CACHING_DISABLED", "maybe", "not true or false"),
    ]:
        with monkeypatch.context() as m:
            m.setenv(name, value)
            with pytest.raises(ConfigurationError, match=message):
                taskq.App(redis_url, prefix=taskq_prefix)
    with pytest.raises(ConfigurationError, match="negative delay"):
        taskq.App(redis_url, prefix=taskq_prefix, task_default_retry_delay_seconds=-1)


def test_refresh_by_default_and_caching_disabled(
    make_app: type[taskq.App], burst_worker: BurstWorker
) -> None:
    calls: Counter[str] = Counter()
    plain = make_app()

    @plain.task(name="defaults.square", cache_policy=taskq.INPUTS)
    def square(x: int) -> int:
        calls["square"] += 1
        return x * x

    square.submit(3)
    burst_worker(plain)
    hit = square.submit(3)
    burst_worker(plain)
    assert hit.state.name == "Cached" and calls["square"] == 1

    refreshing = make_app(tasks_refresh_cache=True)

    @refreshing.task(name="defaults.square", cache_policy=taskq.INPUTS)
    def square_refreshed(x: int) -> int:
        calls["square"] += 1
        return x * x

    again = square_refreshed.submit(3)
    burst_worker(refreshing)
    assert again.result(timeout=5) == 9 and again.state.name == "Completed"
    assert calls["square"] == 2  # refreshed: ran, and stored anew

    uncached = make_app(caching_disabled=True)

    @uncached.task(name="defaults.square", cache_policy=taskq.INPUTS)
    def square_uncached(x: int) -> int:
        calls["square"] += 1
        return x * x

    assert not square_uncached.options.cache.enabled
    runs = [square_uncached.submit(3), square_uncached.submit(3)]
    burst_worker(uncached)
    assert [f.state.name for f in runs] == ["Completed", "Completed"]
    assert calls["square"] == 4

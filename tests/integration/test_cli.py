"""The `taskq` command: help, one-line errors with exit code 2, health check."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import taskq
from taskq.testing import BurstWorker

ROOT = Path(__file__).parents[2]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskq", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        timeout=60,
    )


def test_help_explains_every_worker_flag() -> None:
    top = run("--help")
    assert top.returncode == 0 and "worker" in top.stdout
    out = run("worker", "--help").stdout
    for flag in (
        "--queues",
        "--processes",
        "--concurrency",
        "--burst",
        "--burst-wait",
        "--redis-url",
        "--grace",
        "--check",
    ):
        assert flag in out


def test_wrong_flag_is_one_line_and_exit_2() -> None:
    res = run("worker", "tests.apps:app", "--procesess", "2")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [res.stderr.strip()]
    assert "--procesess" in res.stderr


def test_bad_value_is_one_line_and_exit_2() -> None:
    res = run("worker", "tests.apps:app", "--processes", "0")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1


def test_unimportable_module_is_one_line_and_exit_2() -> None:
    res = run("worker", "no_such_module_here:app")
    assert res.returncode == 2
    assert res.stderr.strip() == (
        "taskq: error: cannot import module 'no_such_module_here': "
        "No module named 'no_such_module_here'"
    )
    res = run("worker", "tests.apps:threading")  # an attribute, but a module
    assert res.returncode == 2
    assert (
        res.stderr.strip() == "taskq: error: tests.apps:threading is not a taskq.App (got module)"
    )


def test_missing_attribute_is_named() -> None:
    res = run("worker", "tests.apps:nope")
    assert res.returncode == 2
    assert res.stderr.strip() == "taskq: error: module 'tests.apps' has no attribute 'nope'"
    res = run("worker", "taskq.errors")  # MODULE alone means MODULE:app
    assert res.returncode == 2
    assert res.stderr.strip() == (
        "taskq: error: module 'taskq.errors' has no attribute 'app' "
        "(name the App with taskq.errors:ATTR)"
    )


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("notaurl", "not a URL; use redis://"),
        ("http://127.0.0.1:6379/0", "scheme 'http' is not supported"),
        ("redis+sentinel://127.0.0.1:26379", "give the service name the sentinels monitor"),
        ("redis+cluster://127.0.0.1:7001/3", "a Redis Cluster has only database 0"),
        ("redis+cluster://127.0.0.1:x/", "bad port 'x'"),
        ("redis+socket://127.0.0.1:6379", "redis+socket:// URLs are not supported"),
        ("redis://127.0.0.1:port/0", "Port could not be cast"),
        ("redis://127.0.0.1:6379/zero", "the database must be a number"),
    ],
)
@pytest.mark.parametrize("command", ["worker", "events", "dead"])
def test_malformed_redis_url_is_a_usage_error(url: str, why: str, command: str) -> None:
    args = ["worker", "--check", "tests.apps:app"] if command == "worker" else [command]
    res = run(*args, "--redis-url", url)
    assert res.returncode == 2, res.stderr
    line = res.stderr.strip()
    assert line.startswith(f"taskq: error: invalid Redis URL {url!r}: "), line
    assert why in line and len(line.splitlines()) == 1


def test_malformed_url_hides_the_password() -> None:
    res = run("events", "--redis-url", "http://u:hunter2@host/0")
    assert res.returncode == 2
    assert "'http://u:***@host/0'" in res.stderr and "hunter2" not in res.stderr


def test_no_arguments_prints_the_help_and_exits_0() -> None:
    res = run()
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    assert res.stdout.startswith("Usage: taskq") and "worker" in res.stdout


def test_events_and_dead_on_an_empty_queue_say_so(
    redis_url: str, taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task(queue="emails")
    def send(to: str) -> None:
        pass

    send.submit("a@example.com")
    burst_worker(taskq_app)
    prefix = taskq_app.settings.prefix
    common = ("--redis-url", redis_url, "--prefix", prefix)
    res = run("events", "--queue", "nope", *common)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "no events on queue 'nope'",
        f"queues under prefix {prefix!r}: default, emails",
    ]
    res = run("dead", "--queue", "emails", *common)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "no dead-lettered entries on queue 'emails'",
        f"queues under prefix {prefix!r}: default, emails",
    ]
    res = run("dead", "--redis-url", redis_url, "--prefix", prefix + "-none")
    assert res.stdout.splitlines() == [
        "no dead-lettered entries on queue 'default'",
        f"no queues under prefix {prefix + '-none'!r}",
    ]


def test_check_reports_health(redis_url: str) -> None:
    ok = run("worker", "--check", "tests.apps:app", "--redis-url", redis_url)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("ok: tests.apps:app")


def test_unreachable_redis_names_the_url_without_the_password() -> None:
    url = "redis://user:hunter2@127.0.0.1:1/0"
    res = run("worker", "--check", "tests.apps:app", "--redis-url", url)
    assert res.returncode == 1
    line = res.stderr.strip()
    assert "redis://user:***@127.0.0.1:1/0" in line and "hunter2" not in line
    assert len(line.splitlines()) == 1

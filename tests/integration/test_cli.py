"""The `taskq` command: help, one-line errors with exit code 2, health check."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
    res = run("worker", "tests.apps:nothing")
    assert res.returncode == 2 and "is not a taskq.App" in res.stderr


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

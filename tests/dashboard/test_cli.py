"""`taskq dashboard`: its one-line usage errors, and a real process serving a page."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import taskq

ROOT = Path(__file__).parents[2]


def run(*args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = ["-c", code] if code else ["-m", "taskq", *args]
    return subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )


def test_help_names_every_flag() -> None:
    out = run("dashboard", "--help").stdout
    for flag in ("--host", "--port", "--queue", "--allow-actions", "--token", "--redis-url"):
        assert flag in out


def test_actions_without_a_token_is_one_line_and_exit_2() -> None:
    env_free = run(
        code="import os, sys; os.environ.pop('TASKQ_DASHBOARD_TOKEN', None); "
        "from taskq.cli import main; main(['dashboard', '--allow-actions'])"
    )
    assert env_free.returncode == 2
    assert env_free.stderr.strip() == (
        "taskq: error: --allow-actions needs --token (or TASKQ_DASHBOARD_TOKEN)"
    )


def test_without_the_extra_it_says_what_to_install() -> None:
    res = run(
        code="import sys; sys.modules['starlette'] = None; "
        "from taskq.cli import main; main(['dashboard'])"
    )
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "taskq: error: taskq dashboard needs starlette: pip install 'taskq[dashboard]'"
    ]


def test_import_taskq_and_the_core_cli_need_no_extra() -> None:
    res = run(
        code="import sys; sys.modules['starlette'] = None; sys.modules['uvicorn'] = None; "
        "import taskq, taskq.cli; from taskq.cli import main; main(['--help'])"
    )
    assert res.returncode == 0 and "dashboard" in res.stdout


def test_a_bad_queue_name_is_a_usage_error() -> None:
    res = run("dashboard", "--queue", "no{braces}", "--redis-url", "redis://127.0.0.1:1/0")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "invalid queue name" in res.stderr


def test_the_command_serves_the_dashboard(taskq_app: taskq.App, redis_url: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskq", "dashboard", "--port", "0", "--redis-url", redis_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TASKQ_PREFIX": taskq_app.keys.prefix},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once the socket listens
        assert line.startswith("taskq dashboard on http://127.0.0.1:"), line
        assert "(read-only)" in line
        base = line.split()[3].rstrip("/")
        with urllib.request.urlopen(base + "/api/config", timeout=20) as resp:
            config = json.loads(resp.read())
        assert config["actions"] is False and config["prefix"] == taskq_app.keys.prefix
        with urllib.request.urlopen(base + "/", timeout=20) as resp:
            assert b"<title>taskq dashboard</title>" in resp.read()
    finally:
        proc.terminate()
        proc.wait(timeout=30)

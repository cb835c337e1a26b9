"""Fixtures of the operator CLI tests (test_cli_ops.py, test_cli_dead.py): ``cli`` runs
``python -m taskq`` on the test's Redis and prefix, ``ops`` is tests.ops_apps imported
on them."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tests

ROOT = Path(__file__).parents[2]
APP = "tests.ops_apps:app"


class Cli:
    """Runs `python -m taskq` against the test's Redis and prefix."""

    def __init__(self, redis_url: str, prefix: str) -> None:
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "TASKQ_REDIS_URL": redis_url,
            "TASKQ_PREFIX": prefix,
        }

    def __call__(self, *args: str, code: int = 0, env: dict[str, str] | None = None) -> str:
        res = subprocess.run(
            [sys.executable, "-m", "taskq", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**self.env, **(env or {})},
            timeout=120,
        )
        assert res.returncode == code, (args, res.stdout, res.stderr)
        return res.stdout if code == 0 else res.stderr

    def json(self, *args: str) -> object:
        return json.loads(self(*args, "--json"))

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "taskq", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=self.env,
        )

    def burst(self, *args: str) -> None:
        self("worker", APP, "--burst", "--processes", "1", "--burst-wait", "0", *args)


@pytest.fixture
def cli(redis_url: str, taskq_prefix: str) -> Cli:
    return Cli(redis_url, taskq_prefix)


def _forget() -> None:
    sys.modules.pop("tests.ops_apps", None)
    if hasattr(tests, "ops_apps"):
        delattr(tests, "ops_apps")


@pytest.fixture
def ops(redis_url: str, taskq_prefix: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """tests.ops_apps imported afresh on this test's Redis and prefix (it reads them
    when imported)."""
    monkeypatch.setenv("TASKQ_REDIS_URL", redis_url)
    monkeypatch.setenv("TASKQ_PREFIX", taskq_prefix)
    _forget()
    module = importlib.import_module("tests.ops_apps")
    yield module
    module.app.close()
    _forget()

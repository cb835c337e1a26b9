"""On a full run (``TASKQ_RELIABILITY=full``), also record the figures that the Redis,
network, input and model scenarios print, in their own section of RESULTS.md.

Printed figures are read from pytest's captured output, so run the full matrix without
``-s``: ``TASKQ_RELIABILITY=full .venv/bin/pytest tests/reliability -m reliability``.
(The process-fault scenarios write their own section, see harness.py.)
"""

from __future__ import annotations

import os
import time

import pytest

from tests.reliability.harness import RESULTS, _replace_section, _revision

SECTION = "## Redis, network, input and model faults (printed figures)"
_printed: list[tuple[str, str, str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call" or "test_process_faults" in report.nodeid:
        return
    lines = [ln for ln in report.capstdout.splitlines() if ln.strip()]
    if lines:
        _printed.append((report.nodeid, report.outcome, "\n".join(lines)))


def pytest_sessionfinish(session: pytest.Session) -> None:
    if os.environ.get("TASKQ_RELIABILITY") != "full" or not _printed:
        return
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    body = [SECTION, "", f"Full run of {stamp} against taskq {_revision()}.", ""]
    for nodeid, outcome, text in _printed:
        body += [f"### {nodeid.split('::', 1)[-1]}: {outcome}", "", "```", text, "```", ""]
    old = RESULTS.read_text() if RESULTS.exists() else "# Reliability suite: recorded results\n"
    RESULTS.write_text(_replace_section(old, SECTION, "\n".join(body)))

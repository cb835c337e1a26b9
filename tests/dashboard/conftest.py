"""Fixtures of the dashboard tests: a dashboard served from a thread on a free port of
127.0.0.1, on the test's App (a private Redis, a unique prefix)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

pytest.importorskip("starlette", reason="the dashboard extra is not installed")
pytest.importorskip("uvicorn", reason="the dashboard extra is not installed")

import taskq
from taskq.dashboard.app import Dashboard
from taskq.dashboard.auth import Access
from taskq.dashboard.server import Running, serve_in_thread

TOKEN = "s3cret-token-for-tests"

Serve = Callable[..., Running]


@pytest.fixture
def serve_dashboard() -> Iterator[Serve]:
    """``serve_dashboard(app, actions=False, queues=(...))``: a served dashboard, stopped
    at the end of the test."""
    running: list[Running] = []

    def serve(
        app: taskq.App, *, actions: bool = False, queues: tuple[str, ...] = ("default",)
    ) -> Running:
        access = Access(actions, TOKEN if actions else None)
        got = serve_in_thread(Dashboard(app, queues, access, sample_seconds=0.5))
        running.append(got)
        return got

    yield serve
    for r in running:
        r.stop()

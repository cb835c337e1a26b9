"""The routes fed from memory (no Redis read per request): the page shell, the
server-sent events, the depth samples, throughput and latency, the recent events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from importlib import resources
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from taskq.dashboard.feed import Entry
from taskq.dashboard.stats import WINDOW_S

if TYPE_CHECKING:
    from taskq.dashboard.app import Dashboard

#: Seconds between keep-alive comments on an idle events stream.
KEEPALIVE_S = 15.0
#: Entries one server-sent message carries at most.
MESSAGE_ENTRIES = 500


_SHELL = resources.files("taskq.dashboard").joinpath("static/index.html")


def dash(request: Request) -> Dashboard:
    """The :class:`Dashboard` this app serves."""
    got: Dashboard = request.app.state.dashboard
    return got


def clamp(request: Request, name: str, default: int, most: int) -> int:
    """The integer query parameter ``name``, within 1..``most``."""
    try:
        value = int(request.query_params.get(name, default))
    except ValueError:
        value = default
    return max(1, min(most, value))


def page(request: Request) -> Response:
    """Every page is the same shell; its script draws the view the path names."""
    return HTMLResponse(_SHELL.read_text(encoding="utf-8"))


def config(request: Request) -> Response:
    d = dash(request)
    return JSONResponse(
        {
            "actions": d.access.allow_actions,
            "queues": d.watched.logical(),
            "redis": d.broker.url,
            "prefix": d.broker.keys.prefix,
            "sample_seconds": d.sampler.interval,
        }
    )


def depth(request: Request) -> Response:
    return JSONResponse({"samples": dash(request).sampler.samples()})


def stats(request: Request) -> Response:
    d = dash(request)
    return JSONResponse(
        {
            "window_s": WINDOW_S,
            "latency": "enqueue to start: a run's first Running event minus its Pending "
            "event (events-stream ids, server time); runs whose Pending event this "
            "dashboard did not see are not measured",
            "series": d.stats.series(),
        }
    )


def recent(request: Request) -> Response:
    limit = clamp(request, "limit", 200, 2000)
    events = dash(request).feed.recent(limit)
    return JSONResponse({"events": [e.as_json() for e in events]})


def _message(entries: list[Entry]) -> str:
    data = json.dumps([e.as_json() for entry in entries for e in entry.events])
    return f"id: {entries[-1].sse_id}\nevent: runs\ndata: {data}\n\n"


async def events(request: Request) -> Response:
    """Server-sent events: every run transition the feed reads, as ``runs`` messages
    (a JSON list of events each); ``reset`` when the client missed more than is held."""
    feed = dash(request).feed
    cursor = feed.resume(request.headers.get("last-event-id"))

    async def stream() -> AsyncIterator[str]:
        nonlocal cursor
        # The cursor moves before each yield: the client may act on what it gets (and
        # cause new events) before this generator runs again.
        if cursor is None:
            cursor = feed.head()
            yield "retry: 2000\n\nevent: reset\ndata: {}\n\n"
        else:
            yield "retry: 2000\n\n"
        while not feed.stopping:
            waiter = feed.notifier.future()  # before the check: no wake-up is lost
            entries, lost = feed.since(cursor, MESSAGE_ENTRIES)
            if lost:
                cursor = feed.head()
                yield "event: reset\ndata: {}\n\n"
                continue
            if entries:
                cursor = entries[-1].seq
                yield _message(entries)
                continue
            try:
                await asyncio.wait_for(asyncio.shield(waiter), KEEPALIVE_S)
            except TimeoutError:
                yield ": keep-alive\n\n"

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


def json_error(status: int, message: str) -> Response:
    """An error as JSON: ``{"error": message}``."""
    body: dict[str, Any] = {"error": message}
    return JSONResponse(body, status_code=status)

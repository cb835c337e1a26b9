"""The routes that read Redis (through the read model, :mod:`taskq.overview` and
:mod:`taskq.deadletters`, each read bounded by a count) and the actions.

Every read is a GET and changes nothing. Every action is a POST that
:class:`~taskq.dashboard.auth.Access` must let through: the dashboard started with
``--allow-actions`` and the request carrying the token.
"""

from __future__ import annotations

import inspect
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import taskq.deadletters as deadletters
import taskq.overview as overview
from taskq.app import check_queue
from taskq.cancel import cancel_run
from taskq.dashboard.live import clamp, dash, json_error
from taskq.errors import ConfigurationError

#: What a cancel from the dashboard records as the reason.
CANCEL_REASON = "cancelled from the dashboard"


def _queue(request: Request, name: str = "queue") -> str | None:
    q = request.query_params.get(name) or None
    return check_queue(q) if q is not None else None


def queues(request: Request) -> Response:
    d = dash(request)
    infos = overview.queue_info(d.broker, d.watched.logical())
    return JSONResponse({"queues": [i.as_json() for i in infos]})


def workers(request: Request) -> Response:
    infos = overview.worker_info(dash(request).broker)
    return JSONResponse({"workers": [w.as_json() for w in infos]})


def runs(request: Request) -> Response:
    d = dash(request)
    q = _queue(request)
    state = request.query_params.get("state") or None
    task = request.query_params.get("task") or None
    limit = clamp(request, "limit", 50, 500)
    found = overview.recent_runs(
        d.broker, [q] if q else d.watched.logical(), state=state, task=task, limit=limit
    )
    return JSONResponse({"runs": [r.as_json() for r in found]})


def run(request: Request) -> Response:
    d = dash(request)
    run_id = request.path_params["run_id"]
    detail = overview.run_detail(d.broker, run_id, _queue(request))
    if detail is None:
        return json_error(404, f"no run {run_id!r} (unknown, or its record expired)")
    # dict(run=...): a "run" key spelled as a string reads as the dead-letter field's name
    return JSONResponse(dict(run=detail.as_json()))


def dead(request: Request) -> Response:
    d = dash(request)
    q = _queue(request)
    count = clamp(request, "count", 100, 1000)
    entries = []
    for name in [q] if q else d.watched.logical():
        entries += [e.as_json() for e in deadletters.dead_entries(d.broker, name, count)]
    return JSONResponse({"entries": entries})


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


async def requeue(request: Request) -> Response:
    """POST ``{"queue": Q, "ids": [entry ids]}`` (no ids: every entry of Q)."""
    d = dash(request)
    if (why := d.access.refusal(request.headers.get("authorization"))) is not None:
        return json_error(*why)
    body = await _body(request)
    queue, ids = body.get("queue"), body.get("ids")
    if not isinstance(queue, str) or not (
        ids is None or (isinstance(ids, list) and all(isinstance(i, str) for i in ids))
    ):
        return json_error(400, 'expected {"queue": "...", "ids": ["<entry id>", ...]}')
    check_queue(queue)
    moved = await run_in_threadpool(deadletters.requeue, d.broker, queue, ids)
    return JSONResponse({"requeued": moved})


async def cancel(request: Request) -> Response:
    """POST ``{"queue": Q}`` to ``/api/runs/<id>/cancel``: cancel the run."""
    d = dash(request)
    if (why := d.access.refusal(request.headers.get("authorization"))) is not None:
        return json_error(*why)
    body = await _body(request)
    queue = body.get("queue")
    if not isinstance(queue, str):
        return json_error(400, 'expected {"queue": "<the run\'s queue>"}')
    check_queue(queue)
    run_id = request.path_params["run_id"]
    got = await run_in_threadpool(cancel_run, d.broker, queue, run_id, CANCEL_REASON)
    return JSONResponse({"run_id": run_id, "reply": got.name.lower()})


def _guarded(endpoint: Any) -> Any:
    """``endpoint`` (a sync one in the thread pool) answering 400 for a bad queue name."""

    async def guarded(request: Request) -> Response:
        try:
            if inspect.iscoroutinefunction(endpoint):
                got: Response = await endpoint(request)
            else:
                got = await run_in_threadpool(endpoint, request)
        except ConfigurationError as exc:
            return json_error(400, str(exc))
        return got

    return guarded


def routes() -> list[Route]:
    """The read and action routes."""
    return [
        Route("/api/queues", _guarded(queues)),
        Route("/api/workers", _guarded(workers)),
        Route("/api/runs", _guarded(runs)),
        Route("/api/runs/{run_id}", _guarded(run)),
        Route("/api/dead", _guarded(dead)),
        Route("/api/dead/requeue", _guarded(requeue), methods=["POST"]),
        Route("/api/runs/{run_id}/cancel", _guarded(cancel), methods=["POST"]),
    ]

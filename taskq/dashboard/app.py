"""The dashboard's ASGI app: the :class:`Dashboard` (the feed, the depth sampler, the
throughput and latency figures, the action settings) and the routes that serve it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from taskq.app import App
from taskq.dashboard import live, reads
from taskq.dashboard.auth import Access
from taskq.dashboard.feed import Feed
from taskq.dashboard.sampler import Sampler, Watched
from taskq.dashboard.stats import Stats

#: The paths the page shell answers (its script draws the view each names).
PAGES = ("/", "/runs", "/runs/{run_id}", "/dead", "/workers")


class Dashboard:
    """One dashboard process's state, shared by every request.

    Args:
        app: The taskq App whose Redis and prefix to show.
        queues: Logical queues to show (empty: every queue under the prefix).
        access: Whether actions are allowed, and their token.
        sample_seconds: Seconds between two depth samples.
    """

    def __init__(
        self,
        app: App,
        queues: Sequence[str] = (),
        access: Access | None = None,
        *,
        sample_seconds: float = 2.0,
    ) -> None:
        self.app = app
        self.broker = app.broker
        self.access = access or Access()
        self.watched = Watched(self.broker, queues)
        self.stats = Stats()
        self.feed = Feed(self.broker, self.watched.names, listeners=[self.stats.add])
        self.sampler = Sampler(self.broker, self.watched, sample_seconds)

    def start(self) -> None:
        """Start the feed's reader and the sampler (threads)."""
        self.sampler.start()
        self.feed.start()

    def stop(self) -> None:
        """Ask both threads to stop."""
        self.feed.stop()
        self.sampler.stop()

    def asgi(self) -> Starlette:
        """The Starlette app; its lifespan starts and stops the threads."""

        @contextlib.asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            self.feed.notifier.bind(asyncio.get_running_loop())
            self.start()
            try:
                yield
            finally:
                self.stop()

        routes: list[BaseRoute] = [Route(p, live.page) for p in PAGES]
        routes += [
            Route("/api/config", live.config),
            Route("/api/depth", live.depth),
            Route("/api/stats", live.stats),
            Route("/api/recent", live.recent),
            Route("/api/events", live.events),
            *reads.routes(),
            Mount("/static", StaticFiles(packages=[("taskq.dashboard", "static")])),
        ]
        web = Starlette(routes=routes, lifespan=lifespan)
        web.state.dashboard = self
        return web

"""``taskq dashboard``: a live web dashboard (the ``taskq[dashboard]`` extra: Starlette
and uvicorn).

- :mod:`~taskq.dashboard.feed`: ONE reader of the events streams per process, fanned out
  to every browser over server-sent events;
- :mod:`~taskq.dashboard.sampler`: queue depth every few seconds, one round trip each;
- :mod:`~taskq.dashboard.stats`: throughput and start latency, from the feed's events;
- :mod:`~taskq.dashboard.auth`: read-only unless ``--allow-actions`` and a token;
- :mod:`~taskq.dashboard.live` and :mod:`~taskq.dashboard.reads`: the routes;
- :mod:`~taskq.dashboard.app`: the :class:`~taskq.dashboard.app.Dashboard` and its ASGI app;
- :mod:`~taskq.dashboard.server`: uvicorn, on a port or in a thread (tests);
- ``static/``: the page (plain HTML, CSS and JavaScript; charts in inline SVG).

Nothing outside this package imports it: ``import taskq`` works without the extra.
"""

from __future__ import annotations

#: What to install when the extra is missing.
INSTALL_HINT = "pip install 'taskq[dashboard]'"


def missing_extra() -> str | None:
    """One line naming what to install when Starlette or uvicorn is missing, else None."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        return f"taskq dashboard needs {exc.name}: {INSTALL_HINT}"
    return None

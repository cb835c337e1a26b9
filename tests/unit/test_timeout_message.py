"""The timeout message falls back to the bare text when Redis cannot tell more."""

from __future__ import annotations

import socket

import taskq
from taskq.futures import Future, _explain


def test_explain_keeps_the_bare_message_when_redis_is_unreachable() -> None:
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = taskq.App(
        f"redis://127.0.0.1:{port}/0", connect_timeout=0.5, socket_timeout=1, block_seconds=0.5
    )
    try:
        fut: Future[int] = Future(app.broker, "default", "abc", "t")
        assert _explain("run abc has no result after 1 s", [fut]) == (
            "run abc has no result after 1 s"
        )
    finally:
        app.close()

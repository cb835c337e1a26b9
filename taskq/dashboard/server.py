"""Serving the dashboard with uvicorn on a socket bound first: the address is listening
(connections wait in its backlog) before the server has started, so whoever is told the
address can connect at once, and port 0 picks a free port."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass

import uvicorn

from taskq.dashboard.app import Dashboard


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio sets TCP_NODELAY only on sockets that say they
    # are TCP, and without it a keep-alive response's body waits ~40 ms (Nagle against
    # the client's delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    return sock


def address(sock: socket.socket) -> str:
    """The base URL of a bound socket."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _server(dashboard: Dashboard) -> uvicorn.Server:
    # Open event streams never end by themselves: give them a second to, then cancel.
    config = uvicorn.Config(
        dashboard.asgi(), log_level="warning", access_log=False, timeout_graceful_shutdown=1
    )
    return uvicorn.Server(config)


def serve(dashboard: Dashboard, sock: socket.socket) -> None:
    """Serve on ``sock`` until interrupted (Ctrl-C, SIGTERM)."""
    _server(dashboard).run(sockets=[sock])


@dataclass
class Running:
    """A dashboard served in a thread of this process."""

    dashboard: Dashboard
    server: uvicorn.Server
    thread: threading.Thread
    url: str

    def stop(self) -> None:
        """Stop the dashboard (its event streams end), then the server; wait for its thread."""
        self.dashboard.stop()
        self.server.should_exit = True
        self.thread.join(timeout=30)


def serve_in_thread(dashboard: Dashboard, host: str = "127.0.0.1", port: int = 0) -> Running:
    """Serve ``dashboard`` from a thread on ``host`` (a free port unless given)."""
    sock = bind(host, port)
    server = _server(dashboard)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="taskq-dashboard", daemon=True
    )
    thread.start()
    return Running(dashboard, server, thread, address(sock))

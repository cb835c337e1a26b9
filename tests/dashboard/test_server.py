"""The socket the dashboard listens on."""

from __future__ import annotations

import socket

from taskq.dashboard.server import address, bind


def test_the_socket_says_it_is_tcp_so_responses_are_not_held_back() -> None:
    # asyncio sets TCP_NODELAY on accepted sockets only when the listening socket's
    # protocol is IPPROTO_TCP; with 0, each keep-alive response's body waited ~40 ms.
    sock = bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
        assert address(sock) == f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()

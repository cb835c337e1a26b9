"""A lean RESP connection for taskq's hot path: hiredis packs and parses, nothing else runs.

redis-py's generic command path (pool checkout, retry wrapper, observability
hooks, response callbacks) costs several times the Redis round trip itself for
the small scripts taskq runs per task. This connection sends a command packed
by ``hiredis.pack_command`` on a plain socket and parses the reply with
``hiredis.Reader``: measured here it uses about 20% less client CPU per call
than a bare ``redis.Redis.xadd``, so a ``submit`` (one EVALSHA that also records
state) keeps pace with a bare XADD (see ``bench/RESULTS.md``).

It speaks RESP2 over TCP or a unix socket, with AUTH and SELECT from the URL.
``rediss://`` (TLS) URLs are not handled here: :mod:`taskq.broker` sends those
through redis-py instead. Errors are builtins (``ConnectionError``,
``TimeoutError``) or :class:`ReplyError`; :mod:`taskq.broker` translates them.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis

ReplyError = hiredis.ReplyError


@dataclass(frozen=True)
class Address:
    """Where and how to connect, parsed from a ``redis://`` or ``unix://`` URL."""

    host: str = "localhost"
    port: int = 6379
    path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_url(cls, url: str) -> Address | None:
        """The address of ``url``, or None when the lean path does not handle it (TLS)."""
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        if "password" in query:
            password = query["password"][0]
        if parts.scheme == "unix":
            db = int(query.get("db", ["0"])[0])
            return cls(path=parts.path, db=db, username=user, password=password)
        if parts.scheme != "redis":
            return None
        db_text = parts.path.lstrip("/") or query.get("db", ["0"])[0]
        return cls(
            host=parts.hostname or "localhost",
            port=parts.port or 6379,
            db=int(db_text or 0),
            username=user,
            password=password,
        )


class Connection:
    """One socket to Redis, used by one thread at a time.

    Args:
        address: Where to connect.
        timeout: Socket timeout for each reply, in seconds (None: wait forever).
        connect_timeout: Timeout of the connect itself.
    """

    def __init__(self, address: Address, timeout: float | None, connect_timeout: float) -> None:
        self.address = address
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._sock: socket.socket | None = None
        self._reader = hiredis.Reader()
        self._pid = os.getpid()
        self._got_bytes = False

    def _connect(self) -> socket.socket:
        a = self.address
        if a.path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.connect_timeout)
            sock.connect(a.path)
        else:
            sock = socket.create_connection((a.host, a.port), timeout=self.connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.timeout)
        self._sock, self._reader, self._pid = sock, hiredis.Reader(), os.getpid()
        try:
            if a.password is not None:
                auth = ("AUTH", a.username, a.password) if a.username else ("AUTH", a.password)
                self._check(self._roundtrip([auth])[0])
            if a.db:
                self._check(self._roundtrip([("SELECT", a.db)])[0])
        except BaseException:
            self.close()
            raise
        return sock

    @staticmethod
    def _check(reply: Any) -> None:
        if isinstance(reply, ReplyError):
            raise reply

    def close(self) -> None:
        """Close the socket; the next command reconnects."""
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def _roundtrip(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send and read; a connection that was idle and turns out closed is reopened once.

        Redis (``timeout``), a NAT or a load balancer may close an idle connection; the
        first write then "succeeds" and the read finds the socket closed before any
        reply byte. Nothing reached Redis, so the commands are sent again on a fresh
        connection. Once a byte of reply arrived, or on a fresh connection, errors
        propagate as they are.
        """
        reused = self._sock is not None and self._pid == os.getpid()
        try:
            self.send(commands)
            return self.receive(len(commands))
        except (ConnectionError, OSError) as exc:
            if not reused or self._got_bytes or isinstance(exc, TimeoutError):
                raise
        self.send(commands)
        return self.receive(len(commands))

    def send(self, commands: Sequence[Sequence[Any]]) -> None:
        """Write commands without reading their replies (call :meth:`receive` later)."""
        sock = self._sock
        if sock is None or self._pid != os.getpid():
            sock = self._connect()
        try:
            if len(commands) == 1:
                sock.sendall(hiredis.pack_command(tuple(commands[0])))
            else:
                sock.sendall(b"".join(hiredis.pack_command(tuple(c)) for c in commands))
        except BaseException:
            self.close()
            raise

    def receive(self, count: int) -> list[Any]:
        """Read ``count`` replies (errors returned as values), in order."""
        sock = self._sock
        if sock is None:
            raise ConnectionError("connection lost before the replies were read")
        self._got_bytes = False
        try:
            replies: list[Any] = []
            reader = self._reader
            while len(replies) < count:
                reply = reader.gets()
                if reply is False:
                    chunk = sock.recv(1 << 16)
                    if not chunk:
                        raise ConnectionError("connection closed by Redis")
                    self._got_bytes = True
                    reader.feed(chunk)
                else:
                    replies.append(reply)
            return replies
        except BaseException:
            # A half-read reply would poison the next command: drop the socket.
            self.close()
            raise

    def call(self, *args: Any) -> Any:
        """Send one command; return its reply (a :class:`ReplyError` is raised)."""
        reply = self._roundtrip([args])[0]
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    def pipeline(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send several commands in one write; replies in order (errors returned, not raised)."""
        return self._roundtrip(commands)

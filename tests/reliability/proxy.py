"""A loopback TCP fault proxy to put between taskq processes and a private ``redis-server``.

It listens on ``127.0.0.1:<free port>`` and forwards every connection to the target
port, on an asyncio loop in a background thread. Faults, switched from the test's
thread (each call returns once the proxy applied it)::

    with FaultProxy(server.port) as proxy:
        env["TASKQ_REDIS_URL"] = proxy.url
        proxy.cut()              # reset every open connection now; new ones are accepted
        proxy.blackhole(True)    # accept, but forward nothing (bytes are held, not lost)
        proxy.blackhole(False)   # the held bytes flow again, as after a healed partition
        proxy.latency(0.05)      # each chunk is delivered 50 ms after it was read (each way)
        proxy.down(True)         # reset every connection, and each new one as it arrives
        proxy.heal()             # no blackhole, no latency, not down

Semantics, chosen to be what TCP does across a partition:

* **blackhole**: connections are accepted but not connected upstream until the heal;
  nothing is read from or written to either side, so bytes wait in the proxy and in the
  kernels' buffers. On heal they are delivered, even those a client sent before giving
  up on the connection (Redis then runs that command and its reply goes nowhere: a
  "lost reply", which taskq must recover from).
* **cut** / **down**: sockets are closed with ``SO_LINGER 0``, so both peers see a reset.
* **latency**: a delay per chunk, in each direction, pipelined (it adds to each
  round trip twice, but does not limit throughput).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

_CHUNK = 1 << 16
_EOF = b""


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close ``writer``'s socket at once with a TCP reset (SO_LINGER 0)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Link:
    """One client connection and (once connected) its upstream connection."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.writers = [client]
        self.tasks: list[asyncio.Task[None]] = []
        self.closed = False

    def close(self, reset: bool) -> None:
        if self.closed:
            return
        self.closed = True
        for w in self.writers:
            if reset:
                _reset(w)
            else:
                w.close()
        for t in self.tasks:
            t.cancel()


class FaultProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target_host:target_port``, with injectable faults.

    Args:
        target_port: Port of the server to forward to (a Redis port).
        target_host: Host of that server.
        db: Database number put in :attr:`url`.

    Attributes:
        accepted: Connections accepted so far.
        resets: Connections closed by :meth:`cut` or while :meth:`down`.
        forwarded: Bytes delivered (both directions).
    """

    def __init__(self, target_port: int, *, target_host: str = "127.0.0.1", db: int = 0) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.db = db
        self.accepted = 0
        self.resets = 0
        self.forwarded = 0
        self._latency = 0.0
        self._down = False
        self._links: set[_Link] = set()
        self._loop = asyncio.new_event_loop()
        self._flowing: asyncio.Event | None = None
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._ready = threading.Event()

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> Self:
        """Start listening; returns once the port is bound."""
        self._thread.start()
        if not self._ready.wait(10) or self._port is None:
            raise RuntimeError("the fault proxy did not start")
        return self

    def close(self) -> None:
        """Close every connection and stop the proxy."""
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self._call(self._shutdown)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the fault proxy is not started")
        return self._port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/<db>``: give this to the clients instead of Redis's."""
        return f"redis://127.0.0.1:{self.port}/{self.db}"

    @property
    def open_connections(self) -> int:
        return len(self._links)

    # -- faults -------------------------------------------------------------------------

    def cut(self) -> int:
        """Reset every open connection (both sides); keep accepting. Returns how many."""
        return int(self._call(self._cut))

    def blackhole(self, on: bool = True) -> None:
        """Hold every byte (and every new connection) until ``blackhole(False)``."""
        self._call(self._set_flowing, not on)

    def latency(self, seconds: float) -> None:
        """Deliver each chunk read from now on ``seconds`` later (in both directions)."""
        if seconds < 0:
            raise ValueError("latency must be >= 0")
        self._call(setattr, self, "_latency", float(seconds))

    def down(self, on: bool = True) -> None:
        """While on, reset every connection: those open now and each new one."""
        self._call(self._set_down, on)

    def heal(self) -> None:
        """No blackhole, no latency, not down (open connections stay open)."""
        self._call(self._heal)

    # -- the loop -----------------------------------------------------------------------

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the proxy's loop and return its result."""

        async def run() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._listen())
        self._ready.set()
        self._loop.run_forever()
        for task in asyncio.all_tasks(self._loop):
            task.cancel()
        with contextlib.suppress(Exception):
            self._loop.run_until_complete(asyncio.sleep(0))
        self._loop.close()

    async def _listen(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self._port = self._server.sockets[0].getsockname()[1]

    def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.close(reset=True)
        self._links.clear()

    def _cut(self) -> int:
        links = list(self._links)
        for link in links:
            link.close(reset=True)
        self._links.clear()
        self.resets += len(links)
        return len(links)

    def _set_flowing(self, flowing: bool) -> None:
        assert self._flowing is not None
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    def _set_down(self, on: bool) -> None:
        self._down = on
        if on:
            self._cut()

    def _heal(self) -> None:
        self._latency = 0.0
        self._down = False
        self._set_flowing(True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        self.accepted += 1
        link = _Link(writer)
        if self._down:
            self.resets += 1
            link.close(reset=True)
            return
        self._links.add(link)
        try:
            await self._flowing.wait()  # a blackholed connection is not even connected upstream
            if link.closed:
                return
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
            link.writers.append(up_writer)
            if link.closed:  # cut while connecting
                _reset(up_writer)
                return
            pipes = [
                asyncio.ensure_future(self._pipe(reader, up_writer)),
                asyncio.ensure_future(self._pipe(up_reader, writer)),
            ]
            link.tasks += pipes
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._links.discard(link)
            link.close(reset=False)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy ``reader`` to ``writer`` chunk by chunk, honouring blackhole and latency."""
        assert self._flowing is not None
        flowing = self._flowing
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def pump_in() -> None:
            try:
                while True:
                    await flowing.wait()
                    data = await reader.read(_CHUNK)
                    queue.put_nowait((loop.time() + self._latency, data))
                    if data == _EOF:
                        return
            except OSError:
                queue.put_nowait((loop.time(), _EOF))

        async def pump_out() -> None:
            while True:
                due, data = await queue.get()
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await flowing.wait()
                if data == _EOF:
                    return
                writer.write(data)
                await writer.drain()
                self.forwarded += len(data)

        inbound = asyncio.ensure_future(pump_in())
        try:
            await pump_out()
        except OSError:
            pass  # the receiving side went away: the link is closed by the caller
        finally:
            inbound.cancel()

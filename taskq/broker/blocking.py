"""Blocking reads on several Cluster slots at once: one read per slot, each on a thread.

On one node a worker blocks in one ``XREADGROUP`` over every stream it serves. On a
Cluster one command can only name keys of one slot, so a worker whose queues span
several slots blocks in one ``XREADGROUP`` per slot, each on a thread of its own (with
its own sockets), and wakes when the first of them returns entries. The others keep
waiting; what they read later is picked up by the next read (:meth:`BlockingReads.ready`)
or, when the worker stops, given back (:meth:`BlockingReads.drain`). Entries read but
never collected are not lost either way: they sit in the worker's pending list, where
the lease brings them back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

#: Extra seconds to wait past the reads' own BLOCK for their replies.
_SLACK = 1.0


class BlockingReads:
    """Blocking commands kept in flight per key across calls.

    Args:
        execute: Runs one command and returns its reply (raises on errors).
    """

    def __init__(self, execute: Callable[..., Any]) -> None:
        self._execute = execute
        self._pool: ThreadPoolExecutor | None = None
        self._inflight: dict[Hashable, Future[Any]] = {}
        self._lock = threading.Lock()

    def wait(self, commands: Mapping[Any, Sequence[Any]], timeout: float) -> list[Any]:
        """Start the commands not already in flight, then wait up to ``timeout`` seconds
        (plus a little) for any to finish; the replies of every finished one.

        A command still in flight under the same key is not started again.

        Raises:
            Exception: What a finished command raised (the others stay in flight).
        """
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(thread_name_prefix="taskq-read")
            for key, command in commands.items():
                if key not in self._inflight:
                    self._inflight[key] = self._pool.submit(self._execute, *command)
            futures = list(self._inflight.values())
        wait(futures, timeout=timeout + _SLACK, return_when=FIRST_COMPLETED)
        return self.ready()

    def ready(self) -> list[Any]:
        """The replies of the commands that finished (taken out of flight), at once."""
        with self._lock:
            done = [(k, f) for k, f in self._inflight.items() if f.done()]
            for key, _ in done:
                del self._inflight[key]
        failure: BaseException | None = None
        replies: list[Any] = []
        for _, fut in done:
            exc = fut.exception()
            if exc is not None:
                failure = exc
            else:
                replies.append(fut.result())
        if failure is not None and not replies:
            raise failure
        return replies

    def drain(self, timeout: float) -> list[Any]:
        """Wait up to ``timeout`` seconds for every command in flight; their replies
        (failed ones left out), and stop the threads."""
        with self._lock:
            futures = list(self._inflight.values())
            self._inflight.clear()
            pool, self._pool = self._pool, None
        wait(futures, timeout=timeout + _SLACK)
        replies = [f.result() for f in futures if f.done() and f.exception() is None]
        if pool is not None:
            pool.shutdown(wait=False)
        return replies

    def __bool__(self) -> bool:
        return bool(self._inflight)

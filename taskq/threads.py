"""The worker's threads: a pool for sync tasks, fixed threads fed by one ``SimpleQueue``
(:class:`TaskThreads`), and one event loop thread for async ones (:class:`LoopThread`).

The pool is leaner than :class:`concurrent.futures.ThreadPoolExecutor` on the hot path (no
Future per call, no semaphore, one C-level queue put per run), and able to add a
thread when one is abandoned: a sync task stuck past its timeout keeps its thread,
and an in-process worker that frees the slot must also have a thread to run the
next run in it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from queue import Empty, SimpleQueue

log = logging.getLogger("taskq.threads")

Job = Callable[[], None]


class TaskThreads:
    """``size`` daemon threads running submitted jobs; a job's exceptions are logged.

    Args:
        size: Threads to start.
        name: Prefix of the threads' names.
    """

    def __init__(self, size: int, name: str = "taskq-task") -> None:
        self._jobs: SimpleQueue[Job | None] = SimpleQueue()
        self._name = name
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        for _ in range(size):
            self.add_thread()

    def add_thread(self) -> None:
        """Start one more thread (to replace one a stuck job holds)."""
        with self._lock:
            t = threading.Thread(
                target=self._loop, name=f"{self._name}-{len(self._threads)}", daemon=True
            )
            self._threads.append(t)
        t.start()

    def submit(self, job: Job) -> None:
        """Run ``job()`` on a free thread (queued until one is free)."""
        self._jobs.put(job)

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception:
                log.exception("a job of the task thread pool raised")

    def shutdown(self, wait: bool, timeout: float | None = None) -> None:
        """Drop the jobs no thread has started, stop the threads, join them when ``wait``.

        A dropped job's run was handed back by the caller: running it now would run
        it twice.
        """
        dropped = 0
        while True:
            try:
                self._jobs.get_nowait()
            except Empty:
                break
            dropped += 1
        if dropped:
            log.info("dropped %d job(s) not started before shutdown", dropped)
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._jobs.put(None)
        if wait:
            for t in threads:
                t.join(timeout)


class LoopThread:
    """One event loop in a daemon thread of its own, for ``async def`` tasks; started
    on first use, so a worker that runs none never starts it."""

    def __init__(self, name: str = "taskq-async") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop (started now if it was not)."""
        if self._loop is None:
            loop = asyncio.new_event_loop()
            t = threading.Thread(target=loop.run_forever, name=self._name, daemon=True)
            t.start()
            self._loop, self._thread = loop, t
        return self._loop

    def stop(self) -> None:
        """Stop the loop, if started, and wait up to 5 s for its thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=5)

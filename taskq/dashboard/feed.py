"""The dashboard's events feed: ONE reader of the queues' events streams per process,
fanned out to every connected browser.

A background thread blocks on ``XREAD`` over every watched queue's events stream (on a
Redis Cluster, where each queue is its own hash tag, one blocking read per queue in
turn, as ``taskq events --follow`` does for partitions) and appends each entry it reads
to a bounded ring, in the order it read them. Browsers never cause a Redis read of
their own: each server-sent-events connection keeps only a cursor into the ring and
waits on an asyncio future the reader resolves when it appended something.

An entry's server-sent-events id is ``<stream id>@<queue>``. A browser that reconnects
sends it back as ``Last-Event-ID`` and gets what came after it, from the ring; one whose
id has fallen out of the ring (or that a restarted dashboard never saw, older than what
it loaded at start) is told to ``reset``: reload its views.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass, replace

from taskq.broker import Broker
from taskq.broker.connection import text
from taskq.errors import TaskqError
from taskq.protocol import PROGRESS_EVENT, EventField, split_event
from taskq.runview import NamedEvent, event_of
from taskq.tasknames import from_records

NameLookup = Callable[[Broker, str, MutableMapping[str, str | None]], None]

log = logging.getLogger("taskq.dashboard")

#: Entries of the events streams the ring keeps (each tells one run, or up to 16).
RING_ENTRIES = 4096
#: Entries of each queue's events stream loaded at start (the recent history).
HISTORY_ENTRIES = 200
#: Runs whose task name the feed remembers (from their Pending event) for their later events.
NAMED_RUNS = 50_000


@dataclass(frozen=True)
class Entry:
    """One events-stream entry in the ring: its position and the runs it tells."""

    seq: int  # the ring's own counter: strictly increasing in reading order
    key: tuple[int, int]  # the stream id as numbers (ms, sequence)
    sse_id: str
    events: tuple[NamedEvent, ...]


def stream_key(eid: str) -> tuple[int, int]:
    """A stream id ``ms-seq`` as a pair of ints, for ordering."""
    ms, _, seq = eid.partition("-")
    return int(ms), int(seq or 0)


def to_events(queue: str, eid: str, fields: dict[str, str]) -> tuple[NamedEvent, ...]:
    """The per-run events of one events-stream entry (Progress entries are left out)."""
    if fields.get(EventField.STATE) == PROGRESS_EVENT:
        return ()
    return tuple(event_of(queue, eid, f, None) for f in split_event(fields))


class Notifier:
    """Wakes the coroutines waiting for new entries, from the reader thread."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._future: asyncio.Future[None] | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Use ``loop`` (the server's event loop) from now on."""
        self._loop = loop

    def future(self) -> asyncio.Future[None]:
        """The future the next wake-up resolves (call on the loop, then check, then
        await it: a wake-up between the check and the await is not lost)."""
        if self._future is None or self._future.done():
            self._future = asyncio.get_running_loop().create_future()
        return self._future

    def notify(self) -> None:
        """Resolve the current future (thread-safe; a no-op before :meth:`bind`)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        if self._future is not None and not self._future.done():
            self._future.set_result(None)


class Feed:
    """The ring of recent events-stream entries and the thread that fills it.

    Args:
        broker: Redis access.
        queues: A callable giving the physical queues to watch now (read before each
            round of reads, so queues found later join).
        ring: How many entries to keep.
        history: How many entries of each queue to load when it joins.
        listeners: Called with each new entry's events (in the reader thread): the
            throughput and latency figures.
        names: Fills in the task names of runs from their records
            (:func:`taskq.tasknames.from_records`).
    """

    def __init__(
        self,
        broker: Broker,
        queues: Callable[[], Sequence[str]],
        *,
        ring: int = RING_ENTRIES,
        history: int = HISTORY_ENTRIES,
        listeners: Iterable[Callable[[Sequence[NamedEvent]], None]] = (),
        names: NameLookup = from_records,
    ) -> None:
        self.broker = broker
        self._names = names
        self._queues = queues
        self._history = history
        self._ring: deque[Entry] = deque(maxlen=ring)
        self._lock = threading.Lock()
        self._seq = 0
        self._lasts: dict[str, str] = {}  # queue -> last stream id read
        self._listeners = list(listeners)
        self._tasks: OrderedDict[str, str] = OrderedDict()  # run id -> task name ("": none)
        self.notifier = Notifier()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reads = 0  # XREAD calls made, for tests and the bench

    # -- the reader -----------------------------------------------------------------

    def start(self) -> None:
        """Load each queue's recent history, then start the reader thread."""
        self._join(self._queues())
        self._thread = threading.Thread(target=self._run, name="taskq-dashboard-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the reader to stop (it does within one blocking read) and the event
        streams to end."""
        self._stop.set()
        self.notifier.notify()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop.is_set()

    def _join(self, queues: Sequence[str]) -> None:
        """Start watching ``queues`` that are new: load their latest entries, merged by id."""
        new = [q for q in queues if q not in self._lasts]
        loaded: list[tuple[tuple[int, int], str, str, dict[str, str]]] = []
        for q in new:
            entries = self.broker.connection.xrevrange(self.broker.keys.events(q), self._history)
            self._lasts[q] = text(entries[0][0]) if entries else "0-0"
            for eid, fields in entries:
                e = text(eid)
                loaded.append((stream_key(e), q, e, {text(k): text(v) for k, v in fields.items()}))
        loaded.sort(key=lambda item: item[0])
        self._append([(q, e, f) for _, q, e, f in loaded])

    def _run(self) -> None:
        block = self.broker.settings.block_seconds
        while not self._stop.is_set():
            try:
                self._join(self._queues())
                self._read_once(block)
            except TaskqError as exc:  # Redis away: say so, and try again
                log.warning("events feed: %s", exc)
                self._stop.wait(1.0)
            except Exception:  # anything else: the feed must outlive it, but say what
                if not self._stop.is_set():
                    log.exception("events feed: unexpected error; reading again in 1 s")
                self._stop.wait(1.0)

    def _read_once(self, block: float) -> None:
        queues = list(self._lasts)
        if not queues:
            self._stop.wait(block)
            return
        if self.broker.connection.is_cluster:
            # Each queue is its own hash tag: one blocking read per queue in turn.
            for q in queues:
                self._read({q: self._lasts[q]}, block / len(queues))
        else:
            self._read({q: self._lasts[q] for q in queues}, block)

    def _read(self, lasts: dict[str, str], block: float) -> None:
        k = self.broker.keys
        streams = {k.events(q): after for q, after in lasts.items()}
        by_key = {k.events(q): q for q in lasts}
        self.reads += 1
        reply = self.broker.connection.xread(streams, 1000, max(1, int(block * 1000)))
        got = []
        for stream, entries in reply or ():
            q = by_key[text(stream)]
            for eid, fields in entries:
                e = text(eid)
                got.append((q, e, {text(f): text(v) for f, v in fields.items()}))
                self._lasts[q] = e
        self._append(got)

    def _append(self, got: Sequence[tuple[str, str, dict[str, str]]]) -> None:
        if not got:
            return
        converted = [(q, eid, to_events(q, eid, fields)) for q, eid, fields in got]
        self._look_up([ev for _, _, events in converted for ev in events])
        added = []
        with self._lock:
            for q, eid, events in converted:
                if not events:
                    continue
                self._seq += 1
                entry = Entry(self._seq, stream_key(eid), f"{eid}@{q}", self._named(events))
                self._ring.append(entry)
                added.append(entry)
        for listener in self._listeners:
            for entry in added:
                listener(entry.events)
        self.notifier.notify()

    def _look_up(self, events: Sequence[NamedEvent]) -> None:
        """Learn the task names of runs no event named yet (their Pending event came
        before this dashboard did) from their records: one round trip per queue, once
        per run (a record without one is remembered as such)."""
        unknown: dict[str, dict[str, str | None]] = {}
        for ev in events:
            if ev.task is not None:
                self._remember(ev.run_id, ev.task)
            elif ev.run_id and ev.run_id not in self._tasks:
                unknown.setdefault(ev.queue, {})[ev.run_id] = None
        for queue, runs in unknown.items():
            self._names(self.broker, queue, runs)
            for rid, task in runs.items():
                self._remember(rid, task or "")

    def _remember(self, run_id: str, task: str) -> None:
        self._tasks[run_id] = task
        self._tasks.move_to_end(run_id)
        if len(self._tasks) > NAMED_RUNS:
            self._tasks.popitem(last=False)

    def _named(self, events: tuple[NamedEvent, ...]) -> tuple[NamedEvent, ...]:
        """``events`` with the task names their runs' other events or records gave."""
        return tuple(
            ev
            if ev.task is not None or not (task := self._tasks.get(ev.run_id))
            else replace(ev, task=task)
            for ev in events
        )

    # -- what clients read ------------------------------------------------------------

    def head(self) -> int:
        """The newest entry's counter (0 when empty): a new client starts after it."""
        with self._lock:
            return self._seq

    def resume(self, last_event_id: str | None) -> int | None:
        """Where a client that last saw ``last_event_id`` goes on from: the counter after
        which to send, or None when what it missed is no longer held (it must reset).

        A new client (no id) starts at the head. An id still in the ring resumes right
        after it; an id not in the ring but not older than the ring's oldest entry (a
        dashboard restarted under an open page: it loaded the recent history at start)
        resumes after the entries at or before its stream id.
        """
        if not last_event_id:
            return self.head()
        eid = last_event_id.partition("@")[0]
        try:
            key = stream_key(eid)
        except ValueError:
            return None
        with self._lock:
            for entry in reversed(self._ring):
                if entry.sse_id == last_event_id:
                    return entry.seq
            if not self._ring:
                return self._seq
            if key < self._ring[0].key:
                return None
            before = [e.seq for e in self._ring if e.key <= key]
            return before[-1] if before else self._ring[0].seq - 1

    def since(self, cursor: int, limit: int = 500) -> tuple[list[Entry], bool]:
        """The entries after counter ``cursor`` (at most ``limit``), and whether some
        the client had not seen were dropped from the ring (then it must reset)."""
        with self._lock:
            if not self._ring or cursor >= self._seq:
                return [], False
            first = self._ring[0].seq
            lost = cursor < first - 1
            start = max(cursor + 1, first) - first
            out = [self._ring[i] for i in range(start, min(len(self._ring), start + limit))]
            return out, lost

    def recent(self, limit: int) -> list[NamedEvent]:
        """The newest ``limit`` per-run events held, newest first."""
        out: list[NamedEvent] = []
        with self._lock:
            for entry in reversed(self._ring):
                out.extend(reversed(entry.events))
                if len(out) >= limit:
                    break
        return out[:limit]

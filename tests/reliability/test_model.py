"""A model-based test of taskq's Lua scripts (D6 of shared/research/reliability.md §7.4).

A Hypothesis ``RuleBasedStateMachine`` drives the scripts directly through
:class:`taskq.broker.Broker` (enqueue, read + start, finish, retry, promote, reclaim
with a 1 ms lease, hand-back, renew, dead-letter of poison) against a private
``redis-server``, next to a pure-Python model of where each run is:

    backlog (one stream entry, not pending) | pending (one entry, in the PEL, with its
    owner and delivery count) | delayed (in the delay ZSET) | final | dead

Each run gets a priority level drawn from {0, 4, 9} (few levels, so that several runs
share one and the order between levels is exercised too) and keeps it for life: its
entry must be in its level's stream after enqueue, promote and hand-back, its
delay-queue member must carry the level's mark, and every call about a delivery
(start, finish, retry, renew, hand-back, dead-letter) names the delivery's level. A
read must return the backlog highest level first, entry order within a level, up to
the count asked for; a reclaim the pending entries in the same order. Entry ids are
per stream (two levels' streams can mint the same id in one millisecond), so the model
knows an entry by ``(level, entry id)``, never by its id alone.

Delays are 0 or 10 minutes and reclaims wait 2 ms first (every 1 ms lease has then
expired), so each step's outcome is deterministic, as Hypothesis needs to replay and
shrink. Two consumers interleave, so stale holders (a worker whose delivery was reclaimed)
try to finish or retry attempts that no longer hold the run: the model predicts the
fence. After every step the invariants compare Redis with the model, over every level's
stream and pending list (``Keyspace.streams``): every enqueued run is in exactly one
place (at most one stream entry per run, in its level's stream, never both in a stream
and delayed, a final run nowhere), each PEL only names entries of its own stream, the
record's state and attempt are the model's (so a final state never regresses and
attempts only grow).

``TASKQ_RELIABILITY=full`` runs 1,000 examples of up to 80 steps; the default 150 of 50.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import taskq
from taskq.broker import delay_mark
from taskq.keys import GROUP, LEVELS_SERVED
from taskq.message import decode_message, encode_outcome
from taskq.testing import RedisServerFactory
from tests.reliability.netapps import FULL, QUEUE, payload

pytestmark = pytest.mark.reliability

CONSUMERS = ("c1", "c2")
MAXDEL = 3  # deliveries allowed to a reclaimed entry before it is poison
FINAL = ("Completed", "Failed", "Cancelled")
RUNNING = ("Running", "Retrying")
LEVELS = (0, 4, 9)  # priority levels runs are given: few, so that they collide
STATS: Counter[str] = Counter()


@dataclass
class RunModel:
    payload: bytes
    state: str  # the record's expected 's'
    place: str  # backlog | pending | delayed | final | dead
    level: int = 0  # priority: the stream its entries go to, for the run's whole life
    attempt: int = 0
    eid: bytes | None = None  # current entry of its level's stream (learnt when it is made)
    owner: str | None = None  # consumer owning the pending entry
    deliveries: int = 0  # the PEL's delivery counter of the pending entry
    due: int | None = None  # delayed: due time, server ms


@dataclass(frozen=True)
class Holding:
    """A consumer's belief that it runs ``attempt`` of ``rid`` from entry ``eid`` of the
    stream of priority ``level``."""

    consumer: str
    level: int
    eid: bytes
    rid: str
    attempt: int


def _eid_key(eid: bytes) -> tuple[int, int]:
    ms, seq = eid.split(b"-")
    return int(ms), int(seq)


def _served(item: tuple[int, bytes | None, str]) -> tuple[int, int, int]:
    """Sort key of ``(level, entry id, run id)``: the order runs are served in."""
    level, eid, _ = item
    return (-level, *_eid_key(eid or b"0-0"))


def _by_level(
    items: list[tuple[int, bytes, str]],
) -> dict[int, list[tuple[int, bytes, str]]]:
    """Group deliveries by level, as the engine groups its script calls (by lane)."""
    out: dict[int, list[tuple[int, bytes, str]]] = {}
    for item in items:
        out.setdefault(item[0], []).append(item)
    return out


def _member(m: bytes) -> tuple[int, str]:
    """``(level, run id)`` of a delay-queue member: a payload, after its level's mark."""
    level = int(m[2:3]) if m.startswith(b"\xc1P") else 0
    return level, decode_message(m[len(delay_mark(level)) :]).run_id


def _rid(fields: dict[bytes, bytes]) -> str:
    return decode_message(fields[b"m"]).run_id


class ScriptMachine(RuleBasedStateMachine):
    url: ClassVar[str] = ""

    def __init__(self) -> None:
        super().__init__()
        self.client = redis.Redis.from_url(self.url)
        self.client.flushdb()
        self.app = taskq.App(self.url, prefix=f"model-{uuid.uuid4().hex[:6]}")
        self.broker = self.app.broker
        self.broker.consumer.ensure_group(QUEUE)
        self.k = self.app.keys
        self.runs: dict[str, RunModel] = {}
        self.holdings: list[Holding] = []
        self.dead = 0
        self.n = 0
        STATS["examples"] += 1

    def teardown(self) -> None:
        self.app.close()
        self.client.close()

    # -- helpers ------------------------------------------------------------------------

    def _pending_run(self, level: int, eid: bytes) -> RunModel | None:
        for r in self.runs.values():
            if r.place == "pending" and (r.level, r.eid) == (level, eid):
                return r
        return None

    def _start(self, consumer: str, items: list[tuple[int, bytes, str]], fresh: bool) -> None:
        """Start deliveries the consumer was just given, as the engine's admit does: one
        script call per level, naming that level's stream."""
        maxdel = 0 if fresh else MAXDEL
        for level, batch in _by_level(items).items():
            got = self.broker.consumer.start(
                QUEUE, consumer, [(eid, rid, maxdel, "") for _, eid, rid in batch], level
            )
            for (_, eid, rid), (kind, attempt, deliveries) in zip(batch, got, strict=True):
                r = self.runs[rid]
                if not fresh:
                    assert deliveries == r.deliveries
                if not fresh and r.deliveries > MAXDEL:
                    assert kind == 3, (kind, r)
                    fields = {b"m": r.payload}
                    self.broker.consumer.dead_letter(QUEUE, eid, fields, "poison", rid, level)
                    r.place, r.state, r.eid, r.owner = "dead", "Failed", None, None
                    self.dead += 1
                    STATS["poison dead-lettered"] += 1
                    continue
                retrying = r.state == "AwaitingRetry"
                # 6: a new attempt after the one before was recorded Crashed (its worker lost).
                assert kind == (4 if retrying else 6 if r.state in RUNNING else 1), (kind, r)
                if r.state in RUNNING:
                    STATS["crashed attempts"] += 1
                r.attempt += 1
                assert attempt == r.attempt
                r.state = "Retrying" if retrying else "Running"
                self.holdings.append(Holding(consumer, level, eid, rid, r.attempt))
                STATS["attempts started"] += 1
                STATS[f"attempts started at level {level}"] += 1

    def _take_holding(self, data: st.DataObject) -> Holding:
        h = data.draw(st.sampled_from(self.holdings))
        self.holdings.remove(h)
        return h

    def _holds(self, h: Holding) -> bool:
        r = self.runs[h.rid]
        return r.state in RUNNING and r.attempt == h.attempt

    # -- rules --------------------------------------------------------------------------

    @initialize(levels=st.lists(st.sampled_from(LEVELS), min_size=1, max_size=4))
    def some_runs(self, levels: list[int]) -> None:
        for level in levels:  # in one millisecond, most likely: entry ids collide
            self.enqueue("", level)

    @rule(due=st.sampled_from(["", "", "d0", "d600000"]), level=st.sampled_from(LEVELS))
    def enqueue(self, due: str, level: int) -> None:
        rid = f"run{self.n}"
        self.n += 1
        body = payload(rid)
        assert self.broker.producer.enqueue(QUEUE, [(rid, body, due)], level) == [1]
        if due:
            at = int(self.client.hget(self.k.run(QUEUE, rid), "due") or -1)
            self.runs[rid] = RunModel(body, "Scheduled", "delayed", level, due=at)
        else:
            self.runs[rid] = RunModel(body, "Pending", "backlog", level)
        STATS["enqueued"] += 1

    @precondition(lambda self: self.runs)
    @rule(data=st.data(), due=st.sampled_from(["", "d0"]), level=st.sampled_from(LEVELS))
    def enqueue_same_id_again(self, data: st.DataObject, due: str, level: int) -> None:
        rid = data.draw(st.sampled_from(sorted(self.runs)))
        assert self.broker.producer.enqueue(QUEUE, [(rid, self.runs[rid].payload, due)], level) == [
            0
        ]
        STATS["re-enqueues refused"] += 1

    @rule(
        consumer=st.sampled_from(CONSUMERS),
        count=st.integers(1, 4),
        start=st.sampled_from([True, True, False]),
    )
    def read(self, consumer: str, count: int, start: bool) -> None:
        entries = self.broker.consumer.read([QUEUE], consumer, count, None)
        backlog = sorted(
            ((r.level, r.eid, rid) for rid, r in self.runs.items() if r.place == "backlog"),
            key=_served,
        )
        assert {q for q, _, _, _ in entries} <= {QUEUE}
        got = [(level, eid, _rid(fields)) for _, eid, fields, level in entries]
        assert got == backlog[:count]
        for _, _, rid in got:
            r = self.runs[rid]
            r.place, r.owner, r.deliveries = "pending", consumer, 1
        if len({level for level, _, _ in got}) > 1:
            STATS["reads spanning levels"] += 1
        if start and got:
            self._start(consumer, got, fresh=True)
        else:
            STATS["reads not started (crash after XREADGROUP)"] += len(got)

    @rule(
        consumer=st.sampled_from(CONSUMERS),
        count=st.integers(1, 4),
        start=st.sampled_from([True, True, False]),
    )
    def reclaim(self, consumer: str, count: int, start: bool) -> None:
        time.sleep(0.002)  # every lease (1 ms) has expired: what is claimed is deterministic
        entries = self.broker.consumer.reclaim(QUEUE, consumer, 0.001, count)
        pending = sorted(
            ((r.level, r.eid, rid) for rid, r in self.runs.items() if r.place == "pending"),
            key=_served,
        )
        assert [(level, eid, _rid(f)) for _, eid, f, level in entries] == pending[:count]
        got = []
        for _, eid, fields, level in entries:
            rid = _rid(fields)
            r = self.runs[rid]
            assert r.place == "pending" and (r.level, r.eid) == (level, eid), (rid, r)
            r.owner = consumer
            r.deliveries += 1
            got.append((level, eid, rid))
        STATS["reclaimed"] += len(got)
        if start and got:
            self._start(consumer, got, fresh=False)

    @precondition(lambda self: self.holdings)
    @rule(data=st.data(), state=st.sampled_from(FINAL))
    def finish(self, data: st.DataObject, state: str) -> None:
        h = self._take_holding(data)
        r = self.runs[h.rid]
        expect = self._holds(h)
        outcome = encode_outcome(state, h.attempt)
        consumer = self.broker.consumer
        got = consumer.finish(
            consumer.finish_call(QUEUE, h.eid, h.rid, h.attempt, state, outcome, level=h.level)
        )
        assert got is expect
        if expect:
            r.state, r.place, r.eid, r.owner = state, "final", None, None
            STATS["finished"] += 1
        else:
            STATS["stale finishes fenced"] += 1

    @precondition(lambda self: self.holdings)
    @rule(data=st.data(), delay=st.sampled_from([0.0, 0.0, 600.0]))
    def retry(self, data: st.DataObject, delay: float) -> None:
        h = self._take_holding(data)
        r = self.runs[h.rid]
        expect = 1 if self._holds(h) else 0
        got = self.broker.consumer.retry(
            QUEUE,
            h.eid,
            h.rid,
            h.attempt,
            delay,
            r.payload,
            ("ValueError", "boom"),
            None,
            h.level,
        )
        assert got == expect
        if got:  # it keeps its level: the invariant checks the member, then the new entry
            at = int(self.client.hget(self.k.run(QUEUE, h.rid), "due") or -1)
            r.state, r.place, r.eid, r.owner, r.due = "AwaitingRetry", "delayed", None, None, at
            STATS["retries scheduled"] += 1
        else:
            STATS["stale retries fenced"] += 1

    @precondition(lambda self: self.holdings)
    @rule(data=st.data())
    def retry_now(self, data: st.DataObject) -> None:
        """A retry with no delay goes on in place: same delivery, same holder, next attempt."""
        h = self._take_holding(data)
        r = self.runs[h.rid]
        expect = 1 if self._holds(h) else 0
        got = self.broker.consumer.retry_now(QUEUE, h.rid, h.attempt, ("ValueError", "boom"), None)
        assert got == expect
        if got:  # the delivery stays pending to the same consumer, Retrying attempt n+1
            r.attempt += 1
            r.state = "Retrying"
            self.holdings.append(Holding(h.consumer, h.level, h.eid, h.rid, r.attempt))
            STATS["retries in place"] += 1
        else:
            STATS["stale retries in place fenced"] += 1

    @rule()
    def promote(self) -> None:
        moved, next_due, now = self.broker.delay.promote(QUEUE, 1000)
        delayed = {rid: r for rid, r in self.runs.items() if r.place == "delayed"}
        due = [rid for rid, r in delayed.items() if r.due is not None and r.due <= now]
        assert moved == len(due)
        for rid in due:  # to the stream of its level (the invariant checks which)
            self.runs[rid].place, self.runs[rid].eid = "backlog", None
            if self.runs[rid].state == "Scheduled":  # a retry stays AwaitingRetry
                self.runs[rid].state = "Pending"
        later = [r.due for rid, r in delayed.items() if rid not in due and r.due is not None]
        assert next_due == (min(later) if later else -1)
        STATS["promoted"] += moved

    @rule(consumer=st.sampled_from(CONSUMERS))
    def hand_back(self, consumer: str) -> None:
        """A stopping worker returns the runs it still holds: its latest holding per entry,
        in one script call per level (as the worker's shutdown groups them by lane).

        (A holding whose attempt was superseded is left out: a worker can hand such a one
        back only after reclaiming its entry and failing to start it, and then the script
        re-adds a run that another attempt holds, which leaves a stray entry once that
        attempt finishes; that narrow case is reported separately, not modelled.)
        """
        latest: dict[tuple[int, bytes], Holding] = {}
        for h in self.holdings:
            if h.consumer == consumer and self._holds(h):
                latest[h.level, h.eid] = h
        expect: Counter[int] = Counter()
        for h in latest.values():
            r = self.runs[h.rid]
            if r.place == "pending" and (r.level, r.eid, r.owner) == (h.level, h.eid, consumer):
                expect[h.level] += 1
                if self._holds(h):
                    r.state = "Pending"
                r.place, r.eid, r.owner = "backlog", None, None
        self.holdings = [h for h in self.holdings if h.consumer != consumer]
        for level in LEVELS_SERVED:
            items = [
                (h.eid, h.rid, h.attempt, self.runs[h.rid].payload)
                for h in latest.values()
                if h.level == level
            ]
            got = self.broker.consumer.handback(QUEUE, consumer, items, "model hand-back", level)
            assert got == expect[level], (level, items)
            STATS["handed back"] += got

    @rule(consumer=st.sampled_from(CONSUMERS))
    def renew(self, consumer: str) -> None:
        for level in LEVELS_SERVED:  # one script call per level, as the lease thread does
            eids = sorted(
                {h.eid for h in self.holdings if h.consumer == consumer and h.level == level},
                key=_eid_key,
            )
            lost = set(self.broker.consumer.renew(QUEUE, consumer, eids, level))
            expect = set()
            for eid in eids:
                r = self._pending_run(level, eid)
                if r is not None and r.owner != consumer:
                    expect.add(eid)
            assert lost == expect, level
            STATS["renewals reporting a lost lease"] += len(lost)

    # -- invariants ---------------------------------------------------------------------

    @invariant()
    def every_run_is_in_exactly_one_place(self) -> None:
        STATS["steps checked"] += 1
        streams = self.k.streams(QUEUE)
        pipe = self.client.pipeline(transaction=False)
        for stream in streams:
            pipe.xrange(stream)
            pipe.xpending_range(stream, GROUP, "-", "+", 100_000)
        replies = pipe.execute()
        entries: Counter[str] = Counter()
        at: dict[str, tuple[int, bytes]] = {}  # run id -> (level, id) of its stream entry
        pel: dict[tuple[int, bytes], dict[str, Any]] = {}  # (level, id) -> PEL record
        ids_seen: Counter[bytes] = Counter()
        for level in range(len(streams)):
            stream, pending = replies[2 * level], replies[2 * level + 1]
            for eid, fields in stream:
                rid = _rid(fields)
                entries[rid] += 1
                at[rid] = (level, eid)
                ids_seen[eid] += 1
            ids = {eid for eid, _ in stream}
            for p in pending:
                assert p["message_id"] in ids, f"a pending id with no entry in level {level}"
                pel[level, p["message_id"]] = p
        assert all(c == 1 for c in entries.values()), entries
        if any(c > 1 for c in ids_seen.values()):
            STATS["steps with one entry id in two levels' streams"] += 1
        members = self.client.zrange(self.k.delayed(QUEUE), 0, -1)
        delayed: Counter[str] = Counter(_member(m)[1] for m in members)
        assert all(c == 1 for c in delayed.values()), delayed
        assert not set(delayed) & set(entries), "a run both delayed and in a stream"
        places = {p: {rid for rid, r in self.runs.items() if r.place == p} for p in ("delayed",)}
        queued = {rid for rid, r in self.runs.items() if r.place in ("backlog", "pending")}
        assert set(entries) == queued
        assert set(delayed) == places["delayed"]
        for m in members:
            level, rid = _member(m)
            assert m == delay_mark(self.runs[rid].level) + self.runs[rid].payload, (rid, level)

        pipe = self.client.pipeline(transaction=False)
        for rid in self.runs:
            pipe.hmget(self.k.run(QUEUE, rid), "s", "a")
        for (rid, r), (s, a) in zip(self.runs.items(), pipe.execute(), strict=True):
            if r.place in ("backlog", "pending"):
                level, eid = at[rid]
                assert level == r.level, (rid, r, "entry in the stream of level", level)
                if r.eid is None:
                    r.eid = eid  # a new entry (enqueue, promote, hand-back)
                assert r.eid == eid, (rid, r)
                if r.place == "backlog":
                    assert (level, eid) not in pel, (rid, r)
                else:
                    p = pel[level, eid]
                    assert (p["consumer"].decode(), p["times_delivered"]) == (
                        r.owner,
                        r.deliveries,
                    ), (rid, r, p)
            elif r.place in ("final", "dead"):
                assert r.state in FINAL
            assert (s.decode() if s else None, int(a or 0)) == (r.state, r.attempt), (rid, r)
        assert self.client.xlen(self.k.dead(QUEUE)) == self.dead


@pytest.fixture(scope="module")
def model_url(redis_server_factory: RedisServerFactory) -> Iterator[str]:
    server = redis_server_factory()
    yield server.url


def test_scripts_keep_every_run_in_exactly_one_place(model_url: str) -> None:
    ScriptMachine.url = model_url
    STATS.clear()
    config: dict[str, Any] = {
        "max_examples": 1000 if FULL else 150,
        "stateful_step_count": 80 if FULL else 50,
    }
    run_state_machine_as_test(
        ScriptMachine,
        settings=settings(
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            **config,
        ),
    )
    print(f"\n[D-model] {config}: {dict(sorted(STATS.items()))}")
    assert STATS["attempts started"] > 0 and STATS["finished"] > 0

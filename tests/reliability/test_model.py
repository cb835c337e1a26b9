"""A model-based test of taskq's Lua scripts (D6 of shared/research/reliability.md §7.4).

A Hypothesis ``RuleBasedStateMachine`` drives the scripts directly through
:class:`taskq.broker.Broker` (enqueue, read + start, finish, retry, promote, reclaim
with a 1 ms lease, hand-back, renew, dead-letter of poison) against a private
``redis-server``, next to a pure-Python model of where each run is:

    backlog (one stream entry, not pending) | pending (one entry, in the PEL, with its
    owner and delivery count) | delayed (in the delay ZSET) | final | dead

Delays are 0 or 10 minutes and reclaims wait 2 ms first (every 1 ms lease has then
expired), so each step's outcome is deterministic, as Hypothesis needs to replay and
shrink. Two consumers interleave, so stale holders (a worker whose delivery was reclaimed)
try to finish or retry attempts that no longer hold the run: the model predicts the
fence. After every step the invariants compare Redis with the model: every enqueued run
is in exactly one place (at most one stream entry per run, never both in the stream and
delayed, a final run nowhere), the PEL only names stream entries, the record's state and
attempt are the model's (so a final state never regresses and attempts only grow).

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
from taskq.keys import GROUP
from taskq.message import decode_message, encode_outcome
from taskq.testing import RedisServerFactory
from tests.reliability.netapps import FULL, QUEUE, payload

pytestmark = pytest.mark.reliability

CONSUMERS = ("c1", "c2")
MAXDEL = 3  # deliveries allowed to a reclaimed entry before it is poison
FINAL = ("Completed", "Failed", "Cancelled")
RUNNING = ("Running", "Retrying")
STATS: Counter[str] = Counter()


@dataclass
class RunModel:
    payload: bytes
    state: str  # the record's expected 's'
    place: str  # backlog | pending | delayed | final | dead
    attempt: int = 0
    eid: bytes | None = None  # current stream entry (learnt from Redis when it is made)
    owner: str | None = None  # consumer owning the pending entry
    deliveries: int = 0  # the PEL's delivery counter of the pending entry
    due: int | None = None  # delayed: due time, server ms


@dataclass(frozen=True)
class Holding:
    """A consumer's belief that it runs ``attempt`` of ``rid`` from entry ``eid``."""

    consumer: str
    eid: bytes
    rid: str
    attempt: int


def _eid_key(eid: bytes) -> tuple[int, int]:
    ms, seq = eid.split(b"-")
    return int(ms), int(seq)


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
        self.broker.ensure_group(QUEUE)
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

    def _pending_run(self, eid: bytes) -> RunModel | None:
        for r in self.runs.values():
            if r.place == "pending" and r.eid == eid:
                return r
        return None

    def _start(self, consumer: str, items: list[tuple[bytes, str]], fresh: bool) -> None:
        """Start deliveries the consumer was just given, as the engine's admit does."""
        maxdel = 0 if fresh else MAXDEL
        got = self.broker.start(QUEUE, consumer, [(eid, rid, maxdel, "") for eid, rid in items])
        for (eid, rid), (kind, attempt, deliveries) in zip(items, got, strict=True):
            r = self.runs[rid]
            if not fresh:
                assert deliveries == r.deliveries
            if not fresh and r.deliveries > MAXDEL:
                assert kind == 3, (kind, r)
                outcome = encode_outcome("Failed", 0)
                fields = {b"m": r.payload}
                self.broker.dead_letter(QUEUE, eid, fields, "poison", rid, outcome)
                r.place, r.state, r.eid, r.owner = "dead", "Failed", None, None
                self.dead += 1
                STATS["poison dead-lettered"] += 1
                continue
            assert kind == (4 if r.state == "AwaitingRetry" else 1), (kind, r)
            if r.state in RUNNING:
                STATS["crashed attempts"] += 1
            r.attempt += 1
            assert attempt == r.attempt
            r.state = "Running" if r.attempt == 1 else "Retrying"
            self.holdings.append(Holding(consumer, eid, rid, r.attempt))
            STATS["attempts started"] += 1

    def _take_holding(self, data: st.DataObject) -> Holding:
        h = data.draw(st.sampled_from(self.holdings))
        self.holdings.remove(h)
        return h

    def _holds(self, h: Holding) -> bool:
        r = self.runs[h.rid]
        return r.state in RUNNING and r.attempt == h.attempt

    # -- rules --------------------------------------------------------------------------

    @initialize(n=st.integers(1, 4))
    def some_runs(self, n: int) -> None:
        for _ in range(n):
            self.enqueue("")

    @rule(due=st.sampled_from(["", "", "d0", "d600000"]))
    def enqueue(self, due: str) -> None:
        rid = f"run{self.n}"
        self.n += 1
        body = payload(rid)
        assert self.broker.enqueue(QUEUE, [(rid, body, due)]) == [1]
        if due:
            at = int(self.client.hget(self.k.run(QUEUE, rid), "due") or -1)
            self.runs[rid] = RunModel(body, "Scheduled", "delayed", due=at)
        else:
            self.runs[rid] = RunModel(body, "Pending", "backlog")
        STATS["enqueued"] += 1

    @precondition(lambda self: self.runs)
    @rule(data=st.data(), due=st.sampled_from(["", "d0"]))
    def enqueue_same_id_again(self, data: st.DataObject, due: str) -> None:
        rid = data.draw(st.sampled_from(sorted(self.runs)))
        assert self.broker.enqueue(QUEUE, [(rid, self.runs[rid].payload, due)]) == [0]
        STATS["re-enqueues refused"] += 1

    @rule(
        consumer=st.sampled_from(CONSUMERS),
        count=st.integers(1, 4),
        start=st.sampled_from([True, True, False]),
    )
    def read(self, consumer: str, count: int, start: bool) -> None:
        entries = self.broker.read([QUEUE], consumer, count, None)
        backlog = sorted(
            ((r.eid, rid) for rid, r in self.runs.items() if r.place == "backlog"),
            key=lambda x: _eid_key(x[0] or b"0-0"),
        )
        got = [(eid, _rid(fields)) for _, eid, fields, _ in entries]
        assert got == backlog[:count]
        for _, rid in got:
            r = self.runs[rid]
            r.place, r.owner, r.deliveries = "pending", consumer, 1
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
        entries = self.broker.reclaim(QUEUE, consumer, 0.001, count)
        pending = sorted(
            ((r.eid, rid) for rid, r in self.runs.items() if r.place == "pending"),
            key=lambda x: _eid_key(x[0] or b"0-0"),
        )
        assert [(eid, _rid(f)) for _, eid, f, _ in entries] == pending[:count]
        got = []
        for _, eid, fields, _ in entries:
            rid = _rid(fields)
            r = self.runs[rid]
            assert r.place == "pending" and r.eid == eid, (rid, r)
            r.owner = consumer
            r.deliveries += 1
            got.append((eid, rid))
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
        assert self.broker.finish(QUEUE, h.eid, h.rid, h.attempt, state, outcome) is expect
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
        got = self.broker.retry(
            QUEUE, h.eid, h.rid, h.attempt, delay, r.payload, ("ValueError", "boom"), None
        )
        assert got == expect
        if got:
            at = int(self.client.hget(self.k.run(QUEUE, h.rid), "due") or -1)
            r.state, r.place, r.eid, r.owner, r.due = "AwaitingRetry", "delayed", None, None, at
            STATS["retries scheduled"] += 1
        else:
            STATS["stale retries fenced"] += 1

    @rule()
    def promote(self) -> None:
        moved, next_due, now = self.broker.promote(QUEUE, 1000)
        delayed = {rid: r for rid, r in self.runs.items() if r.place == "delayed"}
        due = [rid for rid, r in delayed.items() if r.due is not None and r.due <= now]
        assert moved == len(due)
        for rid in due:
            self.runs[rid].place, self.runs[rid].eid = "backlog", None
        later = [r.due for rid, r in delayed.items() if rid not in due and r.due is not None]
        assert next_due == (min(later) if later else -1)
        STATS["promoted"] += moved

    @rule(consumer=st.sampled_from(CONSUMERS))
    def hand_back(self, consumer: str) -> None:
        """A stopping worker returns the runs it still holds: its latest holding per entry.

        (A holding whose attempt was superseded is left out: a worker can hand such a one
        back only after reclaiming its entry and failing to start it, and then the script
        re-adds a run that another attempt holds, which leaves a stray entry once that
        attempt finishes; that narrow case is reported separately, not modelled.)
        """
        latest: dict[bytes, Holding] = {}
        for h in self.holdings:
            if h.consumer == consumer and self._holds(h):
                latest[h.eid] = h
        items = [(h.eid, h.rid, h.attempt, self.runs[h.rid].payload) for h in latest.values()]
        expect = 0
        for h in latest.values():
            r = self.runs[h.rid]
            if r.place == "pending" and r.eid == h.eid and r.owner == consumer:
                expect += 1
                if self._holds(h):
                    r.state = "Pending"
                r.place, r.eid, r.owner = "backlog", None, None
        self.holdings = [h for h in self.holdings if h.consumer != consumer]
        assert self.broker.handback(QUEUE, consumer, items, "model hand-back") == expect
        STATS["handed back"] += expect

    @rule(consumer=st.sampled_from(CONSUMERS))
    def renew(self, consumer: str) -> None:
        eids = sorted({h.eid for h in self.holdings if h.consumer == consumer}, key=_eid_key)
        lost = set(self.broker.renew(QUEUE, consumer, eids))
        expect = set()
        for eid in eids:
            r = self._pending_run(eid)
            if r is not None and r.owner != consumer:
                expect.add(eid)
        assert lost == expect
        STATS["renewals reporting a lost lease"] += len(lost)

    # -- invariants ---------------------------------------------------------------------

    @invariant()
    def every_run_is_in_exactly_one_place(self) -> None:
        STATS["steps checked"] += 1
        stream = self.client.xrange(self.k.stream(QUEUE))
        entries: Counter[str] = Counter()
        eid_of: dict[str, bytes] = {}
        for eid, fields in stream:
            rid = _rid(fields)
            entries[rid] += 1
            eid_of[rid] = eid
        assert all(c == 1 for c in entries.values()), entries
        pel = {
            p["message_id"]: p
            for p in self.client.xpending_range(self.k.stream(QUEUE), GROUP, "-", "+", 100_000)
        }
        assert set(pel) <= {eid for eid, _ in stream}, "a pending id with no stream entry"
        delayed: Counter[str] = Counter(
            decode_message(m).run_id for m in self.client.zrange(self.k.delayed(QUEUE), 0, -1)
        )
        assert all(c == 1 for c in delayed.values()), delayed
        assert not set(delayed) & set(entries), "a run both delayed and in the stream"
        places = {p: {rid for rid, r in self.runs.items() if r.place == p} for p in ("delayed",)}
        queued = {rid for rid, r in self.runs.items() if r.place in ("backlog", "pending")}
        assert set(entries) == queued
        assert set(delayed) == places["delayed"]

        pipe = self.client.pipeline(transaction=False)
        for rid in self.runs:
            pipe.hmget(self.k.run(QUEUE, rid), "s", "a")
        for (rid, r), (s, a) in zip(self.runs.items(), pipe.execute(), strict=True):
            if r.place in ("backlog", "pending"):
                if r.eid is None:
                    r.eid = eid_of[rid]  # a new entry (enqueue, promote, hand-back)
                assert r.eid == eid_of[rid], (rid, r)
                if r.place == "backlog":
                    assert r.eid not in pel, (rid, r)
                else:
                    p = pel[r.eid]
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

"""Hostile and malformed stream entries (M1, X1, X2 of shared/research/reliability.md §7.5-7.6).

Entries are written raw with redis-py ``XADD``, bypassing the client, interleaved with
valid runs, and consumed by a real ``taskq worker`` process. Checked:

* every malformed or hostile entry is dead-lettered with a reason (one dead entry per
  injected entry, copied fields intact);
* nothing is unpickled (a pickle whose loading would create a canary file) and nothing is
  imported by a name found in a message (a module whose import would create a canary);
* valid runs keep flowing and all complete; runs of a known task with the wrong arguments
  end Failed; replayed copies of finished runs are not executed again;
* the worker process never exits and logs no traceback.
"""

from __future__ import annotations

import pickle
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis

import taskq
from taskq.testing import RedisServerFactory, run_burst
from tests.reliability import netapps
from tests.reliability.netapps import (
    QUEUE,
    Pool,
    enqueue,
    payload,
    read_ledger,
    size,
    wait_all,
    worker_env,
)

pytestmark = pytest.mark.reliability

WORK = netapps.work.name
MIB = 1 << 20


class _Trap:
    """Unpickling an instance of this calls ``open(path, "w")``: it creates the canary."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def call(run_id: Any, task: Any, args: Any = (), kwargs: Any = None, meta: Any = None) -> bytes:
    """A message-shaped payload, whatever the types (``pack`` would refuse some)."""
    args = list(args) if isinstance(args, tuple) else args
    return msgpack.packb([1, run_id, task, args, {} if kwargs is None else kwargs, meta])


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def hostile_entries(
    tag: str, pickle_blob: bytes, canary_module: str, oversize: bool
) -> list[tuple[str, dict[bytes, bytes], str]]:
    """``(kind, fields, expected reason fragment)`` for one round of the flood."""
    rid = f"{tag}-{uuid.uuid4().hex[:8]}"
    valid = payload(rid)
    entries = [
        ("pickle blob", {b"m": pickle_blob}, "undecodable"),
        ("pickle blob, other field", {b"p": pickle_blob}, "no 'm' payload field"),
        ("unknown task", {b"m": call(rid + "u", "no.such.task")}, "no task named"),
        ("os.system", {b"m": call(rid + "o", "os.system", ["touch pwned"])}, "no task named"),
        ("builtins.eval", {b"m": call(rid + "e", "builtins.eval", ["1+1"])}, "no task named"),
        ("import by name", {b"m": call(rid + "i", f"{canary_module}.boom")}, "no task named"),
        ("import by spec", {b"m": call(rid + "s", f"{canary_module}:boom")}, "no task named"),
        ("str32 of 4 GiB", {b"m": b"\xdb\xff\xff\xff\xff" + b"abc"}, "undecodable"),
        ("bin32 of 4 GiB", {b"m": b"\xc6\xff\xff\xff\xff" + b"abc"}, "undecodable"),
        ("array32 of 4 G", {b"m": b"\xdd\xff\xff\xff\xff\xc0"}, "undecodable"),
        ("map32 of 4 G", {b"m": b"\xdf\xff\xff\xff\xff\xc0\xc0"}, "undecodable"),
        ("10,000-deep array", {b"m": b"\x91" * 10_000 + b"\xc0"}, "undecodable"),
        ("100-deep argument", {b"m": call(rid + "d", WORK, [nested(100)])}, "nested deeper"),
        ("wrong field name", {b"msg": valid}, "no 'm' payload field"),
        ("upper-case field", {b"M": valid}, "no 'm' payload field"),
        ("not msgpack", {b"m": b"\xc1\xc1 not msgpack"}, "undecodable"),
        ("empty payload", {b"m": b""}, "undecodable"),
        ("truncated", {b"m": valid[:-3]}, "undecodable"),
        ("trailing bytes", {b"m": valid + b"\xc0"}, "undecodable"),
        ("invalid UTF-8", {b"m": b"\x96\x01\xa2\xff\xfe\xa1x\x90\x80\xc0"}, "undecodable"),
        ("integer map key", {b"m": call(rid + "k", WORK, [], {1: 2})}, "undecodable"),
        ("version 2", {b"m": msgpack.packb([2, rid + "v", WORK, [], {}, None])}, "not a taskq"),
        ("a map", {b"m": msgpack.packb({"fn": WORK, "args": []})}, "not a taskq"),
        ("5 elements", {b"m": msgpack.packb([1, rid + "5", WORK, [], {}])}, "not a taskq"),
        ("integer run id", {b"m": call(7, WORK, ["x"])}, "no valid run id"),
        ("empty task name", {b"m": call(rid + "n", "", ["x"])}, "no valid run id"),
        ("args as a map", {b"m": call(rid + "a", WORK, {"key": "x"})}, "args must be"),
        ("300 arguments", {b"m": call(rid + "3", WORK, list(range(300)))}, "arguments"),
        ("meta as a list", {b"m": call(rid + "l", WORK, [rid], {}, [1])}, "meta must be"),
    ]
    if oversize:
        big = call(rid + "b", WORK, ["x" * MIB])
        entries.append(("1 MiB + payload", {b"m": big}, "exceeds"))
    return entries


@pytest.fixture
def canaries(tmp_path: Path) -> tuple[Path, Path, str, Path]:
    """``(pickle canary, import canary, canary module name, its directory)``."""
    pickle_canary = tmp_path / "unpickled.canary"
    import_canary = tmp_path / "imported.canary"
    module = f"taskq_canary_{uuid.uuid4().hex[:8]}"
    moddir = tmp_path / "canarymods"
    moddir.mkdir()
    (moddir / f"{module}.py").write_text(
        f"open({str(import_canary)!r}, 'w').close()\n\n\ndef boom():\n    return 0\n"
    )
    return pickle_canary, import_canary, module, moddir


def test_hostile_flood_is_dead_lettered_and_valid_runs_flow(
    redis_server_factory: RedisServerFactory,
    tmp_path: Path,
    canaries: tuple[Path, Path, str, Path],
) -> None:
    pickle_canary, import_canary, module, moddir = canaries
    rounds = size(200, 2_000)
    server = redis_server_factory()
    prefix = f"hi-{uuid.uuid4().hex[:8]}"
    ledger = tmp_path / "ledger.txt"
    env = worker_env(server.url, prefix, ledger, PYTHONPATH=str(moddir))
    producer = taskq.App(server.url, prefix=prefix)
    client = redis.Redis.from_url(server.url)
    stream = producer.keys.stream(QUEUE)
    blob = pickle.dumps(_Trap(str(pickle_canary)))
    assert b"open" in blob or b"io" in blob  # it names a callable to run on load
    pool = Pool(env, processes=1, concurrency=4, name="hostile-input worker")
    try:
        pool.wait_ready()
        injected: dict[bytes, tuple[str, str]] = {}  # entry id -> (kind, expected reason)
        valid, failing, meta_runs = [], [], []
        t0 = time.monotonic()
        for i in range(rounds):
            rid = f"ok{i:04d}-{uuid.uuid4().hex[:6]}"
            valid.append(rid)
            enqueue(producer, [rid])
            pipe = client.pipeline(transaction=False)
            entries = hostile_entries(f"h{i}", blob, module, oversize=i % 50 == 0)
            for _, fields, _ in entries:
                pipe.xadd(stream, fields)  # type: ignore[arg-type]
            for (kind, _, reason), eid in zip(entries, pipe.execute(), strict=True):
                injected[eid] = (kind, reason)
            # A known task called wrongly, and one with hostile-but-decodable meta.
            bad = f"arity{i:04d}-{uuid.uuid4().hex[:6]}"
            failing.append(bad)
            producer.broker.producer.enqueue(QUEUE, [(bad, call(bad, WORK, [1, 2, 3, 4]), "")])
            odd = f"meta{i:04d}-{uuid.uuid4().hex[:6]}"
            meta_runs.append(odd)
            meta = {"timeout_seconds": "soon", "retries": [], "result_ttl": -1, "x": nested(20)}
            producer.broker.producer.enqueue(QUEUE, [(odd, call(odd, WORK, [odd], {}, meta), "")])
        flooded = time.monotonic()
        sentinel = [f"last-{uuid.uuid4().hex[:6]}"]
        enqueue(producer, sentinel)
        assert wait_all(producer, sentinel + valid + meta_runs, 120) == []
        drained = time.monotonic()
        failed = [producer.broker.producer.run_record(QUEUE, rid).get("s") for rid in failing]

        # Replays of finished runs: never executed again.
        replayed = valid[: min(20, len(valid))]
        for rid in replayed:
            client.xadd(stream, {b"m": payload(rid)})
        sentinel2 = [f"last2-{uuid.uuid4().hex[:6]}"]
        enqueue(producer, sentinel2)
        assert wait_all(producer, sentinel2, 60) == []

        dead = client.xrange(producer.keys.dead(QUEUE))
        reasons = {f[b"id"]: f[b"reason"].decode() for _, f in dead}
        executions, _ = read_ledger(ledger)
        by_kind: Counter[str] = Counter(kind for kind, _ in injected.values())
        wrong = {
            eid: (kind, reasons.get(eid))
            for eid, (kind, want) in injected.items()
            if want not in reasons.get(eid, "")
        }
        intact = all(
            any(k in (b"m", b"p", b"msg", b"M") for k in f) for _, f in dead if f[b"id"] in injected
        )
        rate = (len(injected) + 3 * rounds) / (drained - t0)
        print(
            f"\n[M-hostile] {len(injected)} hostile entries of {len(by_kind)} kinds "
            f"({rounds} of each, {by_kind['1 MiB + payload']} oversize) interleaved with "
            f"{rounds} valid runs, {rounds} wrong-arity runs, {rounds} hostile-meta runs; "
            f"flood written in {flooded - t0:.1f} s, all handled after {drained - t0:.1f} s "
            f"({rate:.0f} entries/s)"
            f"\n  dead-lettered {len(dead)}; wrong or missing reasons {len(wrong)}; wrong-arity "
            f"runs {dict(Counter(failed))}; replays executed again "
            f"{sum(executions[r] - 1 for r in replayed)}; canaries "
            f"{[p.name for p in (pickle_canary, import_canary) if p.exists()] or 'none'}"
        )
        for kind in list(by_kind)[:3]:
            eid = next(e for e, (k, _) in injected.items() if k == kind)
            print(f"  e.g. {kind}: {reasons.get(eid)!r}")

        assert not pickle_canary.exists(), "taskq unpickled a payload"
        assert not import_canary.exists(), "taskq imported a module named in a message"
        assert len(dead) == len(injected)
        assert wrong == {}
        assert intact
        assert all(executions[rid] == 1 for rid in valid + meta_runs)
        assert failed == ["Failed"] * rounds
        assert producer.broker.inspect.queue_sizes(QUEUE) == (0, 0)
        assert pool.alive and pool.matching("exited with") == []
        # The only tracebacks are those logged with the wrong-arity runs' final failures
        # (taskq.engine ERROR "... failed: TypeError ..."): nothing else raised.
        final_failures = pool.matching("taskq.engine ERROR task ")
        assert len(final_failures) == rounds, pool.tail()
        assert all("TypeError" in line for line in final_failures), pool.tail()
        assert len(pool.matching("Traceback")) == rounds, pool.tail()
    finally:
        code = pool.stop()
        producer.close()
        client.close()
    assert code == 0, pool.tail()


def test_msgpack_ext_types_are_dead_lettered(redis_server_factory: RedisServerFactory) -> None:
    server = redis_server_factory()
    app = taskq.App(server.url, prefix=f"ext-{uuid.uuid4().hex[:8]}")
    seen: list[Any] = []

    @app.task
    def take(value: Any) -> None:
        seen.append(type(value).__name__)

    client = redis.Redis.from_url(server.url)
    for value in (msgpack.ExtType(42, b"\x80\x04pickle?"), msgpack.Timestamp(1, 0)):
        rid = f"ext-{uuid.uuid4().hex[:6]}"
        app.broker.execute("HSET", app.keys.run(QUEUE, rid), "s", "Pending")
        client.xadd(app.keys.stream(QUEUE), {b"m": call(rid, take.name, [value])})
    worker = threading.Thread(target=run_burst, args=(app,), daemon=True)
    worker.start()
    worker.join(30)
    dead = client.xlen(app.keys.dead(QUEUE))
    print(f"\n[M-ext] task saw {seen}; dead-lettered {dead} of 2")
    client.close()
    app.close()
    assert seen == [] and dead == 2

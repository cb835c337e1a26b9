"""Tests for taskq.localcluster and taskq.localsentinel, with redis-py only.

One 3-master cluster is shared by the module (about 2 s to start); the 1-master,
replica and sentinel set-ups are started by the tests that need them.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import AskError, ClusterCrossSlotError, MovedError
from redis.sentinel import Sentinel

from taskq.localcluster import LocalCluster
from taskq.localredis import quick_client
from taskq.testing import RedisClusterFactory, RedisSentinelFactory

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not on PATH"),
]

SAME_SLOT_SCRIPT = "redis.call('SET', KEYS[1], 1); redis.call('SET', KEYS[2], 2); return 1"


@pytest.fixture(scope="module")
def cluster3() -> Iterator[LocalCluster]:
    with LocalCluster(masters=3) as cluster:
        yield cluster


@pytest.fixture
def rc(cluster3: LocalCluster) -> Iterator[RedisCluster]:
    client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in cluster3.masters])
    yield client
    client.close()


def _node(port: int) -> redis.Redis:
    return quick_client(f"redis://127.0.0.1:{port}/0", 5.0)


def test_one_master_cluster_enforces_crossslot(
    redis_cluster_factory: RedisClusterFactory,
) -> None:
    cluster = redis_cluster_factory()
    assert cluster.url == f"redis+cluster://127.0.0.1:{cluster.masters[0]}/0"
    assert cluster.expected_view() == ((0, 16383, cluster.masters[0], ()),)
    node = _node(cluster.masters[0])
    try:
        assert node.eval(SAME_SLOT_SCRIPT, 2, "a{x}", "b{x}") == 1  # one tag: one slot, allowed
        with pytest.raises(ClusterCrossSlotError, match="same slot"):
            node.eval(SAME_SLOT_SCRIPT, 2, "a{x}", "b{y}")
    finally:
        node.close()


def test_three_masters_split_the_slots_like_partitions_expect(
    cluster3: LocalCluster, rc: RedisCluster
) -> None:
    m0, m1, m2 = cluster3.masters
    assert cluster3.url == f"redis+cluster://127.0.0.1:{m0},127.0.0.1:{m1},127.0.0.1:{m2}/0"
    # 16384*i//3, the split taskq.partitions salts its tags into.
    expected = ((0, 5460, m0, ()), (5461, 10921, m1, ()), (10922, 16383, m2, ()))
    for port in cluster3.ports:
        node = _node(port)
        try:
            assert node.cluster("info")["cluster_state"] == "ok"
            slots = node.execute_command("CLUSTER", "SLOTS")
            view = sorted((int(r[0]), int(r[1]), int(r[2][1]), ()) for r in slots)
        finally:
            node.close()
        assert tuple(view) == expected == cluster3.expected_view()
    for slot in (0, 5460, 5461, 10921, 10922, 16383):
        assert rc.nodes_manager.get_node_from_slot(slot).port == cluster3.node_for_slot(slot)


def test_key_written_through_rediscluster_is_on_its_master(
    cluster3: LocalCluster, rc: RedisCluster
) -> None:
    keys = [f"split:{{t{i}}}" for i in range(30)]
    for key in keys:
        rc.set(key, key)
    owners = {cluster3.node_for_slot(rc.keyslot(k)) for k in keys}
    assert owners == set(cluster3.masters)  # 30 tags reach all three masters
    for key in keys:
        assert rc.get(key) == key.encode()
        node = _node(cluster3.node_for_slot(rc.keyslot(key)))
        try:
            assert node.get(key) == key.encode()  # held by the master we say owns it
        finally:
            node.close()


def test_move_slot_keeps_a_stream_group_and_its_pending_entries(
    cluster3: LocalCluster, rc: RedisCluster
) -> None:
    stream = "taskq:{moving}:stream"
    slot = rc.keyslot(stream)
    rc.xgroup_create(stream, "workers", id="0", mkstream=True)
    for i in range(10):
        rc.xadd(stream, {"i": i})
    rc.xreadgroup("workers", "w1", {stream: ">"}, count=4)
    assert rc.xpending(stream, "workers")["pending"] == 4
    source = cluster3.node_for_slot(slot)
    target = next(p for p in cluster3.masters if p != source)

    assert cluster3.move_slot(slot, target) == 1
    assert cluster3.node_for_slot(slot) == target

    pending = rc.xpending(stream, "workers")  # rc still routes to the source: follows MOVED
    assert pending["pending"] == 4
    assert pending["consumers"] == [{"name": b"w1", "pending": 4}]
    assert rc.xlen(stream) == 10
    assert rc.nodes_manager.get_node_from_slot(slot).port == target
    old = _node(source)
    try:
        with pytest.raises(MovedError, match=f"^{slot} 127.0.0.1:{target}$"):
            old.xlen(stream)
    finally:
        old.close()


def test_move_slot_while_a_client_writes_loses_nothing(
    cluster3: LocalCluster, rc: RedisCluster
) -> None:
    tag = "{busy}"
    slot = rc.keyslot(tag)
    for i in range(200):
        rc.set(f"{tag}:old{i}", i)
    written: list[str] = []
    stop = threading.Event()

    def write() -> None:
        writer = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", cluster3.masters[0])])
        try:
            i = 0
            while not stop.is_set() or i < 50:
                key = f"{tag}:new{i}"
                writer.set(key, i)  # ASK to the target once the source lacks the key
                written.append(key)
                i += 1
        finally:
            writer.close()

    source = cluster3.node_for_slot(slot)
    target = next(p for p in cluster3.masters if p != source)
    thread = threading.Thread(target=write)
    thread.start()
    try:
        move = cluster3.begin_move(slot, target)
        while move.migrate(batch=10):
            pass  # small batches: the writer runs between them
        src = _node(source)
        try:
            with pytest.raises(AskError, match=f"^{slot} 127.0.0.1:{target}$"):
                src.get(f"{tag}:old0")  # migrated: the source redirects, once
        finally:
            src.close()
        move.finish()
    finally:
        stop.set()
        thread.join()
    assert len(written) >= 50
    for i in range(200):
        assert rc.get(f"{tag}:old{i}") == str(i).encode()
    for key in written:
        assert rc.exists(key) == 1, key
    for port, count in ((source, 0), (target, 200 + len(written))):
        node = _node(port)
        try:
            assert node.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == count
        finally:
            node.close()


def test_cluster_failover_promotes_the_replica(
    redis_cluster_factory: RedisClusterFactory,
) -> None:
    cluster = redis_cluster_factory(masters=1, replicas_per_master=1)
    (master,) = cluster.masters
    (replica,) = cluster.replicas_of(master)
    client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", master)])
    try:
        client.set("f{x}", "before")
        assert client.wait(1, 2000, target_nodes=client.get_primaries()) == 1

        assert cluster.failover(master) == replica
        assert cluster.masters == [replica]
        assert cluster.replicas_of(replica) == [master]
        assert client.get("f{x}") == b"before"
        client.set("f{x}", "after")
    finally:
        client.close()
    new = _node(replica)
    try:
        assert new.info("replication")["role"] == "master"
        assert new.get("f{x}") == b"after"
    finally:
        new.close()


def _sentinel_client(port: int) -> redis.Redis:
    sentinel = Sentinel([("127.0.0.1", port)], socket_timeout=2.0)
    master: redis.Redis = sentinel.master_for("mymaster", socket_timeout=2.0)
    return master


def test_sentinel_failover_moves_writes_and_keeps_the_pel(
    redis_sentinel_factory: RedisSentinelFactory,
) -> None:
    sentinel = redis_sentinel_factory()
    assert sentinel.url == f"redis+sentinel://127.0.0.1:{sentinel.port}/mymaster/0"
    first = sentinel.master_port
    client = _sentinel_client(sentinel.port)
    try:
        client.xgroup_create("s", "g", id="0", mkstream=True)
        client.xadd("s", {"n": 1})
        client.xadd("s", {"n": 2})
        client.xreadgroup("g", "w1", {"s": ">"}, count=1)
        assert client.wait(1, 2000) == 1  # replicated before the switch: not lost

        second = sentinel.failover()
        assert second != first == sentinel.replica_port
        assert sentinel.sentinel_master() == ("127.0.0.1", second)
        client.xadd("s", {"n": 3})  # the old master dropped us: this reconnects
        assert client.connection_pool.get_master_address() == ("127.0.0.1", second)
        assert client.xpending("s", "g")["pending"] == 1
        assert client.xlen("s") == 3

        assert sentinel.failover() == first  # and back, at once
        assert client.xlen("s") == 3
    finally:
        client.close()
    direct = _node(first)
    try:
        assert direct.info("replication")["role"] == "master"
        assert direct.xlen("s") == 3
    finally:
        direct.close()


def test_sentinel_fails_over_when_the_master_is_killed(
    redis_sentinel_factory: RedisSentinelFactory,
) -> None:
    sentinel = redis_sentinel_factory()
    client = _sentinel_client(sentinel.port)
    try:
        client.xgroup_create("s", "g", id="0", mkstream=True)
        client.xadd("s", {"n": 1})
        client.xreadgroup("g", "w1", {"s": ">"})
        assert client.wait(1, 2000) == 1

        killed = sentinel.kill_master()
        assert not sentinel.replica.running
        assert sentinel.master_port != killed
        assert client.xpending("s", "g")["pending"] == 1
        client.xadd("s", {"n": 2})

        assert sentinel.revive() == killed
        assert sentinel.failover() == killed  # the revived node synced and can take over
        assert client.xlen("s") == 2
        assert client.xpending("s", "g")["pending"] == 1
    finally:
        client.close()

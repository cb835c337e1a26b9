"""A live resharding of one slot of a :class:`~taskq.localcluster.LocalCluster`.

The real protocol, as ``redis-cli --cluster reshard`` runs it: ``CLUSTER SETSLOT
IMPORTING`` on the target, ``MIGRATING`` on the source, ``GETKEYSINSLOT`` +
``MIGRATE ... KEYS`` in batches until the source holds none of the slot's keys,
then ``SETSLOT NODE`` on every master. Split in steps so that a test can work
between them, while the slot answers ``ASK`` and ``TRYAGAIN``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import redis

from taskq.localredis import raw_command


class Cluster(Protocol):
    """What a resharding needs of its cluster (:class:`~taskq.localcluster.LocalCluster`)."""

    @property
    def masters(self) -> list[int]: ...

    def node_for_slot(self, slot: int) -> int: ...

    def node_client(self, port: int) -> redis.Redis: ...

    def node_id(self, port: int) -> str: ...

    def slot_moved(self, slot: int, port: int) -> None: ...


__all__ = ["SlotMove"]

_HOST = "127.0.0.1"
_MIGRATE_TIMEOUT_MS = 5000


@dataclass
class SlotMove:
    """One live resharding of a slot, step by step (:meth:`LocalCluster.begin_move`).

    Between :meth:`begin` and :meth:`finish` the slot is ``MIGRATING`` on the source
    and ``IMPORTING`` on the target: the source answers ``ASK`` for keys it no longer
    has, and a multi-key command over keys on both sides gets ``TRYAGAIN``. A test
    can call :meth:`migrate` one batch at a time and work in between.
    """

    cluster: Cluster
    slot: int
    source: int
    target: int
    moved: int = 0
    done: bool = False

    @classmethod
    def begin(cls, cluster: Cluster, slot: int, target: int) -> SlotMove:
        """Set ``IMPORTING`` on ``target``, then ``MIGRATING`` on the slot's owner.

        That order, so the source never redirects to a target that would refuse the slot.

        Raises:
            ValueError: If ``target`` is not a master, or already owns ``slot``.
        """
        source = cluster.node_for_slot(slot)
        if target not in cluster.masters or target == source:
            raise ValueError(f"cannot move slot {slot} from {source} to {target}")
        raw_command(
            cluster.node_client(target),
            *("CLUSTER", "SETSLOT", slot, "IMPORTING", cluster.node_id(source)),
        )
        raw_command(
            cluster.node_client(source),
            *("CLUSTER", "SETSLOT", slot, "MIGRATING", cluster.node_id(target)),
        )
        return cls(cluster, slot, source, target)

    def migrate(self, batch: int = 100) -> int:
        """Move up to ``batch`` keys of the slot from source to target with ``MIGRATE``.

        Returns:
            How many keys the source still listed (0 once the slot is empty there).
        """
        src = self.cluster.node_client(self.source)
        keys = raw_command(src, "CLUSTER", "GETKEYSINSLOT", self.slot, batch)
        if keys:
            # MIGRATE is atomic per call: the keys vanish from the source only once the
            # target has them, so a client never sees a key in neither place.
            raw_command(
                src, "MIGRATE", _HOST, self.target, "", 0, _MIGRATE_TIMEOUT_MS, "KEYS", *keys
            )
            self.moved += len(keys)
        return len(keys)

    def migrate_all(self, batch: int = 100) -> int:
        """Migrate until the source holds no key of the slot; return the keys moved so far."""
        while self.migrate(batch):
            pass
        return self.moved

    def finish(self) -> None:
        """Hand the slot to the target on every master and wait until all nodes agree.

        Migrates any keys still on the source first, so it is safe while clients write
        (the source makes no new key of a ``MIGRATING`` slot: it sends them to the target).
        """
        if self.done:
            return
        self.migrate_all()
        target_id = self.cluster.node_id(self.target)
        # The target first, then the source, then the rest (the order the Redis docs
        # give): the target must own the slot before the source stops redirecting.
        others = [p for p in self.cluster.masters if p not in (self.source, self.target)]
        for port in (self.target, self.source, *others):
            raw_command(
                self.cluster.node_client(port), "CLUSTER", "SETSLOT", self.slot, "NODE", target_id
            )
        self.done = True
        self.cluster.slot_moved(self.slot, self.target)

"""The tables' store (twins, alerts): Faust's in-memory store, recovered by one bulk read per rebalance.

Faust recovers a table record by record through its changelog consumer (per record a queue get, a
timeout task and a log line): 6-8k changelog records/s on this project's worker, 37 s before a
restarted worker served 100k robots (docs/BENCHMARKS.md). Here, when the group hands the worker its
changelog partitions (`on_rebalance`, which Faust awaits before its recovery starts), the store
reads each of them from start to end on a consumer of its own, a fetch of thousands of records at
a time (`streams.kafka_client.scan`), and reports the end as persisted (`persisted_offset`): Faust's
recovery then finds nothing left to read, and the rest of the rebalance (dropping the partitions no
longer held, `on_recovery_completed`; the lanes starting after it) is Faust's as before.

A partition the worker keeps through a rebalance is not read again when the store already holds
all of it: the store knows the changelog's end its contents reflect (`held_to`: the end after its
last read, moved on by each write of the worker's own whose records follow on without a gap,
`written`), and the partition's end is still that. Anything else (a write of another process, one
of its own not acknowledged, a partition it did not hold) and the partition is read afresh, as
Faust's memory store read every partition at every rebalance. If the read fails, the partitions are
emptied and left to Faust's own recovery (slow, but exact).

For the twins, the store is their cold copy: ingest takes a robot's twin out of it once the fold holds the
robot (`release`) and stores its checkpoints to the changelog alone, so a twin is kept once in
memory, not twice (the fold's columns, and its bytes here: ~1,500 B of RSS a robot). A partition
with a twin taken out is no longer held to its end, and is read afresh at the next rebalance; a
batch or checkpoint that fails reads the held partitions afresh too (`reload`), since the fold
then starts over from the store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from faust.stores import STORES, memory
from faust.types import TP

from streams.kafka_client import scan
from streams.settings import Settings

log = logging.getLogger(__name__)

SCHEME = "bulkmemory"
URL = f"{SCHEME}://local"
"""The store for `app.Table(..., store=URL)`. Not `bulkmemory://`: a URL of a scheme alone is false
(yarl), and Faust then takes the app's store instead (faust tables/base.py, `_new_store`)."""


class BulkMemoryStore(memory.Store[str, bytes]):
    """An in-memory table store whose recovery is one bulk read (`use` gives it the broker)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._settings: Settings | None = None
        self._persisted: dict[TP, int] = {}
        self.held_to: dict[int, int] = {}
        """Changelog partition -> the end (next offset) up to which this store holds it."""
        self.recovered_records = 0
        """Changelog records read by the last bulk recovery (for tests and logs)."""
        self.kept_partitions = 0
        """Partitions the last rebalance kept without reading them (for tests and logs)."""

    def use(self, settings: Settings) -> None:
        """The settings to reach the broker with; until then, Faust's own recovery."""
        self._settings = settings

    def persisted_offset(self, tp: TP) -> int | None:
        """The last offset of `tp` this store read (Faust recovers only what lies after it)."""
        return self._persisted.get(tp)

    async def on_rebalance(self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP],
                           generation_id: int = 0) -> None:
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        self._persisted = {}
        if self._settings is None or generation_id != self.app.consumer_generation_id:
            return  # a stale generation: Faust's recovery ignores it too
        topic = self.table.changelog_topic.get_topic_name()
        actives = {tp for tp in self.app.assignor.assigned_actives() if tp.topic == topic}
        self.recovered_records = self.kept_partitions = 0
        try:
            ends = await scan(self._settings, [(tp.topic, tp.partition) for tp in actives], self._apply,
                              choose=self._stale)
        except Exception as exc:  # noqa: BLE001 - Faust's recovery reads them instead
            log.warning("bulk recovery of %s failed (%r); Faust's recovery reads it", topic, exc)
            self._forget({tp.partition for tp in actives})
            self.held_to = {}
            return
        self._persisted = {TP(t, p): end - 1 for (t, p), end in ends.items()}
        self.held_to = {p: end for (_, p), end in ends.items()}
        log.info("recovered %d records of %d partitions of %s in bulk (%d kept as held)", self.recovered_records,
                 len(actives) - self.kept_partitions, topic, self.kept_partitions)

    def _stale(self, ends: dict[tuple[str, int], int]) -> list[tuple[str, int]]:
        """The partitions to read (their keys dropped first): all but those held up to their end."""
        stale = [(t, p) for (t, p), end in ends.items() if self.held_to.get(p) != end]
        self.kept_partitions = len(ends) - len(stale)
        self._forget({p for _, p in stale})
        return stale

    def written(self, partition: int, runs: list[tuple[int, int]]) -> None:
        """The worker wrote (and the broker acknowledged) changelog records of `partition` at these
        (first offset, count) runs, and put them in this store: it still holds the partition to its
        end if they follow on from where it held it, without a gap; otherwise it no longer knows."""
        end = self.held_to.get(partition)
        for first, count in sorted(runs):
            end = first + count if end == first else None
        if end is None:
            self.held_to.pop(partition, None)
        else:
            self.held_to[partition] = end

    def release(self, keys: Iterable[str]) -> dict[str, int]:
        """Drop `keys` (ingest's fold holds their twins now); returns the size of each value dropped.
        Their partitions are no longer held whole: a rebalance reads them again."""
        data, partition_of, sizes = self.data, self._key_partition, {}
        for key in keys:
            partition = partition_of.pop(key, None)
            if partition is not None:
                sizes[key] = len(data.pop(key))
                self.held_to.pop(partition, None)
        return sizes

    def not_held(self, partitions: Iterable[int]) -> None:
        """The changelog of `partitions` has moved on without this store (records written but not
        put here): a rebalance reads them again."""
        for partition in partitions:
            self.held_to.pop(partition, None)

    async def reload(self, partitions: Iterable[int]) -> None:
        """Read `partitions` afresh from their changelog, as a rebalance would; raises if the read
        fails (the partitions are then empty here: call again)."""
        if self._settings is None:
            raise RuntimeError(f"table {self.table.name}: no broker to reload from (`use` not called)")
        topic = self.table.changelog_topic.get_topic_name()
        chosen = sorted(set(partitions))
        self._forget(set(chosen))
        self.held_to = {p: end for p, end in self.held_to.items() if p not in chosen}
        ends = await scan(self._settings, [(topic, p) for p in chosen], self._apply)
        self.held_to.update({p: end for (_, p), end in ends.items()})

    def _apply(self, records: list[Any]) -> None:
        """Changelog records in offset order into the store: the newest value per key wins, a
        tombstone deletes (what Faust's `apply_changelog_batch` does)."""
        data, partition_of = self.data, self._key_partition
        decode_key, decode_value = self._decode_key, self._decode_value
        for r in records:
            key = decode_key(r.key)
            if r.value is None:
                data.pop(key, None)
                partition_of.pop(key, None)
            else:
                data[key] = decode_value(r.value)
                partition_of[key] = r.partition
        self.recovered_records += len(records)

    def _forget(self, partitions: set[int]) -> None:
        """Drop the keys of `partitions` (they are read again from their changelog)."""
        gone = [k for k, p in self._key_partition.items() if p in partitions]
        for key in gone:
            self.data.pop(key, None)
            self._key_partition.pop(key, None)


def of(table: Any) -> BulkMemoryStore:
    """The table's store, which must be this one (created with `store=URL`)."""
    store = table.data
    if not isinstance(store, BulkMemoryStore):
        raise TypeError(f"table {table.name} has store {type(store).__name__}, not created with store={URL!r}")
    return store


STORES.aliases.setdefault(SCHEME, f"{__name__}:BulkMemoryStore")  # Faust's store registry, as a plugin would

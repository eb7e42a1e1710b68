"""The twins table's store recovers by one bulk read of its changelog (real broker): what a
restarted worker holds is the newest value per key of the partitions it was given, and Faust's
record-by-record recovery is left nothing to read."""

from __future__ import annotations

import asyncio
import uuid

import faust
from faust.types import TP

from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker import bulk_store
from streams.worker.table import ChangelogWriter


def twins_table(app_id: str, broker: str) -> faust.Table:
    app = faust.App(app_id, broker=f"kafka://{broker}", store="memory://", autodiscover=False)
    return app.Table("twins", key_type=str, value_type=bytes, partitions=4, store=bulk_store.URL)


def given(table: faust.Table, partitions: set[int]) -> set[TP]:
    """What Faust's assignor would have handed this worker: these changelog partitions as actives."""
    tps = {TP(table.changelog_topic.get_topic_name(), p) for p in partitions}
    table.app.assignor.assigned_actives = lambda: tps  # type: ignore[method-assign]
    return tps


def test_a_restarted_worker_holds_the_newest_value_of_each_key_of_its_partitions(broker: str,
                                                                                  settings: Settings) -> None:
    app_id = f"{settings.app_id}-bulk-{uuid.uuid4().hex[:6]}"
    before = twins_table(app_id, broker)
    writer = ChangelogWriter(settings)
    many = {f"r-{i}": (i % 4, f"v{i}".encode()) for i in range(3000)}

    async def write() -> None:
        await ensure_topics(settings.model_copy(update={"partitions": 4}), [before.changelog_topic.get_topic_name()])
        try:
            await writer.write(before, many)
            await writer.write(before, {"r-1": (1, b"newer"), "r-2": (2, None)})
        finally:
            await writer.stop()

    asyncio.run(write())
    after = twins_table(app_id, broker)  # a new process: nothing in memory
    store = bulk_store.of(after)
    store.use(settings)
    tps = given(after, {1, 2})
    asyncio.run(store.on_rebalance(tps, set(), tps, 0))
    want = {k: v for k, (p, v) in many.items() if p in (1, 2)} | {"r-1": b"newer"}
    del want["r-2"]
    assert dict(after.items()) == want
    assert store.recovered_records == 1500 + 2  # every record of the two partitions, the tombstone too
    for tp in tps:  # Faust's recovery starts after the last offset read: nothing left for it
        assert store.persisted_offset(tp) == 750  # 751 records each: offsets 0..750
    assert store.persisted_offset(TP(after.changelog_topic.get_topic_name(), 0)) is None  # not given


def test_without_a_broker_the_partitions_are_left_empty_to_faust_s_recovery(broker: str, settings: Settings) -> None:
    table = twins_table(f"{settings.app_id}-bulk-{uuid.uuid4().hex[:6]}", broker)
    store = bulk_store.of(table)
    store.use(settings.model_copy(update={"kafka_bootstrap": "127.0.0.1:1"}))
    store.data["stale"] = b"x"
    store._key_partition["stale"] = 3
    tps = given(table, {3})
    asyncio.run(store.on_rebalance(tps, set(), tps, 0))
    assert dict(table.items()) == {}
    assert store.persisted_offset(tps.pop()) is None


def test_a_kept_partition_is_read_again_only_when_the_store_no_longer_holds_it_to_its_end(
        broker: str, settings: Settings) -> None:
    """The worker's own acknowledged writes keep the store's knowledge of a partition's end; a record
    another process wrote (a former owner, a zombie) moves the end past it, and that partition alone is
    read again."""
    app_id = f"{settings.app_id}-bulk-{uuid.uuid4().hex[:6]}"
    table = twins_table(app_id, broker)
    store = bulk_store.of(table)
    store.use(settings)
    tps = given(table, {0, 1})
    mine, theirs = ChangelogWriter(settings), ChangelogWriter(settings)

    async def run() -> None:
        await ensure_topics(settings.model_copy(update={"partitions": 4}), [table.changelog_topic.get_topic_name()])
        try:
            await mine.write(table, {f"r-{i}": (i % 2, b"v") for i in range(200)})
            await store.on_rebalance(tps, set(), tps, 0)  # a fresh process reads both
            assert (store.recovered_records, store.kept_partitions) == (200, 0)
            await mine.write(table, {"r-0": (0, b"newer"), "r-1": (1, None)})
            await store.on_rebalance(tps, set(), set(), 0)  # kept, and held to their ends: not read
            assert (store.recovered_records, store.kept_partitions) == (0, 2)
            assert table["r-0"] == b"newer" and "r-1" not in table
            await theirs.write(twins_table(app_id, broker), {"r-3": (1, b"theirs")})
            await store.on_rebalance(tps, set(), set(), 0)
            assert (store.recovered_records, store.kept_partitions) == (100 + 1 + 1, 1)  # partition 1 alone
        finally:
            await mine.stop()
            await theirs.stop()

    asyncio.run(run())
    assert table["r-3"] == b"theirs" and table["r-0"] == b"newer" and "r-1" not in table
    assert len(table) == 200 - 1
    for tp in tps:
        assert store.persisted_offset(tp) == store.held_to[tp.partition] - 1


def test_twins_the_fold_took_are_read_again_at_the_next_rebalance_or_reload(broker: str, settings: Settings) -> None:
    """Ingest takes a twin out of the store once its fold holds it, and stores checkpoints to the
    changelog alone: the partitions touched are no longer held whole, so the next rebalance reads
    them again (the one untouched is kept), and `reload` reads the ones asked for, newest values."""
    app_id = f"{settings.app_id}-bulk-{uuid.uuid4().hex[:6]}"
    table = twins_table(app_id, broker)
    store = bulk_store.of(table)
    store.use(settings)
    tps = given(table, {0, 1, 2})
    writer = ChangelogWriter(settings)

    async def run() -> None:
        await ensure_topics(settings.model_copy(update={"partitions": 4}), [table.changelog_topic.get_topic_name()])
        try:
            await writer.write(table, {f"r-{i}": (i % 3, b"v") for i in range(30)})
            await store.on_rebalance(tps, set(), tps, 0)
            assert store.release(["r-0", "r-9", "absent"]) == {"r-0": 1, "r-9": 1}  # both of partition 0
            assert "r-0" not in table and len(table) == 28
            await writer.write(table, {"r-1": (1, b"newer")}, keep=False)  # a checkpoint: changelog only
            assert table["r-1"] == b"v" and set(store.held_to) == {2}
            await store.on_rebalance(tps, set(), set(), 0)
            assert (store.recovered_records, store.kept_partitions) == (10 + 11, 1)
            assert table["r-0"] == b"v" and table["r-1"] == b"newer" and len(table) == 30
            store.release(["r-1", "r-2"])
            await store.reload({1})
            assert table["r-1"] == b"newer" and "r-2" not in table and store.held_to[1] == 11
        finally:
            await writer.stop()

    asyncio.run(run())

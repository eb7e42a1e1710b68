"""What this project relies on in Faust without a public API for it, pinned for the version in use.

`streams.worker.table` writes a batch of twins to a table's changelog on its
own producer and then puts the values into the table's local store
(`put_local`, through `Collection.data`); `streams.worker.ingest` acks records
it read back itself so that Faust's commits pass them. If a Faust upgrade
changes where a table keeps its values, how it serializes a changelog key or
how it commits acked offsets, these fail first.
"""

from __future__ import annotations

import asyncio

import faust
from faust.types import TP

from streams.worker.app import faust_message
from streams.worker.ingest import LogMessage
from streams.worker.table import put_local


def table() -> faust.Table:
    app = faust.App("pin-test", broker="kafka://127.0.0.1:1", store="memory://", autodiscover=False)
    return app.Table("twins", key_type=str, value_type=bytes, partitions=4)


def test_a_value_put_in_the_local_store_is_what_the_table_serves() -> None:
    twins = table()
    put_local(twins, "r-1", b"twin bytes", 0)
    assert twins.get("r-1") == b"twin bytes"
    assert list(twins.values()) == [b"twin bytes"]
    put_local(twins, "r-1", None, 0)
    assert twins.get("r-1") is None and list(twins.values()) == []


def test_after_a_rebalance_the_store_drops_what_was_put_for_partitions_no_longer_held() -> None:
    """A worker that wrote a partition's twins and then lost it must not keep them: they were
    counted twice (its fleet metrics and /twins, and the new owner's)."""
    twins = table()
    put_local(twins, "kept", b"a", 0)
    put_local(twins, "moved", b"b", 1)
    held = {TP(twins.changelog_topic.get_topic_name(), 0)}
    asyncio.run(twins.data.on_recovery_completed(held, set()))  # what Faust runs after each rebalance
    assert dict(twins.items()) == {"kept": b"a"}


def test_the_changelog_record_is_the_one_faust_writes_and_recovers() -> None:
    twins = table()
    topic = twins.changelog_topic
    key, _ = topic.prepare_key("r-1", twins.key_serializer)
    value, _ = topic.prepare_value(b"twin bytes", twins.value_serializer)
    assert topic.get_topic_name() == "pin-test-twins-changelog"
    assert key == b'"r-1"'  # Faust's json key serializer: what its recovery decodes
    assert value == b"twin bytes"


async def _acking_consumer(topic_name: str) -> tuple[faust.App, TP]:
    app = faust.App("pin-test", broker="kafka://127.0.0.1:1", store="memory://", autodiscover=False)
    app.topics.add(app.topic(topic_name, key_serializer="raw", value_serializer="raw"))
    await app.topics._update_indices()  # what an agent subscribing to the topic does at start
    return app, TP(topic_name, 0)


def _ack(app: faust.App, tp: TP, *offsets: int) -> None:
    for offset in offsets:
        app.consumer.ack(faust_message(LogMessage(tp.topic, tp.partition, offset, 1.0, b"k", b"v")))


def test_commits_stop_at_a_passed_over_record_until_the_read_back_is_acked() -> None:
    """`Ingest.ack_read_back`: Faust commits up to the first offset not acked, and a record its
    stream passed over (a fetch from before a rebalance) is never acked by Faust itself."""
    async def run() -> tuple[int | None, int | None]:
        app, tp = await _acking_consumer("t")
        app.consumer._committed_offset[tp] = 10
        _ack(app, tp, 13, 14)
        stuck = app.consumer._new_offset(tp)
        _ack(app, tp, 10, 11, 12)  # read back and folded
        return stuck, app.consumer._new_offset(tp)

    assert asyncio.run(run()) == (None, 15)


def test_with_nothing_committed_faust_commits_past_a_passed_over_record() -> None:
    """Why a restarted worker must know where it starts (`Ingest.assigned`): before the group's
    first commit Faust does not stop at a hole, so a record passed over is committed unread."""
    async def run() -> int | None:
        app, tp = await _acking_consumer("t")
        _ack(app, tp, 13, 14)
        return app.consumer._new_offset(tp)

    assert asyncio.run(run()) == 15

"""The worker's changelog writer against the real broker: what it writes is what Faust's
recovery reads (its key format, the partition asked for), and a delete is a tombstone."""

from __future__ import annotations

import asyncio
import json
import uuid

import faust
import pytest

from streams.kafka_client import read_topic
from streams.local.stack import Stack
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker.table import ChangelogWriter


def test_values_and_tombstones_land_in_the_partitions_given(broker: str, settings: Settings) -> None:
    app = faust.App(f"{settings.app_id}-cl-{uuid.uuid4().hex[:6]}", broker=f"kafka://{broker}",
                    store="memory://", autodiscover=False)
    table = app.Table("alerts", key_type=str, value_type=bytes, partitions=settings.partitions)
    topic = table.changelog_topic.get_topic_name()
    writer = ChangelogWriter(settings)

    async def run() -> None:
        await ensure_topics(settings, [topic])
        try:
            await writer.write(table, {"a-1": (2, b"open"), "a-2": (3, b"resolved")})
            await writer.write(table, {"a-2": (3, None)})
        finally:
            await writer.stop()

    asyncio.run(run())
    records = [(r.partition, r.key, r.value) for r in asyncio.run(read_topic(settings, topic))]
    assert records == [(2, b'"a-1"', b"open"), (3, b'"a-2"', b"resolved"), (3, b'"a-2"', None)]
    assert table.get("a-1") == b"open" and table.get("a-2") is None


@pytest.mark.parametrize("codec", ["zstd", "none"])
def test_batches_are_stored_with_the_codec_set_and_read_back_whole(broker: str, settings: Settings, stack: Stack,
                                                                  codec: str) -> None:
    """Kafka's own reader of the segment files sees the codec the setting names on every batch the
    writer sent, and a consumer reads every value back as written (aiokafka decompresses with
    cramjam, which must be installed for zstd)."""
    mine = settings.model_copy(update={"changelog_compression": codec})
    app = faust.App(f"{settings.app_id}-cz-{uuid.uuid4().hex[:6]}", broker=f"kafka://{broker}",
                    store="memory://", autodiscover=False)
    table = app.Table("twins", key_type=str, value_type=bytes, partitions=settings.partitions)
    topic = table.changelog_topic.get_topic_name()
    values = {f"r-{i:05d}": b'{"mode":"working","battery":%d,"signals":{"temp":%d.5}}' % (i % 100, i)
              for i in range(3000)}
    writer = ChangelogWriter(mine)

    async def run() -> None:
        await ensure_topics(settings, [topic])
        try:
            await writer.write(table, {k: (1, v) for k, v in values.items()})
        finally:
            await writer.stop()

    asyncio.run(run())
    got = {json.loads(r.key): r.value for r in asyncio.run(read_topic(settings, topic))}
    assert got == values
    codecs = stack.batch_codecs(topic, 1)
    assert codecs and set(codecs) == {codec}, codecs

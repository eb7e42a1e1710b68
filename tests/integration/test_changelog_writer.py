"""The worker's changelog writer against the real broker: what it writes is what Faust's
recovery reads (its key format, the partition asked for), and a delete is a tombstone."""

from __future__ import annotations

import asyncio
import uuid

import faust

from streams.kafka_client import read_topic
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

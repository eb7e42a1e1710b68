"""A record the consumer passed over (Faust acks, unprocessed, a record fetched before a
rebalance) is read back from the real broker and folded in its place, not lost.

The test writes to a topic of its own: on the session's checks topic other
tests' workers write between its records, and the gaps it pins down would not
be the one it made."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from streams.kafka_client import client_kwargs, read_topic
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker.ingest import Ingest, LogMessage, ReadBack
from streams.worker.metrics import PipelineMetrics


def test_a_passed_over_record_is_read_back_in_its_place(broker: str, settings: Settings) -> None:
    topic = f"{settings.topic_prefix}gaps-{uuid.uuid4().hex[:8]}"
    asyncio.run(ensure_topics(settings, [topic]))

    async def produce() -> None:
        producer = AIOKafkaProducer(**client_kwargs(settings))
        await producer.start()
        try:
            for n in range(5):
                await producer.send_and_wait(topic, f"{n}".encode(), key=b"gap-robot", partition=3)
        finally:
            await producer.stop()

    asyncio.run(produce())
    records = [r for r in asyncio.run(read_topic(settings, topic)) if r.key == b"gap-robot"]
    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry, ("mining",))
    ingest = Ingest(settings, None, None, None, None, None, metrics)  # type: ignore[arg-type]  # only the gap guard
    delivered = [ReadBack(LogMessage.of(r)) for r in records]
    first, second = records[0].offset, records[-1].offset
    assert second - first == 4  # nothing else writes here

    passed_over = asyncio.run(ingest._with_gaps_filled([e for e in delivered if e.message.offset != first + 2]))
    assert [e.message.offset for e in passed_over] == list(range(first, second + 1))
    assert passed_over[2].message == LogMessage.of(records[2])  # the same bytes and time as Faust would give
    assert registry.get_sample_value("twin_offset_gaps_total") == 1

    ingest.assigned([])  # the partition went to another worker: where it had got to means nothing now
    later = asyncio.run(ingest._with_gaps_filled(delivered[4:]))
    assert [e.message.offset for e in later] == [second]

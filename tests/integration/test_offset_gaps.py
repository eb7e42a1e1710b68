"""A record the consumer passed over (Faust acks, unprocessed, a record fetched before a
rebalance) is read back from the real broker and folded in its place, not lost.

The test writes to a topic of its own: on the session's checks topic other
tests' workers write between its records, and the gaps it pins down would not
be the one it made."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry

from streams.kafka_client import client_kwargs, read_topic
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker.ingest import Ingest, LogMessage, ReadBack
from streams.worker.metrics import PipelineMetrics


async def produce(settings: Settings, topic: str, key: bytes, counts: dict[int, int]) -> None:
    """`counts[p]` records with `key` into partition p of `topic`, each acked before the next."""
    producer = AIOKafkaProducer(**client_kwargs(settings))
    await producer.start()
    try:
        for partition, count in counts.items():
            for n in range(count):
                await producer.send_and_wait(topic, f"{n}".encode(), key=key, partition=partition)
    finally:
        await producer.stop()


def test_a_passed_over_record_is_read_back_in_its_place(broker: str, settings: Settings) -> None:
    topic = f"{settings.topic_prefix}gaps-{uuid.uuid4().hex[:8]}"
    asyncio.run(ensure_topics(settings, [topic]))

    asyncio.run(produce(settings, topic, b"gap-robot", {3: 5}))
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

    asyncio.run(ingest.assigned([]))  # the partition went to another worker: where it had got to means nothing now
    later = asyncio.run(ingest._with_gaps_filled(delivered[4:]))
    assert [e.message.offset for e in later] == [second]


def test_a_record_passed_over_before_the_first_one_folded_is_read_back(broker: str, settings: Settings) -> None:
    """A restarted worker has no place of its own in a partition: it starts from the group's
    committed offset (else the partition's first), so a record passed over before it has folded
    any (two rebalances back to back after a restart) is seen and read back."""
    run = uuid.uuid4().hex[:8]
    group = f"gaps-{run}"
    mine = settings.model_copy(update={"topic_prefix": f"{settings.topic_prefix}gaps-{run}.", "app_id": group})
    topic = mine.telemetry_topic
    asyncio.run(ensure_topics(mine, [topic]))

    async def produce_and_commit() -> None:
        await produce(mine, topic, b"gap-robot", {1: 6})
        consumer = AIOKafkaConsumer(**client_kwargs(mine), group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topic, 1)])
            await consumer.commit({TopicPartition(topic, 1): 2})  # a predecessor folded offsets 0 and 1
        finally:
            await consumer.stop()

    asyncio.run(produce_and_commit())
    records = [r for r in asyncio.run(read_topic(mine, topic)) if r.key == b"gap-robot"]
    assert [r.offset for r in records] == list(range(6))
    ingest = Ingest(mine, None, None, None, None, None, PipelineMetrics(CollectorRegistry(), ("mining",)))  # type: ignore[arg-type]  # only the gap guard

    asyncio.run(ingest.assigned([(topic, 1), (topic, 0), ("some.other.topic", 1)]))
    assert ingest._next == {(topic, 1): 2, (topic, 0): 0}  # committed; nothing committed: the first offset
    # the consumer starts at 2, but hands on 5 first: 2, 3 and 4 were passed over
    out = asyncio.run(ingest._with_gaps_filled([ReadBack(LogMessage.of(records[5]))]))
    assert [e.message.offset for e in out] == [2, 3, 4, 5]


def test_silence_checks_wait_for_a_partition_behind_on_its_reports(broker: str, settings: Settings) -> None:
    """A partition is current for silence checks when its newest folded report is recent, or when
    none is left to fold; not while older reports wait (a restart's backlog): a replay would put
    those reports before the check."""
    run = uuid.uuid4().hex[:8]
    mine = settings.model_copy(update={"topic_prefix": f"{settings.topic_prefix}quiet-{run}.", "app_id": f"quiet-{run}"})
    topic = mine.telemetry_topic
    asyncio.run(ensure_topics(mine, [topic]))

    asyncio.run(produce(mine, topic, b"r", {0: 3, 1: 3, 2: 3}))
    ingest = Ingest(mine, None, None, None, None, None, PipelineMetrics(CollectorRegistry(), ("mining",)))  # type: ignore[arg-type]  # only the partitions' places
    ingest._next = {(topic, 0): 3, (topic, 1): 1, (topic, 2): 1, (mine.checks_topic, 1): 0}
    now = 1_000_000.0
    ingest._newest = {(topic, 0): now - 600, (topic, 1): now - 600, (topic, 2): now - 2}
    # 0: quiet, folded to its end; 1: two old reports still to fold; 2: behind, but its newest folded is recent
    assert asyncio.run(ingest._current(now, slack_s=6)) == {0, 2}

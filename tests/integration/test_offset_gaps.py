"""A record missing before a batch (under Faust's stream: a record fetched before a rebalance and
passed over) is read back from the real broker and folded in its place, not lost; a worker taking
partitions starts where the ingest group committed.

The test writes to a topic of its own: on the session's checks topic other
tests' workers write between its records, and the gaps it pins down would not
be the one it made."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry

from streams.kafka_client import client_kwargs, read_topic, start_offsets
from streams.seeds import read_detectors, read_fleet
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker.ingest import Ingest, LogMessage
from streams.worker.ingest_reader import ingest_group
from streams.worker.metrics import PipelineMetrics
from twin.fleet_fold import Rules

SEEDS = Path(__file__).resolve().parents[2] / "seeds"
RULES = Rules(read_fleet(SEEDS), read_detectors(SEEDS))


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
    ingest = Ingest(settings, RULES, None, None, None, None, metrics)  # type: ignore[arg-type]  # only the gap guard
    delivered = [LogMessage.of(r) for r in records]
    first, second = records[0].offset, records[-1].offset
    assert second - first == 4  # nothing else writes here

    passed_over = asyncio.run(ingest._with_gaps_filled([m for m in delivered if m.offset != first + 2]))
    assert [m.offset for m in passed_over] == list(range(first, second + 1))
    assert passed_over[2] == LogMessage.of(records[2])  # the same bytes and time as the consumer gives
    assert registry.get_sample_value("twin_offset_gaps_total") == 1

    ingest.assigned({})  # the partition went to another worker: where it had got to means nothing now
    later = asyncio.run(ingest._with_gaps_filled(delivered[4:]))
    assert [m.offset for m in later] == [second]


def test_a_worker_taking_partitions_starts_where_the_ingest_group_committed(broker: str, settings: Settings) -> None:
    """`Handover.recovered` asks where the ingest group stands (else a partition's first offset) and
    ingest starts there: a record missing before its first batch is seen and read back."""
    run = uuid.uuid4().hex[:8]
    group = f"gaps-{run}"
    mine = settings.model_copy(update={"topic_prefix": f"{settings.topic_prefix}gaps-{run}.", "app_id": group})
    topic = mine.telemetry_topic
    asyncio.run(ensure_topics(mine, [topic]))

    async def produce_and_commit() -> None:
        await produce(mine, topic, b"gap-robot", {1: 6})
        consumer = AIOKafkaConsumer(**client_kwargs(mine), group_id=ingest_group(mine), enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topic, 1)])
            await consumer.commit({TopicPartition(topic, 1): 2})  # a predecessor folded offsets 0 and 1
        finally:
            await consumer.stop()

    asyncio.run(produce_and_commit())
    records = [r for r in asyncio.run(read_topic(mine, topic)) if r.key == b"gap-robot"]
    assert [r.offset for r in records] == list(range(6))
    ingest = Ingest(mine, RULES, None, None, None, None, PipelineMetrics(CollectorRegistry(), ("mining",)))  # type: ignore[arg-type]  # only the gap guard

    starts = asyncio.run(start_offsets(mine, ingest_group(mine), [(topic, 1), (topic, 0)]))
    assert starts == {(topic, 1): 2, (topic, 0): 0}  # committed; nothing committed: the first offset
    ingest.assigned({**starts, ("some.other.topic", 1): 7})
    assert ingest._next == starts
    # the consumer starts at 2; were 5 handed on first, 2, 3 and 4 would be read back
    out = asyncio.run(ingest._with_gaps_filled([LogMessage.of(records[5])]))
    assert [m.offset for m in out] == [2, 3, 4, 5]


def test_silence_checks_wait_for_a_partition_behind_on_its_reports(broker: str, settings: Settings) -> None:
    """A partition is current for silence checks when its newest folded report is recent, or when
    none is left to fold; not while older reports wait (a restart's backlog): a replay would put
    those reports before the check."""
    run = uuid.uuid4().hex[:8]
    mine = settings.model_copy(update={"topic_prefix": f"{settings.topic_prefix}quiet-{run}.", "app_id": f"quiet-{run}"})
    topic = mine.telemetry_topic
    asyncio.run(ensure_topics(mine, [topic]))

    asyncio.run(produce(mine, topic, b"r", {0: 3, 1: 3, 2: 3}))
    ingest = Ingest(mine, RULES, None, None, None, None, PipelineMetrics(CollectorRegistry(), ("mining",)))  # type: ignore[arg-type]  # only the partitions' places
    ingest._next = {(topic, 0): 3, (topic, 1): 1, (topic, 2): 1, (mine.checks_topic, 1): 0}
    now = 1_000_000.0
    ingest._newest = {(topic, 0): now - 600, (topic, 1): now - 600, (topic, 2): now - 2}
    # 0: quiet, folded to its end; 1: two old reports still to fold; 2: behind, but its newest folded is recent
    assert asyncio.run(ingest._current(now, slack_s=6)) == {0, 2}

"""The worker's own consumer against the real broker: batches in offset order from exactly the
partitions it is given, its commits in a group of its own, and a release that waits for the batch
in flight (what makes a handover exact)."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiokafka.codec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.kafka_client import client_kwargs, start_offsets
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker.ingest import LogMessage
from streams.worker.ingest_reader import IngestReader, alerts_group, ingest_group


async def produce(settings: Settings, topic: str, counts: dict[int, int]) -> None:
    producer = AIOKafkaProducer(**client_kwargs(settings), linger_ms=5)
    await producer.start()
    try:
        acks = [await producer.send(topic, f"{p}:{n}".encode(), key=b"r", partition=p)
                for p, count in counts.items() for n in range(count)]
        await asyncio.gather(*acks)
    finally:
        await producer.stop()


async def read_until(reader: IngestReader, got: list[LogMessage], n: int, within_s: float = 30.0) -> None:
    async def loop() -> None:
        while len(got) < n:
            await reader.step()
    await asyncio.wait_for(loop(), within_s)


def fresh_topic(settings: Settings) -> str:
    topic = f"{settings.topic_prefix}ingest-{uuid.uuid4().hex[:8]}"
    asyncio.run(ensure_topics(settings, [topic]))
    return topic


def test_reads_only_the_partitions_given_from_their_start_in_batches(broker: str, settings: Settings) -> None:
    topic = fresh_topic(settings)
    asyncio.run(produce(settings, topic, {0: 700, 1: 300, 2: 50}))
    got: list[LogMessage] = []
    sizes: list[int] = []

    async def fold(batch: list[LogMessage]) -> None:
        sizes.append(len(batch))
        got.extend(batch)

    async def run() -> dict[tuple[str, int], int]:
        reader = IngestReader(settings, fold, batch_max=200, within_s=0.05)
        await reader.start()
        try:
            await reader.assign({(topic, 0): 100, (topic, 1): 0})
            await read_until(reader, got, 900)
            assert not await reader.step()  # nothing more: partition 2 is not ours
            return await start_offsets(settings, ingest_group(settings), [(topic, p) for p in range(3)])
        finally:
            await reader.stop()

    committed = asyncio.run(run())
    by_partition = {p: [m.offset for m in got if m.partition == p] for p in (0, 1, 2)}
    assert by_partition[0] == list(range(100, 700))
    assert by_partition[1] == list(range(300))
    assert by_partition[2] == []
    assert max(sizes) <= 200
    assert [m.value for m in got if m.partition == 0][:1] == [b"0:100"]
    assert committed == {(topic, 0): 700, (topic, 1): 300, (topic, 2): 0}  # what was folded, no further


def test_release_waits_for_the_batch_in_flight_and_the_next_owner_starts_where_it_ended(
        broker: str, settings: Settings) -> None:
    topic = fresh_topic(settings)
    asyncio.run(produce(settings, topic, {0: 400}))
    first: list[LogMessage] = []
    second: list[LogMessage] = []
    events: list[str] = []

    async def slow_fold(batch: list[LogMessage]) -> None:
        events.append("fold begins")
        await asyncio.sleep(0.5)
        first.extend(batch)
        events.append("fold ends")

    async def take(batch: list[LogMessage]) -> None:
        second.extend(batch)

    async def run() -> None:
        old = IngestReader(settings, slow_fold, batch_max=150, within_s=0.05)
        new = IngestReader(settings, take, batch_max=150, within_s=0.05)
        await old.start()
        await new.start()
        try:
            await old.assign({(topic, 0): 0})
            running = asyncio.create_task(old.run())
            while "fold begins" not in events:
                await asyncio.sleep(0.01)
            await old.release()
            events.append("released")
            resume = first[-1].offset + 1
            await asyncio.sleep(0.3)
            assert old.held == set() and events.count("fold begins") == events.count("fold ends")
            await new.assign({(topic, 0): resume})
            await read_until(new, second, 400 - resume)
            await old.stop()
            await asyncio.wait_for(running, 5)
        finally:
            await new.stop()

    asyncio.run(run())
    assert events[:3] == ["fold begins", "fold ends", "released"]  # release waited for the fold
    assert "fold begins" not in events[3:]  # and no batch started after it
    offsets = [m.offset for m in first] + [m.offset for m in second]
    assert offsets == list(range(400))  # every record once, in order, across the handover


def test_the_anomalies_reader_commits_to_its_own_group(broker: str, settings: Settings) -> None:
    """Two readers in one worker (ingest's, and fleet.anomalies'): each one's commits are where the
    next owner of its partitions starts, so they must not share a group."""
    topic = fresh_topic(settings)
    asyncio.run(produce(settings, topic, {0: 40}))
    got: list[LogMessage] = []

    async def take(batch: list[LogMessage]) -> None:
        got.extend(batch)

    async def run() -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
        reader = IngestReader(settings, take, batch_max=25, within_s=0.05, group=alerts_group(settings))
        try:
            await reader.assign({(topic, 0): 0})
            await read_until(reader, got, 40)
            return (await start_offsets(settings, alerts_group(settings), [(topic, 0)]),
                    await start_offsets(settings, ingest_group(settings), [(topic, 0)]))
        finally:
            await reader.stop()

    alerts, ingest = asyncio.run(run())
    assert [m.offset for m in got] == list(range(40))
    assert alerts == {(topic, 0): 40} and ingest == {(topic, 0): 0}


def test_a_reader_without_commits_of_its_own_starts_where_the_group_before_it_stood(
        broker: str, settings: Settings) -> None:
    """An upgraded worker's anomalies reader: its group has no commits yet, Faust's group read the
    topic before. Its own commit wins, then the older group's, then the partition's first offset."""
    topic = fresh_topic(settings)
    asyncio.run(produce(settings, topic, {0: 20, 1: 20, 2: 20}))
    run = uuid.uuid4().hex[:8]
    old, new = f"old-{run}", f"new-{run}"

    async def commit(group: str, offsets: dict[int, int]) -> None:
        consumer = AIOKafkaConsumer(**client_kwargs(settings), group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topic, p) for p in offsets])
            await consumer.commit({TopicPartition(topic, p): n for p, n in offsets.items()})
        finally:
            await consumer.stop()

    asyncio.run(commit(old, {0: 10, 1: 15}))
    asyncio.run(commit(new, {1: 3}))
    parts = [(topic, p) for p in range(3)]
    assert asyncio.run(start_offsets(settings, new, parts, before=old)) == {
        (topic, 0): 10, (topic, 1): 3, (topic, 2): 0}
    assert asyncio.run(start_offsets(settings, new, parts)) == {(topic, 0): 0, (topic, 1): 3, (topic, 2): 0}


def test_with_checkpoints_it_commits_only_what_a_checkpoint_stored(broker: str, settings: Settings) -> None:
    """Ingest's reader: batches fold on, a commit follows a checkpoint (due, on an empty fetch, on
    release), and a failed checkpoint sends the reader and its fold back to the last commit."""
    topic = fresh_topic(settings)
    asyncio.run(produce(settings, topic, {0: 300}))
    got: list[LogMessage] = []
    stored: list[int] = []
    refolds: list[dict[tuple[str, int], int]] = []
    fail = [False]

    async def fold(batch: list[LogMessage]) -> None:
        got.extend(batch)

    async def checkpoint(partitions: set[int]) -> None:
        if fail[0]:
            fail[0] = False
            raise RuntimeError("the broker refused the checkpoint")
        stored.append(got[-1].offset + 1)

    async def refold(starts: dict[tuple[str, int], int]) -> None:
        refolds.append(dict(starts))

    def committed() -> int:
        return asyncio.run(start_offsets(settings, ingest_group(settings), [(topic, 0)]))[(topic, 0)]

    async def run() -> list[int]:
        reader = IngestReader(settings, fold, batch_max=100, within_s=0.05, refold=refold,
                              checkpoint=checkpoint, every_s=3600.0)
        try:
            await reader.assign({(topic, 0): 0})
            await read_until(reader, got, 200)  # two full batches: no checkpoint due yet
            at_200 = await start_offsets(settings, ingest_group(settings), [(topic, 0)])
            assert stored == [] and at_200 == {(topic, 0): 0}
            await read_until(reader, got, 300)
            assert await reader.step() is False  # an empty fetch: a checkpoint, then the commit
            assert stored == [300]
            await produce(settings, topic, {0: 50})
            await read_until(reader, got, 350)
            fail[0] = True
            await reader.release()  # its checkpoint fails: the reader goes back to the last commit
            return [m.offset for m in got]
        finally:
            await reader.stop()

    offsets = asyncio.run(run())
    assert offsets == list(range(350))
    assert refolds == [{(topic, 0): 300}]
    assert committed() == 300  # what the failed checkpoint would have stored is read again by the next owner


def test_checkpoints_are_spread_over_the_partitions_one_at_a_time(broker: str, settings: Settings) -> None:
    """While batches keep coming, each checkpoint stores one partition (the longest-waiting), so no
    checkpoint stores every robot held at once; nor does an empty fetch (one may come under a steady
    load): each stores the longest-waiting partition left."""
    topic = fresh_topic(settings)
    asyncio.run(produce(settings, topic, {0: 400, 1: 400}))
    got: list[LogMessage] = []
    calls: list[set[int]] = []

    async def fold(batch: list[LogMessage]) -> None:
        got.extend(batch)
        await asyncio.sleep(0.05)

    async def checkpoint(partitions: set[int]) -> None:
        calls.append(set(partitions))

    async def run() -> dict[tuple[str, int], int]:
        reader = IngestReader(settings, fold, batch_max=20, within_s=0.05, checkpoint=checkpoint, every_s=0.4)
        try:
            await reader.assign({(topic, 0): 0, (topic, 1): 0})
            await read_until(reader, got, 800, within_s=60)
            while await reader.step():
                pass
            await reader.step()  # another empty fetch: the other partition, if it is still pending
            return await start_offsets(settings, ingest_group(settings), [(topic, 0), (topic, 1)])
        finally:
            await reader.stop()

    committed = asyncio.run(run())
    assert committed == {(topic, 0): 400, (topic, 1): 400}
    assert len(calls) >= 5 and all(len(c) == 1 for c in calls), calls
    assert {0, 1} == set().union(*calls)


def test_an_empty_fetch_stores_one_partition_and_the_next_one_the_other(broker: str, settings: Settings) -> None:
    """With both partitions folded and no checkpoint due, each empty fetch stores the longest-waiting
    partition only (every pending one at once was a stall of every robot held under a steady load)."""
    topic = fresh_topic(settings)
    asyncio.run(produce(settings, topic, {0: 50, 1: 50}))
    got: list[LogMessage] = []
    calls: list[set[int]] = []

    async def fold(batch: list[LogMessage]) -> None:
        got.extend(batch)

    async def checkpoint(partitions: set[int]) -> None:
        calls.append(set(partitions))

    async def run() -> dict[tuple[str, int], int]:
        reader = IngestReader(settings, fold, batch_max=1000, within_s=0.05, checkpoint=checkpoint, every_s=3600.0)
        try:
            await reader.assign({(topic, 0): 0, (topic, 1): 0})
            await read_until(reader, got, 100)
            before = len(calls)
            assert await reader.step() is False and await reader.step() is False  # two empty fetches
            assert [len(c) for c in calls[before:]] == [1, 1] and set().union(*calls[before:]) == {0, 1}, calls
            return await start_offsets(settings, ingest_group(settings), [(topic, 0), (topic, 1)])
        finally:
            await reader.stop()

    assert asyncio.run(run()) == {(topic, 0): 50, (topic, 1): 50}


def test_a_fetch_that_raises_is_retried_from_the_next_unfolded_offset_and_nothing_is_lost(
        broker: str, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """A record batch the client cannot read (here snappy, with aiokafka told its codec is missing:
    the worker crashed so before `cramjam` was a dependency) makes `getmany` raise. The reader
    survives it, folds nothing past the batch meanwhile, and once the batch reads, folds every
    record once, in order."""
    topic = fresh_topic(settings)

    async def send(values: list[bytes], codec: str | None) -> None:
        producer = AIOKafkaProducer(**client_kwargs(settings), linger_ms=50, compression_type=codec)
        await producer.start()
        try:
            await asyncio.gather(*[await producer.send(topic, v, key=b"r", partition=0) for v in values])
        finally:
            await producer.stop()

    asyncio.run(send([b"plain-%d" % i for i in range(5)], None))
    asyncio.run(send([b"snappy-%d" % i for i in range(3)], "snappy"))
    asyncio.run(send([b"after-%d" % i for i in range(5)], None))
    got: list[LogMessage] = []
    failed: list[float] = []

    async def fold(batch: list[LogMessage]) -> None:
        got.extend(batch)

    async def run() -> tuple[int, list[int]]:
        reader = IngestReader(settings, fold, batch_max=100, within_s=0.05,
                              fetch_failed=lambda: failed.append(time.monotonic()))
        await reader.start()
        try:
            await reader.assign({(topic, 0): 0})
            monkeypatch.setattr(aiokafka.codec, "has_snappy", lambda: False)
            while len(failed) < 2:
                await asyncio.wait_for(reader.step(), 30)
            while_unreadable = [m.offset for m in got]
            monkeypatch.undo()
            await read_until(reader, got, 13)
            return len(failed), while_unreadable
        finally:
            await reader.stop()

    errors, while_unreadable = asyncio.run(run())
    assert errors >= 2 and while_unreadable == list(range(len(while_unreadable))) and len(while_unreadable) <= 5
    assert [m.offset for m in got] == list(range(13))
    assert [m.value for m in got][4:9] == [b"plain-4", b"snappy-0", b"snappy-1", b"snappy-2", b"after-0"]


def test_a_fetch_brings_back_no_more_than_fetch_max_bytes(broker: str, settings: Settings) -> None:
    """What bounds a worker's transient memory: 100 records of 10 KiB, each its own record batch, come
    in batches of at most a 64 KiB fetch's worth (and one batch beyond it), not all at once."""
    topic = fresh_topic(settings)
    small = settings.model_copy(update={"fetch_max_bytes": 64 * 1024})
    value = b"x" * 10 * 1024

    async def produce_apart() -> None:
        producer = AIOKafkaProducer(**client_kwargs(settings), linger_ms=0)
        await producer.start()
        try:
            for _ in range(100):
                await (await producer.send(topic, value, key=b"r", partition=0))  # one record per batch
        finally:
            await producer.stop()

    asyncio.run(produce_apart())
    got: list[LogMessage] = []
    sizes: list[int] = []

    async def fold(batch: list[LogMessage]) -> None:
        sizes.append(len(batch))
        got.extend(batch)

    async def run() -> None:
        reader = IngestReader(small, fold, batch_max=4000, within_s=0.05)
        await reader.start()
        try:
            await reader.assign({(topic, 0): 0})
            await read_until(reader, got, 100)
        finally:
            await reader.stop()

    asyncio.run(run())
    assert [m.offset for m in got] == list(range(100))
    assert max(sizes) <= 7, sizes  # 64 KiB of 10 KiB records, and the one batch that crosses the limit

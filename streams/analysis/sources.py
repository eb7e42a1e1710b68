"""Where a replay reads the log from: Kafka (bounded by time) or the Parquet archive.

Both yield `twin.replay.Record`s, one stream per (topic, partition) in offset
order, restricted to record timestamps in [start, end]: the same records for
the same window, whichever source holds them.
"""

from __future__ import annotations

import asyncio
import math
import queue
import threading
from collections import deque
from collections.abc import AsyncGenerator, Generator, Iterator
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.kafka_client import client_kwargs, partition_ids, partitioner
from streams.settings import Settings
from twin.record import Kind, Record
from twin.replay import in_log_order


def partition_of(robot_id: str, partitions: int) -> int:
    """The partition the producers' default partitioner puts a robot's key in."""
    return partitioner(partitions)(robot_id.encode())


def kafka_source(settings: Settings, start: float, end: float,
                 partitions: set[int] | None = None, newest: int | None = None) -> Generator[Record, None, None]:
    """Telemetry and silence checks timed in [start, end], in log order, streamed, with every
    desired-state change timed at or before `end` (the rules in force at `start` began earlier).

    The consumer runs on its own event loop in a thread and hands over merged
    chunks through a bounded queue, so a long window never sits in memory.
    Closing the iterator early stops the consumer and ends the thread.
    `newest` reads at most that many records of each partition, the window's
    last ones: a bounded read that keeps the present rather than the past.
    """
    chunks: queue.Queue[list[Record] | BaseException | None] = queue.Queue(maxsize=8)
    closed = threading.Event()

    def hand_over(item: list[Record] | BaseException | None) -> bool:
        # A reader that stopped early (a bounded scan) takes nothing more: the
        # consumer must then stop, not wait on a full queue for good.
        while not closed.is_set():
            try:
                chunks.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        async def pump() -> None:
            chunks_in = _kafka_chunks(settings, start, end, partitions, newest)
            try:
                async for chunk in chunks_in:
                    if not hand_over(chunk):
                        return
            finally:
                await chunks_in.aclose()  # stops the consumer
        try:
            asyncio.run(pump())
            hand_over(None)
        except BaseException as exc:  # handed to the reader, which raises it
            hand_over(exc)

    thread = threading.Thread(target=run, name="kafka-source", daemon=True)
    thread.start()
    try:
        while (item := chunks.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield from item
    finally:
        closed.set()
        thread.join()


async def _kafka_chunks(settings: Settings, start: float, end: float, partitions: set[int] | None,
                        newest: int | None = None) -> AsyncGenerator[list[Record], None]:
    """Seek with offsets_for_times to the first record at or after `start`; stop
    at the first one after `end` (or the log end as it is now). Each chunk holds
    every buffered record up to the time all partitions have reached, merged."""
    consumer = AIOKafkaConsumer(**client_kwargs(settings), enable_auto_commit=False,
                                max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    try:
        topics: dict[str, Kind] = {settings.telemetry_topic: "telemetry", settings.checks_topic: "check",
                                   settings.desired_topic: "desired"}
        tps = [TopicPartition(topic, p) for topic in topics for p in sorted(await partition_ids(settings, topic))
               if partitions is None or p in partitions or topics[topic] == "desired"]
        consumer.assign(tps)
        first = await _offsets_at(consumer, tps, math.ceil(start * 1000 - 1e-6))
        stop = await _offsets_at(consumer, tps, math.floor(end * 1000 + 1e-6) + 1)
        if newest is not None:
            first = {tp: max(first[tp], stop[tp] - newest) for tp in tps}
        desired = [tp for tp in tps if topics[tp.topic] == "desired"]
        first.update(await consumer.beginning_offsets(desired) if desired else {})
        buffers: dict[TopicPartition, deque[Record]] = {tp: deque() for tp in tps}
        pending = {tp for tp in tps if first[tp] < stop[tp]}
        for tp in pending:
            consumer.seek(tp, first[tp])
        consumer.pause(*(set(tps) - pending))
        reached: dict[TopicPartition, float] = {}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=1000, max_records=20_000)
            for tp, messages in batch.items():
                for m in messages:
                    if m.offset >= stop[tp]:
                        break
                    ts = m.timestamp / 1000.0  # exactly as Faust hands it to the worker
                    reached[tp] = ts
                    if start <= ts <= end or (topics[tp.topic] == "desired" and ts <= end):
                        buffers[tp].append(Record(topics[tp.topic], tp.partition, m.offset, ts, m.key,
                                                  m.value or b""))
                if messages and messages[-1].offset + 1 >= stop[tp]:
                    pending.discard(tp)
                    consumer.pause(tp)
            if all(tp in reached for tp in pending):
                yield _drain(buffers, min((reached[tp] for tp in pending), default=math.inf))
        yield _drain(buffers, math.inf)
    finally:
        await consumer.stop()


def _drain(buffers: dict[TopicPartition, deque[Record]], until: float) -> list[Record]:
    """Every buffered record up to `until`, each partition's prefix in offset order, merged."""
    prefixes = []
    for buffer in buffers.values():
        prefix = []
        while buffer and buffer[0].timestamp <= until:
            prefix.append(buffer.popleft())
        prefixes.append(prefix)
    return list(in_log_order(prefixes))


async def _offsets_at(consumer: AIOKafkaConsumer, tps: list[TopicPartition], ms: int) -> dict[TopicPartition, int]:
    """The first offset timed at or after `ms` per partition; the log end where there is none."""
    found = await consumer.offsets_for_times({tp: max(ms, 0) for tp in tps})
    ends = await consumer.end_offsets(tps)
    return {tp: found[tp].offset if found.get(tp) is not None else ends[tp] for tp in tps}


def archive_source(root: Path, start: float, end: float, partitions: set[int] | None = None) -> Iterator[Record]:
    """The same records from the Parquet archive written by `fleet-twin archive`, in log order."""
    from streams.analysis.archive import archive_records

    return in_log_order(archive_records(root, start, end, partitions))

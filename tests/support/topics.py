"""Reading what the worker wrote: dead letters, the twins' changelog, anomaly messages."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams import kafka_client
from streams.settings import Settings


async def read_dlq(settings: Settings, key: bytes, want: int) -> list[Any]:
    """The dead letters keyed `key` in source-offset order, once `want` are there (or after 45 s)."""
    consumer = AIOKafkaConsumer(
        settings.dlq_topic, bootstrap_servers=settings.bootstrap, auto_offset_reset="earliest",
        group_id=None, enable_auto_commit=False,
    )
    await consumer.start()
    found: list[Any] = []
    try:
        deadline = time.monotonic() + 45
        while len(found) < want and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            found += [m for msgs in batches.values() for m in msgs if m.key == key]
    finally:
        await consumer.stop()
    found.sort(key=lambda m: int(dict(m.headers)["source_offset"]))
    return found


async def send(settings: Settings, topic: str, key: bytes, value: bytes) -> None:
    """One record, written as any client with the rights could write it."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


def changelog(settings: Settings) -> dict[str, bytes]:
    """The live worker's twins as stored: the latest value per key of the table's changelog
    (Faust writes the keys as JSON, the values as the table's raw bytes)."""
    return {json.loads(k): v for k, v in read_topic(settings, f"{settings.app_id}-twins-changelog")}


def live_anomalies(settings: Settings) -> list[bytes]:
    return [v for _, v in read_topic(settings, settings.anomalies_topic)]


def read_topic(settings: Settings, topic: str) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of a topic as it is now, per partition in offset order."""
    return asyncio.run(_read_topic(settings, topic))


async def _read_topic(settings: Settings, topic: str) -> list[tuple[bytes, bytes]]:
    return [(m.key, m.value) for m in await kafka_client.read_topic(settings, topic)]

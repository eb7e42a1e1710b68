"""When the dead-letter topic refuses messages, the worker neither drops the rejected message
nor dies: it retries, the robot's partition waits (later events of that robot are not applied
out of order), and once the topic takes messages again everything arrives."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.kafka_client import client_kwargs
from streams.settings import Settings
from streams.local.stack import Stack
from tests.support.telemetry import report
from tests.support.waiting import eventually


async def set_max_message_bytes(settings: Settings, topic: str, value: str | None) -> None:
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        configs = {"max.message.bytes": value} if value else {"max.message.bytes": "1048588"}
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs=configs)])
    finally:
        await admin.close()


async def send(settings: Settings, robot: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(**client_kwargs(settings))
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(settings.telemetry_topic, value, key=robot.encode())
    finally:
        await producer.stop()


def metric(worker: str, name: str) -> float:
    text = httpx.get(f"{worker}/metrics").text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


async def dead_letters(settings: Settings, robot: str) -> list[dict[str, str]]:
    consumer = AIOKafkaConsumer(settings.dlq_topic, auto_offset_reset="earliest", group_id=None,
                                **client_kwargs(settings))
    await consumer.start()
    found: list[dict[str, str]] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not found:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                found += [{k: v.decode() for k, v in m.headers} for m in messages if m.key == robot.encode()]
    finally:
        await consumer.stop()
    return found


def test_a_refusing_dead_letter_topic_holds_the_partition_and_loses_nothing(
        worker: str, api: httpx.Client, settings: Settings, stack: Stack) -> None:
    robot = f"dlq-{uuid.uuid4().hex[:8]}"
    start = time.time() - 60
    pid = stack.procs.pid("worker")
    errors_before = metric(worker, "twin_dlq_errors_total")
    asyncio.run(send(settings, robot, [report(robot, seq, start + seq, 4.0) for seq in range(1, 6)]))
    eventually(lambda: api.get(f"/twins/{robot}").json() if api.get(f"/twins/{robot}").status_code == 200 else None)

    asyncio.run(set_max_message_bytes(settings, settings.dlq_topic, "64"))  # every dead letter is now too big
    try:
        bad = b'{"schema": 1, "robot_id": "' + robot.encode() + b'", "seq": "not a number"}' + b" " * 200
        asyncio.run(send(settings, robot, [bad, *[report(robot, seq, start + seq, 4.0) for seq in range(6, 11)]]))
        eventually(lambda: True if metric(worker, "twin_dlq_errors_total") >= errors_before + 2 else None)
        held = api.get(f"/twins/{robot}").json()
        # the robot's partition waits: no report after the refused one is folded (the twin is served
        # from the fold, which holds the batch whose dead letter is still being sent)
        assert held["seq"] == 5 and held["counts"]["events"] == 5
        assert httpx.get(f"{worker}/healthz").status_code == 200 and stack.procs.pid("worker") == pid
    finally:
        asyncio.run(set_max_message_bytes(settings, settings.dlq_topic, None))

    twin = eventually(lambda: t if (t := api.get(f"/twins/{robot}").json())["seq"] == 10 else None)
    assert twin["counts"]["events"] == 10 and twin["counts"]["rejected"] == 1
    letters = asyncio.run(dead_letters(settings, robot))
    assert len(letters) == 1 and letters[0]["reason"] == "invalid_field"
    assert stack.procs.pid("worker") == pid

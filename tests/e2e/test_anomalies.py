"""Detectors in the live worker: an anomaly reaches `fleet.anomalies` and the twin, silence is noticed."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.settings import Settings
from tests.support.telemetry import report
from tests.support.waiting import eventually


async def anomalies_for(settings: Settings, robot: str, want: set[str]) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(settings.anomalies_topic, bootstrap_servers=settings.bootstrap,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not want <= {a["detector"] for a in found}:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                found += [a for m in msgs if (a := json.loads(m.value))["robot_id"] == robot]
    finally:
        await consumer.stop()
    return found


async def test_overcurrent_opens_an_anomaly_and_silence_follows(api: httpx.Client, settings: Settings) -> None:
    robot = f"anom-{uuid.uuid4().hex[:8]}"
    start = time.time() - 100
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap)
    await producer.start()
    try:
        for seq in range(1, 91):  # 90 s of normal work: past warm-up and settling
            await producer.send(settings.telemetry_topic, report(robot, seq, start + seq, 4.0 + seq % 3 * 0.1),
                                key=robot.encode())
        for seq in range(91, 96):  # then the motor draws 30 A, far above its 0.5-8 A band
            await producer.send(settings.telemetry_topic, report(robot, seq, start + seq, 30.0),
                                key=robot.encode())
        await producer.flush()
    finally:
        await producer.stop()

    found = await anomalies_for(settings, robot, {"band", "silence"})
    band = [a for a in found if a["detector"] == "band" and a["status"] == "open"]
    assert band and band[0]["signal"] == "joint1_current_a" and band[0]["severity"] == "critical"
    assert band[0]["robot_id"] == robot and band[0]["links"]["twin"] == f"/twins/{robot}"
    assert band[0]["links"]["replay"].startswith(f"fleet-twin replay --robot {robot} --from ")
    silent = [a for a in found if a["detector"] == "silence" and a["status"] == "open"]
    assert silent and silent[0]["evidence"]["silent_s"] > 15

    # The anomaly message is acked before the twin that caused it is stored (docs/RELIABILITY.md):
    # the twin shows it a changelog round trip later.
    def both() -> bool | None:
        return {"band", "silence"} <= {a["detector"] for a in api.get(f"/twins/{robot}").json()["anomalies"]} or None

    assert eventually(both, timeout_s=10)

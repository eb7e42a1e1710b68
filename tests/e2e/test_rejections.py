"""Every rejection reason, end to end: DLQ headers, the twin's count, and Prometheus labels."""

from __future__ import annotations

import time
import uuid

import httpx
from aiokafka import AIOKafkaProducer

from streams.settings import Settings
from tests.support.cases import bad_cases, raw
from tests.support.topics import read_dlq
from tests.support.waiting import eventually
from twin.exceptions import InvalidEvent


def scrape(worker: str) -> dict[str, float]:
    samples = {}
    for line in httpx.get(f"{worker}/metrics").text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


async def test_each_reason_lands_in_the_dlq_and_the_metrics(
    worker: str, api: httpx.Client, settings: Settings
) -> None:
    robot = f"bad-{uuid.uuid4().hex[:8]}"
    before = scrape(worker)
    now = time.time()
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, max_request_size=2**20)
    await producer.start()
    try:
        await producer.send_and_wait(settings.telemetry_topic, raw(robot, ts=now), key=robot.encode())
        cases = bad_cases(robot)
        for case in cases:
            value = case.value.replace(b"1790000000.0", f"{now + case.ts_offset:.3f}".encode())
            await producer.send_and_wait(settings.telemetry_topic, value, key=case.key)
        await producer.send_and_wait(settings.telemetry_topic, raw(robot, seq=2, ts=now + 1), key=robot.encode())
    finally:
        await producer.stop()

    def twin() -> dict | None:
        r = api.get(f"/twins/{robot}")
        return r.json() if r.status_code == 200 and r.json()["seq"] == 2 else None

    counts = eventually(twin)["counts"]
    keyed_to_robot = [c for c in cases if c.key == robot.encode()]
    assert counts["rejected"] == len(keyed_to_robot) and counts["events"] == 2

    keyed = await read_dlq(settings, key=robot.encode(), want=len(keyed_to_robot))
    assert sorted(dict(m.headers)["reason"].decode() for m in keyed) == sorted(c.reason for c in keyed_to_robot)
    after = scrape(worker)
    for reason in InvalidEvent.REASONS:
        metric = f'twin_dlq_total{{reason="{reason}"}}'
        expected = sum(c.reason == reason for c in cases)
        assert after[metric] - before.get(metric, 0) == expected, reason
    rejected = 'twin_events_total{result="rejected"}'
    assert after[rejected] - before[rejected] == len(cases)

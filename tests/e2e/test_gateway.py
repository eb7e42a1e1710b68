"""A site gateway's batches through the real broker and worker: every robot's twin, the dead letters.

The simulator's sink sends three ticks of reports for robots of two sites as gateway records (one
per site and home partition, Arrow columns, keyed by the site: `KafkaSink(gateway=True)`), then a
batch that names one robot twice. The worker serves every robot's twin at its last report, and the
second report of the repeated robot is dead-lettered with its reason, as the gateway's row in JSON;
a record whose first length points past its end is dead-lettered whole, and the worker folds on.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import msgspec
from aiokafka import AIOKafkaProducer

from streams.kafka_client import partitioner
from streams.local.simulator import KafkaSink
from streams.settings import Settings
from tests.support.cases import event
from tests.support.topics import read_dlq
from tests.support.waiting import eventually
from twin import gateway
from twin.schema import Event
from twin.validate import decode

SITES = (("mining", "mining-pilbara-01"), ("logistics", "log-rotterdam-01"))


def report(robot: str, seq: int, ts: float, sector: str, site: str) -> Event:
    return msgspec.convert(event(robot, seq=seq, ts=ts, sector=sector, site=site), Event)


def dlq_count(worker: str, reason: str) -> float:
    line = next(x for x in httpx.get(f"{worker}/metrics").text.splitlines()
                if x.startswith(f'twin_dlq_total{{reason="{reason}"}}'))
    return float(line.rsplit(" ", 1)[1])


async def test_gateway_batches_become_twins_and_a_repeated_robot_a_dead_letter(
        worker: str, api: httpx.Client, settings: Settings) -> None:
    run, now = uuid.uuid4().hex[:8], time.time()
    robots = {f"gw-{run}-{i:02d}": SITES[i % 2] for i in range(24)}
    before = dlq_count(worker, "repeated_robot")
    async with KafkaSink(settings, gateway=True) as sink:
        for seq in (1, 2, 3):
            await sink.send([report(r, seq, now + seq, *where) for r, where in robots.items()])
    twice = next(iter(robots))
    sector, site = robots[twice]
    again = [report(twice, 4, now + 4, sector, site), report(twice, 5, now + 5, sector, site)]
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(settings.telemetry_topic, gateway.encode(again), key=site.encode(),
                                     partition=partitioner(settings.partitions)(twice.encode()))
        broken = bytearray(gateway.encode(again))
        broken[4:8] = b"\xff\xff\xff\x7f"  # the schema message's length, far past the record's end
        await producer.send_and_wait(settings.telemetry_topic, bytes(broken), key=f"broken-{run}".encode())
    finally:
        await producer.stop()

    def twin(robot: str, seq: int) -> dict[str, Any] | None:
        r = api.get(f"/twins/{robot}")
        return r.json() if r.status_code == 200 and r.json()["seq"] == seq else None

    for robot in robots:
        served = eventually(lambda: twin(robot, 4 if robot == twice else 3))
        assert served["counts"]["events"] == (4 if robot == twice else 3)
        assert served["site"] == robots[robot][1]
    (letter,) = await read_dlq(settings, key=twice.encode(), want=1)
    headers = dict(letter.headers)
    assert headers["reason"] == b"repeated_robot" and decode(letter.value) == again[1]
    (whole,) = await read_dlq(settings, key=f"broken-{run}".encode(), want=1)
    assert dict(whole.headers)["reason"] == b"undecodable" and whole.value == bytes(broken)
    assert eventually(lambda: True if dlq_count(worker, "repeated_robot") == before + 1 else None)

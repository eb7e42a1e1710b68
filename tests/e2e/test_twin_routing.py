"""A twin lookup does not depend on what the worker's producer knows of the cluster.

Issue 17's worker answered 500 for every robot for minutes, /healthz ok, with
`TypeError: 'NoneType' object is not iterable` in aiokafka's
`AIOKafkaProducer._partition`, reached from Faust's `topic_route`. The producer's
metadata had lost the telemetry topic: once a producer sends to a topic its
metadata lacks, its client refreshes only the topics it sends to, and a worker
never sends to telemetry. Here a worker of the test's own, whose producer
refreshes its metadata every second (Faust reads PRODUCER_METADATA_MAX_AGE_MS
from the environment), is brought there the way a deployment can be: its
dead-letter topic is deleted and a bad event makes the worker send to it again.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from streams.kafka_client import client_kwargs
from streams.local.procs import http_ok
from streams.local.stack import Stack, settings_env
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.support.net import auth, free_port
from tests.support.telemetry import telemetry
from tests.support.waiting import eventually

METADATA_MAX_AGE_MS = 1000


@pytest.fixture(scope="module")
def forgetful(broker: str, settings: Settings, tmp_path_factory: pytest.TempPathFactory,
              ) -> Iterator[Settings]:
    """A worker of an app and topics of its own whose producer refreshes its metadata every second."""
    run = uuid.uuid4().hex[:8]
    own = settings.model_copy(update={
        "app_id": f"fleet-twin-route-{run}", "topic_prefix": f"route-{run}.", "web_port": free_port(),
        "state_dir": tmp_path_factory.mktemp("route-state"), "maintenance_webhook": ""})
    asyncio.run(ensure_topics(own))
    stack = Stack(own)
    env = {**settings_env(own), "PRODUCER_METADATA_MAX_AGE_MS": str(METADATA_MAX_AGE_MS)}
    try:
        stack.procs.spawn("worker", [sys.executable, "-m", "streams", "worker"], env)
        stack.procs.wait_ready("worker", http_ok(f"{own.web_url()}/healthz"), 90)
        yield own
    finally:
        stack.procs.stop("worker")


async def send(settings: Settings, topic: str, robot: str, value: bytes) -> None:
    producer = AIOKafkaProducer(**client_kwargs(settings))
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=robot.encode())
    finally:
        await producer.stop()


async def delete_topic(settings: Settings, topic: str) -> None:
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


def dead_lettered(base: str) -> bool | None:
    """The worker counts a message once the dead-letter topic has taken it."""
    lines = httpx.get(f"{base}/metrics").text.splitlines()
    return sum(float(line.split()[-1]) for line in lines if line.startswith("twin_dlq_total{")) >= 1 or None


def test_twins_answer_after_the_producer_forgot_the_telemetry_topic(forgetful: Settings) -> None:
    own = forgetful
    robot, bad = f"route-{uuid.uuid4().hex[:8]}", f"bad-{uuid.uuid4().hex[:8]}"
    base = own.web_url()
    asyncio.run(send(own, own.telemetry_topic, robot, telemetry(robot)))
    eventually(lambda: httpx.get(f"{base}/twins/{robot}", headers=auth(own)).status_code == 200 or None)

    asyncio.run(delete_topic(own, own.dlq_topic))
    time.sleep(3 * METADATA_MAX_AGE_MS / 1000)  # the producer's next full refresh no longer has it
    asyncio.run(send(own, own.telemetry_topic, bad, b'{"schema": 1, "robot_id": "' + bad.encode() + b'"}'))
    # the worker's send recreates the topic (auto-create) and leaves its producer tracking it alone
    eventually(lambda: dead_lettered(base), timeout_s=60)
    time.sleep(3 * METADATA_MAX_AGE_MS / 1000)

    codes = [httpx.get(f"{base}/twins/{robot}", headers=auth(own)).status_code for _ in range(10)]
    assert codes == [200] * 10, f"{codes}\n{Stack(own).procs.tail('worker')}"
    assert httpx.get(f"{base}/twins/never-seen-{robot}", headers=auth(own)).status_code == 404
    health = httpx.get(f"{base}/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok", health.text

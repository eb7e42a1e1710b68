"""`fleet-twin simulate` against the real broker: a robot told on fleet.commands to run another
AI-model version (and configuration) reports it after the apply delay; nobody else changes;
bad commands on the topic are counted and skipped, and the run goes on to its end."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.kafka_client import client_kwargs, partition_ids
from streams.local.stack import settings_env
from streams.settings import Settings
from twin.desired import Command
from twin.fleet import Fleet
from twin.schema import Event
from twin.sim.roster import place

ROBOTS, SEED, RUN_S, DELAY_S = 6, 5, 45, 6.0
"""A short run of a few robots; a change shows DELAY_S +-50% after the command."""
NEW = "policy-2.5.0"


async def _reports(settings: Settings, robots: list[str], until: float,
                   stop: Callable[[list[Event]], bool]) -> list[Event]:
    """The robots' reports on the telemetry topic, from its start, until `stop(seen)` or the deadline
    (other tests' records, hostile ones included, are told apart by their key and never decoded)."""
    keys = {r.encode() for r in robots}
    tps = [TopicPartition(settings.telemetry_topic, p) for p in sorted(await partition_ids(settings, settings.telemetry_topic))]
    consumer = AIOKafkaConsumer(**client_kwargs(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen: list[Event] = []
        while time.monotonic() < until and not stop(seen):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                seen += [msgspec.json.decode(r.value or b"", type=Event) for r in records if r.key in keys]
        return seen
    finally:
        await consumer.stop()


async def _tell(settings: Settings, robot: str, fields: dict[str, str]) -> float:
    """Put a command for `robot` on fleet.commands, with two bad records before it; return when it was acked."""
    producer = AIOKafkaProducer(**client_kwargs(settings))
    await producer.start()
    try:
        key = robot.encode()
        await producer.send_and_wait(settings.commands_topic, b"{not json", key=key)
        bad = Command(robot_id=robot, ts=time.time(), fields={"config.turbo": "on"}, change_ids=("bad",))
        await producer.send_and_wait(settings.commands_topic, msgspec.json.encode(bad), key=key)
        good = Command(robot_id=robot, ts=time.time(), fields=fields, change_ids=(uuid.uuid4().hex,))
        await producer.send_and_wait(settings.commands_topic, msgspec.json.encode(good), key=key)
        return time.time()
    finally:
        await producer.stop()


def test_a_robot_reports_the_version_it_is_told_after_the_delay(
    broker: str, settings: Settings, fleet: Fleet, tmp_path: Path
) -> None:
    fleet_id = f"obey{uuid.uuid4().hex[:6]}"
    robots = place(fleet, ROBOTS, SEED, fleet_id=fleet_id).robot_ids
    robot, other = robots[2], robots[3]
    log = tmp_path / "simulate.log"
    with open(log, "w") as out:
        sim = subprocess.Popen(
            [sys.executable, "-m", "streams", "simulate", "--no-progress", "--scenario", "steady",
             "--robots", str(ROBOTS), "--duration", str(RUN_S), "--seed", str(SEED), "--fleet-id", fleet_id,
             "--apply-delay-s", str(DELAY_S)],
            env={**os.environ, **settings_env(settings)}, stdout=out, stderr=subprocess.STDOUT)
    try:
        first = asyncio.run(_reports(settings, [robot], time.monotonic() + 60, lambda seen: len(seen) >= 2))
        assert len(first) >= 2, log.read_text()
        old, config = first[0].ai_model_version, first[0].reported_config()
        assert old != NEW and config.get("safety_profile") == "standard", first[0]
        sent = asyncio.run(_tell(settings, robot, {"ai_model": NEW, "config.safety_profile": "cautious"}))
        assert sim.wait(timeout=RUN_S + 60) == 0, log.read_text()
    finally:
        if sim.poll() is None:
            sim.kill()
    seen = asyncio.run(_reports(settings, [robot, other], time.monotonic() + 30,
                                lambda seen: sum(e.mode == "maintenance" for e in seen) >= 2))
    mine = sorted((e for e in seen if e.robot_id == robot), key=lambda e: e.seq)
    changed = next(e for e in mine if e.ai_model_version == NEW)
    # heard at the next tick (a fetch may take a moment), shown DELAY_S +-50% later
    assert 0.5 * DELAY_S - 2.0 <= changed.ts - sent <= 1.5 * DELAY_S + 4.0, (changed.ts, sent)
    assert all(e.ai_model_version == old for e in mine if e.seq < changed.seq)  # not before the delay
    assert all(e.ai_model_version == NEW and e.reported_config()["safety_profile"] == "cautious"
               for e in mine if e.seq > changed.seq)
    assert mine[-1].seq >= changed.seq + 5  # it went on reporting, on the new version
    untouched = {e.ai_model_version for e in seen if e.robot_id == other}
    assert len(untouched) == 1 and NEW not in untouched, untouched
    text = log.read_text()
    assert "commands: 1 scheduled, 0 dropped (robot offline), 2 bad" in text, text
    assert "not a command" in text and "cannot take this command" in text, text


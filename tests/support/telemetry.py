"""Robot reports for the end-to-end tier, and the ways they reach the broker (kcat, aiokafka)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from typing import Any

from aiokafka import AIOKafkaProducer

from streams.settings import Settings

NORMAL, FAULT = [4.0] * 90, [30.0] * 5
"""Joint currents for `drive`: 90 s of normal work (past warm-up and settling), then 30 A, far
above the amr's 0.5-8 A band."""


def telemetry(robot_id: str, seq: int = 1, **changes: Any) -> bytes:
    """One valid report stamped now (a logistics amr unless `changes` say otherwise)."""
    body = {
        "schema": 1, "robot_id": robot_id, "seq": seq, "ts": time.time(),
        "sector": "logistics", "site": "log-rotterdam-01", "model": "amr", "mode": "working",
        "signals": {"battery_soc_pct": 77.5, "speed_mps": 1.1},
    }
    body.update(changes)
    return json.dumps(body).encode()


def report(robot: str, seq: int, ts: float, current: float) -> bytes:
    """A retail amr's report with the joint current `current`."""
    return json.dumps({
        "schema": 1, "robot_id": robot, "seq": seq, "ts": ts, "sector": "retail",
        "site": "retail-london-01", "model": "amr", "mode": "working",
        "signals": {"joint1_current_a": current, "battery_soc_pct": 70.0 + seq % 5 * 0.1,
                    "speed_mps": 1.0 + seq % 4 * 0.01},  # real sensors are never exactly constant
    }).encode()


def kcat_produce(settings: Settings, key: str, value: bytes, compression: str = "none") -> None:
    """One record from kcat (librdkafka), in a record batch of `compression` (kcat's -z)."""
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    assert kcat, "kcat is installed by `make test` (Debian package kafkacat)"
    subprocess.run(
        [kcat, "-b", settings.bootstrap, "-t", settings.telemetry_topic, "-P", "-K", "\t", "-z", compression],
        input=key.encode() + b"\t" + value + b"\n", check=True, timeout=30,
    )


async def drive(settings: Settings, robot: str, start: float, currents: list[float], first_seq: int = 1) -> None:
    """Reports one second apart from `start`, stamped with their event time at the broker too
    (as a robot's own producer would), so no clock looks skewed."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap)
    await producer.start()
    try:
        for seq, current in enumerate(currents, start=first_seq):
            ts = start + seq
            await producer.send(settings.telemetry_topic, report(robot, seq, ts, current + seq % 3 * 0.1),
                                key=robot.encode(), timestamp_ms=int(ts * 1000))
        await producer.flush()
    finally:
        await producer.stop()

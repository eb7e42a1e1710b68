"""Publish the simulated fleet to Kafka at a controlled rate.

The simulator's physics live in `twin.sim` (pure, seeded); this module only
paces ticks against the wall clock and moves bytes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiokafka import AIOKafkaProducer

from streams.settings import Settings
from twin.fleet import Fleet
from twin.schema import encode
from twin.sim import Simulator, make_roster

Progress = Callable[[int, int], None]
"""Called after each tick with (ticks done, events sent so far)."""


async def publish(
    settings: Settings,
    fleet: Fleet,
    *,
    robots: int,
    rate_hz: float,
    duration_s: float | None,
    seed: int,
    on_tick: Progress | None = None,
) -> int:
    """Send one report per robot every 1/rate_hz seconds; return events sent."""
    sim = Simulator(fleet, make_roster(fleet, robots, seed), seed=seed)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, linger_ms=5, acks=1)
    await producer.start()
    sent, tick, start = 0, 0, time.time()
    try:
        while duration_s is None or tick / rate_hz < duration_s:
            await _sleep_until(start + tick / rate_hz)
            batch = sim.step(ts=round(time.time(), 3))
            futures = [
                await producer.send(settings.telemetry_topic, encode(e), key=e.robot_id.encode())
                for e in batch
            ]
            await asyncio.gather(*futures)
            sent, tick = sent + len(batch), tick + 1
            if on_tick:
                on_tick(tick, sent)
    finally:
        await producer.stop()
    return sent


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.time()
    if delay > 0:
        await asyncio.sleep(delay)

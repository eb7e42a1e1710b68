"""Run a scenario: to Kafka at a controlled pace, or to a file as fast as it goes.

The simulator itself is `twin.sim` (pure, seeded); this module paces ticks
against the wall clock, batches the bytes to Kafka and writes files. Ground
truth labels always land beside the events, as Parquet.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import polars as pl
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from streams.kafka_client import client_kwargs
from streams.settings import Settings
from twin.schema import Event
from twin.sim import FleetSim
from twin.frames import events_to_frame, labels_to_frame

OnTick = Callable[[int, int], None]
"""Called after each tick with (ticks done, events sent so far)."""

_encoder = msgspec.json.Encoder()


class KafkaSink:
    """Sends each tick's events in per-partition batches (far faster than one send per event).

    Partitions are chosen by the same murmur2 partitioner as every Kafka client,
    so a robot's events land where a keyed `send` would put them.
    """

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.telemetry_topic
        self.producer = AIOKafkaProducer(
            **client_kwargs(settings), linger_ms=20, acks=1,
            max_batch_size=1 << 20, compression_type=None,
        )
        self.partitioner = DefaultPartitioner()
        self.partitions: list[int] = []

    async def __aenter__(self) -> KafkaSink:
        await self.producer.start()
        self.partitions = sorted(await self.producer.partitions_for(self.topic))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def send(self, events: list[Event]) -> None:
        await asyncio.gather(*await self.enqueue(events))

    async def enqueue(self, events: list[Event]) -> list[asyncio.Future[object]]:
        """Hand the events to the producer without waiting for the broker; return the deliveries.

        A paced sender that awaits each tick's acknowledgements waits out `linger_ms`
        every tick; enqueueing in order and checking the deliveries later keeps each
        partition's order and goes at the producer's own pace.
        """
        batches: dict[int, object] = {}
        pending: list[asyncio.Future[object]] = []
        for event in events:
            key = event.robot_id.encode()
            part = self.partitioner(key, self.partitions, self.partitions)
            batch = batches.get(part) or batches.setdefault(part, self.producer.create_batch())
            if batch.append(key=key, value=_encoder.encode(event), timestamp=None) is None:  # type: ignore[attr-defined]
                pending.append(await self.producer.send_batch(batch, self.topic, partition=part))
                batches[part] = batch = self.producer.create_batch()
                batch.append(key=key, value=_encoder.encode(event), timestamp=None)
        for part, batch in batches.items():
            pending.append(await self.producer.send_batch(batch, self.topic, partition=part))
        return pending


async def to_kafka(settings: Settings, sim: FleetSim, *, speed: float, on_tick: OnTick | None,
                   labels: LabelLog | None = None, sign_off: bool = False) -> int:
    """Publish every tick of `sim`, one tick per 1/(rate*speed) wall seconds; return events sent.

    With `sign_off`, the run ends (or is interrupted) with `FleetSim.sign_off`:
    its robots then rest in maintenance instead of falling silent, which would
    keep a worker raising offline anomalies and site incidents for a finished run.
    """
    sent, wall_start = 0, time.monotonic()
    async with KafkaSink(settings) as sink:
        try:
            for tick in range(sim.ticks):
                await _sleep_until(wall_start + tick * sim.dt / speed)
                events = sim.step()
                if labels:
                    labels.update()
                await sink.send(events)
                sent += len(events)
                if on_tick:
                    on_tick(tick + 1, sent)
        finally:
            if sign_off:
                await sink.send(sim.sign_off())
    return sent


def to_file(sim: FleetSim, path: Path, on_tick: OnTick | None, labels: LabelLog | None = None) -> int:
    """Write every tick of `sim` to Parquet (`.parquet`) or JSON lines (any other suffix)."""
    if path.suffix == ".parquet":
        events = [e for batch in _ticks(sim, on_tick, labels) for e in batch]
        events_to_frame(events).write_parquet(path)
        return len(events)
    written = 0
    with open(path, "wb") as out:
        for batch in _ticks(sim, on_tick, labels):
            out.write(b"".join(_encoder.encode(e) + b"\n" for e in batch))
            written += len(batch)
    return written


def _ticks(sim: FleetSim, on_tick: OnTick | None, labels: LabelLog | None) -> Iterator[list[Event]]:
    done = 0
    for tick in range(sim.ticks):
        batch = sim.step()
        if labels:
            labels.update()
        done += len(batch)
        yield batch
        if on_tick:
            on_tick(tick + 1, done)


class LabelLog:
    """A run's ground truth in one Parquet file, written before the faults it names happen.

    A repeating scenario draws its faults cycle by cycle: the file is rewritten
    (whole, then renamed over the old one, so a reader never sees half of it)
    as each cycle begins, with every cycle so far. A few dozen rows per cycle.
    """

    def __init__(self, sim: FleetSim, path: Path) -> None:
        self.sim = sim
        self.path = path
        self.cycle = -1
        self.frame = labels_to_frame([])
        self.update()

    def update(self) -> pl.DataFrame:
        """Add the cycles begun since the last call (nothing to do most ticks)."""
        if self.sim.cycle == self.cycle:
            return self.frame
        new = [lab for k in range(self.cycle + 1, self.sim.cycle + 1) for lab in self.sim.labels(k)]
        self.frame = pl.concat([self.frame, labels_to_frame(new)])
        self.cycle = self.sim.cycle
        self.path.parent.mkdir(parents=True, exist_ok=True)
        part = self.path.with_name(self.path.name + ".part")
        self.frame.write_parquet(part)
        os.replace(part, self.path)
        return self.frame


def new_fleet_id() -> str:
    """A fleet id for one run to Kafka: its robots are not those of any other run."""
    return f"sim{secrets.token_hex(3)}"


def write_labels(sim: FleetSim, path: Path) -> pl.DataFrame:
    frame = labels_to_frame(sim.labels())
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path)
    return frame


def labels_path(events_path: Path) -> Path:
    """Where the ground truth of an events file goes: `run.parquet` -> `run.labels.parquet`."""
    return events_path.with_name(events_path.name.split(".")[0] + ".labels.parquet")


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)

"""Run a scenario: to Kafka at a controlled pace, or to a file as fast as it goes.

The simulator itself is `twin.sim` (pure, seeded); this module paces ticks
against the wall clock, batches the bytes to Kafka and writes files. Ground
truth labels always land beside the events, as Parquet. A run to Kafka also
listens on `fleet.commands` and hands each command to its robots between
ticks (`CommandFeed`): the simulated fleet obeys its desired state.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import polars as pl
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from streams.kafka_client import client_kwargs, partition_ids
from streams.settings import Settings
from twin import gateway as gateway_format
from twin.desired import Command
from twin.schema import Event
from twin.sim import FleetSim
from twin.sim.commands import BadCommand
from twin.frames import events_to_frame, labels_to_frame

log = logging.getLogger(__name__)

OnTick = Callable[[int, int], None]
"""Called after each tick with (ticks done, events sent so far)."""

_encoder = msgspec.json.Encoder()
_commands = msgspec.json.Decoder(Command)


@dataclass
class Obeyed:
    """What became of the commands a run heard (`FleetSim.command`'s outcomes, and the bad ones)."""

    scheduled: int = 0
    offline: int = 0
    elsewhere: int = 0
    """For robots of another run: every simulator hears every command."""
    bad: int = 0
    """Undecodable, or for a field the robot does not have: logged, then skipped."""

    def __str__(self) -> str:
        return (f"commands: {self.scheduled} scheduled, {self.offline} dropped (robot offline), "
                f"{self.bad} bad, {self.elsewhere} for other fleets' robots")


class CommandFeed:
    """The simulator's ear on `fleet.commands`: a consumer of its own (no group), on every
    partition, from the end as the run starts (robots hear what is said while they run;
    the worker sends a robot its whole delta again when it reconnects)."""

    def __init__(self, settings: Settings, obeyed: Obeyed | None = None) -> None:
        self.settings = settings
        self.topic = settings.commands_topic
        self.consumer = AIOKafkaConsumer(**client_kwargs(settings), group_id=None, enable_auto_commit=False)
        self.obeyed = obeyed or Obeyed()
        self.listening = False

    async def __aenter__(self) -> CommandFeed:
        parts = sorted(await partition_ids(self.settings, self.topic))
        await self.consumer.start()
        if not parts:
            log.warning("no topic %s: the simulated robots will not hear any command", self.topic)
            return self
        tps = [TopicPartition(self.topic, p) for p in parts]
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the end now, so a command sent once the run began is never skipped
            await self.consumer.position(tp)
        self.listening = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def hand_to(self, sim: FleetSim) -> None:
        """Give every command that arrived since the last call to `sim`'s robots, as of its next tick."""
        if not self.listening:
            return
        batches = await self.consumer.getmany(timeout_ms=0)
        for records in batches.values():
            for record in records:
                obey(sim, record, self.obeyed)


def obey(sim: FleetSim, record: ConsumerRecord[bytes, bytes], obeyed: Obeyed) -> None:
    """One record of `fleet.commands` to its robot; a bad one is logged and counted, never raised."""
    where = f"{record.topic}[{record.partition}]@{record.offset}"
    try:
        command = _commands.decode(record.value or b"")
        outcome = sim.command(command.robot_id, command.fields, sim.now)
    except (msgspec.DecodeError, msgspec.ValidationError) as err:
        obeyed.bad += 1
        log.warning("%s: not a command (twin.desired.Command JSON): %s", where, err)
        return
    except BadCommand as err:
        obeyed.bad += 1
        log.warning("%s: robot %s cannot take this command: %s", where, command.robot_id, err)
        return
    setattr(obeyed, outcome, getattr(obeyed, outcome) + 1)
    if outcome != "elsewhere":
        log.info("%s: robot %s %s %s", where, command.robot_id, outcome, command.fields)


Wire = tuple[int, bytes, bytes, int | None]
"""One telemetry record as `KafkaSink` sends it: partition, key, value, timestamp (ms; None: the broker's)."""


class KafkaSink:
    """Sends each tick's events in per-partition batches (far faster than one send per event).

    Partitions are chosen by the same murmur2 partitioner as every Kafka client,
    so a robot's events land where a keyed `send` would put them.

    `event_time`: each record's timestamp is its event's `ts` (the broker keeps a
    producer's CreateTime), as if it had reached the broker when it was made. A log
    sent faster than its event time runs (a pre-filled benchmark topic) otherwise
    reads to the worker as clocks far behind the broker's, and opens `clock_skew`
    on most robots.

    `gateway`: each tick's events go as site gateways send them (`twin.gateway`): one record per site
    and home partition, holding one report per robot as Arrow columns, keyed by the site.
    """

    def __init__(self, settings: Settings, *, event_time: bool = False, gateway: bool = False) -> None:
        self.topic = settings.telemetry_topic
        self.event_time = event_time
        self.gateway = gateway
        self.partitioner = DefaultPartitioner()
        self.producer = AIOKafkaProducer(
            **client_kwargs(settings), linger_ms=20, acks=1,
            max_batch_size=1 << 20, compression_type=None,
        )
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
        return await self.enqueue_encoded(self.encoded(events))

    def encoded(self, events: list[Event]) -> list[Wire]:
        """The events as the records `enqueue` sends: (partition, key, value, timestamp in ms or None).
        A sender that must go faster than it can encode (a load test's burst) encodes ahead."""
        return wire(events, self.partitions, event_time=self.event_time, gateway=self.gateway)

    async def enqueue_encoded(self, records: list[Wire]) -> list[asyncio.Future[object]]:
        """`enqueue` of records already `encoded`."""
        batches: dict[int, object] = {}
        pending: list[asyncio.Future[object]] = []
        for part, key, value, stamp in records:
            batch = batches.get(part) or batches.setdefault(part, self.producer.create_batch())
            if batch.append(key=key, value=value, timestamp=stamp) is None:  # type: ignore[attr-defined]
                pending.append(await self.producer.send_batch(batch, self.topic, partition=part))
                batches[part] = batch = self.producer.create_batch()
                batch.append(key=key, value=value, timestamp=stamp)
        for part, batch in batches.items():
            pending.append(await self.producer.send_batch(batch, self.topic, partition=part))
        return pending


def wire(events: list[Event], partitions: list[int], *, event_time: bool = False, gateway: bool = False
         ) -> list[Wire]:
    """`KafkaSink.encoded`: a record per event keyed by its robot, or with `gateway` a record per site
    and home partition (`twin.gateway.batches`; stamped, with `event_time`, with its newest event's time)."""
    choose = DefaultPartitioner()

    def partition_of(key: bytes) -> int:
        return int(choose(key, partitions, partitions))
    if gateway:
        return [(b.partition, b.site.encode(), gateway_format.encode(b.events),
                 round(max(e.ts for e in b.events) * 1000) if event_time else None)
                for b in gateway_format.batches(events, partition_of)]
    out: list[Wire] = []
    for event in events:
        key = event.robot_id.encode()
        out.append((partition_of(key), key, _encoder.encode(event), round(event.ts * 1000) if event_time else None))
    return out


async def to_kafka(settings: Settings, sim: FleetSim, *, speed: float, on_tick: OnTick | None,
                   labels: LabelLog | None = None, sign_off: bool = False, obeyed: Obeyed | None = None,
                   gateway: bool = False) -> int:
    """Publish every tick of `sim`, one tick per 1/(rate*speed) wall seconds; return events sent.

    Between ticks the robots hear the commands on `fleet.commands` (`CommandFeed`;
    `obeyed` counts what became of them). With `sign_off`, the run ends (or is
    interrupted) with `FleetSim.sign_off`: its robots then rest in maintenance
    instead of falling silent, which would keep a worker raising offline
    anomalies and site incidents for a finished run. `gateway`: sent as site gateways send (`KafkaSink`).
    """
    sent = 0
    async with KafkaSink(settings, gateway=gateway) as sink, CommandFeed(settings, obeyed) as feed:
        wall_start = time.monotonic()
        try:
            for tick in range(sim.ticks):
                await _sleep_until(wall_start + tick * sim.dt / speed)
                await feed.hand_to(sim)
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

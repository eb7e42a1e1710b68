"""The worker's readers of `fleet.desired` and `fleet.rollouts`: whole topics, every worker.

Telemetry is split among workers by partition; desired state is not: every
worker needs every change, since a selector (a sector, a model, a share of
the fleet) covers robots on any partition. So each worker reads both topics
whole, from the beginning, with a consumer of its own (all partitions
assigned, no consumer group, no committed offsets): `fleet.desired` is
compacted, so its start is the latest change per (selector, field), and
after a restart, `kill -9` included, the worker folds it again to the same
rules.

A desired record is folded with `twin.fleet_fold.on_desired` into the
ingest's `FleetState` (where `twin.pipeline.feed` resolves it per event) and
into the `DesiredBook` the views read. A record that does not decode or
check goes to the dead-letter topic with its reason; it never stops the
reader. Once the reader has caught up with the topic, each new change sends
`on_desired_commands` for the twins this worker holds to `fleet.commands`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.kafka_client import client_kwargs, partition_ids
from streams.settings import Settings
from streams.worker.control_metrics import GATE_DECODER
from streams.worker.desired_book import DesiredBook
from streams.worker.ingest import Ingest, LogMessage, Outbox
from twin.desired import DesiredRules, reachable
from twin.exceptions import InvalidEvent
from twin.fleet import Fleet
from twin.fleet_fold import on_desired, on_desired_commands
from twin.plan import GateRecord
from twin.record import Record

log = logging.getLogger(__name__)

RETRY_S = 2.0
"""Wait before reconnecting after the consumer failed (the broker away, say)."""


class TopicTail:
    """Reads every partition of one topic from its beginning, then follows it, with no consumer group.

    `take` gets each record once, in offset order per partition; `caught_up` is
    set once the records that were in the topic at start have all been taken.
    A consumer failure reconnects where the reader had got to, never from the start again.
    """

    def __init__(self, settings: Settings, topic: str, take: Callable[[Any], Awaitable[None]],
                 caught_up: asyncio.Event | None = None) -> None:
        self._settings = settings
        self._topic = topic
        self._take = take
        self._next: dict[int, int] = {}
        self._ends: dict[int, int] | None = None
        self.caught_up = caught_up or asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - the reader must outlive a broker outage
                log.warning("reading %s failed (%r); reconnecting in %.0fs", self._topic, err, RETRY_S)
                await asyncio.sleep(RETRY_S)

    async def _follow(self) -> None:
        consumer = AIOKafkaConsumer(**client_kwargs(self._settings), group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            tps = await self._assign(consumer)
            if self._ends is None:
                self._ends = {tp.partition: n for tp, n in (await consumer.end_offsets(tps)).items()}
            self._check_caught_up()
            while True:
                for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                    for record in records:
                        await self._take(record)
                        self._next[tp.partition] = record.offset + 1
                self._check_caught_up(await _positions(consumer, tps))
        finally:
            await consumer.stop()

    async def _assign(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        while not (partitions := await partition_ids(self._settings, self._topic)):
            if self._ends is None:  # no topic yet: nothing to catch up with
                log.warning("topic %s does not exist yet; waiting for it", self._topic)
                self._ends = {}
                self._check_caught_up()
            await asyncio.sleep(RETRY_S)
        tps = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        for tp in tps:
            if tp.partition in self._next:
                consumer.seek(tp, self._next[tp.partition])
            else:
                await consumer.seek_to_beginning(tp)
        return tps

    def _check_caught_up(self, positions: dict[int, int] | None = None) -> None:
        if self.caught_up.is_set() or self._ends is None:
            return
        at = positions if positions is not None else self._next
        if all(at.get(p, 0) >= end for p, end in self._ends.items()):
            self.caught_up.set()


async def _positions(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> dict[int, int]:
    return {tp.partition: await consumer.position(tp) for tp in tps}


class DesiredReader:
    """Folds `fleet.desired` into the ingest's fleet state and the views' book; sends the commands."""

    def __init__(self, settings: Settings, fleet: Fleet, ingest: Ingest, book: DesiredBook, outbox: Outbox,
                 caught_up: asyncio.Event | None = None) -> None:
        self._fleet = fleet
        self._ingest = ingest
        self._book = book
        self._outbox = outbox
        self.tail = TopicTail(settings, settings.desired_topic, self.take, caught_up)

    async def run(self) -> None:
        await asyncio.gather(self.tail.run(), self._resend_after_catching_up())

    async def take(self, record: Any) -> None:
        """Fold one record; dead-letter it if it is bad; after catching up, send what it changes."""
        message = LogMessage.of(record)
        before = self._ingest.state
        state, error = on_desired(before, Record("desired", message.partition, message.offset, message.timestamp,
                                                 message.key, message.value), self._fleet)
        if error is not None:
            log.warning("fleet.desired[%s]@%s rejected: %s", message.partition, message.offset, error)
            await self._outbox.dead_letter(message, error)
            return
        self._ingest.state = state  # no await since `before` was read: no batch folded in between
        self._book.fold(state.desired)
        if self.tail.caught_up.is_set():
            await self._send(before.desired, state.desired, message.timestamp)

    async def _resend_after_catching_up(self) -> None:
        """Once caught up, send each twin held its delta once (Faust starts tasks after table recovery).

        A change published while no worker ran (or this one was restarting) was
        folded silently while catching up: its robots get their commands here.
        Sending a robot its delta again is harmless (it holds no news for one
        that already applied it, and robots with no delta get nothing).
        """
        await self.tail.caught_up.wait()
        await self._send(DesiredRules(), self._ingest.state.desired, time.time())

    async def _send(self, before: DesiredRules, after: DesiredRules, at: float) -> None:
        """Send until the broker takes them: the change is folded already, and a re-read would send nothing."""
        commands = on_desired_commands(before, after, self._ingest.twins(reachable(before, after)), at)
        delay = 0.5
        while True:
            try:
                await self._outbox.commands(commands, cause="change")
                return
            except Exception as err:  # noqa: BLE001 - whatever the producer says, the commands must not be lost
                log.warning("fleet.commands refused %d commands (%r); retrying in %.1fs", len(commands), err, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)


class RolloutReader:
    """The latest gate look per plan, from `fleet.rollouts` (the rollout controller writes it)."""

    def __init__(self, settings: Settings, outbox: Outbox) -> None:
        self._outbox = outbox
        self.latest: dict[str, GateRecord] = {}
        self.tail = TopicTail(settings, settings.rollouts_topic, self.take)

    async def run(self) -> None:
        await self.tail.run()

    async def take(self, record: Any) -> None:
        message = LogMessage.of(record)
        try:
            look = GATE_DECODER.decode(message.value)
        except msgspec.DecodeError as err:  # ValidationError is one
            await self._outbox.dead_letter(message, InvalidEvent("undecodable", f"not a gate record: {err}"))
            return
        held = self.latest.get(look.plan)
        if held is None or look.ts >= held.ts:
            self.latest[look.plan] = look

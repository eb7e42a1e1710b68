"""The worker's own consumer of its share of a log: batches of bytes, no Faust stream.

Two readers run in each worker: ingest's, of telemetry and silence checks, and the reader of
`fleet.anomalies` (site incidents, then alerts). Faust's per-record stream costs far more per
record than the batch fold does (docs/BATCH_ENGINE.md, "The worker's own consumer": 130-167 us per
record against 1.8-2.6 us for `getmany` under the same load), and it passes over records fetched
before a rebalance (docs/RELIABILITY.md, "the lost tick"). So each reads with a plain aiokafka
consumer that joins no group: the worker gives it the partitions it is active for (`assign`) with
where to start, and takes them back (`release`) before a rebalance hands them to another worker.
It moves bytes only: what a batch means is the `fold` callback's business.

Why no group: Faust's group owns the assignment, and a commit from outside it into that group is
refused while the group is stable (and accepted when it is empty: a trap). A reader commits what
it has folded into a group of its own (`<app_id>-ingest`, `<app_id>-alerts`): where the next
owner of a partition starts (`handover`), and what lag tools see.

Checkpoints: a reader given a `checkpoint` callback commits a partition only after a checkpoint of
it (every `every_s` seconds, after a fetch that comes back empty, and before it lets its partitions
go), so what a crash loses between two checkpoints is re-read from the last commit; a batch or
checkpoint that fails sends the reader back to the last commits (the caller's `refold` drops what
its state holds since). The partitions' checkpoints are spread over the interval, one at a time,
the longest-waiting first (after an empty fetch too): a checkpoint runs on the event loop, and one
of every robot held at once would stall the fold (and the views) for as long as storing them all
takes. Without a callback, it commits after every batch.

One lock covers fetch, fold, checkpoint and commit: `release` waits for the batch in flight, takes a
checkpoint and no batch starts after it, so the handover to the next owner is exact (it starts where
this one's last fold ended).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from streams.kafka_client import client_kwargs
from streams.settings import Settings
from streams.worker.ingest import LogMessage

log = logging.getLogger(__name__)

Fold = Callable[[list[LogMessage]], Awaitable[None]]
"""Takes one batch (records of the partitions held, each partition's in offset order); returns once
the batch's effects are stored, or sent with the rest kept for the next `Checkpoint`."""

Checkpoint = Callable[[set[int]], Awaitable[None]]
"""Stores what the batches folded since the last checkpoint kept back, for these partition numbers
(of every topic read: telemetry p and checks p change the same twins); returns once it is durable:
the offsets of those partitions folded into it are then committed."""


RETRY_S = 1.0
"""Pause before a batch that failed (the broker refusing the worker's writes, say) is read again."""


def ingest_group(settings: Settings) -> str:
    """The consumer group ingest's reader commits to: where the next owner of a partition starts."""
    return f"{settings.app_id}-ingest"


def alerts_group(settings: Settings) -> str:
    """The consumer group the reader of `fleet.anomalies` (site incidents, then alerts) commits to."""
    return f"{settings.app_id}-alerts"


class IngestReader:
    """Reads the partitions it is given in batches of up to `batch_max` records within `within_s`."""

    def __init__(self, settings: Settings, fold: Fold, *, batch_max: int, within_s: float,
                 refold: Callable[[Mapping[tuple[str, int], int]], Awaitable[None]] | None = None,
                 group: str | None = None, checkpoint: Checkpoint | None = None, every_s: float = 0.0,
                 fetch_failed: Callable[[], None] = lambda: None) -> None:
        self._settings = settings
        self.group = group or ingest_group(settings)
        """Where the batches folded are committed (`ingest_group` unless told)."""
        self._fold = fold
        self._refold = refold
        """Told where each partition starts again after a batch or checkpoint failed (the caller
        drops what its state holds since the last commit), before those records are read again."""
        self._fetch_failed = fetch_failed
        """Told of each fetch that raised (the worker counts them: `twin_fetch_errors_total`)."""
        self._checkpoint = checkpoint
        self._every_s = every_s if checkpoint is not None else 0.0
        self._last = time.monotonic()
        """When the last checkpoint was made (the clock of the shell: how often, never what)."""
        self._stored: dict[int, float] = {}
        """Partition number -> when its last checkpoint was made."""
        self._batch_max = batch_max
        self._within_ms = max(int(within_s * 1000), 1)
        self._consumer: Any = None
        """Made in `start`: aiokafka binds a consumer to the running loop when it is made."""
        self._lock = asyncio.Lock()
        self._starting = asyncio.Lock()
        self._held: set[TopicPartition] = set()
        self._next: dict[TopicPartition, int] = {}
        """Per partition held: the offset after the last record folded (where the next batch starts)."""
        self._committed: dict[TopicPartition, int] = {}
        """Per partition held: the offset committed last (where a crash or a failed batch goes back to)."""
        self._started = False
        self._stopping = False
        self.batches = 0
        self.records = 0

    @property
    def held(self) -> set[tuple[str, int]]:
        """The (topic, partition) pairs being read now."""
        return {(tp.topic, tp.partition) for tp in self._held}

    async def start(self) -> None:
        """Connect (also done by the first `assign`); idempotent."""
        async with self._starting:
            if self._started:
                return
            s = self._settings
            self._consumer = AIOKafkaConsumer(
                **client_kwargs(s), group_id=self.group, enable_auto_commit=False,
                auto_offset_reset="earliest", fetch_max_bytes=s.fetch_max_bytes,
                max_partition_fetch_bytes=min(s.max_event_bytes * 64, s.fetch_max_bytes))
            await self._consumer.start()
            self._started = True

    async def stop(self) -> None:
        """Finish the batch in flight and checkpoint, then close (no batch starts after this is called)."""
        self._stopping = True
        async with self._lock:
            if self._held:
                await self._store(self._pending())
            self._held = set()
            if self._started:
                await self._consumer.stop()

    def lag(self, topic: str) -> dict[int, int]:
        """Records not yet folded, per partition of `topic` being read (the broker's high watermark
        as the last fetch saw it, less where the next batch starts)."""
        out: dict[int, int] = {}
        for tp in self._held:
            high = self._consumer.highwater(tp) if tp.topic == topic else None
            if high is not None:
                out[tp.partition] = max(high - self._next.get(tp, high), 0)
        return out

    async def assign(self, starts: Mapping[tuple[str, int], int]) -> None:
        """Read exactly these partitions from now on, each from its start offset (the next one to fold)."""
        await self.start()
        async with self._lock:
            tps = {TopicPartition(topic, p): offset for (topic, p), offset in starts.items()}
            self._consumer.assign(list(tps))
            for tp, offset in tps.items():
                self._consumer.seek(tp, offset)
            self._held = set(tps)
            self._next = dict(tps)
            self._committed = dict(tps)
            self._last, self._stored = time.monotonic(), {}

    async def release(self) -> None:
        """Stop reading every partition once the batch in flight is folded, checkpointed and committed
        (if that fails, the next owner starts from the commit before: it re-reads, nothing is lost)."""
        async with self._lock:
            if self._held:
                await self._store(self._pending())
            if self._started:
                self._consumer.assign([])
            self._held = set()
            self._next = {}
            self._committed = {}

    async def run(self) -> None:
        """Fetch, fold, commit, until `stop`. Idle (no partitions) it waits a fetch interval."""
        while not self._stopping:
            if not await self.step():
                await asyncio.sleep(self._within_ms / 1000)

    async def step(self) -> bool:
        """One fetch and its fold, then a checkpoint if one is due; False when nothing is held or the
        fetch brought nothing."""
        async with self._lock:
            if not self._held or self._stopping:
                return False
            try:
                fetched = await self._consumer.getmany(timeout_ms=self._within_ms, max_records=self._batch_max)
            except Exception:  # noqa: BLE001 - one unreadable fetch must not end ingest (docs/RELIABILITY.md)
                log.exception("a fetch failed; fetching again from the next unfolded offsets in %.0f s", RETRY_S)
                self._fetch_failed()
                await self._fetch_again()
                return True
            batch = _in_order(fetched, self._held)
            if batch:
                try:
                    await self._fold(batch)
                except Exception:  # noqa: BLE001 - the worker must not stop ingesting: read the batch again
                    log.exception("a batch of %d records failed; reading from the last commit again in %.0f s",
                                  len(batch), RETRY_S)
                    await self._again()
                    return True
                for m in batch:
                    self._next[TopicPartition(m.topic, m.partition)] = m.offset + 1
                self.batches += 1
                self.records += len(batch)
            await self._store(self._due(dry=not batch))
            return bool(batch)

    def _pending(self) -> set[int]:
        """Partition numbers with records folded since their last commit."""
        return {tp.partition for tp, n in self._next.items() if n != self._committed.get(tp)}

    def _due(self, dry: bool) -> set[int]:
        """The partitions to checkpoint after a fetch: every pending one when each batch is stored,
        else the longest-waiting one, once every `every_s` / (partitions held) seconds or at once
        after a fetch that brought nothing (`dry`).

        One at a time when dry too: under a steady load a fetch comes back empty now and then (the
        broker or the worker held up for a fetch interval), and storing every partition then stalled
        ingest for all the robots held at once (7,300-8,500 twins, 0.11-0.21 s of CPU to encode them
        before their store, every ~5 s at 10,000 robots). Idle, successive empty fetches store the partitions one after another."""
        pending = self._pending()
        if not pending or self._every_s <= 0:
            return pending
        held = len({tp.partition for tp in self._held})
        if not dry and time.monotonic() - self._last < self._every_s / max(held, 1):
            return set()
        return {min(pending, key=lambda p: self._stored.get(p, 0.0))}

    async def _store(self, partitions: set[int]) -> None:
        """Checkpoint what was folded into `partitions` since their last commit, then commit them; a
        failed checkpoint sends the reader back to the last commits."""
        if not partitions:
            return
        if self._checkpoint is not None:
            try:
                await self._checkpoint(partitions)
            except Exception:  # noqa: BLE001 - nothing folded since the last commit is lost: it is read again
                log.exception("a checkpoint failed; reading from the last commit again in %.0f s", RETRY_S)
                await self._again()
                return
        await self._commit(partitions)

    async def _fetch_again(self) -> None:
        """Every held partition back to the next offset not folded yet: a fetch that raised may have
        taken records of other partitions with it, and none may be passed over."""
        for tp, offset in self._next.items():
            self._consumer.seek(tp, offset)
        await asyncio.sleep(RETRY_S)

    async def _again(self) -> None:
        """Back to the last commit, in the caller's state and in the consumer."""
        self._next = dict(self._committed)
        if self._refold is not None:
            await self._refold({(tp.topic, tp.partition): offset for tp, offset in self._next.items()})
        await self._fetch_again()

    async def _commit(self, partitions: set[int]) -> None:
        """The next offset of `partitions` into the reader's group (where a worker taking a
        partition starts, `handover`); a failure is logged and left: the next commit covers it,
        and a crash before then re-reads records the twins' offsets mark as redelivered."""
        nexts = {tp: OffsetAndMetadata(n, "") for tp, n in self._next.items() if tp.partition in partitions}
        self._committed.update({tp: n.offset for tp, n in nexts.items()})
        self._last = now = time.monotonic()
        self._stored.update(dict.fromkeys(partitions, now))
        try:
            await self._consumer.commit(nexts)
        except Exception as exc:  # noqa: BLE001 - lag tools see an older offset until the next commit
            log.warning("could not commit %d partitions to %s (%r)", len(nexts), self.group, exc)


def _in_order(fetched: Mapping[TopicPartition, Sequence[Any]], held: set[TopicPartition]) -> list[LogMessage]:
    """The fetched records of partitions still held, partition by partition in offset order (a fetch
    that raced a reassignment may hold records of a partition given away: they are not ours)."""
    out: list[LogMessage] = []
    for tp in sorted(fetched, key=lambda tp: (tp.topic, tp.partition)):
        if tp in held:
            out += [LogMessage.of(r) for r in fetched[tp]]
    return out

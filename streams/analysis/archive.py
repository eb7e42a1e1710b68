"""`fleet-twin archive`: the topics in Parquet for good, and the reader that replays them.

Kafka keeps a bounded history; the archive keeps the rest. A consumer group
(`{app_id}-archive`) reads four topics and writes them as hive-partitioned
Parquet under one root (layout and columns: `streams.analysis.archive_layout`):

    telemetry/date=YYYY-MM-DD/sector=S/part-{partition}-{first}-{last}.parquet
    checks/date=YYYY-MM-DD/sector=__checks__/part-...   (silence checks: no place, one sector)
    anomalies/date=YYYY-MM-DD/sector=S|__fleet__/part-...
    desired/date=YYYY-MM-DD/sector=__desired__/part-...  (fleet.desired: selectors span sectors)

Delivery is at least once. Records are buffered and written when the buffer
holds `flush_rows` records or its oldest is `flush_s` old; each file is
written to a hidden temporary name, fsynced and renamed, and offsets are
committed only once every file of the flush is durable (and again before a
rebalance takes partitions away). A crash between the two writes some rows
twice; the reader keeps one row per (partition, offset).

`archive_records` reads telemetry, checks and desired changes back as `twin.record.Record`s,
the same records a Kafka source gives for the same window, so a replay runs
from the archive as it would from the log.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import polars as pl
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError
from aiokafka.structs import ConsumerRecord

from streams.kafka_client import client_kwargs
from streams.settings import Settings
from streams.analysis.archive_layout import DATASETS, FLEET, INVALID, KINDS, Dataset, gateway_parts, to_parts
from twin.record import Kind, Record
from twin.frames import ANOMALY_SCHEMA

_HIVE = {"date": pl.Date(), "sector": pl.String()}
_NAME = re.compile(r"^part-(\d+)-(\d+)-(\d+)\.parquet$")
_CHUNK = 200_000
"""Offsets per read of one partition: bounds the reader's memory, whatever the window."""


@dataclass
class ArchiveStats:
    """What an archive run has made durable so far."""

    records: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DATASETS, 0))
    files: int = 0
    bytes: int = 0
    commits: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def total(self) -> int:
        return sum(self.records.values())


OnProgress = Callable[[ArchiveStats, int], None]
"""Called after every fetch with the stats and the number of records buffered."""


# ---------------------------------------------------------------- writing


class _Buffer:
    """Records consumed but not yet written, and the offsets to commit once they are."""

    def __init__(self) -> None:
        self.records: dict[Dataset, list[Record]] = {d: [] for d in DATASETS}
        self.commit: dict[TopicPartition, int] = {}
        self.size = 0
        self.since: float | None = None

    def add(self, dataset: Dataset, tp: TopicPartition, messages: list[ConsumerRecord[bytes, bytes]]) -> None:
        rows, kind = self.records[dataset], KINDS[dataset]
        for m in messages:  # Kafka's milliseconds in seconds, exactly as Faust hands them to the worker
            rows.append(Record(kind, tp.partition, m.offset, m.timestamp / 1000.0, m.key, m.value or b""))
        if messages:
            self.commit[tp] = messages[-1].offset + 1
            self.size += len(messages)
            self.since = self.since or time.monotonic()

    def due(self, rows: int, seconds: float) -> bool:
        return self.size >= rows or (self.since is not None and time.monotonic() - self.since >= seconds)


def write_parts(root: Path, parts: dict[str, pl.DataFrame]) -> int:
    """Write each file atomically and durably (temp name, fsync, rename, fsync the folders); return bytes."""
    written, folders = 0, set[Path]()
    for relative, frame in parts.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(temporary, "wb") as out:
            frame.write_parquet(out, compression="zstd", statistics=True)
            out.flush()
            os.fsync(out.fileno())
            written += out.tell()
        os.replace(temporary, path)
        folders.update(p for p in path.parents if p == root or root in p.parents)
    for folder in folders:  # the renames, and any new folders, survive a power cut
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return written


class _Archiver:
    """The consumer's state: a buffer, a lock so a rebalance and the loop never flush at once, the stats."""

    def __init__(self, consumer: AIOKafkaConsumer, root: Path, max_bytes: int) -> None:
        self.consumer, self.root, self.max_bytes = consumer, root, max_bytes
        self.buffer = _Buffer()
        self.lock = asyncio.Lock()
        self.stats = ArchiveStats()

    async def flush(self) -> None:
        async with self.lock:
            buffer, self.buffer = self.buffer, _Buffer()
            if not buffer.size:
                return
            stats = await asyncio.to_thread(self._write, buffer)
            for dataset, count in stats.items():
                self.stats.records[dataset] += count
            try:
                await self.consumer.commit(buffer.commit)
                self.stats.commits += 1
            except CommitFailedError:
                pass  # the partitions moved on: their new owner re-reads, the reader drops the duplicates

    def _write(self, buffer: _Buffer) -> dict[str, int]:
        for dataset, rows in buffer.records.items():
            parts = to_parts(dataset, rows, self.max_bytes)
            if dataset == "telemetry":
                parts |= gateway_parts(rows, self.max_bytes)
            self.stats.bytes += write_parts(self.root, parts)
            self.stats.files += len(parts)
        return {d: len(rows) for d, rows in buffer.records.items()}


class _FlushOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no types: its base class is Any
    """Write and commit what was read from partitions before another member takes them."""

    def __init__(self, archiver: _Archiver) -> None:
        self.archiver = archiver

    async def on_partitions_revoked(self, revoked: object) -> None:
        await self.archiver.flush()

    async def on_partitions_assigned(self, assigned: object) -> None:
        pass


async def archive(settings: Settings, root: Path, *, once: bool = False, flush_rows: int = 100_000,
                  flush_s: float = 300.0, on_progress: OnProgress | None = None,
                  stop: asyncio.Event | None = None) -> ArchiveStats:
    """Archive telemetry, checks and anomalies under `root` until stopped, or once to the current end.

    Forever by default: SIGINT and SIGTERM (or `stop`, when given) end it
    after a last flush and commit. `once` drains each partition this member
    is assigned up to the end offset it had when assigned, then flushes,
    commits and returns. A `once` member that is assigned nothing (a group
    with more members than partitions) waits until it is.
    """
    topics: dict[str, Dataset] = {settings.telemetry_topic: "telemetry", settings.checks_topic: "checks",
                                  settings.anomalies_topic: "anomalies", settings.desired_topic: "desired"}
    consumer = AIOKafkaConsumer(
        **client_kwargs(settings), group_id=f"{settings.app_id}-archive",
        auto_offset_reset="earliest", enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    archiver = _Archiver(consumer, root, settings.max_event_bytes)
    consumer.subscribe(list(topics), listener=_FlushOnRevoke(archiver))
    stop, remove_handlers = _stop_event(stop)
    await consumer.start()
    try:
        ends: dict[TopicPartition, int] = {}
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500, max_records=min(flush_rows, 50_000))
            for tp, messages in batch.items():
                archiver.buffer.add(topics[tp.topic], tp, messages)
            if archiver.buffer.due(flush_rows, flush_s):
                await archiver.flush()
            if on_progress:
                on_progress(archiver.stats, archiver.buffer.size)
            if once and await _drained(consumer, ends):
                break
        await archiver.flush()
        if on_progress:
            on_progress(archiver.stats, archiver.buffer.size)
    finally:
        remove_handlers()
        await consumer.stop()
    return archiver.stats


async def _drained(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    """Whether every assigned partition is read up to the end it had when first seen."""
    assigned = consumer.assignment()
    if not assigned:
        return False  # not joined yet
    new = [tp for tp in assigned if tp not in ends]
    if new:
        ends.update(await consumer.end_offsets(new))
    for tp in assigned:
        if await consumer.position(tp) < ends[tp]:
            return False
    return True


def _stop_event(stop: asyncio.Event | None) -> tuple[asyncio.Event, Callable[[], None]]:
    """The caller's stop event; without one, an event that SIGINT and SIGTERM set (main thread only)."""
    if stop is not None:
        return stop, lambda: None
    event, loop = asyncio.Event(), asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    try:
        for sig in signals:
            loop.add_signal_handler(sig, event.set)
    except (RuntimeError, ValueError):  # not the main thread: the caller stops us by cancelling
        return event, lambda: None

    def remove() -> None:
        for sig in signals:
            loop.remove_signal_handler(sig)

    return event, remove


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class _File:
    path: Path
    partition: int
    first: int
    last: int


def archive_records(root: Path, start: float, end: float,
                    partitions: set[int] | None = None) -> list[Iterator[Record]]:
    """Telemetry and checks timed in [start, end], and every desired-state change timed up to `end`
    (the rules in force at `start` began earlier): one iterator per (dataset, partition).

    Each iterator yields `Record`s in offset order, one per (partition, offset)
    however often the archiver wrote it, and reads `_CHUNK` offsets at a time.
    Merge them with `twin.replay.in_log_order`.
    """
    streams: list[Iterator[Record]] = []
    folded: tuple[Dataset, ...] = ("telemetry", "checks", "desired")
    for dataset in folded:
        kind = KINDS[dataset]
        since = 0.0 if dataset == "desired" else start
        files = [f for f in _files(root, dataset, since, end)
                 if partitions is None or f.partition in partitions or dataset == "desired"]
        by_partition: dict[int, list[_File]] = {}
        for f in files:
            by_partition.setdefault(f.partition, []).append(f)
        for partition, chosen in sorted(by_partition.items()):
            streams.append(_stream(chosen, kind, partition, since, end))
    return streams


def archive_anomalies(root: Path, start: float, end: float) -> pl.DataFrame:
    """Anomaly messages whose Kafka timestamp is in [start, end], deduplicated, in offset order per partition.

    Columns: `twin.frames.ANOMALY_SCHEMA` (sector "" for fleet-wide findings,
    null for messages that did not decode), then partition, offset, timestamp.
    """
    columns = [*ANOMALY_SCHEMA, "partition", "offset", "timestamp"]
    files = _files(root, "anomalies", start, end)
    if not files:
        return pl.DataFrame(schema=ANOMALY_SCHEMA | {"partition": pl.Int32(), "offset": pl.Int64(),
                                                     "timestamp": pl.Float64()})
    sector = pl.col("sector").replace_strict({FLEET: "", INVALID: None}, default=pl.col("sector"),
                                            return_dtype=pl.String())
    return (_scan(files).filter(pl.col("timestamp").is_between(start, end))
            .unique(["partition", "offset"], keep="any").sort("partition", "offset")
            .with_columns(sector).select(columns).collect())


def _stream(files: list[_File], kind: Kind, partition: int, start: float, end: float) -> Iterator[Record]:
    low, high = min(f.first for f in files), max(f.last for f in files)
    for lo in range(low, high + 1, _CHUNK):
        hi = lo + _CHUNK - 1
        chosen = [f for f in files if f.first <= hi and f.last >= lo]
        if not chosen:
            continue
        chunk = (_scan(chosen).filter(pl.col("offset").is_between(lo, hi),
                                      pl.col("timestamp").is_between(start, end))
                 .select("offset", "timestamp", "key", "value")
                 .unique("offset", keep="any").sort("offset").collect())
        for offset, timestamp, key, value in chunk.iter_rows():
            yield Record(kind, partition, offset, timestamp, key, value)


def _files(root: Path, dataset: str, start: float, end: float) -> list[_File]:
    """The files of `dataset` in the date folders that [start, end] touches (the hive pruning)."""
    first, last = _day(start), _day(end)
    found = []
    for folder in sorted((root / dataset).glob("date=*")):
        try:
            day = date.fromisoformat(folder.name.removeprefix("date="))
        except ValueError:
            continue
        if first <= day <= last:
            for path in sorted(folder.glob("sector=*/part-*.parquet")):
                if m := _NAME.match(path.name):
                    found.append(_File(path, *map(int, m.groups())))
    return found


def _scan(files: list[_File]) -> pl.LazyFrame:
    return pl.scan_parquet([f.path for f in files], hive_partitioning=True, hive_schema=_HIVE)


def _day(t: float) -> date:
    """The UTC date of a time in seconds, clamped to the calendar for open windows (±inf)."""
    if math.isnan(t):
        raise ValueError("a window bound is NaN")
    days = math.floor(t / 86400) if math.isfinite(t) else (-math.inf if t < 0 else math.inf)
    epoch = date(1970, 1, 1)
    if days <= (date.min - epoch).days:
        return date.min
    if days >= (date.max - epoch).days:
        return date.max
    return epoch + timedelta(days=int(days))

"""The shell around `twin.replay`: choose a source, fold it, write what it found.

A replay's directory holds `events.parquet` (the selected robots and their
peers), `anomalies.parquet`, `snapshots.parquet`, `changes.parquet` (with a
what-if configuration), `replay.json` (the window, the counts and the exact
command) and `report.html`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from aiokafka import AIOKafkaProducer

from streams.kafka_client import client_kwargs
from streams.seeds import read_detectors, read_fleet
from streams.links import with_links
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.analysis.sources import archive_source, kafka_source, partition_of
from twin.compare import compare_runs
from twin.record import Record
from twin.replay import Result, Seen, Selection, replay
from twin.schema import Event
from streams.twin_view import iso as iso  # re-exported: one spelling of a time for the API and the CLI
from streams.twin_view import snapshots_to_frame
from twin.frames import anomalies_to_frame, changes_to_frame, seen_to_frame
from twin.validate import Policy


@dataclass(frozen=True)
class Window:
    start: float
    end: float
    source: str = "kafka"
    """`kafka`, `archive` (the configured archive) or the path of an archive."""


def parse_time(text: str, now: float | None = None) -> float:
    """Epoch seconds, ISO 8601 (UTC unless it says otherwise), `now`, or `-15m` / `-2h` / `-1d` from now."""
    now = time.time() if now is None else now
    text = text.strip()
    if text == "now":
        return now
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text.startswith("-") and text[-1:] in units:
        return now - float(text[1:-1]) * units[text[-1]]
    try:
        return float(text)
    except ValueError:
        pass
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def records(settings: Settings, window: Window, selection: Selection) -> Iterator[Record]:
    """The window's records from its source; for one robot, only its partition (all its twin depends on)."""
    partitions = {partition_of(selection.robot, settings.partitions)} if selection.robot else None
    if window.source == "kafka":
        return kafka_source(settings, window.start, window.end, partitions)
    root = settings.archive_dir if window.source == "archive" else Path(window.source)
    return archive_source(root, window.start, window.end, partitions)


def peers_of(selection: Selection) -> Callable[[Event], bool]:
    """Events of the selected robots and of their peers (same model, same site), for comparison plots."""
    places: set[tuple[str, str]] = set()

    def keep(event: Event) -> bool:
        if selection.matches(event):
            places.add((event.site, event.model))
            return True
        return (event.site, event.model) in places
    return keep


def run(settings: Settings, window: Window, selection: Selection, *, at: list[float],
        what_if: Path | None = None, on_record: Callable[[Record], None] | None = None,
        on_event: Callable[[Seen], None] | None = None, source: Iterator[Record] | None = None) -> Result:
    """Fold the window with the seeds' detectors (and, side by side, the what-if ones); the anomalies
    come out as the worker publishes them (with their links).

    `on_event` takes the kept events instead of `Result.events` (`twin.replay.replay`); `source`
    replaces the window's records (`records`), e.g. by a wrapper that can stop them early."""
    fleet = read_fleet(settings.seeds_dir)
    result = replay(
        records(settings, window, selection) if source is None else source, fleet,
        read_detectors(settings.seeds_dir), policy=policy(settings), selection=selection, at=at,
        keep=peers_of(selection), what_if=read_detectors(settings.seeds_dir, what_if) if what_if else None,
        on_record=on_record, on_event=on_event)
    return dataclasses.replace(
        result, anomalies=[with_links(a) for a in result.anomalies],
        what_if=None if result.what_if is None else [with_links(a) for a in result.what_if])


def policy(settings: Settings) -> Policy:
    """The worker's validation policy: a replay must judge messages as the worker did."""
    return Policy(max_bytes=settings.max_event_bytes, max_future_s=settings.max_future_s)


def write(out: Path, result: Result, meta: dict[str, object]) -> dict[str, object]:
    """The replay's Parquet files and `replay.json`; returns the meta with its counts."""
    out.mkdir(parents=True, exist_ok=True)
    seen_to_frame(result.events).write_parquet(out / "events.parquet")
    anomalies_to_frame(result.anomalies).write_parquet(out / "anomalies.parquet")
    snapshots_to_frame(result.snapshots, result.desired_at).write_parquet(out / "snapshots.parquet")
    if result.what_if is not None:
        changes = compare_runs(result.anomalies, result.what_if)
        changes_to_frame(changes).write_parquet(out / "changes.parquet")
        anomalies_to_frame(result.what_if).write_parquet(out / "anomalies-what-if.parquet")
    meta = {**meta, "records": result.records, "events": len(result.events), "rejected": len(result.rejected),
            "anomalies": len(result.anomalies), "robots": len(result.twins)}
    (out / "replay.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta



def republish(settings: Settings, source: Iterator[Record], topic: str, speed: float,
              on_record: Callable[[Record], None] | None = None) -> int:
    """Re-emit the window's telemetry to `topic`, paced by record time / `speed`; never to a live topic."""
    if topic in settings.live_topics:
        raise ValueError(f"{topic!r} is a live topic of this deployment: republish to a staging topic")
    if speed <= 0:
        raise ValueError("speed must be positive")
    return asyncio.run(_republish(settings, source, topic, speed, on_record))


async def _republish(settings: Settings, source: Iterator[Record], topic: str, speed: float,
                     on_record: Callable[[Record], None] | None) -> int:
    await ensure_topics(settings, [topic])
    producer = AIOKafkaProducer(**client_kwargs(settings), linger_ms=10, acks="all")
    await producer.start()
    sent, first, started = 0, None, time.monotonic()
    try:
        pending: list[asyncio.Future[object]] = []
        for record in source:
            if record.kind != "telemetry":
                continue
            first = record.timestamp if first is None else first
            delay = (record.timestamp - first) / speed - (time.monotonic() - started)
            if delay > 0.005:
                await asyncio.gather(*pending)
                pending = []
                await asyncio.sleep(delay)
            pending.append(await producer.send(topic, key=record.key, value=record.value))
            sent += 1
            if on_record is not None:
                on_record(record)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent

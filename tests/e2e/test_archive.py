"""`fleet-twin archive` on the real broker: what Kafka holds is what the archive replays.

The test gets topics of its own (under the session's prefix) so that a worker
running in the same session neither reads its records nor adds checks and
anomalies to them. Records are stamped around the last UTC midnight, so the
archive has two date folders while staying inside the topics' retention.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import duckdb
import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.analysis.archive import ArchiveStats, archive, archive_anomalies, archive_records
from streams.settings import Settings
from streams.local.stack import settings_env
from streams.topics import ensure_topics
from streams.analysis.archive_layout import GATEWAY, GATEWAY_REPORTS as REPORTS_FOLDER, INVALID
from twin import gateway
from twin.detect.findings import Anomaly
from twin.exceptions import InvalidEvent
from twin.fleet import Fleet
from twin.record import Record
from twin.schema import Event, encode
from twin.sim import FleetSim, Scenario
from twin.validate import decode

MIDNIGHT = math.floor(time.time() / 86400) * 86400.0
GATEWAY_REPORTS = 3
"""Reports in the one site gateway record each `produce` sends."""
Stream = tuple[str, int]


@pytest.fixture
def own(settings: Settings, broker: str) -> Settings:
    run = uuid.uuid4().hex[:6]
    mine = settings.model_copy(update={"topic_prefix": f"{settings.topic_prefix}archive-{run}.",
                                       "app_id": f"{settings.app_id}-{run}"})
    asyncio.run(ensure_topics(mine))
    return mine


async def produce(s: Settings, fleet: Fleet, start: float, seconds: float, tag: str) -> int:
    """Simulated telemetry at its event time, a few bad messages, checks and anomalies; return the count."""
    sim = FleetSim(fleet, Scenario(name="archive", robots=24, duration_s=seconds), seed=1, start_ts=start)
    producer = AIOKafkaProducer(bootstrap_servers=s.bootstrap, linger_ms=20)
    await producer.start()
    sent: list[asyncio.Future[object]] = []

    async def send(topic: str, key: bytes | None, value: bytes, ts: float) -> None:
        sent.append(await producer.send(topic, value, key=key, timestamp_ms=int(ts * 1000)))

    try:
        first: list[Event] = []
        for _ in range(sim.ticks):
            events = sim.step()
            first = first or list({e.robot_id: e for e in events}.values())[:GATEWAY_REPORTS]  # distinct robots
            for e in events:
                await send(s.telemetry_topic, e.robot_id.encode(), encode(e), e.ts)
        # a site gateway's record of three reports (the worker folds them as three; the archive keeps
        # the record whole, and each report as a row of gateway_reports/)
        await send(s.telemetry_topic, first[0].site.encode(), gateway.encode(first), start + 4)
        robot = sim.roster.robot_ids[0]
        await send(s.telemetry_topic, robot.encode(), b"{not json", start + 1)
        await send(s.telemetry_topic, b"someone-else", encode(e), start + 2)
        await send(s.telemetry_topic, None, encode(e), start + 3)
        for i in range(3):
            await send(s.checks_topic, robot.encode(), repr(start + 10 * i).encode(), start + 10 * i + 0.5)
        for i, sector in enumerate(("mining", "", "retail")):
            a = Anomaly(id=f"{tag}{i}", status="open", robot_id="", sector=sector, site="", model="amr",
                        detector="rollout", signal="", severity="warning", score=1.5, start_ts=start, ts=start + i)
            await send(s.anomalies_topic, b"amr", msgspec.json.encode(a), start + i)
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return len(sent)


async def from_kafka(s: Settings) -> tuple[dict[Stream, list[Record]], dict[TopicPartition, int]]:
    """Every telemetry and check record, read directly, per (kind, partition) in offset order; and the ends."""
    kinds = {s.telemetry_topic: "telemetry", s.checks_topic: "check"}
    consumer = AIOKafkaConsumer(bootstrap_servers=s.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in kinds for p in range(s.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found: dict[Stream, list[Record]] = {}
        deadline = time.monotonic() + 30
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            assert time.monotonic() < deadline, "Kafka did not give back what was produced"
            for tp, messages in (await consumer.getmany(timeout_ms=500)).items():
                found.setdefault((kinds[tp.topic], tp.partition), []).extend(
                    Record(kinds[tp.topic], tp.partition, m.offset, m.timestamp / 1000.0, m.key, m.value)  # type: ignore[arg-type]
                    for m in messages if m.offset < ends[tp])
        return found, ends
    finally:
        await consumer.stop()


def archived(root: Path, start: float = 0.0, end: float = math.inf) -> dict[Stream, list[Record]]:
    streams = [list(s) for s in archive_records(root, start, end)]
    assert all(len({(r.kind, r.partition) for r in s}) == 1 for s in streams)
    return {(s[0].kind, s[0].partition): s for s in streams if s}


async def run_once(s: Settings, root: Path) -> ArchiveStats:
    return await asyncio.wait_for(archive(s, root, once=True, flush_rows=400, flush_s=60.0), timeout=90)


async def committed(s: Settings, ends: dict[TopicPartition, int]) -> dict[TopicPartition, int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=s.bootstrap, group_id=f"{s.app_id}-archive",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        return {tp: await consumer.committed(tp) for tp in ends if ends[tp]}
    finally:
        await consumer.stop()


def sector_of(value: bytes) -> str:
    if gateway.is_batch(value):
        return GATEWAY
    try:
        return decode(value).sector
    except InvalidEvent:
        return INVALID


async def test_the_archive_replays_exactly_what_kafka_holds(own: Settings, fleet: Fleet, tmp_path: Path) -> None:
    first = await produce(own, fleet, MIDNIGHT - 20, 40, "a")
    stats = await run_once(own, tmp_path)
    assert stats.total == first and stats.records["anomalies"] == 3 and stats.records["checks"] == 3
    assert stats.commits >= 2  # flushed every 400 records
    kafka, ends = await from_kafka(own)
    assert archived(tmp_path) == kafka
    assert await committed(own, ends) == {tp: end for tp, end in ends.items() if end}

    # a second run appends only what is new, and nothing is written twice
    second = await produce(own, fleet, MIDNIGHT + 20, 10, "b")
    again = await run_once(own, tmp_path)
    assert again.total == second
    kafka, ends = await from_kafka(own)
    assert archived(tmp_path) == kafka
    assert await committed(own, ends) == {tp: end for tp, end in ends.items() if end}
    files = list(tmp_path.glob("*/date=*/sector=*/part-*.parquet"))
    assert len(files) == stats.files + again.files and not list(tmp_path.rglob("*.tmp"))

    # hive layout: by UTC date of the Kafka timestamp, then sector
    telemetry = [r for stream in kafka.values() for r in stream if r.kind == "telemetry"]
    day = time.strftime("%Y-%m-%d", time.gmtime(MIDNIGHT))
    before = time.strftime("%Y-%m-%d", time.gmtime(MIDNIGHT - 1))
    layout = {(f.parts[-4], f.parts[-3], f.parts[-2]) for f in files}
    sectors = Counter(sector_of(r.value) for r in telemetry)
    assert {(d, s.removeprefix("sector=")) for kind, d, s in layout if kind == "telemetry"} == {
        (f"date={d}", s) for s in sectors for d in (before, day)}
    assert {(d, s) for kind, d, s in layout if kind == "checks"} == {(f"date={d}", "sector=__checks__")
                                                                     for d in (before, day)}
    assert {s for kind, _, s in layout if kind == "anomalies"} == {"sector=mining", "sector=retail",
                                                                   "sector=__fleet__"}

    # DuckDB reads the whole data set as one table, the hive columns from the paths
    rows = duckdb.sql(f"select sector, date::varchar, count(*) from read_parquet("
                      f"'{tmp_path}/telemetry/**/*.parquet', hive_partitioning=true) group by all").fetchall()
    by_sector: Counter[str] = Counter()
    for sector, _, n in rows:
        by_sector[sector] += n
    assert by_sector == sectors
    by_day = Counter(time.strftime("%Y-%m-%d", time.gmtime(math.floor(r.timestamp))) for r in telemetry)
    assert {d: sum(n for _, dd, n in rows if dd == d) for d in by_day} == by_day

    # each gateway report is a row of its own, its sector in the path, named by (partition, offset, row)
    reports = duckdb.sql(f"select sector, robot_id, partition, \"offset\", gateway_row, value from read_parquet("
                         f"'{tmp_path}/{REPORTS_FOLDER}/**/*.parquet', hive_partitioning=true) "
                         f"order by \"offset\", gateway_row").fetchall()
    records = [r for r in telemetry if gateway.is_batch(r.value)]
    assert len(records) == 2 and len(reports) == 2 * GATEWAY_REPORTS
    want = [(decode(row.value).sector, row.key.decode(), row.partition, row.offset, i, row.value)  # type: ignore[union-attr]
            for r in records for i, row in enumerate(gateway.unpack(r).rows)]
    assert sorted(reports, key=lambda x: (x[3], x[4])) == sorted(want, key=lambda x: (x[3], x[4]))

    # a window in the middle: exactly the records timed inside it, both ends included
    times = sorted(r.timestamp for stream in kafka.values() for r in stream)
    start, end = times[len(times) // 3], times[2 * len(times) // 3]
    inside = {k: [r for r in v if start <= r.timestamp <= end] for k, v in kafka.items()}
    assert archived(tmp_path, start, end) == {k: v for k, v in inside.items() if v}

    anomalies = archive_anomalies(tmp_path, 0.0, math.inf)
    assert anomalies["id"].to_list() == ["a0", "a1", "a2", "b0", "b1", "b2"]  # one partition: key "amr"
    assert anomalies["sector"].to_list() == ["mining", "", "retail"] * 2


async def test_the_command_flushes_on_time_and_stops_cleanly_on_sigterm(own: Settings, fleet: Fleet,
                                                                        tmp_path: Path) -> None:
    root, log = tmp_path / "archive", tmp_path / "archive.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streams", "archive", "--out", str(root), "--flush-s", "0.5"],
                                env={**os.environ, **settings_env(own)}, stdout=out, stderr=subprocess.STDOUT)
    try:
        await produce(own, fleet, time.time() - 30, 5, "c")
        kafka, ends = await from_kafka(own)
        deadline = time.monotonic() + 60
        while archived(root) != kafka:  # written well before the 100,000-row flush: by time
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "archived to" in log.read_text()
    assert await committed(own, ends) == {tp: end for tp, end in ends.items() if end}

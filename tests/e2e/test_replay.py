"""Replay against the live stack: a fault scenario runs through a real worker; replaying
the same window from Kafka and from the Parquet archive gives the same twins (bytes) and
the same robot anomalies (bytes); `twin-at` gives the twin the API showed at an instant.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import polars as pl
import pytest

from streams.analysis import replay_window as replaying
from streams.analysis.replay_window import Window
from streams.settings import Settings
from streams.local.simulator import KafkaSink
from streams.local.stack import Stack, settings_env
from streams.topics import ensure_topics
from tests.support.net import auth, free_port
from tests.support.topics import changelog, live_anomalies, read_topic
from tests.support.waiting import eventually
from twin.fleet import Fleet
from twin.replay import Result, Selection
from twin.schema import Event
from twin.sim import FleetSim
from twin.sim.scenario import load_scenario
from streams.twin_view import diff_twins
from twin.state import decode_twin, encode_twin

SPEED = 2.0
SCENARIO = load_scenario({
    "name": "replay-e2e", "robots": 24, "duration_s": 160, "sectors": ["logistics", "medical"],
    "faults": [
        {"type": "stuck_sensor", "robots": 2, "start": 20, "duration": 110},
        {"type": "sensor_dropout", "robots": 2, "start": 30, "duration": 60},
        {"type": "comm_loss", "robots": 2, "start": 40, "duration": 50},
        {"type": "duplicate_delivery", "robots": 2, "start": 20, "duration": 100, "rate": 0.3},
        {"type": "out_of_order", "robots": 2, "start": 20, "duration": 100, "rate": 0.3},
        {"type": "fault_code_burst", "robots": 2, "start": 50, "duration": 40, "rate": 0.4},
        {"type": "clock_skew", "robots": 1, "start": 30, "duration": 100, "offset_s": -120},
    ],
}, "test")


class Live(msgspec.Struct):
    settings: Settings
    url: str
    start: float
    end: float
    paused_at: float
    """An instant between the two halves of the run, when the worker had caught up."""
    views_at_pause: dict[str, dict]  # type: ignore[type-arg]
    robots: list[str]


@pytest.fixture(scope="module")
def live(broker: str, settings: Settings, tmp_path_factory: pytest.TempPathFactory, fleet: Fleet) -> Iterator[Live]:
    """A worker of its own (own topics), fed the scenario in two halves with a pause between."""
    run = uuid.uuid4().hex[:8]
    mine = settings.model_copy(update={
        "app_id": f"fleet-twin-replay-{run}", "topic_prefix": f"replay-{run}.", "web_port": free_port(),
        "state_dir": tmp_path_factory.mktemp("replay-state")})
    asyncio.run(ensure_topics(mine))
    stack = Stack(mine)
    stack.start_worker()
    try:
        yield asyncio.run(_drive(mine, fleet))
    finally:
        stack.procs.stop("worker")


async def _drive(settings: Settings, fleet: Fleet) -> Live:
    url = settings.web_url()
    start = time.time()
    sim = FleetSim(fleet, SCENARIO, seed=7, start_ts=round(start, 3), time_scale=1 / SPEED)
    robots = list(sim.roster.robot_ids)
    last: dict[str, int] = {}
    async with KafkaSink(settings) as sink:
        for tick in range(sim.ticks):
            if tick == sim.ticks // 2:
                paused_at = await _caught_up(settings, last)
                views = {r: httpx.get(f"{url}/twins/{r}", headers=auth(settings)).json() for r in robots}
            await asyncio.sleep(max(0.0, start + tick * sim.dt / SPEED - time.time()))
            events: list[Event] = sim.step()
            await sink.send(events)
            for e in events:
                last[e.robot_id] = max(last.get(e.robot_id, -1), e.seq)
    end = await _caught_up(settings, last)
    return Live(settings, url, start - 1, end, paused_at, views, robots)


async def _caught_up(settings: Settings, last: dict[str, int]) -> float:
    """Wait until the worker's twins hold every robot's newest seq; returns the instant after."""
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(base_url=settings.web_url(), headers=auth(settings)) as client:
        while time.monotonic() < deadline:
            seqs = [(await client.get(f"/twins/{r}")).json().get("seq") for r in last]
            if seqs == list(last.values()):
                await asyncio.sleep(1.0)  # anomalies and table writes of the last records
                return time.time()
            await asyncio.sleep(0.1)
    raise AssertionError("the worker did not catch up within 30 s")


def per_robot(values: list[bytes]) -> dict[str, list[bytes]]:
    """Robot anomaly messages per robot, in order; site-correlation updates left out (fleet-level)."""
    out: dict[str, list[bytes]] = {}
    for v in values:
        a = json.loads(v)
        if a["robot_id"] and not a.get("caused_by"):
            out.setdefault(a["robot_id"], []).append(v)
    return out


def replayed(live: Live, source: str) -> Result:
    return replaying.run(live.settings, Window(live.start, live.end, source), Selection(), at=[live.paused_at])


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings_env(settings)}
    return subprocess.run([str(Path(sys.executable).parent / "fleet-twin"), *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_live_run_produced_anomalies(live: Live) -> None:
    found = {json.loads(v)["detector"] for v in live_anomalies(live.settings)}
    assert {"stuck", "silence", "delivery"} <= found


def test_replay_from_kafka_gives_the_live_twins_and_anomalies_bit_for_bit(live: Live) -> None:
    result = replayed(live, "kafka")
    replayed_bytes = {r: encode_twin(t) for r, t in result.twins.items()}

    def stored_as_replayed() -> dict[str, bytes] | None:  # the changelog is written a moment after the table
        stored = changelog(live.settings)
        return stored if stored == replayed_bytes else None
    try:
        eventually(stored_as_replayed, timeout_s=20)
    except AssertionError:
        stored = changelog(live.settings)
        differ = [r for r in live.robots if stored.get(r) != replayed_bytes.get(r)]
        raise AssertionError(f"{len(differ)} twins differ, e.g. {differ[:3]}: "
                             f"{diff_twins(decode_twin(stored[differ[0]]), result.twins[differ[0]])}") from None
    assert set(replayed_bytes) == set(live.robots)
    anomalies = [msgspec.json.encode(a) for a in result.anomalies]
    assert per_robot(anomalies) == per_robot(live_anomalies(live.settings))
    assert sum(map(len, per_robot(anomalies).values())) > 10


def test_replay_from_the_archive_equals_replay_from_kafka(live: Live, tmp_path: Path) -> None:
    archived = cli(live.settings, "archive", "--once", "--out", str(tmp_path / "archive"))
    assert archived.returncode == 0, archived.stderr
    from_kafka, from_archive = replayed(live, "kafka"), replayed(live, str(tmp_path / "archive"))
    assert from_archive.records == from_kafka.records > 0
    assert {r: encode_twin(t) for r, t in from_archive.twins.items()} == \
        {r: encode_twin(t) for r, t in from_kafka.twins.items()}
    assert [msgspec.json.encode(a) for a in from_archive.anomalies] == \
        [msgspec.json.encode(a) for a in from_kafka.anomalies]


def test_twin_at_shows_the_twin_the_api_showed_at_that_instant(live: Live) -> None:
    robot = live.robots[0]
    shown = cli(live.settings, "twin-at", robot, repr(live.paused_at), "--from", repr(live.start))
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == live.views_at_pause[robot]
    now = httpx.get(f"{live.url}/twins/{robot}", headers=auth(live.settings)).json()
    assert now["seq"] > live.views_at_pause[robot]["seq"]  # the second half moved the live twin on


def test_the_replay_command_writes_parquet_a_report_and_the_command_to_reproduce_it(live: Live, tmp_path: Path) -> None:
    robot = next(json.loads(v)["robot_id"] for v in live_anomalies(live.settings)
                 if json.loads(v)["detector"] == "stuck")
    what_if = tmp_path / "what-if.yaml"
    what_if.write_text("defaults: {stuck_reports: 20}\n")
    out = tmp_path / "replay"
    done = cli(live.settings, "replay", "--from", repr(live.start), "--to", repr(live.end), "--robot", robot,
               "--at", repr(live.paused_at), "--detectors", str(what_if), "--out", str(out), "--no-progress")
    assert done.returncode == 0, done.stderr
    meta = json.loads((out / "replay.json").read_text())
    assert meta["command"].startswith("fleet-twin replay --from ") and f"--robot {robot}" in meta["command"]
    assert pl.read_parquet(out / "events.parquet").filter(pl.col("robot_id") == robot).height > 100
    assert pl.read_parquet(out / "snapshots.parquet")["robot_id"].to_list() == [robot]
    changes = pl.read_parquet(out / "changes.parquet").filter(pl.col("detector") == "stuck")
    assert changes["kind"].to_list() and set(changes["kind"]) == {"earlier"}
    assert (out / "report.html").stat().st_size > 10_000


def test_republish_re_emits_the_window_to_a_staging_topic_and_never_to_a_live_one(live: Live) -> None:
    refused = cli(live.settings, "replay", "--from", repr(live.start), "--to", repr(live.end),
                  "--republish", live.settings.telemetry_topic, "--no-progress")
    assert refused.returncode == 2 and "live topic" in refused.stdout
    staging = f"{live.settings.topic_prefix}staging.telemetry"
    started = time.monotonic()
    done = cli(live.settings, "replay", "--from", repr(live.start), "--to", repr(live.end),
               "--republish", staging, "--speed", "40x", "--no-progress")
    assert done.returncode == 0, done.stderr
    took = time.monotonic() - started
    original = read_topic(live.settings, live.settings.telemetry_topic)
    copied = read_topic(live.settings, staging)
    assert sorted(copied) == sorted(original)
    assert took >= (live.end - live.start) / 40 * 0.8  # paced, not dumped


def test_export_dataset_writes_labelled_windows_from_the_log(live: Live, tmp_path: Path) -> None:
    done = cli(live.settings, "export-dataset", "--from", repr(live.start), "--to", repr(live.end),
               "--out", str(tmp_path / "ds"), "--no-progress")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    windows = pl.read_parquet(tmp_path / "ds" / "windows.parquet")
    assert manifest["counts"]["windows"]["anomaly"] == windows.filter(pl.col("kind") == "anomaly").height > 0
    assert {"stuck", "delivery"} <= set(windows["detector"].drop_nulls())
    assert manifest["command"].startswith("fleet-twin export-dataset --from ")

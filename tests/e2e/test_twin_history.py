"""`GET /twins/{id}/history` on the real worker: a robot's own signals, read back from its partition.

The worker is one of the module's own (own topics): the reports here are stamped at the broker with
their event time, minutes in the past, and on the session's busy partitions, behind records stamped
now, a window read by broker time would not be what these tests pin down."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from streams.analysis.sources import kafka_source, partition_of
from streams.settings import Settings
from tests.support.net import auth, free_port
from tests.support.own import own_worker
from tests.support.waiting import eventually
from twin.fleet import Fleet

REPORTS = 120


def current(robot_index: int, seq: int) -> float:
    """A value that says whose report it is and which: robot 0 runs 1.0..1.119, robot 1 runs 7.0.."""
    return round(1.0 + 6 * robot_index + seq / 1000, 3)


def body(robot: str, seq: int, ts: float, value: float) -> bytes:
    return json.dumps({
        "schema": 1, "robot_id": robot, "seq": seq, "ts": ts, "sector": "retail", "site": "retail-london-01",
        "model": "amr", "mode": "working",
        "signals": {"joint1_current_a": value, "battery_soc_pct": 70.0},
    }).encode()


async def produce(settings: Settings, robots: list[str], start: float) -> None:
    """`REPORTS` reports per robot, a second apart, stamped at the broker with their event time."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap)
    await producer.start()
    try:
        for seq in range(1, REPORTS + 1):
            for i, robot in enumerate(robots):
                ts = start + seq
                await producer.send(settings.telemetry_topic, body(robot, seq, ts, current(i, seq)),
                                    key=robot.encode(), timestamp_ms=int(ts * 1000))
        await producer.flush()
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
def own(broker: str, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with own_worker(settings, tmp_path_factory.mktemp("history"), "history", alertmanager_port=free_port(),
                    maintenance_webhook="") as mine:
        yield mine


@pytest.fixture(scope="module")
def api(own: Settings) -> Iterator[httpx.Client]:
    """A client of the module's worker that sends the token."""
    with httpx.Client(base_url=own.web_url(), headers=auth(own)) as client:
        yield client


@pytest.fixture(scope="module")
def neighbours(api: httpx.Client, own: Settings) -> tuple[str, str, float]:
    """Two robots in one partition, each with two minutes of reports ending a few minutes ago."""
    first = f"hist-{uuid.uuid4().hex[:8]}"
    second = next(r for r in (f"hist-{uuid.uuid4().hex[:8]}" for _ in range(1000))
                  if partition_of(r, own.partitions) == partition_of(first, own.partitions))
    start = float(int(time.time()) - 600)
    asyncio.run(produce(own, [first, second], start))
    for robot in (first, second):
        eventually(caught_up(api, robot))
    return first, second, start


def caught_up(api: httpx.Client, robot: str) -> Callable[[], bool | None]:
    """The worker has folded the robot's last report."""
    def fetch() -> bool | None:
        r = api.get(f"/twins/{robot}")
        return r.status_code == 200 and r.json()["seq"] == REPORTS or None
    return fetch


def test_a_robots_history_is_its_own_reports_in_order(api: httpx.Client,
                                                       neighbours: tuple[str, str, float]) -> None:
    robot, _, start = neighbours
    r = api.get(f"/twins/{robot}/history",
                params={"signal": "joint1_current_a", "from": f"{start}", "to": f"{start + REPORTS + 1}"})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["complete"] is True and answer["thinned"] is False and answer["events"] == REPORTS
    assert (answer["covered_from"], answer["covered_to"]) == (answer["from"], answer["to"]) == (start, start + 121)
    assert answer["signals"] == ["joint1_current_a"] and answer["source"] == "kafka"
    points = answer["points"]
    assert [p["value"] for p in points] == [current(0, seq) for seq in range(1, REPORTS + 1)]  # not its neighbour's
    assert [p["ts"] for p in points] == [start + seq for seq in range(1, REPORTS + 1)]
    assert points[0]["ts_iso"].endswith("Z") and answer["from_iso"].endswith("Z")
    assert all(p["n"] == 1 for p in points)


def test_a_part_of_the_window_thinned_to_the_points_asked(api: httpx.Client,
                                                           neighbours: tuple[str, str, float]) -> None:
    _, robot, start = neighbours
    r = api.get(f"/twins/{robot}/history", params={
        "signal": "joint1_current_a,battery_soc_pct", "from": f"{start + 61}", "to": f"{start + REPORTS}",
        "max_points": "6"})
    answer = r.json()
    assert r.status_code == 200 and answer["thinned"] is True and answer["events"] == 60
    by_signal = {s: [p for p in answer["points"] if p["signal"] == s] for s in answer["signals"]}
    assert [len(v) for v in by_signal.values()] == [6, 6]
    currents = by_signal["joint1_current_a"]
    assert sum(p["n"] for p in currents) == 60
    mean = sum(p["value"] * p["n"] for p in currents) / 60
    assert mean == pytest.approx(sum(current(1, seq) for seq in range(61, 121)) / 60)
    assert {p["value"] for p in by_signal["battery_soc_pct"]} == {70.0}


def test_every_signal_of_the_model_by_default(api: httpx.Client, fleet: Fleet,
                                              neighbours: tuple[str, str, float]) -> None:
    robot, _, start = neighbours
    answer = api.get(f"/twins/{robot}/history", params={"from": f"{start}", "to": "now"}).json()
    assert answer["signals"] == list(fleet.models["amr"].signals)
    assert {p["signal"] for p in answer["points"]} == {"joint1_current_a", "battery_soc_pct"}


def test_a_bounded_kafka_read_keeps_the_newest_records_and_stops_when_closed(
        own: Settings, neighbours: tuple[str, str, float]) -> None:
    """What bounds a history request on a busy partition: the window's last records, not its first."""
    robot, _, start = neighbours
    partition = {partition_of(robot, own.partitions)}
    window = (own, start, start + REPORTS + 1, partition)
    every = [r for r in kafka_source(*window) if r.kind == "telemetry"]
    newest = [r for r in kafka_source(*window, newest=50) if r.kind == "telemetry"]
    assert len(every) >= 2 * REPORTS and newest == every[-50:]
    assert newest[-1].timestamp == start + REPORTS
    before = threading.active_count()
    source = kafka_source(own, start, start + REPORTS + 1, partition)
    assert next(source).timestamp == start + 1
    source.close()  # a reader that stops early: the consumer thread must end, not block on a full queue
    assert threading.active_count() <= before


@pytest.mark.parametrize(("params", "says"), [
    ({"from": "yesterday"}, "'from' must be"),
    ({"to": "+1h"}, "'to' must be"),
    ({"from": "-1h", "to": "-2h"}, "must be after"),
    ({"from": "-2d"}, "at most"),
    ({"signal": "warp_drive_temp"}, "unknown signal"),
    ({"max_points": "0"}, "max_points"),
    ({"max_points": "lots"}, "max_points"),
    ({"source": "/etc"}, "source must be"),
])
def test_bad_parameters_are_400_with_the_reason(api: httpx.Client, neighbours: tuple[str, str, float],
                                                 params: dict[str, str], says: str) -> None:
    r = api.get(f"/twins/{neighbours[0]}/history", params=params)
    assert r.status_code == 400 and says in r.json()["error"], r.text


def test_unknown_robot_is_404_and_no_token_is_401(own: Settings, api: httpx.Client,
                                                  neighbours: tuple[str, str, float]) -> None:
    assert api.get(f"/twins/nobody-{uuid.uuid4().hex}/history").status_code == 404
    assert httpx.get(f"{own.web_url()}/twins/{neighbours[0]}/history").status_code == 401

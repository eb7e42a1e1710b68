"""The whole pipeline on real services: kcat -> Kafka -> worker -> twin API / DLQ / Prometheus."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from streams.settings import Settings
from streams.worker.metrics import STEPS
from tests.support.telemetry import kcat_produce, telemetry
from tests.support.topics import read_dlq
from tests.support.waiting import eventually


def get_twin(api: httpx.Client, robot_id: str) -> Callable[[], dict[str, Any] | None]:
    def fetch() -> dict[str, Any] | None:
        r = api.get(f"/twins/{robot_id}")
        return r.json() if r.status_code == 200 else None

    return fetch


def test_kcat_event_shows_up_in_the_twin_api(api: httpx.Client, settings: Settings) -> None:
    robot = f"kcat-{uuid.uuid4().hex[:8]}"
    kcat_produce(settings, robot, telemetry(robot, seq=3))
    twin = eventually(get_twin(api, robot))
    assert twin["robot_id"] == robot and twin["seq"] == 3
    assert {k: s["value"] for k, s in twin["signals"].items()} == {"battery_soc_pct": 77.5, "speed_mps": 1.1}
    assert twin["sector"] == "logistics" and twin["counts"]["events"] == 1
    assert twin["counts"]["modes"]["working"] == 1 and twin["last_seen"] > 0


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_reports_in_compressed_batches_are_folded(api: httpx.Client, settings: Settings, codec: str) -> None:
    """Robots' clients may compress their batches with any codec Kafka has (librdkafka's here); the
    worker's consumer decompresses each (aiokafka needs cramjam for all but gzip)."""
    robot = f"z-{codec}-{uuid.uuid4().hex[:8]}"
    kcat_produce(settings, robot, telemetry(robot, seq=4), compression=codec)
    twin = eventually(get_twin(api, robot))
    assert twin["robot_id"] == robot and twin["seq"] == 4 and twin["counts"]["events"] == 1


def test_the_worker_times_each_step_of_ingest(api: httpx.Client, settings: Settings) -> None:
    """A report is folded and then checkpointed: both show in `twin_step_seconds`, and a scrape
    times its own pass over the twins (made afresh once the last is `SUMMARY_MIN_AGE_S` old)."""
    def counts() -> dict[str, float]:
        lines = api.get("/metrics").text.splitlines()
        return {line.split('"')[1]: float(line.rsplit(" ", 1)[1])
                for line in lines if line.startswith('twin_step_seconds_count{step="')}

    before = counts()
    assert set(before) == set(STEPS)  # every step exported from the start
    robot = f"steps-{uuid.uuid4().hex[:8]}"
    kcat_produce(settings, robot, telemetry(robot, seq=1))
    eventually(get_twin(api, robot))

    def stored_and_summarised() -> dict[str, float] | None:
        now = counts()
        return now if now["store"] > before["store"] and now["summary"] > before["summary"] else None

    after = eventually(stored_and_summarised, timeout_s=30)
    assert after["fold"] > before["fold"] and after["encode"] > before["encode"]


def test_unknown_robot_is_404_and_listing_filters_by_sector(
    worker: str, api: httpx.Client, settings: Settings
) -> None:
    robot = f"list-{uuid.uuid4().hex[:8]}"
    kcat_produce(settings, robot, telemetry(robot, sector="mining", site="mining-atacama-01"))
    eventually(get_twin(api, robot))
    assert api.get(f"/twins/nobody-{uuid.uuid4().hex}").status_code == 404
    mining = api.get("/twins", params={"sector": "mining", "limit": 1000}).json()
    retail = api.get("/twins", params={"sector": "retail", "limit": 1000}).json()
    assert robot in mining["robots"] and robot not in retail["robots"]
    assert httpx.get(f"{worker}/healthz").json()["status"] == "ok"


async def test_malformed_message_goes_to_dlq_and_the_next_event_is_processed(
    api: httpx.Client, settings: Settings
) -> None:
    robot = f"dlq-{uuid.uuid4().hex[:8]}"
    bad = b'{"schema": 1, "robot_id": "' + robot.encode() + b'", seq: oops}'
    kcat_produce(settings, robot, bad)
    kcat_produce(settings, robot, telemetry(robot, seq=1, signals={"battery_soc_pct": 140.0}))
    kcat_produce(settings, robot, telemetry(robot, seq=2))

    twin = eventually(get_twin(api, robot))
    assert twin["seq"] == 2

    dead = await read_dlq(settings, key=robot.encode(), want=2)
    assert [m.value for m in dead][0] == bad
    reasons = [dict(m.headers)["reason"] for m in dead]
    assert reasons == [b"undecodable", b"out_of_limits"]
    headers = dict(dead[1].headers)
    assert b"140.0" in headers["detail"]
    assert headers["source_topic"] == settings.telemetry_topic.encode()
    assert int(headers["source_offset"]) >= 0


def test_prometheus_scrapes_fleet_robots_from_the_worker(
    prometheus: str, api: httpx.Client, settings: Settings
) -> None:
    robot = f"prom-{uuid.uuid4().hex[:8]}"
    kcat_produce(settings, robot, telemetry(robot, sector="medical", site="med-boston-01", mode="charging"))
    eventually(get_twin(api, robot))

    def query() -> list[dict[str, Any]] | None:
        r = httpx.get(f"{prometheus}/api/v1/query",
                      params={"query": 'sum by (sector) (fleet_robots{mode="charging"})'})
        result = r.json()["data"]["result"]
        medical = [s for s in result if s["metric"]["sector"] == "medical"]
        return result if medical and float(medical[0]["value"][1]) >= 1 else None

    result = eventually(query, timeout_s=60)
    assert len(result) == 18
    targets = httpx.get(f"{prometheus}/api/v1/targets").json()["data"]["activeTargets"]
    workers = [t for t in targets if t["labels"]["job"] == "fleet-twin-workers"]
    assert [t["health"] for t in workers] == ["up"]

"""`fleet-twin simulate`: every shipped scenario, to the real broker and to files."""

from __future__ import annotations

from pathlib import Path

import httpx
import polars as pl
import pytest

from streams.settings import Settings
from tests.support.cli import simulate
from tests.support.waiting import eventually
from twin.fleet import Fleet
from twin.sim.roster import place

SCENARIOS = ["steady", "wear", "rollout", "chaos", "national"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_to_kafka_reaches_the_twins(
    scenario: str, api: httpx.Client, settings: Settings, fleet: Fleet, tmp_path: Path
) -> None:
    labels = tmp_path / "labels.parquet"
    out = simulate(settings, "--scenario", scenario, "--robots", "40", "--duration", "20",
                   "--speed", "10", "--seed", "3", "--labels", str(labels))
    assert f"events to {settings.telemetry_topic}" in out and labels.is_file()
    robot = place(fleet, 40, 3).robot_ids[-1]

    def twin() -> dict | None:
        r = api.get(f"/twins/{robot}")
        return r.json() if r.status_code == 200 else None

    assert eventually(twin)["counts"]["events"] >= 1


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_offline_writes_events_and_ground_truth(
    scenario: str, settings: Settings, tmp_path: Path
) -> None:
    parquet, jsonl = tmp_path / "run.parquet", tmp_path / "run.jsonl"
    simulate(settings, "--scenario", scenario, "--robots", "60", "--duration", "120", "--to-file", str(parquet))
    simulate(settings, "--scenario", scenario, "--robots", "60", "--duration", "120", "--to-jsonl", str(jsonl))
    events = pl.read_parquet(parquet)
    assert events.height == len(jsonl.read_bytes().splitlines()) > 0
    labels = pl.read_parquet(tmp_path / "run.labels.parquet")
    assert set(labels["robot_id"]) <= set(events["robot_id"])
    if scenario == "steady":
        assert labels.height == 0

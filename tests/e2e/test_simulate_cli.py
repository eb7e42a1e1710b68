"""`fleet-twin simulate`: every shipped scenario, to the real broker and to files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from streams.settings import Settings
from tests.support.cli import simulate
from tests.support.waiting import eventually
from twin.fleet import Fleet
from twin.sim.roster import place

SCENARIOS = ["steady", "wear", "rollout", "chaos", "national", "demo"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_to_kafka_reaches_the_twins(
    scenario: str, api: httpx.Client, settings: Settings, fleet: Fleet, tmp_path: Path
) -> None:
    labels = tmp_path / "labels.parquet"
    # each scenario's robots are its own (fleet id = its name): no run reports for another's robots
    out = simulate(settings, "--scenario", scenario, "--robots", "40", "--duration", "20",
                   "--speed", "10", "--seed", "3", "--labels", str(labels), "--fleet-id", scenario)
    assert f"events to {settings.telemetry_topic}" in out and labels.is_file()
    robot = place(fleet, 40, 3, fleet_id=scenario).robot_ids[-1]

    def twin() -> dict[str, Any] | None:
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


def test_runs_to_kafka_get_robots_of_their_own_and_sign_them_off(api: httpx.Client, settings: Settings) -> None:
    """Two runs of the same command never report for the same robot (nor for `make up`'s), and a
    finished run leaves its robots in maintenance: no offline anomalies for a run that is over."""
    outs = [simulate(settings, "--robots", "18", "--duration", "3", "--speed", "10") for _ in range(2)]
    ids = [out.split("robot ids: ")[1].split()[0] for out in outs]
    assert ids[0] != ids[1] and not {i.split("-")[0] for i in ids} & {"agri", ""}, ids

    def signed_off() -> dict[str, Any] | None:
        r = api.get(f"/twins/{ids[1]}")
        return r.json() if r.status_code == 200 and r.json()["mode"] == "maintenance" else None

    assert eventually(signed_off)["counts"]["events"] == 4  # 3 reports, then the sign-off

"""CI guard: detector scores on simulator ground truth must not regress.

Floors sit a little under what the detectors reach (docs/ANOMALY.md has the
full-size runs): 100% recall of every fault type on `chaos` and no false
alarm on `steady`.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from streams.seeds import read_detectors, read_fleet, read_scenario
from streams.kafka_client import partitioner
from twin.score.ground_truth import Run, false_alarms_by_detector, fold_scenario, score

SEEDS = Path(__file__).resolve().parents[2] / "seeds"


def scenario_run(name: str, robots: int, duration_s: float) -> Run:
    spec = msgspec.structs.replace(read_scenario(SEEDS, name), robots=robots, duration_s=duration_s)
    return fold_scenario(read_fleet(SEEDS), spec, 1, read_detectors(SEEDS), partition_of=partitioner(8))


@pytest.fixture(scope="module")
def chaos() -> Run:
    return scenario_run("chaos", 240, 3600)


def test_every_fault_type_of_chaos_is_caught(chaos: Run) -> None:
    rows = {r["fault"]: r for r in score(chaos)}
    assert len(rows) == 15  # 14 labelled fault kinds and the total
    for fault, row in rows.items():
        assert row["recall"] >= 0.95, (fault, row)
    assert rows["(all)"]["precision"] >= 0.97
    assert rows["(all)"]["false_alarms"] <= 2


def test_fast_faults_are_caught_within_seconds(chaos: Run) -> None:
    rows = {r["fault"]: r for r in score(chaos)}
    for fault in ("overcurrent", "clock_skew", "sensor_dropout", "site_power_dip", "comm_loss"):
        assert rows[fault]["median_delay_s"] <= 20, (fault, rows[fault])


def test_a_healthy_fleet_raises_no_alarm() -> None:
    steady = scenario_run("steady", 120, 3600)
    assert false_alarms_by_detector(steady) == {}

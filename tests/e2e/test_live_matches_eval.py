"""A scenario run live through the real worker scores as `fleet-twin eval` scores it offline.

The simulator publishes a fast-forwarded chaos scenario to Kafka; a worker of
the test's own folds it; its `fleet.anomalies` are scored against the
scenario's labels with eval's own matcher (`twin.score.ground_truth.score`).
The same scenario, seed, start and time scale are then folded offline as eval
folds it. The two tables are printed side by side and must agree: what eval
reports is what the worker does.

Only anomalies up to the scenario's last event count on the live side: once the
simulator stops, every robot falls silent (the offline log simply ends).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import polars as pl
import pytest

from streams.kafka_client import partitioner
from streams.local.simulator import to_kafka
from streams.seeds import read_detectors, read_fleet, read_scenario
from streams.settings import Settings
from tests.support.net import free_port
from tests.support.own import own_worker
from tests.support.topics import live_anomalies
from tests.support.waiting import eventually
from twin.detect.findings import Anomaly
from twin.score.ground_truth import Run, fold_scenario, score
from twin.sim import FleetSim

ANOMALY = msgspec.json.Decoder(Anomaly)
SEEDS = Path(__file__).resolve().parents[2] / "seeds"
ROBOTS, SPEED, SEED = 40, 30.0, 3
"""40 robots at 30x: the hour of chaos in 120 s of wall time, 1,200 events/s offered (144,000 events)."""


@pytest.fixture
def own(broker: str, settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    """A worker on topics of its own: nothing but the scenario in its log."""
    with own_worker(settings, tmp_path / "state", "live", alertmanager_port=free_port(),
                    maintenance_webhook="") as mine:
        yield mine


def processed(settings: Settings) -> float:
    text = httpx.get(f"{settings.web_url()}/metrics").text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("twin_events_total{"))


def table(run: Run) -> pl.DataFrame:
    return pl.DataFrame(score(run), infer_schema_length=None).select("fault", "labels", "detected", "false_alarms")


def test_a_live_run_of_chaos_scores_as_eval_scores_it(own: Settings) -> None:
    fleet, config = read_fleet(SEEDS), read_detectors(SEEDS)
    spec = msgspec.structs.replace(read_scenario(SEEDS, "chaos"), robots=ROBOTS)
    start = round(time.time(), 3)
    sim = FleetSim(fleet, spec, SEED, start_ts=start, time_scale=1.0 / SPEED)
    sent = asyncio.run(to_kafka(own, sim, speed=SPEED, on_tick=None))
    eventually(lambda: True if processed(own) >= sent else None, timeout_s=300)
    time.sleep(2 * own.silence_check_s)  # the last checks and the alerts they cause

    end = start + spec.duration_s / SPEED
    live = Run([a for a in map(ANOMALY.decode, live_anomalies(own)) if a.ts <= end], sim.labels(), ROBOTS, spec.duration_s, sent)
    offline = fold_scenario(fleet, spec, SEED, config, partition_of=partitioner(own.partitions),
                            check_every_s=own.silence_check_s, start_ts=start, time_scale=1.0 / SPEED)
    assert offline.events == sent and offline.labels == live.labels

    side = table(offline).join(table(live), on="fault", suffix="_live")
    with pl.Config(tbl_rows=-1, tbl_width_chars=120, fmt_str_lengths=30, tbl_hide_dataframe_shape=True):
        print(f"\nchaos, {ROBOTS} robots at {SPEED:g}x, seed {SEED}: offline (eval) vs live (worker)\n{side}")
    totals = side.filter(pl.col("fault") == "(all)").row(0, named=True)
    assert totals["labels"] > 20
    # every fault eval detects offline, the worker detects live, and no more than a few alarms apart
    missed = side.filter(pl.col("detected_live") < pl.col("detected"))
    assert missed.is_empty(), f"found offline, missed live:\n{missed}"
    assert abs(totals["false_alarms_live"] - totals["false_alarms"]) <= 2, side

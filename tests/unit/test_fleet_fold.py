"""One fleet fold, three drivers: the worker's ingest, the replay and `eval` give the same anomalies.

The worker's driver is its own code (`streams.worker.ingest.fold`, micro-batches
over a table, reloading its fold from the table now and then, then site correlation of the published messages in order, as its
consumer of `fleet.anomalies` does), run here without Kafka on the records
`eval` made of a scenario; the replay folds the same records. Only site
incidents' resolutions may differ: the worker times them on its wall clock.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from streams.kafka_client import partitioner
from streams.seeds import read_detectors, read_fleet
from streams.worker.ingest import Held, LogMessage, changelog_items
from streams.worker.ingest import fold as worker_fold
from twin.detect.findings import Anomaly
from twin.fleet_fold import (
    FORGET_RESOLVED_S, TICK_S, FleetState, Rules, alert_forgotten, alert_is_news, on_anomaly, on_record, on_tick,
)
from twin.record import Record
from twin.replay import replay
from twin.score.ground_truth import Run, fold_scenario
from twin.sim import load_scenario
from twin.state import Twin, decode_twin

SEEDS = Path(__file__).resolve().parents[2] / "seeds"
CHECKS = "checks"


SCENARIO = load_scenario({
    "name": "fleet-fold", "robots": 40, "duration_s": 900, "sectors": ["manufacturing", "logistics"],
    "faults": [  # a finding of every fleet-level kind, and robot ones beside them
        {"type": "rollout", "where": {"model": "humanoid"}, "version": "policy-2.5.0", "share": 0.5,
         "start": "20%", "spread": 120, "latency_factor": 1.8},
        {"type": "site_power_dip", "where": {"sector": "manufacturing"}, "start": "30%", "duration": 30},
        {"type": "comm_loss", "robots": 2, "start": "50%", "duration": 300},
        {"type": "stuck_sensor", "robots": 2, "start": "40%", "duration": 300},
        {"type": "duplicate_delivery", "robots": 2, "start": "60%", "duration": 300, "rate": 0.3},
    ],
}, "test")


@pytest.fixture(scope="module")
def scenario() -> tuple[Run, list[Record]]:
    records: list[Record] = []
    run = fold_scenario(read_fleet(SEEDS), SCENARIO, 1, read_detectors(SEEDS), partition_of=partitioner(4),
                        on_record=records.append)
    return run, records


def worker(records: list[Record], seed: int) -> tuple[list[Anomaly], list[Anomaly], dict[str, Twin]]:
    """The worker's two streams: what ingest publishes, and what its site correlation publishes.

    The twins reach the table only at checkpoints (now and then, for the robots changed since the
    last), and now and then, right after one, the worker starts its fold over from the table, as
    after a rebalance (the fleet state kept, as a rebalance keeps it): the twins it reloads fold on
    as if never dropped."""
    rules = Rules(read_fleet(SEEDS), read_detectors(SEEDS))
    table: dict[str, bytes] = {}
    held, sites = Held(rules), FleetState()
    published: list[Anomaly] = []
    caused: list[Anomaly] = []
    rng, at = random.Random(seed), 0
    dirty: dict[str, int] = {}
    while at < len(records):
        size = rng.choice([1, 7, 333, 997])
        events = [LogMessage(CHECKS if r.kind == "check" else "telemetry", r.partition, r.offset, r.timestamp, r.key,
                             r.value) for r in records[at:at + size]]
        at += size
        if rng.random() < 0.3:
            table.update({rid: raw for rid, (_, raw) in changelog_items(held, dirty).items()})
            dirty = {}
            if rng.random() < 0.3:
                held = Held(rules, held.fold.fleet)
        batch = worker_fold(held, rules, table, events, CHECKS)
        dirty.update(batch.touched)
        for anomaly in batch.found:
            published.append(anomaly)
            sites, found = on_anomaly(sites, anomaly)
            caused += found
    table.update({rid: raw for rid, (_, raw) in changelog_items(held, dirty).items()})
    return published, caused, {rid: decode_twin(raw) for rid, raw in table.items()}


def test_the_scenario_shows_every_kind_of_fleet_finding(scenario: tuple[Run, list[Record]]) -> None:
    run, _ = scenario
    detectors = {a.detector for a in run.anomalies if a.status == "open"}
    assert {"rollout", "site_incident", "silence"} <= detectors, detectors
    assert any(a.detector == "site_incident" and a.status == "resolved" for a in run.anomalies)


def test_eval_and_replay_give_the_same_anomalies_and_twins(scenario: tuple[Run, list[Record]]) -> None:
    run, records = scenario
    result = replay(records, read_fleet(SEEDS), read_detectors(SEEDS))
    assert result.anomalies == run.anomalies
    assert result.twins == run.twins


@pytest.mark.parametrize("seed", [1])
def test_the_worker_publishes_what_replay_finds_whatever_its_batches(
        scenario: tuple[Run, list[Record]], seed: int) -> None:
    run, records = scenario
    published, caused, twins = worker(records, seed)
    from_sites = [a for a in run.anomalies if a.detector == "site_incident" or a.caused_by]
    from_records = [a for a in run.anomalies if not (a.detector == "site_incident" or a.caused_by)]
    assert published == from_records
    assert caused == [a for a in from_sites if a.status != "resolved"]
    assert twins == run.twins


def test_ticks_fall_on_the_same_boundaries_wherever_the_fold_starts() -> None:
    rules = Rules(read_fleet(SEEDS), read_detectors(SEEDS))
    record = Record("check", 0, 0, 1000 * TICK_S + 7.0, b"r-1", b"0")
    state, _ = on_record(FleetState(), lambda _: None, record, rules)
    assert state.next_tick == 1001 * TICK_S
    later = Record("check", 0, 1, 1003 * TICK_S + 1.0, b"r-1", b"0")
    state, _ = on_record(state, lambda _: None, later, rules)
    assert state.next_tick == 1004 * TICK_S


def test_on_tick_changes_nothing_it_is_given() -> None:
    state = FleetState()
    after, found = on_tick(state, 1e9)
    assert found == [] and state == FleetState() and after.next_tick is None


def anomaly(status: str = "open", ts: float = 1e9, score: float = 1.0) -> Anomaly:
    return Anomaly(id="a-1", status=status, robot_id="r-1", sector="mining", site="s-1", model="amr",
                   detector="band", signal="x", severity="warning", score=score, start_ts=1e9, ts=ts)


def test_an_alert_is_news_once_and_never_after_its_resolution() -> None:
    assert alert_is_news(None, anomaly())
    assert not alert_is_news(anomaly(), anomaly())  # read again after a restart
    assert alert_is_news(anomaly(), anomaly(status="update", score=2.0))
    assert not alert_is_news(anomaly(status="resolved"), anomaly())  # a re-read opening stays closed


def test_only_a_resolution_older_than_a_day_is_forgotten() -> None:
    assert not alert_forgotten(anomaly(ts=1e9), 1e9 + FORGET_RESOLVED_S + 1)
    assert not alert_forgotten(anomaly(status="resolved", ts=1e9), 1e9 + FORGET_RESOLVED_S)
    assert alert_forgotten(anomaly(status="resolved", ts=1e9), 1e9 + FORGET_RESOLVED_S + 1)

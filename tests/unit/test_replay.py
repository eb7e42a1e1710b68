"""Replay as a pure fold: order of partitions, snapshots, rejections, twin diffs, what-if."""

from __future__ import annotations

import random
from functools import cache

import msgspec
import pytest
from hypothesis import given, strategies as st

from streams.seeds import read_detectors, read_fleet
from streams.settings import Settings
from streams.twin_view import diff_twins
from tests.support.budget import examples
from twin.compare import alert_episodes, compare_runs, count_changes
from twin.detect.findings import Anomaly
from twin.detect.params import DetectorConfig, RobotDetectorParams
from twin.record import Record
from twin.replay import Selection, in_log_order, replay
from twin.schema import encode
from twin.sim import FleetSim
from twin.sim.scenario import load_scenario
from twin.state import encode_twin

SEEDS = Settings().seeds_dir
PARTITIONS = 3
SCENARIO = load_scenario({
    "name": "replay-test", "robots": 24, "duration_s": 900, "sectors": ["logistics", "manufacturing"],
    "faults": [
        {"type": "stuck_sensor", "robots": 3, "start": 240, "duration": 300},
        {"type": "overcurrent", "robots": 3, "start": 300, "duration": 120, "factor": 2.5},
        {"type": "duplicate_delivery", "robots": 2, "start": 200, "duration": 300, "rate": 0.3},
        {"type": "out_of_order", "robots": 2, "start": 200, "duration": 300, "rate": 0.3},
    ],
}, "test")


@cache
def scenario_records() -> tuple[tuple[Record, ...], ...]:
    """Per partition, the log a broker would hold: broker time = event time + 50 ms."""
    sim = FleetSim(read_fleet(SEEDS), SCENARIO, seed=3)
    logs: list[list[Record]] = [[] for _ in range(PARTITIONS)]
    for tick in range(sim.ticks):
        now = sim.start_ts + tick * sim.dt + 0.05
        for event in sim.step():
            p = sum(event.robot_id.encode()) % PARTITIONS
            logs[p].append(Record("telemetry", p, len(logs[p]), now, event.robot_id.encode(), encode(event)))
    return tuple(tuple(log) for log in logs)


def fold(records: list[Record], config: DetectorConfig | None = None, **kw: object):  # type: ignore[no-untyped-def]
    return replay(records, read_fleet(SEEDS), config or read_detectors(SEEDS), **kw)  # type: ignore[arg-type]


@cache
def baseline():  # type: ignore[no-untyped-def]
    return fold(list(in_log_order(scenario_records())))


def per_robot(anomalies: list[Anomaly]) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for a in anomalies:
        if a.robot_id:
            out.setdefault(a.robot_id, []).append(msgspec.json.encode(a))
    return out


def test_the_scenario_has_anomalies_to_replay() -> None:
    found = {a.detector for a in baseline().anomalies if a.status == "open"}
    assert {"stuck", "band", "delivery"} <= found


@examples(everyday=3, thorough=8)  # each example folds the whole scenario (~3 s)
@given(st.integers(min_value=0, max_value=2**32))
def test_any_interleaving_of_partitions_gives_the_same_twins_and_robot_anomalies(seed: int) -> None:
    """What a live worker's scheduling decides (which partition goes next) cannot change the result."""
    rnd = random.Random(seed)
    logs = [list(log) for log in scenario_records()]
    order: list[Record] = []
    while any(logs):
        log = rnd.choice([log for log in logs if log])
        take = rnd.randint(1, 400)
        order += log[:take]
        del log[:take]
    shuffled = fold(order)
    assert {k: encode_twin(t) for k, t in shuffled.twins.items()} == \
        {k: encode_twin(t) for k, t in baseline().twins.items()}
    assert per_robot(shuffled.anomalies) == per_robot(baseline().anomalies)


def test_a_snapshot_is_the_fold_of_the_records_up_to_its_instant() -> None:
    records = list(in_log_order(scenario_records()))
    at = records[len(records) // 2].timestamp
    result = fold(records, at=[at])
    upto = fold([r for r in records if r.timestamp <= at])
    assert {k: encode_twin(t) for k, t in result.snapshots[at].items()} == \
        {k: encode_twin(t) for k, t in upto.twins.items()}
    robot = next(iter(upto.twins))
    changes = {c.path for c in diff_twins(result.snapshots[at][robot], result.twins[robot])}
    assert {"seq", "ts", "counts.events"} <= changes
    assert diff_twins(upto.twins[robot], upto.twins[robot]) == []


def test_a_selection_reports_on_its_robots_only_and_their_twins_are_unchanged() -> None:
    records = list(in_log_order(scenario_records()))
    robot = next(a.robot_id for a in baseline().anomalies if a.detector == "stuck")
    one = fold(records, selection=Selection(robot=robot))
    assert set(one.twins) == {robot}
    assert encode_twin(one.twins[robot]) == encode_twin(baseline().twins[robot])
    assert {e.event.robot_id for e in one.events} == {robot}
    assert per_robot(one.anomalies) == {robot: per_robot(baseline().anomalies)[robot]}


def test_rejected_records_are_listed_and_counted_on_the_twin_their_key_names() -> None:
    records = list(in_log_order(scenario_records()))
    robot = records[0].key
    assert robot is not None
    bad = [Record("telemetry", records[0].partition, 10**9, records[-1].timestamp, robot, b"{not json"),
           Record("telemetry", 0, 10**9 + 1, records[-1].timestamp, b"nobody", b"[]")]
    result = fold(records + bad)
    assert [r.reason for r in result.rejected] == ["undecodable", "invalid_field"]
    assert result.twins[robot.decode()].counts.rejected == 1


def test_a_silence_check_in_the_log_opens_silence_as_live() -> None:
    records = list(in_log_order(scenario_records()))
    robot = records[0].key
    assert robot is not None
    mine = [r for r in records if r.key == robot]
    last = mine[len(mine) // 2]
    kept = [r for r in records if r.key != robot or r.offset <= last.offset]
    check = Record("check", last.partition, 0, last.timestamp + 120, robot, repr(last.timestamp + 120).encode())
    result = fold(sorted(kept + [check], key=lambda r: r.timestamp))
    opened = [a for a in result.anomalies if a.detector == "silence" and a.robot_id == robot.decode()]
    assert opened and opened[0].status == "open" and opened[0].ts == last.timestamp + 120


def test_what_if_a_stuck_sensor_is_called_sooner_and_overcurrent_is_tolerated() -> None:
    """Two changed thresholds, on a scenario whose faults are known: the comparison names both."""
    base = read_detectors(SEEDS)
    other = DetectorConfig(
        msgspec.structs.replace(base.defaults, stuck_reports=15, band_margin=3.0),
        {m: msgspec.structs.replace(p, stuck_reports=15, band_margin=3.0) for m, p in base.models.items()})
    result = fold(list(in_log_order(scenario_records())), what_if=other)
    assert result.what_if is not None
    changes = compare_runs(result.anomalies, result.what_if)
    stuck = [c for c in changes if c.detector == "stuck"]
    band = [c for c in changes if c.detector == "band"]
    assert stuck and all(c.kind == "earlier" for c in stuck)
    assert all(c.shift_s is not None and -16 <= c.shift_s <= -14 for c in stuck)  # 15 reports at 1 Hz
    assert band and all(c.kind == "lost" for c in band)
    assert count_changes(changes)["gained"] == 0


def _anomaly(id_: str, ts: float, status: str = "open", robot: str = "r1", detector: str = "band") -> Anomaly:
    return Anomaly(id=id_, status=status, robot_id=robot, sector="s", site="x", model="m",  # type: ignore[arg-type]
                   detector=detector, signal="v", severity="warning", score=1.5, start_ts=ts, ts=ts,
                   end_ts=ts if status == "resolved" else None)


@pytest.mark.parametrize(("other", "kind", "shift"), [
    ([_anomaly("b", 105.0), _anomaly("b", 160.0, "resolved")], "later", 5.0),
    ([_anomaly("b", 90.0), _anomaly("b", 160.0, "resolved")], "earlier", -10.0),
    ([_anomaly("b", 100.5)], "same", 0.5),
    ([], "lost", None),
    ([_anomaly("b", 300.0)], "lost", None),  # opens after the base alert resolved: another alert
])
def test_compare_runs_matches_alerts_of_one_robot_detector_and_signal_that_overlap(
        other: list[Anomaly], kind: str, shift: float | None) -> None:
    base = [_anomaly("a", 100.0), _anomaly("a", 150.0, "resolved")]
    changes = compare_runs(base, other)
    assert changes[0].kind == kind and changes[0].shift_s == shift
    assert count_changes(changes)["gained"] == (1 if other and other[0].ts == 300.0 else 0)


def test_compare_runs_does_not_match_another_robot_or_detector() -> None:
    changes = compare_runs([_anomaly("a", 100.0)], [_anomaly("b", 100.0, robot="r2"),
                                                     _anomaly("c", 100.0, detector="spike")])
    assert sorted(c.kind for c in changes) == ["gained", "gained", "lost"]


def test_episodes_take_the_first_opening_and_the_resolution() -> None:
    alerts = alert_episodes([_anomaly("a", 1.0), _anomaly("a", 2.0, "update"), _anomaly("a", 9.0, "resolved")])
    assert [(a.opened, a.resolved) for a in alerts] == [(1.0, 9.0)]


def test_params_override_is_known() -> None:
    assert RobotDetectorParams().stuck_reports == 30  # the what-if test above relies on the seed's 30

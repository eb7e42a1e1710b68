"""`twin.pipeline.feed`, the one step the worker's micro-batches and the replay fold both take."""

from __future__ import annotations

from functools import cache

from streams.seeds import read_detectors, read_fleet
from streams.settings import Settings
from twin.detect.cohort import Cohorts
from twin.detect.params import DetectorConfig
from twin.fleet import Fleet
from twin.pipeline import Step, feed
from twin.record import Record
from twin.schema import encode
from twin.sim import FleetSim, Scenario
from twin.state import Twin
from twin.validate import DEFAULT_POLICY

SEEDS = Settings().seeds_dir


@cache
def fleet() -> Fleet:
    return read_fleet(SEEDS)


@cache
def config() -> DetectorConfig:
    return read_detectors(SEEDS)


def telemetry(ticks: int = 3) -> list[Record]:
    sim = FleetSim(fleet(), Scenario(name="feed", robots=1, rate_hz=1.0), seed=1, start_ts=1.7e9)
    events = [e for _ in range(ticks) for e in sim.step()]
    return [Record("telemetry", 0, n, e.ts + 0.05, e.robot_id.encode(), encode(e)) for n, e in enumerate(events)]


def fold(records: list[Record], twins: dict[str, Twin]) -> list[Step]:
    cohorts = Cohorts()
    steps = []
    for record in records:
        step = feed(twins.get, record, fleet(), config(), DEFAULT_POLICY, cohorts)
        if step.twin is not None:
            twins[step.twin.robot_id] = step.twin
        cohorts = step.cohorts or cohorts
        steps.append(step)
    return steps


def test_a_record_read_again_is_skipped_and_changes_nothing() -> None:
    records = telemetry()
    twins: dict[str, Twin] = {}
    fold(records, twins)
    before = dict(twins)
    again = fold(records, twins)
    assert all(s.redelivered and s.twin is None for s in again)
    assert twins == before


def test_a_rejected_record_counts_on_its_twin_once() -> None:
    records = telemetry()
    twins: dict[str, Twin] = {}
    fold(records, twins)
    robot = records[0].key
    bad = Record("telemetry", 0, len(records), records[-1].timestamp + 1, robot, b"{not json")
    (step,) = fold([bad], twins)
    assert step.error is not None and step.error.reason == "undecodable" and not step.redelivered
    rejected = twins[robot.decode()].counts.rejected
    (again,) = fold([bad], twins)
    assert again.error is not None and again.redelivered and again.twin is None
    assert twins[robot.decode()].counts.rejected == rejected == 1


def test_a_silence_check_that_holds_no_time_is_rejected_not_raised() -> None:
    records = telemetry()
    twins: dict[str, Twin] = {}
    fold(records, twins)
    check = Record("check", 0, 0, records[-1].timestamp + 60, records[0].key, b"soon")
    (step,) = fold([check], twins)
    assert step.error is not None and step.error.reason == "undecodable" and "soon" in step.error.detail
    assert step.twin is None


def test_a_silence_check_for_an_unknown_robot_does_nothing() -> None:
    (step,) = fold([Record("check", 0, 0, 1.7e9, b"nobody", b"1700000000.0")], {})
    assert step == Step()

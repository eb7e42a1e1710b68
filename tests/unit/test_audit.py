"""`twin.audit`: exact Poisson intervals, the predecessor in the release registry, the fold's
exposure and safety events, the changes that touched a version and the gate decisions."""

from __future__ import annotations

from functools import cache

import msgspec
import pytest

from streams.seeds import read_detectors, read_fleet
from streams.settings import Settings
from twin import audit, kpi
from twin.desired import DesiredChange, Selector
from twin.fleet import Fleet
from twin.plan import GateRecord
from twin.record import Record
from twin.schema import encode
from twin.sim import FleetSim, Scenario

SEEDS = Settings().seeds_dir
NEW, OLD = "policy-2.5.0", "policy-2.4.0"


@cache
def fleet() -> Fleet:
    return read_fleet(SEEDS)


# -- intervals: published values of the exact (Garwood) interval, e.g. Ulm 1990, Table 1

@pytest.mark.parametrize(("k", "lower", "upper"), [
    (0, 0.0, 3.6889), (1, 0.0253, 5.5716), (2, 0.2422, 7.2247), (5, 1.6235, 11.6683),
    (10, 4.7954, 18.3904), (100, 81.3640, 121.6268),
])
def test_the_exact_poisson_interval_matches_the_tables(k: int, lower: float, upper: float) -> None:
    lo, hi = audit.poisson_interval(k)
    assert lo == pytest.approx(lower, abs=1e-4) and hi == pytest.approx(upper, abs=1e-4)


def test_no_event_in_1000_hours_is_at_most_3_689_per_1000_hours() -> None:
    assert audit.rate_interval(0, 1000.0) == pytest.approx((0.0, 0.0, 3.688879), abs=1e-6)
    rate, lo, hi = audit.rate_interval(10, 500.0)  # per 1,000 h: twice the count's interval
    assert (rate, lo, hi) == pytest.approx((20.0, 9.5908, 36.7807), abs=1e-3)
    assert audit.rate_interval(3, 0.0) == (None, None, None)  # no exposure: no rate, not 0 or infinity


def test_a_wider_confidence_gives_a_wider_interval_and_bad_input_is_refused() -> None:
    lo95, hi95 = audit.poisson_interval(7)
    lo99, hi99 = audit.poisson_interval(7, 0.99)
    assert lo99 < lo95 < 7 < hi95 < hi99
    with pytest.raises(ValueError):
        audit.poisson_interval(-1)
    with pytest.raises(ValueError):
        audit.poisson_interval(3, 1.0)


def test_the_rate_ratio_interval_is_clopper_pearson_on_the_share_of_events() -> None:
    # 8 events against 2 on equal exposure: p in CP(8 of 10) = [0.4439, 0.9748], R = p / (1 - p)
    ratio, lo, hi = audit.ratio_interval(8, 1.0, 2, 1.0)
    assert (ratio, lo, hi) == pytest.approx((4.0, 0.7983, 38.666), rel=1e-3)
    assert lo is not None and hi is not None
    # twice the exposure halves the ratio and its bounds
    assert audit.ratio_interval(8, 2.0, 2, 1.0) == pytest.approx((2.0, lo / 2, hi / 2))
    none, lo0, hi0 = audit.ratio_interval(0, 1.0, 5, 1.0)  # CP(0 of 5) upper: 1 - 0.025 ** (1 / 5)
    p = 1 - 0.025 ** (1 / 5)
    assert (none, lo0) == (0.0, 0.0) and hi0 == pytest.approx(p / (1 - p))
    inf, lo8, hi8 = audit.ratio_interval(8, 1.0, 0, 1.0)  # nothing on the base: unbounded above
    p = 0.025 ** (1 / 8)
    assert inf == hi8 == float("inf") and lo8 == pytest.approx(p / (1 - p))
    assert audit.ratio_interval(0, 1.0, 0, 1.0) == (None, None, None)
    assert audit.ratio_interval(3, 0.0, 1, 1.0) == (None, None, None)


def test_compare_pairs_each_kind_of_the_version_with_its_predecessor() -> None:
    found = [audit.Rate("all", NEW, "estop", 8, 1.0, 8000.0, 0.0, 0.0),
             audit.Rate("all", OLD, "estop", 2, 1.0, 2000.0, 0.0, 0.0),
             audit.Rate("amr", NEW, "estop", 1, 1.0, 1000.0, 0.0, 0.0)]  # no predecessor row: no comparison
    assert audit.compare(found, NEW, OLD) == [
        audit.Comparison("all", "estop", *audit.ratio_interval(8, 1.0, 2, 1.0))]


# -- the release registry

def test_the_predecessor_is_the_previous_release_of_the_registry() -> None:
    assert audit.predecessor(fleet(), NEW) == OLD
    assert audit.predecessor(fleet(), OLD, "amr") == "policy-2.3.1"
    assert audit.predecessor(fleet(), "policy-2.3.1") is None  # a first release has none


def test_an_unknown_version_or_model_and_disagreeing_registries_are_refused() -> None:
    with pytest.raises(ValueError, match="no model's release registry"):
        audit.predecessor(fleet(), "policy-9.9.9")
    with pytest.raises(ValueError, match="unknown robot model"):
        audit.predecessor(fleet(), NEW, "toaster")
    amr = fleet().models["amr"]
    odd = msgspec.structs.replace(fleet(), models={
        **fleet().models, "amr": msgspec.structs.replace(amr, ai_model_versions=("policy-2.3.1", NEW))})
    with pytest.raises(ValueError, match="--model"):
        audit.predecessor(odd, NEW)
    assert audit.predecessor(odd, NEW, "amr") == "policy-2.3.1"


# -- the fold

def log(ticks: int = 120) -> tuple[list[Record], dict[str, str]]:
    """Two robots working at 1 Hz, one on each version; the new one reports an e-stop every 40 s."""
    sim = FleetSim(fleet(), Scenario(name="audit", robots=2, rate_hz=1.0), seed=3, start_ts=1.7e9)
    robots = sim.roster.robot_ids
    versions = {robots[0]: NEW, robots[1]: OLD}
    records: list[Record] = []
    for tick in range(ticks):
        for e in sim.step():
            codes = ("E-STOP",) if e.robot_id == robots[0] and tick % 40 == 39 else ()
            e = msgspec.structs.replace(e, mode="working", ai_model_version=versions[e.robot_id], codes=codes)
            records.append(Record("telemetry", 0, len(records), e.ts + 0.05, e.robot_id.encode(), encode(e)))
    return records, versions


def test_the_fold_credits_working_time_and_events_to_the_version_each_robot_reports() -> None:
    records, versions = log()
    tally, fold = audit.fold(records, fleet(), read_detectors(SEEDS), (NEW, OLD))
    new = audit.robots(tally, NEW)
    old = audit.robots(tally, OLD)
    assert [u.robot_id for u in new] == [r for r, v in versions.items() if v == NEW]
    assert [u.robot_id for u in old] == [r for r, v in versions.items() if v == OLD]
    for use in (*new, *old):
        assert use.operating_s == pytest.approx(119.0)  # 120 reports 1 s apart: 119 gaps, all working
        assert use.last_ts - use.first_ts == pytest.approx(119.0)
        opened = sum(1 for a in fold.anomalies if a.robot_id == use.robot_id and a.status == "open")
        assert use.events["anomaly"] == opened
    assert new[0].events["estop"] == 3 and old[0].events["estop"] == 0
    rates = {(r.scope, r.version, r.kind): r for r in audit.rates(tally)}
    estop = rates[("all", NEW, "estop")]
    assert estop.events == 3 and estop.operating_h == pytest.approx(119 / 3600)
    assert estop.rate == pytest.approx(3 / (119 / 3600) * 1000)
    lo, hi = audit.poisson_interval(3)
    assert (estop.lower, estop.upper) == pytest.approx((lo * 1000 / (119 / 3600), hi * 1000 / (119 / 3600)))
    assert {k for s, v, k in rates if s == "all" and v == OLD} == set(kpi.KINDS)


def test_a_duplicate_report_is_not_credited_twice() -> None:
    records, _ = log(40)  # its last tick holds an e-stop
    again = [*records, *(Record(r.kind, r.partition, len(records) + i, r.timestamp + 100, r.key, r.value)
                         for i, r in enumerate(records[-10:]))]  # the producer sent its last ten twice
    once, _ = audit.fold(records, fleet(), read_detectors(SEEDS), (NEW, OLD))
    twice, _ = audit.fold(again, fleet(), read_detectors(SEEDS), (NEW, OLD))
    assert [(u.operating_s, u.events) for u in once.usage.values()] == \
        [(u.operating_s, u.events) for u in twice.usage.values()]
    assert sum(u.events["estop"] for u in twice.usage.values()) == 1


def test_only_the_models_asked_for_are_credited() -> None:
    records, _ = log(10)
    tally, _ = audit.fold(records, fleet(), read_detectors(SEEDS), (NEW, OLD), models=["no-such-model"])
    assert tally.usage == {}


# -- changes and gate decisions

def change(ts: float, value: str | None, selector: Selector, *, field: str = "ai_model", plan: str = "",
           principal: str = "alice") -> DesiredChange:
    return DesiredChange(change_id=f"c{ts:g}", ts=ts, principal=principal, reason=f"because {ts:g}",
                         selector=selector, field=field, value=value, plan=plan)


def test_the_changes_that_touched_a_version_set_it_selected_it_or_took_it_away() -> None:
    canary = Selector(model="amr", share=0.05)
    changes = [
        change(3, OLD, canary, plan="p1", principal="rollout:p1"),        # the gate's revert: same key
        change(1, NEW, canary, plan="p1", principal="rollout:p1"),        # the canary
        change(2, "fw-2.0.0", Selector(version=NEW), field="firmware"),   # firmware for robots on it
        change(4, "policy-2.3.1", Selector(sector="mining")),             # another key: untouched
        change(5, None, Selector(sector="mining")),
    ]
    touched = audit.touching(changes, NEW)
    assert [(t.change.ts, t.how) for t in touched] == [
        (1, "sets it"), (2, "selects robots on it"), (3, "replaces a desire for it")]


def test_gate_decisions_are_those_of_the_plans_that_touched_the_version_in_time_order() -> None:
    def look(plan: str, wave: int, ts: float, decision: str) -> GateRecord:
        return GateRecord(plan=plan, wave=wave, ts=ts, decision=decision, statistic=0.0, upper=2.9, lower=-2.2)

    records = [look("p1", 1, 20.0, "halt"), look("p2", 0, 5.0, "advance"), look("p1", 0, 10.0, "continue")]
    chosen = audit.gate_decisions(records, {"p1"})
    assert [(r.plan, r.ts, r.decision) for r in chosen] == [("p1", 10.0, "continue"), ("p1", 20.0, "halt")]

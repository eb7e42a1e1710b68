"""Rollout plans: YAML validation, the wave changes, and what each gate decision leads to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from streams.seeds import read_fleet
from twin.desired import DesiredRules, add_change, change_key, check_change, resolve, robot_share
from twin.plan import GateRecord, Plan, begin, halt_anomaly, halt_reason, load_plan, on_decision, principal
from twin.reduce import apply
from twin.schema import Event
from twin.state import Twin

ROOT = Path(__file__).resolve().parents[2]
DOC: dict[str, Any] = {
    "id": "canary-amr", "selector": {"model": "amr", "sector": "logistics"},
    "from": "policy-2.4.0", "to": "policy-2.5.0",
    "waves": [{"share": 0.05, "min_hours": 1}, {"share": 0.25, "min_hours": 2}, {"share": 1.0}],
    "gate": {"harm_ratio": 2.0, "alpha": 0.05, "beta": 0.2, "kinds": ["estop", "protective_stop"]},
    "look_s": 5,
}


def twin(robot: str, version: str) -> Twin:
    e = Event(schema=1, robot_id=robot, seq=1, ts=100.0, sector="logistics", site="log-rotterdam-01", model="amr",
              mode="working", signals={}, ai_model_version=version)
    return apply(None, e, received_ts=100.0)[0]


def test_a_plan_loads_with_its_gate_and_waves() -> None:
    plan = load_plan(DOC)
    assert plan.from_ == "policy-2.4.0" and plan.gate.kinds == ("estop", "protective_stop")
    assert [w.share for w in plan.waves] == [0.05, 0.25, 1.0] and plan.look_s == 5


@pytest.mark.parametrize("change, message", [
    ({"waves": [{"share": 0.5}, {"share": 0.25}]}, "strictly growing"),
    ({"waves": [{"share": 1.5}]}, "waves"),
    ({"waves": []}, "waves"),
    ({"to": "policy-2.4.0"}, "nothing to roll out"),
    ({"gate": {"harm_ratio": 0.5}}, "harm_ratio"),
    ({"gate": {"kinds": ["meltdown"]}}, "kinds"),
    ({"field": "firmware"}, "field"),
    ({"colour": "red"}, "colour"),
])
def test_a_bad_plan_is_refused_with_the_field_named(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_plan({**DOC, **change}, "plans/x.yaml")


def test_the_sample_plan_loads_and_its_changes_pass_the_fleet_check() -> None:
    fleet = read_fleet(ROOT / "seeds")
    for path in sorted((ROOT / "seeds" / "plans").glob("*.yaml")):
        plan = load_plan(yaml.safe_load(path.read_text()), str(path))
        for i in range(len(plan.waves)):
            check_change(begin(plan, 1.0, "c").changes[0] if i == 0 else
                         on_decision(plan, i - 1, "advance", 1.0, "c").changes[0], fleet)
        check_change(on_decision(plan, 0, "halt", 1.0, "c", "why").changes[0], fleet)


def test_advance_walks_the_waves_and_the_full_wave_completes_the_plan() -> None:
    plan = load_plan(DOC)
    first = begin(plan, 10.0, "a")
    assert first.status == "running" and first.wave == 0
    (change,) = first.changes
    assert change.selector.share == 0.05 and change.selector.version == "policy-2.4.0"
    assert change.value == "policy-2.5.0" and change.principal == principal(plan) == "rollout:canary-amr"
    assert change.plan == "canary-amr" and change.wave == 0 and change.reason
    assert on_decision(plan, 0, "continue", 11.0, "b") == ("running", 0, ())
    second = on_decision(plan, 0, "advance", 12.0, "c")
    assert second.status == "running" and second.changes[0].selector.share == 0.25
    last = on_decision(plan, 1, "advance", 13.0, "d")
    assert last.status == "done" and last.wave == 2 and last.changes[0].selector.share == 1.0
    gated_last = load_plan({**DOC, "waves": [{"share": 0.1}, {"share": 0.5}]})
    assert on_decision(gated_last, 1, "advance", 13.0, "e") == ("done", 1, ())
    with pytest.raises(ValueError, match="unknown gate decision"):
        on_decision(plan, 0, "maybe", 1.0, "f")


def test_halt_reverts_every_robot_the_plan_moved_and_no_other() -> None:
    plan = load_plan(DOC)
    robots = [f"amr-{i}" for i in range(400)]
    inside = [r for r in robots if robot_share(r) < 0.25]
    outside = [r for r in robots if robot_share(r) >= 0.25]
    rules = DesiredRules()
    for change in (begin(plan, 10.0, "a").changes[0], on_decision(plan, 0, "advance", 20.0, "b").changes[0]):
        rules = add_change(rules, change)
    assert resolve(rules, twin(inside[0], "policy-2.4.0"))["ai_model"].value == "policy-2.5.0"
    halted = on_decision(plan, 1, "halt", 30.0, "c", "statistic 3.1 >= 2.77")
    assert halted.status == "halted"
    (revert,) = halted.changes
    assert revert.value == "policy-2.4.0" and revert.reason == "gate halted: statistic 3.1 >= 2.77"
    assert change_key(revert) not in {change_key(c) for c in rules.changes}  # the waves stay in the log
    rules = add_change(rules, revert)
    for robot in inside:  # moved, not yet moved, and reverted robots: all desired back at `from`
        for version in ("policy-2.5.0", "policy-2.4.0"):
            assert resolve(rules, twin(robot, version))["ai_model"].value == "policy-2.4.0"
        assert "ai_model" not in resolve(rules, twin(robot, "policy-2.3.1"))  # a third version: untouched
    assert all("ai_model" not in resolve(rules, twin(r, "policy-2.4.0")) for r in outside)


def test_a_gate_record_round_trips_as_json() -> None:
    record = GateRecord(plan="p", wave=1, ts=5.0, decision="continue", statistic=0.5, upper=2.77, lower=-1.56,
                        evidence={"new": {"events": 1}}, status="running", share=0.25)
    assert msgspec.json.decode(msgspec.json.encode(record), type=GateRecord) == record


def test_a_halt_raises_a_critical_fleet_level_anomaly_with_the_evidence() -> None:
    from twin.gate import Pair, Tally, look, start

    plan = load_plan(DOC)
    gate = start(plan.gate, {}, 0.0)
    gate, decision = look(gate, {"amr/logistics": Pair(new=Tally(exposure_s=3600.0, events=30),
                                                       old=Tally(exposure_s=36000.0, events=20))})
    assert decision == "halt"
    why = halt_reason(gate)
    (revert,) = on_decision(plan, 0, decision, 50.0, "r", why).changes
    anomaly = halt_anomaly(plan, 0, gate, 10.0, 50.0, revert)
    assert (anomaly.detector, anomaly.severity, anomaly.status, anomaly.robot_id) == (
        "rollout_gate", "critical", "open", "")
    assert anomaly.model == "amr" and anomaly.sector == "logistics" and anomaly.signal == "ai_model@policy-2.5.0"
    ev = anomaly.evidence
    assert ev["statistic"] >= ev["upper"] > 0 > ev["lower"] and ev["revert_change_id"] == "r"
    assert ev["new"]["events"] == 30 and ev["old"]["hours"] == 10.0 and ev["plan"] == "canary-amr"
    assert "30 in 1.00 h against 20 in 10.00 h" in why and revert.reason == f"gate halted: {why}"
    assert halt_anomaly(plan, 0, gate, 10.0, 60.0, revert).id == anomaly.id  # one alert per halted wave

"""The simulator: deterministic, faults change exactly what their labels claim, physics behaves."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streams.seeds import read_scenario
from twin.fleet import Fleet
from twin.schema import Event, encode
from twin.sim import FAULT_TYPES, FleetSim, Scenario
from twin.sim.scenario import load_scenario
from twin.validate import parse

SEEDS = Path(__file__).resolve().parents[2] / "seeds"
DELIVERY = {"comm_loss", "clock_skew", "duplicate_delivery", "out_of_order"}


def run(fleet: Fleet, scenario: Scenario, seed: int = 1) -> tuple[list[Event], FleetSim]:
    sim = FleetSim(fleet, scenario, seed=seed)
    return [e for _ in range(sim.ticks) for e in sim.step()], sim


def one_fault(kind: str, **params: Any) -> Scenario:
    fault = {"type": kind, "robots": 2, "start": 100, "duration": 120, **params}
    if kind == "rollout":
        fault.update(latency_factor=1.5, share=0.3, spread=30, duration="100%")
    if kind == "site_power_dip":
        fault.pop("robots")
    return load_scenario({"name": kind, "robots": 60, "duration_s": 400, "faults": [fault]}, kind)


def test_same_seed_same_bytes_and_another_seed_other_bytes(fleet: Fleet) -> None:
    chaos = read_scenario(SEEDS, "chaos")
    small = load_scenario({**_doc(chaos), "robots": 80, "duration_s": 300}, "chaos")
    a = b"".join(encode(e) for e in run(fleet, small, seed=5)[0])
    b = b"".join(encode(e) for e in run(fleet, small, seed=5)[0])
    c = b"".join(encode(e) for e in run(fleet, small, seed=6)[0])
    assert a == b and a != c


def _doc(scenario: Scenario) -> dict[str, Any]:
    import msgspec

    return msgspec.to_builtins(scenario)  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", [k for k in FAULT_TYPES if k not in DELIVERY])
def test_each_fault_changes_what_it_claims_only_inside_its_window(kind: str, fleet: Fleet) -> None:
    faulty, sim = run(fleet, one_fault(kind))
    clean, _ = run(fleet, one_fault(kind).__class__(name="clean", robots=60, duration_s=400))
    labels = sim.labels()
    assert labels, kind
    windows = {(lab["robot_id"]): lab for lab in labels}
    changed = defaultdict(set)
    assert len(faulty) == len(clean)
    for f, c in zip(faulty, clean):
        assert (f.robot_id, f.seq, f.ts) == (c.robot_id, c.seq, c.ts)
        diff = _diff(f, c)
        if not diff:
            continue
        label = windows.get(f.robot_id)
        assert label is not None, f"{kind} changed robot {f.robot_id}, which has no label"
        assert label["start_ts"] <= f.ts < label["end_ts"], f"{kind} changed {diff} outside its window"
        allowed = set(label["signals"]) | {"mode", "codes"} | ({"ai_model_version"} if kind == "rollout" else set())
        assert diff <= allowed, f"{kind} changed {diff - allowed}, not claimed"
        changed[f.robot_id] |= diff
    for robot, label in windows.items():
        assert changed[robot] & (set(label["signals"]) or {"mode", "codes"}), f"{kind} left {robot} untouched"


def _diff(a: Event, b: Event) -> set[str]:
    out = {k for k in set(a.signals) | set(b.signals) if a.signals.get(k) != b.signals.get(k)}
    out |= {f for f in ("mode", "codes", "ai_model_version") if getattr(a, f) != getattr(b, f)}
    return out


@pytest.mark.parametrize("kind", sorted(DELIVERY))
def test_delivery_faults_touch_only_their_robots_inside_their_window(kind: str, fleet: Fleet) -> None:
    faulty, sim = run(fleet, one_fault(kind))
    clean, _ = run(fleet, Scenario(name="clean", robots=60, duration_s=400))
    labels = {lab["robot_id"]: lab for lab in sim.labels()}
    inside = {(e.robot_id, e.seq) for e in clean
              if e.robot_id in labels and labels[e.robot_id]["start_ts"] <= e.ts < labels[e.robot_id]["end_ts"]}
    untouched = [(e.robot_id, e.seq, encode(e)) for e in faulty if (e.robot_id, e.seq) not in inside]
    assert untouched == [(e.robot_id, e.seq, encode(e)) for e in clean if (e.robot_id, e.seq) not in inside]
    hit = [e for e in faulty if (e.robot_id, e.seq) in inside]
    expected = [e for e in clean if (e.robot_id, e.seq) in inside]
    if kind == "comm_loss":
        assert hit == []
    elif kind == "clock_skew":
        assert [round(e.ts - c.ts, 3) for e, c in zip(hit, expected)] == [-90.0] * len(expected)
    elif kind == "duplicate_delivery":
        assert len(hit) > len(expected) and {encode(e) for e in hit} == {encode(e) for e in expected}
    else:
        assert sorted(hit, key=lambda e: (e.robot_id, e.seq)) == sorted(expected, key=lambda e: (e.robot_id, e.seq))
        assert [e.seq for e in hit] != [e.seq for e in expected]


def test_labels_line_up_with_the_injected_faults(fleet: Fleet) -> None:
    chaos = read_scenario(SEEDS, "chaos")
    sim = FleetSim(fleet, chaos, seed=1)
    labels = sim.labels()
    assert {lab["fault"] for lab in labels} == (set(FAULT_TYPES) - {"rollout"}) | {"latency_regression"}
    roster = dict(zip(sim.roster.robot_ids, sim.roster.models))
    end = chaos.start_ts + chaos.duration_s
    for lab in labels:
        assert lab["robot_id"] in roster
        assert chaos.start_ts <= lab["start_ts"] < lab["end_ts"] <= end
        assert set(lab["signals"]) <= set(fleet.models[roster[lab["robot_id"]]].signals)
    dips = [lab for lab in labels if lab["fault"] == "site_power_dip"]
    assert len({lab["site"] for lab in dips}) == 1
    assert {lab["robot_id"] for lab in dips} == {
        r for r, s in zip(sim.roster.robot_ids, sim.roster.sites) if s == dips[0]["site"]}


@pytest.mark.parametrize("name", ["steady", "wear", "rollout", "chaos", "national"])
def test_every_shipped_scenario_produces_valid_events(name: str, fleet: Fleet) -> None:
    scenario = read_scenario(SEEDS, name)
    sim = FleetSim(fleet, scenario, seed=1, robots=min(scenario.robots, 400))
    for _ in range(3):
        for e in sim.step():
            assert parse(encode(e), fleet, key=e.robot_id.encode(), received_ts=e.ts) == e


def test_18_robots_cover_all_18_sectors(fleet: Fleet) -> None:
    sim = FleetSim(fleet, Scenario(name="s", robots=18, duration_s=1), seed=0)
    assert set(sim.roster.sectors) == set(fleet.sectors)
    assert len(set(sim.roster.robot_ids)) == 18


def test_physics_batteries_drain_at_work_and_fill_on_the_charger(fleet: Fleet) -> None:
    events, _ = run(fleet, Scenario(name="s", robots=100, rate_hz=0.1, duration_s=4 * 3600))
    soc: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for e in events:
        if "battery_soc_pct" in e.signals:
            soc[e.robot_id].append((e.mode, e.signals["battery_soc_pct"]))
    deltas: dict[str, list[float]] = defaultdict(list)
    for series in soc.values():
        for (mode, a), (_, b) in zip(series, series[1:]):
            deltas[mode].append(b - a)
    assert np.mean(deltas["working"]) < 0 < np.mean(deltas["charging"])


def test_physics_joint_heat_follows_current_and_latency_has_a_long_tail(fleet: Fleet) -> None:
    events, _ = run(fleet, Scenario(name="s", robots=200, duration_s=900))
    arms = [e for e in events if e.model == "industrial-arm-6ax"]
    current: dict[str, list[float]] = defaultdict(list)
    for e in arms:  # heat lags: it follows the current averaged over minutes
        current[e.robot_id].append(e.signals["joint1_current_a"])
    last = {e.robot_id: e.signals["joint1_temp_c"] for e in arms}
    robots = sorted(last)
    assert np.corrcoef([np.mean(current[r]) for r in robots], [last[r] for r in robots])[0, 1] > 0.5
    latency = np.array([e.signals["inference_ms"] for e in events if "inference_ms" in e.signals])
    assert np.percentile(latency, 99.5) / np.median(latency) > 1.5

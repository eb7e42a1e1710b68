"""The looping demo scenario and fleet ids: every fault type early in every cycle, labels that
hold across cycles, runs that never share a robot, and `make up` and compose running the same."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from streams.local.procs import Procs
from streams.local.stack import Stack
from streams.seeds import read_scenario
from streams.settings import Settings
from twin.fleet import Fleet
from twin.schema import Event, encode
from twin.sim import FAULT_TYPES, FleetSim, Scenario, load_scenario
from twin.sim.engine import ENDLESS

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "seeds"
LABELLED = (set(FAULT_TYPES) - {"rollout"}) | {"latency_regression"}
EARLY_S = 300.0
"""An operator who looks within five minutes of `make up` sees every fault type."""


def demo() -> Scenario:
    return read_scenario(SEEDS, "demo")


def looping(**faults: dict[str, Any]) -> Scenario:
    """A small repeating scenario: 60 robots, 150 s cycles, the given faults (type -> parameters)."""
    return load_scenario({"name": "loop", "robots": 60, "duration_s": 150, "repeat": True,
                          "faults": [{"type": kind, **params} for kind, params in faults.items()]}, "loop")


def events(sim: FleetSim) -> list[Event]:
    return [e for _ in range(sim.ticks) for e in sim.step()]


def test_the_demo_repeats_without_end_and_is_what_make_up_runs(fleet: Fleet) -> None:
    scenario = demo()
    assert scenario.repeat and Settings().sim_scenario == "demo"
    endless, once = FleetSim(fleet, scenario, seed=1, run_s=math.inf), FleetSim(fleet, scenario, seed=1)
    assert endless.ticks == ENDLESS and once.ticks == once.cycle_ticks == int(scenario.duration_s * scenario.rate_hz)


@pytest.mark.parametrize("cycle", [0, 1, 2, 47])
def test_every_fault_type_starts_in_the_first_minutes_of_each_cycle(cycle: int, fleet: Fleet) -> None:
    sim = FleetSim(fleet, demo(), seed=1, start_ts=1.8e9, run_s=math.inf)
    begin = sim.cycle_start(cycle)
    labels = sim.labels(cycle)
    first = {kind: min(lab["start_ts"] for lab in labels if lab["fault"] == kind) - begin for kind in LABELLED}
    assert all(0 <= delay < EARLY_S for delay in first.values()), first
    assert all(begin <= lab["start_ts"] < lab["end_ts"] <= begin + demo().duration_s for lab in labels)
    dips = {lab["site"] for lab in labels if lab["fault"] == "site_power_dip"}
    assert len(dips) == 1 and sum(lab["fault"] == "site_power_dip" for lab in labels) >= 4  # an incident


def test_each_cycle_draws_other_robots_and_the_same_cycle_the_same_ones(fleet: Fleet) -> None:
    sim = FleetSim(fleet, demo(), seed=1, run_s=math.inf)

    def targets(cycle: int) -> set[tuple[str, str]]:
        return {(lab["fault"], lab["robot_id"]) for lab in sim.labels(cycle) if lab["fault"] != "latency_regression"}

    assert targets(1) != targets(0) and targets(2) != targets(1)
    assert sim.labels(3) == FleetSim(fleet, demo(), seed=1, run_s=math.inf).labels(3)


def test_a_single_pass_is_unchanged_by_the_loop(fleet: Fleet) -> None:
    """Cycle 0 of a repeating scenario is the scenario run once: same events, same labels."""
    once = looping(stuck_sensor={"robots": 2, "start": 20, "duration": 60})
    single = msgspec.structs.replace(once, repeat=False)
    a, b = FleetSim(fleet, once, seed=4, run_s=150), FleetSim(fleet, single, seed=4)
    assert [encode(e) for e in events(a)] == [encode(e) for e in events(b)] and a.labels() == b.labels()


def test_faults_change_only_what_their_labels_claim_in_every_cycle(fleet: Fleet) -> None:
    faults: dict[str, dict[str, Any]] = {
        "stuck_sensor": {"robots": 2, "start": 20, "duration": 60},
        "overcurrent": {"robots": 2, "start": 30, "duration": 40},
        "sensor_dropout": {"robots": 2, "start": 40, "duration": 50},
        "rollout": {"where": {"model": "humanoid"}, "share": 0.5, "start": 10, "spread": 20,
                    "latency_factor": 1.8, "duration": "100%"},
        "site_power_dip": {"start": 60, "duration": 20},
    }
    faulty = FleetSim(fleet, looping(**faults), seed=2, run_s=450)
    clean = FleetSim(fleet, looping(), seed=2, run_s=450)
    got, want = events(faulty), events(clean)
    labels = faulty.labels()
    assert faulty.cycle == 2 and {lab["start_ts"] // 150 for lab in labels} == {
        (faulty.start_ts + k * 150) // 150 for k in range(3)}
    windows: dict[str, list[dict[str, Any]]] = {}
    for lab in labels:
        windows.setdefault(lab["robot_id"], []).append(lab)
    assert len(got) == len(want)
    touched: set[tuple[str, float]] = set()
    for f, c in zip(got, want):
        assert (f.robot_id, f.seq, f.ts) == (c.robot_id, c.seq, c.ts)
        diff = _diff(f, c)
        if not diff:
            continue
        claims = [lab for lab in windows.get(f.robot_id, []) if lab["start_ts"] <= f.ts < lab["end_ts"]]
        assert claims, f"{f.robot_id} changed {diff} at {f.ts} outside every labelled window"
        allowed = {"mode", "codes", "ai_model_version"} | {s for lab in claims for s in lab["signals"]}
        assert diff <= allowed, f"{f.robot_id}: {diff - allowed} changed, not claimed"
        touched |= {(f.robot_id, lab["start_ts"]) for lab in claims}
    assert touched == {(lab["robot_id"], lab["start_ts"]) for lab in labels}, "a label whose fault did nothing"


def _diff(a: Event, b: Event) -> set[str]:
    out = {k for k in set(a.signals) | set(b.signals) if a.signals.get(k) != b.signals.get(k)}
    return out | {f for f in ("mode", "codes", "ai_model_version") if getattr(a, f) != getattr(b, f)}


def test_a_run_that_stops_inside_a_cycle_labels_only_what_happened(fleet: Fleet) -> None:
    sim = FleetSim(fleet, looping(comm_loss={"robots": 2, "start": 100, "duration": 40}), seed=1, run_s=260)
    events(sim)
    end = sim.start_ts + 260
    assert [lab["end_ts"] <= end for lab in sim.labels()] == [True] * 4
    assert max(lab["start_ts"] for lab in sim.labels()) == sim.cycle_start(1) + 100


def test_fleet_ids_keep_runs_apart_and_change_nothing_else(fleet: Fleet) -> None:
    scenario = looping(stuck_sensor={"robots": 2, "start": 20, "duration": 60})
    a, b = FleetSim(fleet, scenario, seed=3, fleet_id="a1", run_s=30), FleetSim(fleet, scenario, seed=3, run_s=30)
    ea, eb = events(a), events(b)
    assert not set(a.roster.robot_ids) & set(b.roster.robot_ids)
    assert all(r.startswith("a1-") for r in a.roster.robot_ids) and b.roster.robot_ids[0] == "agri-fresno-01-0000000"
    assert [msgspec.structs.replace(e, robot_id=e.robot_id.removeprefix("a1-")) for e in ea] == eb
    again = events(FleetSim(fleet, scenario, seed=3, fleet_id="a1", run_s=30))
    assert b"".join(encode(e) for e in again) == b"".join(encode(e) for e in ea)
    assert {lab["robot_id"] for lab in a.labels()} <= set(a.roster.robot_ids)


def test_sign_off_leaves_every_robot_in_maintenance(fleet: Fleet) -> None:
    sim = FleetSim(fleet, looping(), seed=1, run_s=5)
    last = {e.robot_id: e for e in events(sim)}
    off = {e.robot_id: e for e in sim.sign_off()}
    assert off.keys() == last.keys()
    assert all(e.mode == "maintenance" and not e.codes and e.seq == last[r].seq + 1 for r, e in off.items())


def test_make_up_and_compose_run_the_same_simulator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    launched: list[list[str]] = []

    def spawn(self: Procs, name: str, argv: list[str], env: Mapping[str, str]) -> int:
        launched.append(argv)
        return 1

    monkeypatch.setattr(Procs, "spawn", spawn)
    Stack(Settings(state_dir=tmp_path)).start_simulator()
    stack = launched[0][launched[0].index("simulate"):]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["simulator"]["command"]

    def option(argv: list[str], name: str) -> str:
        return argv[argv.index(name) + 1]

    for name in ("--scenario", "--fleet-id", "--duration"):
        assert option(stack, name) == option(compose, name), name
    assert option(stack, "--scenario") == "demo" and option(stack, "--fleet-id") == ""


def test_the_brokers_keep_bounded_disk_and_the_same_bound() -> None:
    """The demo runs until `make down`: its telemetry must not fill the disk."""
    props = dict(line.split("=", 1) for line in (ROOT / "deploy" / "kafka" / "server.properties").read_text().splitlines()
                 if "=" in line and not line.startswith("#"))
    kafka = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["kafka"]["environment"]
    per_partition = int(props["log.retention.bytes"]) + int(props["log.segment.bytes"])
    assert Settings().partitions * per_partition <= 10 * 2**30
    assert int(kafka["KAFKA_LOG_RETENTION_BYTES"]) == int(props["log.retention.bytes"])
    assert int(kafka["KAFKA_LOG_SEGMENT_BYTES"]) == int(props["log.segment.bytes"])

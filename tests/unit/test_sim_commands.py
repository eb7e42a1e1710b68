"""The simulated robots obey commands: later, sometimes not, sometimes only for a while (twin.sim.commands)."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from streams.seeds import read_detectors, read_scenario
from twin.desired import DesiredChange, Selector, change_key, deltas, encode_change, resolve, robot_share
from twin.fleet import Fleet
from twin.fleet_fold import FleetState, Rules, on_desired, on_desired_commands, on_record, silence_check_due
from twin.record import Record
from twin.schema import Event, encode
from twin.state import Twin
from twin.sim import FleetSim
from twin.sim.commands import BadCommand, Obedience
from twin.sim.scenario import CommLoss, Fault, Scenario, Where

SEEDS = Path(__file__).resolve().parents[2] / "seeds"
SMALL = Scenario(name="small", robots=18, duration_s=600)


def _sim(fleet: Fleet, scenario: Scenario = SMALL, seed: int = 1, **obey: float) -> FleetSim:
    return FleetSim(fleet, scenario, seed=seed, obedience=Obedience(**obey))


def _reports(sim: FleetSim, robot: str, ticks: int) -> list[Event]:
    """`robot`'s reports over the next `ticks` ticks."""
    return [e for _ in range(ticks) for e in sim.step() if e.robot_id == robot]


def _first(reports: list[Event], version: str) -> float | None:
    return next((e.ts for e in reports if e.ai_model_version == version), None)


def test_a_new_version_shows_after_the_delay_and_stays(fleet: Fleet) -> None:
    sim = _sim(fleet, apply_delay_s=20.0, jitter=0.0)
    robot, at = sim.roster.robot_ids[3], sim.now
    old = sim.versions[3]
    new = "policy-2.5.0"
    assert sim.command(robot, {"ai_model": new}, at) == "scheduled"
    reports = _reports(sim, robot, 120)
    assert all(e.ai_model_version == old for e in reports if e.ts < at + 20.0)
    assert _first(reports, new) == at + 20.0
    assert all(e.ai_model_version == new for e in reports if e.ts >= at + 20.0)


def test_delays_are_jittered_within_half_either_side(fleet: Fleet) -> None:
    sim = _sim(fleet, apply_delay_s=20.0)
    at = sim.now
    for robot in sim.roster.robot_ids:
        sim.command(robot, {"firmware": "fw-1.9.0"}, at)
    shown: dict[str, float] = {}
    for _ in range(40):
        for e in sim.step():
            if e.firmware == "fw-1.9.0":
                shown.setdefault(e.robot_id, e.ts - at)
    assert len(shown) == 18
    assert all(10.0 <= d <= 31.0 for d in shown.values()), shown
    assert len(set(shown.values())) > 5  # not one delay for all


def test_config_is_reported_from_the_start_and_changes_on_command(fleet: Fleet) -> None:
    sim = _sim(fleet, apply_delay_s=5.0, jitter=0.0)
    first = sim.step()
    params = {e.robot_id: set(fleet.models[e.model].control.config) for e in first}
    assert all(set(e.reported_config()) == params[e.robot_id] for e in first)
    robot = next(e for e in first if "safety_profile" in e.reported_config())
    sim.command(robot.robot_id, {"config.safety_profile": "cautious"}, sim.now)
    later = _reports(sim, robot.robot_id, 10)
    assert later[0].reported_config()["safety_profile"] == robot.reported_config()["safety_profile"] == "standard"
    assert later[-1].reported_config()["safety_profile"] == "cautious"
    assert later[-1].reported_config()["max_speed_mps"] == robot.reported_config()["max_speed_mps"]


def test_a_fail_share_keeps_the_old_version(fleet: Fleet) -> None:
    scenario = msgspec.structs.replace(SMALL, robots=200)
    sim = _sim(fleet, scenario, apply_delay_s=10.0, fail_share=0.3)
    for robot in sim.roster.robot_ids:
        sim.command(robot, {"ai_model": "policy-2.5.0"}, sim.now)
    for _ in range(30):
        last = sim.step()
    kept = sum(e.ai_model_version != "policy-2.5.0" for e in last)
    assert 35 <= kept <= 85, kept  # 30% of 200, give or take


def test_everyone_fails_and_no_one_rolls_back_the_fleet_stays(fleet: Fleet) -> None:
    sim = _sim(fleet, apply_delay_s=1.0, fail_share=1.0)
    before = [sim.versions[k] for k in range(18)]
    for robot in sim.roster.robot_ids:
        sim.command(robot, {"ai_model": "policy-2.5.0"}, sim.now)
    assert [e.ai_model_version for e in sorted(_all(sim, 60)[-18:], key=lambda e: e.robot_id)] == \
        [v for _, v in sorted(zip(sim.roster.robot_ids, before))]


def _all(sim: FleetSim, ticks: int) -> list[Event]:
    return [e for _ in range(ticks) for e in sim.step()]


def test_a_rollback_reports_the_new_version_then_the_old_one_again(fleet: Fleet) -> None:
    sim = _sim(fleet, apply_delay_s=10.0, jitter=0.0, rollback_share=1.0, rollback_after_s=30.0)
    robot, at, old = sim.roster.robot_ids[0], sim.now, sim.versions[0]
    sim.command(robot, {"ai_model": "policy-2.5.0"}, at)
    seen = [(e.ts - at, e.ai_model_version) for e in _reports(sim, robot, 90)]
    assert [v for t, v in seen if t < 10] == [old] * 10
    assert [v for t, v in seen if 10 <= t < 40] == ["policy-2.5.0"] * 30
    assert {v for t, v in seen if t >= 40} == {old}


def test_repeating_the_new_value_does_not_cancel_a_rollback(fleet: Fleet) -> None:
    sim = _sim(fleet, apply_delay_s=5.0, jitter=0.0, rollback_share=1.0, rollback_after_s=20.0)
    robot, old = sim.roster.robot_ids[0], sim.versions[0]
    sim.command(robot, {"ai_model": "policy-2.5.0"}, sim.now)
    _reports(sim, robot, 10)
    assert sim.versions[0] == "policy-2.5.0"
    sim.command(robot, {"ai_model": "policy-2.5.0"}, sim.now)
    assert _reports(sim, robot, 30)[-1].ai_model_version == old


def test_a_command_back_to_the_running_value_cancels_an_update_on_its_way(fleet: Fleet) -> None:
    sim = _sim(fleet, apply_delay_s=20.0, jitter=0.0)
    robot, old = sim.roster.robot_ids[0], sim.versions[0]
    sim.command(robot, {"ai_model": "policy-2.5.0"}, sim.now)
    _reports(sim, robot, 5)
    sim.command(robot, {"ai_model": old}, sim.now)  # the plan halted: desired is the old one again
    assert {e.ai_model_version for e in _reports(sim, robot, 60)} == {old}


def test_an_offline_robot_drops_the_command_and_takes_it_when_back(fleet: Fleet) -> None:
    silent = CommLoss(where=Where(sector="mining"), start=0, duration=100)
    scenario = msgspec.structs.replace(SMALL, faults=[silent])
    sim = _sim(fleet, scenario, apply_delay_s=5.0, jitter=0.0)
    robot = sim.roster.robot_ids[sim.injections[0].robot]
    assert sim.command(robot, {"ai_model": "policy-2.5.0"}, sim.now + 50) == "offline"
    assert sim.command(robot, {"ai_model": "policy-2.5.0"}, sim.start_ts - 1) == "offline"  # not running yet
    reports = _reports(sim, robot, 130)
    assert reports and {e.ai_model_version for e in reports} == {sim.versions[sim.index[robot]]} != {"policy-2.5.0"}
    assert sim.command(robot, {"ai_model": "policy-2.5.0"}, sim.now) == "scheduled"  # back: the worker re-sends
    assert _reports(sim, robot, 10)[-1].ai_model_version == "policy-2.5.0"


def test_bad_commands_are_refused_and_strangers_ignored(fleet: Fleet) -> None:
    sim = _sim(fleet)
    robot = sim.roster.robot_ids[0]
    with pytest.raises(BadCommand, match="config.turbo"):
        sim.command(robot, {"config.turbo": "on"}, sim.now)
    with pytest.raises(BadCommand, match="'colour'"):
        sim.command(robot, {"colour": "red"}, sim.now)
    with pytest.raises(BadCommand, match="1 to 64"):
        sim.command(robot, {"firmware": ""}, sim.now)
    with pytest.raises(BadCommand, match="without fields"):
        sim.command(robot, {}, sim.now)
    assert sim.command("another-fleet-robot", {"colour": "red"}, sim.now) == "elsewhere"
    assert not sim.inbox.pending


def _run(fleet: Fleet, seed: int, commands: dict[int, dict[str, str]], ticks: int = 120) -> list[bytes]:
    sim = _sim(fleet, seed=seed, rollback_share=0.3, fail_share=0.2)
    out: list[bytes] = []
    for tick in range(ticks):
        for robot, fields in commands.items() if tick == 3 else ():
            sim.command(sim.roster.robot_ids[robot], fields, sim.now)
        out.extend(msgspec.json.encode(e) for e in sim.step())
    return out


def test_the_same_commands_give_the_same_reports_and_touch_no_other_robot(fleet: Fleet) -> None:
    commands = {k: {"ai_model": "policy-2.5.0", "firmware": "fw-1.9.0"} for k in range(0, 18, 2)}
    one, two = _run(fleet, 1, commands), _run(fleet, 1, commands)
    assert one == two
    assert _run(fleet, 2, commands) != one
    quiet = _run(fleet, 1, {})
    assert one != quiet
    ids = _sim(fleet).roster.robot_ids
    commanded = {ids[k] for k in commands}
    assert [r for r in one if _robot(r) not in commanded] == [r for r in quiet if _robot(r) not in commanded]


def _robot(raw: bytes) -> str:
    return str(msgspec.json.decode(raw)["robot_id"])


GOLDEN = {
    "chaos": "c539219243b2251a4d638e27f0cef8775747c104fb6f72693a2e6df9e2f93ff3",
    "rollout": "b4aea676a7437f650b9badb606b8b7c4dac0a485875d31c3484c3bdfdde3d588",
}
"""What the simulator gave before robots took commands (36 robots, 900 s, seed 3; every field
but the new `config`): a run without commands must not change by one byte."""


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_without_commands_a_scenario_gives_what_it_always_gave(fleet: Fleet, name: str) -> None:
    spec = msgspec.structs.replace(read_scenario(SEEDS, name), robots=36, duration_s=900)
    sim = FleetSim(fleet, spec, seed=3)
    digest = hashlib.sha256()
    for _ in range(sim.ticks):
        for e in sim.step():
            digest.update(msgspec.json.encode(
                (e.robot_id, e.seq, e.ts, e.mode, e.signals, e.ai_model_version, e.firmware, e.codes)))
    assert digest.hexdigest() == GOLDEN[name]


# ---------------------------------------------------------------- version effects


def _stops(sim: FleetSim, ticks: int) -> tuple[Counter[str], Counter[str], dict[str, list[float]]]:
    stops: Counter[str] = Counter()
    working: Counter[str] = Counter()
    latency: dict[str, list[float]] = {}
    for e in _all(sim, ticks):
        working[e.ai_model_version] += e.mode in ("working", "estop")
        stops[e.ai_model_version] += "E-STOP" in e.codes and e.mode == "estop"
        latency.setdefault(e.ai_model_version, []).append(e.signals["inference_ms"])
    return stops, working, latency


@pytest.mark.parametrize("name", ["rollout-gate", "rollout-gate-harmless"])
def test_rollout_gate_fleets_are_the_targeted_model_on_the_old_version(fleet: Fleet, name: str) -> None:
    spec = read_scenario(SEEDS, name)
    sim = FleetSim(fleet, spec, seed=1)
    effects = spec.version_effects
    assert 120 <= len(sim.roster) <= 240 and spec.rate_hz == 1.0
    assert effects and {e.where.model for e in effects} == set(sim.roster.models) == {"amr"}
    assert set(sim.versions) == {"policy-2.4.0"}
    assert not sim.labels()  # whether it happens depends on the commands: never ground truth


@pytest.mark.parametrize(("name", "harmful"), [("rollout-gate", True), ("rollout-gate-harmless", False)])
def test_a_version_effect_follows_the_version_a_robot_runs(fleet: Fleet, name: str, harmful: bool) -> None:
    sim = FleetSim(fleet, read_scenario(SEEDS, name), seed=1, obedience=Obedience(apply_delay_s=0.0))
    for robot in sim.roster.robot_ids[::5]:
        sim.command(robot, {"ai_model": "policy-2.5.0"}, sim.now)
    stops, working, latency = _stops(sim, 1200)
    rate = {v: stops[v] / working[v] * 3600 for v in working}  # e-stops per working hour
    assert 1.5 <= rate["policy-2.4.0"] <= 6.0, rate  # the background: 0.1% of working reports
    slow = sorted(latency["policy-2.5.0"])[len(latency["policy-2.5.0"]) // 2] / \
        sorted(latency["policy-2.4.0"])[len(latency["policy-2.4.0"]) // 2]
    if harmful:
        assert rate["policy-2.5.0"] > 3 * rate["policy-2.4.0"], rate
        assert slow > 1.4
    else:
        assert 0.4 * rate["policy-2.4.0"] < rate["policy-2.5.0"] < 2.5 * rate["policy-2.4.0"], rate
        assert 0.9 < slow < 1.1


# ---------------------------------------------------------------- the whole loop, without I/O


def _loop(fleet: Fleet, ticks: int, change_at: int, faults: list[Fault] | None = None,
          heard: Counter[str] | None = None, **obey: float) -> tuple[FleetSim, dict[str, Twin], FleetState]:
    """Simulated robots, the worker's fold (`twin.fleet_fold`, silence checks included) and a desired
    change at tick `change_at`: the commands the fold sends go back to the robots, as the worker and
    the simulator do through Kafka; `heard` counts what became of them."""
    spec = msgspec.structs.replace(read_scenario(SEEDS, "rollout-gate"), robots=24, faults=faults or [])
    sim = FleetSim(fleet, spec, seed=1, obedience=Obedience(**obey))
    rules, state = Rules(fleet, read_detectors(SEEDS)), FleetState()
    twins: dict[str, Twin] = {}
    heard = Counter() if heard is None else heard
    offset = 0
    for tick in range(ticks):
        for robot, twin in list(twins.items()):
            if silence_check_due(twin, sim.now, rules.config):
                check = Record("check", 0, offset, sim.now, robot.encode(), str(sim.now).encode())
                state, out = on_record(state, twins.get, check, rules)
                offset += 1
                assert out.step.error is None, out.step.error
                twins[robot] = out.step.twin or twin
        if tick == change_at:
            change = DesiredChange(change_id="c1", ts=sim.now, principal="test", reason="the loop",
                                   selector=Selector(model="amr", share=0.5), field="ai_model", value=NEW)
            record = Record("desired", 0, 0, sim.now, change_key(change), encode_change(change))
            before = state.desired
            state, err = on_desired(state, record, fleet)
            assert err is None
            for command in on_desired_commands(before, state.desired, twins.values(), sim.now):
                heard[sim.command(command.robot_id, command.fields, sim.now)] += 1
        for event in sim.step():
            record = Record("telemetry", 0, offset, event.ts + 0.05, event.robot_id.encode(), encode(event))
            offset += 1
            state, out = on_record(state, twins.get, record, rules)
            assert out.step.error is None, out.step.error
            if out.step.twin is not None:
                twins[event.robot_id] = out.step.twin
            for command in out.step.commands:
                heard[sim.command(command.robot_id, command.fields, sim.now)] += 1
    return sim, twins, state


NEW = "policy-2.5.0"


def test_the_fleet_converges_on_its_desired_state(fleet: Fleet) -> None:
    sim, twins, state = _loop(fleet, 60, change_at=5, apply_delay_s=10.0)
    chosen = {r for r in sim.roster.robot_ids if robot_share(r) < 0.5}
    assert 0 < len(chosen) < 24
    assert {r for r, t in twins.items() if t.ai_model_version == NEW} == chosen
    assert all(not deltas(t, resolve(state.desired, t)) for t in twins.values())
    assert all(t.config == {"max_speed_mps": "1.05", "safety_profile": "standard"} for t in twins.values())


def test_a_robot_offline_during_the_change_converges_when_it_returns(fleet: Fleet) -> None:
    sim = _sim(fleet, msgspec.structs.replace(read_scenario(SEEDS, "rollout-gate"), robots=24))
    chosen = [k for k, r in enumerate(sim.roster.robot_ids) if robot_share(r) < 0.5]
    site = sim.roster.sites[chosen[0]]
    away = {r for k, r in enumerate(sim.roster.robot_ids) if sim.roster.sites[k] == site and k in chosen}
    silent = CommLoss(where=Where(site=site), robots=24, start=20, duration=120)
    heard: Counter[str] = Counter()
    sim, twins, state = _loop(fleet, 200, change_at=40, faults=[silent], heard=heard, apply_delay_s=10.0)
    # each told once, with its first report past the change: the ones away when they reconnected
    # (nothing is sent to a robot whose twin has not reached the change's time, so none was dropped)
    assert away and heard["offline"] == 0 and heard["scheduled"] == len(chosen), heard
    assert all(twins[r].ai_model_version == NEW and twins[r].last_seen > sim.start_ts + 140 for r in away)
    assert all(not deltas(t, resolve(state.desired, t)) for t in twins.values())


def test_robots_that_fail_the_update_drift_and_the_twin_says_so(fleet: Fleet) -> None:
    sim, twins, state = _loop(fleet, 700, change_at=5, apply_delay_s=10.0, fail_share=1.0)
    chosen = {r for r in sim.roster.robot_ids if robot_share(r) < 0.5}
    assert all(twins[r].ai_model_version != NEW for r in chosen)
    drifting = {r for r, t in twins.items()
                if any(o.detector == "desired_drift" for o in (t.watch.open if t.watch else ()))}
    assert drifting == chosen


def test_a_roster_given_ids_of_its_own_after_start_still_steps_and_hears_commands(fleet: Fleet) -> None:
    """Tests and runs prefix the roster's ids after the simulator is built (a run of their own):
    the id -> row map follows, or the first tick fails on an unknown id."""
    import dataclasses

    sim = _sim(fleet)
    sim.roster = dataclasses.replace(sim.roster, robot_ids=["mine-" + r for r in sim.roster.robot_ids])
    robot = sim.roster.robot_ids[0]
    assert {e.robot_id for e in sim.step()} <= set(sim.roster.robot_ids)
    assert sim.command(robot, {"ai_model": "policy-2.5.0"}, sim.now) == "scheduled"

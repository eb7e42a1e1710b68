"""Desired state (twin.desired): selectors, compaction, resolution, deltas, commands and drift."""

from __future__ import annotations

import functools
import random
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.seeds import read_detectors, read_fleet
from streams.settings import Settings
from streams.twin_view import to_view

from twin.desired import (
    Command,
    Delta,
    DesiredChange,
    DesiredRules,
    InvalidChange,
    Selector,
    add_change,
    change_key,
    check_change,
    command_for,
    commands_on_change,
    decode_change,
    deltas,
    encode_change,
    judge_drift,
    reported,
    resolve,
    robot_share,
    took_effect,
)
from twin.detect.params import DetectorConfig
from twin.fleet import Fleet
from twin.fleet_fold import FleetState, Rules, on_desired, on_desired_commands, on_record
from twin.pipeline import Step, desire
from twin.record import Record
from twin.reduce import apply
from twin.replay import Fold, in_log_order, replay
from twin.schema import Event, encode
from twin.state import WINDOW, Twin, decode_twin, encode_twin

V_OLD, V_NEW = "policy-2.4.0", "policy-2.5.0"


def ev(seq: int, ts: float, robot: str = "r-1", version: str = V_OLD, firmware: str = "fw-1.8.2",
       **more: Any) -> Event:
    return Event(schema=1, robot_id=robot, seq=seq, ts=ts, sector="logistics", site="log-memphis-01",
                 model="amr", mode="working", signals={"battery_soc_pct": 50.0},
                 ai_model_version=version, firmware=firmware, **more)


def twin_of(*events: Event) -> Twin:
    twin = None
    for e in events:
        twin, _ = apply(twin, e, received_ts=e.ts + 0.5)
    assert twin is not None
    return twin


def change(field: str = "ai_model", value: str | None = V_NEW, ts: float = 100.0, cid: str = "c1",
           **selector: Any) -> DesiredChange:
    return DesiredChange(change_id=cid, ts=ts, principal="operator", reason="test", field=field, value=value,
                         selector=Selector(**selector))


def rules(*changes: DesiredChange) -> DesiredRules:
    out = DesiredRules()
    for c in changes:
        out = add_change(out, c)
    return out


# -- selectors ------------------------------------------------------------------------

def test_robot_share_is_uniform_stable_and_in_unit_interval() -> None:
    shares = [robot_share(f"r-{i}") for i in range(4000)]
    assert all(0 <= s < 1 for s in shares)
    assert robot_share("r-7") == robot_share("r-7")
    assert 0.04 < sum(s < 0.05 for s in shares) / len(shares) < 0.06


def test_share_waves_nest_a_robot_in_the_5pct_wave_is_in_the_25pct_wave() -> None:
    for i in range(500):
        twin = twin_of(ev(1, 10.0, robot=f"r-{i}"))
        in_small = bool(resolve(rules(change(share=0.05)), twin))
        in_big = bool(resolve(rules(change(share=0.25)), twin))
        assert in_big or not in_small
        assert in_small == (robot_share(f"r-{i}") < 0.05)


def test_selector_matches_only_on_every_named_constraint() -> None:
    twin = twin_of(ev(1, 10.0))
    assert resolve(rules(change(sector="logistics", model="amr", site="log-memphis-01")), twin)
    assert resolve(rules(change(robots=("r-9", "r-1"))), twin)
    assert not resolve(rules(change(robots=("r-9",))), twin)
    assert not resolve(rules(change(sector="mining")), twin)
    assert not resolve(rules(change(model="humanoid")), twin)
    assert not resolve(rules(change(site="log-rotterdam-01")), twin)
    assert not resolve(rules(change(version="policy-2.3.1")), twin)


def test_a_version_selector_still_matches_after_the_robot_converged() -> None:
    r = rules(change(version=V_OLD, value=V_NEW))
    before = twin_of(ev(1, 10.0, version=V_OLD))
    after = twin_of(ev(1, 10.0, version=V_OLD), ev(2, 200.0, version=V_NEW))
    assert resolve(r, before)["ai_model"].value == V_NEW
    assert resolve(r, after)["ai_model"].value == V_NEW
    assert deltas(after, resolve(r, after)) == []
    elsewhere = twin_of(ev(1, 10.0, version="policy-2.3.1"))
    assert resolve(r, elsewhere) == {}


# -- compaction and resolution ------------------------------------------------------------

def test_a_newer_change_of_the_same_key_replaces_the_older_whatever_the_order() -> None:
    old = change(value=V_OLD, ts=100.0, cid="a", sector="logistics")
    new = change(value=V_NEW, ts=200.0, cid="b", sector="logistics")
    assert change_key(old) == change_key(new)
    assert rules(old, new) == rules(new, old) == DesiredRules((new,))
    assert rules(new, new) == DesiredRules((new,))  # a re-read changes nothing


def test_the_key_is_the_canonical_selector_and_field() -> None:
    a = change(robots=("r-2", "r-1"))
    b = change(robots=("r-1", "r-2", "r-1"), ts=5.0)
    assert change_key(a) == change_key(b)
    assert change_key(a) != change_key(change(field="firmware", value="fw-1.9.0", robots=("r-1", "r-2")))
    assert change_key(change(share=0.05)) != change_key(change(share=0.25))
    assert len(rules(change(share=0.05, cid="a"), change(share=0.25, cid="b")).changes) == 2


def test_later_changes_win_and_a_clear_removes_the_desire() -> None:
    twin = twin_of(ev(1, 10.0))
    fleet_wide = change(value=V_NEW, ts=100.0, cid="a", sector="logistics")
    mine = change(value="policy-2.3.1", ts=150.0, cid="b", robots=("r-1",))
    assert resolve(rules(fleet_wide, mine), twin)["ai_model"].value == "policy-2.3.1"
    assert resolve(rules(fleet_wide, mine), twin, at=120.0)["ai_model"].value == V_NEW
    assert resolve(rules(fleet_wide, mine), twin, at=99.0) == {}
    cleared = rules(fleet_wide, mine, change(value=None, ts=300.0, cid="c", robots=("r-1",)))
    assert resolve(cleared, twin) == {}
    assert len(cleared.changes) == 2  # the clear replaced the set of its own key


def test_reported_includes_config_and_the_delta_says_since_when() -> None:
    twin = twin_of(ev(1, 10.0, config={"max_speed_mps": "1.5"}))
    assert reported(twin) == {"ai_model": V_OLD, "firmware": "fw-1.8.2", "config.max_speed_mps": "1.5"}
    r = rules(change(value=V_NEW, ts=100.0), change("config.max_speed_mps", "1.0", ts=50.0, cid="c2"),
              change("config.safety_profile", "cautious", ts=60.0, cid="c3"))
    assert deltas(twin, resolve(r, twin)) == [
        Delta("ai_model", V_NEW, V_OLD, 100.0),
        Delta("config.max_speed_mps", "1.0", "1.5", 50.0),
        Delta("config.safety_profile", "cautious", "", 60.0),
    ]


def test_the_twin_keeps_the_newest_events_config_and_old_twins_still_decode() -> None:
    twin = twin_of(ev(1, 10.0, config={"b": "1", "a": "2"}), ev(3, 30.0), ev(2, 20.0, config={"a": "9"}))
    assert twin.config == {}
    twin = twin_of(ev(1, 10.0), ev(2, 20.0, config={"b": "1", "a": "2"}))
    assert list(twin.config) == ["a", "b"]
    assert decode_twin(encode_twin(twin)) == twin
    old = msgspec.msgpack.encode(msgspec.to_builtins(twin_of(ev(1, 10.0)))[:-1])
    assert decode_twin(old).config == {}


def test_an_event_without_config_encodes_as_before() -> None:
    assert b"config" not in msgspec.json.encode(ev(1, 10.0))


# -- commands --------------------------------------------------------------------------

def test_command_carries_the_whole_delta_and_nothing_once_converged() -> None:
    twin = twin_of(ev(1, 10.0))
    r = rules(change(value=V_NEW, cid="a"), change("firmware", "fw-1.9.0", cid="b"))
    assert command_for(twin, resolve(r, twin), at=500.0) == Command(
        robot_id="r-1", ts=500.0, fields={"ai_model": V_NEW, "firmware": "fw-1.9.0"}, change_ids=("a", "b"))
    done = twin_of(ev(1, 10.0), ev(2, 20.0, version=V_NEW, firmware="fw-1.9.0"))
    assert command_for(done, resolve(r, done)) is None


def test_commands_on_change_go_only_to_robots_whose_desire_changed_and_differ() -> None:
    a, b, c = twin_of(ev(1, 300.0, robot="a")), twin_of(ev(1, 300.0, robot="b")), \
        twin_of(ev(1, 300.0, robot="c", version=V_NEW))
    before = rules(change(value=V_NEW, robots=("b",), cid="x"))
    after = add_change(before, change(value=V_NEW, sector="logistics", cid="y", ts=200.0))
    sent = commands_on_change(before, after, [a, b, c], at=200.0)
    assert [cmd.robot_id for cmd in sent] == ["a"]  # b already desired it; c runs it


def test_a_robot_behind_the_change_gets_its_command_with_its_next_report_once() -> None:
    """The worker learnt of the change before it folded the robot's report past the change's time
    (or before the robot had a twin): the report sends the command, the change itself does not."""
    behind = twin_of(ev(1, 150.0))
    after = rules(change(value=V_NEW, model="amr", ts=200.0))
    assert commands_on_change(DesiredRules(), after, [behind], at=200.0) == []
    assert took_effect(after, behind, 201.0) and not took_effect(after, behind, 199.0)
    fleet, config = seeds()
    nxt = twin_of(ev(1, 150.0), ev(2, 201.0))
    _, _, sent = desire(behind, nxt, after, 201.0, config)
    assert [c.fields for c in sent] == [{"ai_model": V_NEW}]
    later = twin_of(ev(1, 150.0), ev(2, 201.0), ev(3, 202.0))
    assert desire(nxt, later, after, 202.0, config)[2] == ()  # once: the next report sends nothing


# -- wire form and checks ------------------------------------------------------------------

def test_encode_decode_round_trip_and_omits_defaults() -> None:
    c = change(value=None, sector="logistics", share=0.05)
    raw = encode_change(c)
    assert decode_change(raw) == c
    assert b'"value":null' in raw and b"plan" not in raw and b"robots" not in raw


@pytest.mark.parametrize("raw, reason", [
    (b"{not json", "undecodable"),
    (b'{"change_id": "a"}', "schema"),
    (b'{"schema": 2, "change_id": "a", "ts": 1, "principal": "p", "reason": "r", "selector": {},'
     b' "field": "ai_model", "value": null}', "schema"),
    (b'{"change_id": "a", "ts": 1, "principal": "p", "reason": "r", "selector": {"colour": "red"},'
     b' "field": "ai_model", "value": null}', "schema"),
    (b'{"change_id": "a", "ts": 1e999, "principal": "p", "reason": "r", "selector": {},'
     b' "field": "ai_model", "value": null}', "schema"),
    (b"x" * 70000, "undecodable"),
])
def test_undecodable_changes_are_refused_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidChange) as err:
        decode_change(raw)
    assert err.value.reason == reason


@pytest.mark.parametrize("bad, reason, words", [
    (change(sector="moon"), "bad_selector", "unknown sector 'moon'"),
    (change(site="nowhere-01"), "bad_selector", "unknown site"),
    (change(sector="mining", site="log-memphis-01"), "bad_selector", "is in sector 'logistics'"),
    (change(model="toaster"), "bad_selector", "unknown robot model"),
    (change(sector="mining", model="humanoid"), "bad_selector", "not deployed"),
    (change(model="amr", share=0.0), "bad_selector", "share must be in (0, 1]"),
    (change(model="amr", share=1.5), "bad_selector", "share must be in (0, 1]"),
    (change(model="amr", robots=("bad id!",)), "bad_selector", "not a robot id"),
    (change(model="amr", version="policy-9"), "bad_selector", "version 'policy-9'"),
    (change("colour", "red", model="amr"), "unknown_field", "'colour' is not desirable"),
    (change("config.nope", "1", model="amr"), "unknown_field", "config.nope"),
    (change("ai_model", V_NEW, model="ur3"), "unknown_field", "declares 'ai_model'"),
    (change("ai_model", V_NEW), "unknown_field", "narrow the selector"),
    (change("ai_model", "policy-9.9", model="amr"), "bad_value", "allowed: policy-2.3.1"),
    (change("firmware", "fw-0.1", model="amr"), "bad_value", "allowed: fw-1.8.2"),
    (change("config.max_speed_mps", "fast", model="amr"), "bad_value", "not a float"),
    (change("config.max_speed_mps", "9", model="amr"), "bad_value", "outside [0.1, 2.0]"),
    (change("config.safety_profile", "reckless", model="amr"), "bad_value", "allowed: standard, cautious"),
    (DesiredChange(change_id="c", ts=1.0, principal="p", reason=" ", field="ai_model", value=V_NEW,
                   selector=Selector(model="amr")), "bad_value", "a reason is required"),
])
def test_bad_changes_are_rejected_with_the_specific_reason(fleet: Fleet, bad: DesiredChange, reason: str,
                                                           words: str) -> None:
    with pytest.raises(InvalidChange) as err:
        check_change(bad, fleet)
    assert err.value.reason == reason
    assert words in err.value.detail


def test_good_changes_pass_the_check(fleet: Fleet) -> None:
    for good in (change(sector="logistics", share=0.05), change(model="amr", version=V_OLD),
                 change("firmware", "fw-1.9.0"), change("config.max_speed_mps", "1.2", model="amr"),
                 change(value=None, sector="logistics"), change(robots=("r-1",))):
        check_change(good, fleet)


def test_every_seed_model_has_a_control_block_with_todays_firmware(fleet: Fleet) -> None:
    from twin.sim.engine import FIRMWARE
    for name, model in fleet.models.items():
        assert FIRMWARE in model.control.firmware_versions, name
        assert 1 <= len(model.control.config) <= 2, name


# -- drift -------------------------------------------------------------------------------------

def test_drift_opens_after_the_grace_and_resolves_when_reported_matches() -> None:
    r = rules(change(value=V_NEW, ts=100.0))
    twin = twin_of(ev(1, 90.0))
    twin, found = judge_drift(twin, resolve(r, twin), now=650.0, grace_s=600.0)
    assert found == [] and twin.watch is None
    twin, found = judge_drift(twin, resolve(r, twin), now=700.0, grace_s=600.0)
    assert [(a.status, a.detector, a.signal, a.severity) for a in found] == [
        ("open", "desired_drift", "ai_model", "warning")]
    assert found[0].evidence == {"desired": V_NEW, "reported": V_OLD, "since": 100.0, "age_s": 600.0}
    opened_id = found[0].id
    twin, found = judge_drift(twin, resolve(r, twin), now=750.0, grace_s=600.0)
    assert found == [] and [o.signal for o in twin.watch.open] == ["ai_model"]  # type: ignore[union-attr]
    twin, _ = apply(twin, ev(2, 800.0, version=V_NEW), received_ts=800.5)
    twin, found = judge_drift(twin, resolve(r, twin), now=800.0, grace_s=600.0)
    assert [(a.status, a.id, a.end_ts) for a in found] == [("resolved", opened_id, 800.0)]
    assert twin.watch is not None and twin.watch.open == []


def test_drift_resolves_when_the_desire_is_cleared() -> None:
    r = rules(change(value=V_NEW, ts=100.0, robots=("r-1",)))
    twin = twin_of(ev(1, 90.0))
    twin, found = judge_drift(twin, resolve(r, twin), now=800.0, grace_s=600.0)
    assert [a.status for a in found] == ["open"]
    r = add_change(r, change(value=None, ts=900.0, cid="c2", robots=("r-1",)))
    twin, found = judge_drift(twin, resolve(r, twin), now=901.0, grace_s=600.0)
    assert [a.status for a in found] == ["resolved"]


def test_nothing_desired_leaves_the_twin_untouched() -> None:
    twin = twin_of(ev(1, 90.0))
    assert judge_drift(twin, {}, now=1e6, grace_s=1.0) == (twin, [])


# -- the folds: pipeline, fleet_fold, replay ------------------------------------------------------

T0 = 1.7e9


@functools.cache
def seeds() -> tuple[Fleet, DetectorConfig]:
    dirs = Settings().seeds_dir
    return read_fleet(dirs), read_detectors(dirs)


def new_fold() -> Fold:
    fleet, config = seeds()
    return Fold(Rules(fleet, config))


def tele(offset: int, event: Event) -> Record:
    return Record("telemetry", 0, offset, event.ts + 0.5, event.robot_id.encode(), encode(event))


def desired_record(offset: int, c: DesiredChange) -> Record:
    return Record("desired", 0, offset, c.ts + 0.1, change_key(c), encode_change(c))


def check(offset: int, robot: str, now: float) -> Record:
    return Record("check", 0, offset, now, robot.encode(), repr(now).encode())


def feed_all(fold: Fold, records: list[Record]) -> list[Step]:
    steps = []
    for record in records:
        if record.kind == "desired":
            fold.feed(record)
            continue
        fold.state, (step, publish) = on_record(fold.state, fold.twins.get, record, fold.rules)
        if step.twin is not None:
            fold.twins[step.twin.robot_id] = step.twin
        fold.publish(publish)
        steps.append(step)
    return steps


def test_the_first_event_gets_the_robots_delta_as_a_command_and_later_ones_do_not() -> None:
    fold = new_fold()
    fold.feed(desired_record(0, change(value=V_NEW, ts=T0, cid="c1", model="amr")))
    steps = feed_all(fold, [tele(i, ev(i + 1, T0 + 10 + i)) for i in range(3)])
    assert [list(s.commands) for s in steps] == [
        [Command(robot_id="r-1", ts=T0 + 10, fields={"ai_model": V_NEW}, change_ids=("c1",))], [], []]


def test_a_robot_back_from_silence_gets_its_command_again_and_none_once_converged() -> None:
    fold = new_fold()
    fold.feed(desired_record(0, change(value=V_NEW, ts=T0, cid="c1", model="amr")))
    records = [tele(i, ev(i + 1, T0 + 10 + i)) for i in range(20)]
    feed_all(fold, [*records, check(20, "r-1", T0 + 200)])
    assert any(o.detector == "silence" for o in fold.twins["r-1"].watch.open)  # type: ignore[union-attr]
    back = feed_all(fold, [tele(21, ev(21, T0 + 300))])
    assert [c.fields for c in back[0].commands] == [{"ai_model": V_NEW}]
    feed_all(fold, [check(22, "r-1", T0 + 400)])
    converged = feed_all(fold, [tele(23, ev(22, T0 + 500, version=V_NEW))])
    assert converged[0].commands == ()


def test_drift_opens_through_the_pipeline_after_the_grace_and_resolves_on_convergence() -> None:
    fold = new_fold()
    fold.feed(desired_record(0, change(value=V_NEW, ts=T0, cid="c1", model="amr")))
    grace = seeds()[1].for_model("amr").drift_grace_s
    assert grace == 600.0
    times = [T0 + 5 + 60 * i for i in range(12)]  # the last at T0 + 665: past the grace
    feed_all(fold, [tele(i, ev(i + 1, ts)) for i, ts in enumerate(times)])
    drift = [a for a in fold.anomalies if a.detector == "desired_drift"]
    assert [(a.status, a.signal, a.ts) for a in drift] == [("open", "ai_model", T0 + 605)]
    feed_all(fold, [tele(12, ev(13, T0 + 700, version=V_NEW))])
    drift = [a for a in fold.anomalies if a.detector == "desired_drift"]
    assert [(a.status, a.ts) for a in drift] == [("open", T0 + 605), ("resolved", T0 + 700)]
    assert drift[0].id == drift[1].id


def test_a_silent_robot_drifts_on_its_silence_checks() -> None:
    fold = new_fold()
    fold.feed(desired_record(0, change(value=V_NEW, ts=T0, cid="c1", model="amr")))
    feed_all(fold, [tele(i, ev(i + 1, T0 + 1 + i)) for i in range(20)])
    feed_all(fold, [check(20, "r-1", T0 + 100), check(21, "r-1", T0 + 700)])
    assert [(a.detector, a.status) for a in fold.anomalies] == [("silence", "open"), ("desired_drift", "open")]


def test_a_bad_desired_record_is_reported_and_changes_nothing() -> None:
    state = FleetState()
    after, error = on_desired(state, Record("desired", 0, 0, T0, b"k", b"{oops"))
    assert after is state and error is not None and error.reason == "undecodable"
    fleet, _ = seeds()
    bad = change(value=V_NEW, ts=T0, model="toaster")
    after, error = on_desired(state, desired_record(1, bad), fleet)
    assert after is state and error is not None and error.reason == "bad_selector"
    after, error = on_desired(state, desired_record(2, change(value=V_NEW, ts=T0, model="amr")))
    assert error is None and len(after.desired.changes) == 1


def test_on_desired_commands_is_the_cores_rule() -> None:
    twin = twin_of(ev(1, 110.0))
    before, after = DesiredRules(), rules(change(value=V_NEW, model="amr"))
    assert on_desired_commands(before, after, [twin], at=5.0) == commands_on_change(before, after, [twin], 5.0)
    assert len(on_desired_commands(before, after, [twin], at=5.0)) == 1


def test_replay_folds_desired_changes_by_record_time_and_snapshots_them() -> None:
    fleet, config = seeds()
    c1 = change(value=V_NEW, ts=T0 + 5, cid="c1", model="amr")
    c2 = change(value=None, ts=T0 + 15, cid="c2", model="amr")
    telemetry = [tele(i, ev(i + 1, T0 + i)) for i in range(20)]
    desired = [desired_record(0, c1), desired_record(1, c2)]
    result = replay(in_log_order([telemetry, desired]), fleet, config, at=[T0 + 10, T0 + 30])
    assert result.desired_at[T0 + 10] == rules(c1)
    assert result.desired_at[T0 + 30] == result.desired == rules(c1, c2)
    view = to_view(result.snapshots[T0 + 10]["r-1"], result.desired_at[T0 + 10])
    assert view["desired"]["ai_model"]["value"] == V_NEW and view["desired"]["ai_model"]["principal"] == "operator"
    assert view["reported"]["ai_model"] == V_OLD
    assert [(d["field"], d["desired"], d["reported"], d["since"], d["age_s"]) for d in view["delta"]] == [
        ("ai_model", V_NEW, V_OLD, T0 + 5, 4.0)]  # the newest event by T0+10 is of T0+9
    assert to_view(result.snapshots[T0 + 30]["r-1"], result.desired_at[T0 + 30])["desired"] == {}


def test_a_bad_desired_record_in_a_replay_is_listed_as_rejected() -> None:
    fleet, config = seeds()
    result = replay([Record("desired", 0, 0, T0, b"k", b"[]")], fleet, config)
    assert [(r.reason, r.offset) for r in result.rejected] == [("schema", 0)]


# -- the property: any order within the dedup span, the same desired, reported and delta -------------

VERSIONS = ("policy-2.3.1", V_OLD, V_NEW)
SELECTORS = (Selector(), Selector(model="amr"), Selector(robots=("r-1",)), Selector(version=V_OLD),
             Selector(share=0.5), Selector(sector="logistics", share=1.0))
FIELDS = {"ai_model": VERSIONS, "firmware": ("fw-1.8.2", "fw-1.9.0"), "config.max_speed_mps": ("1.0", "1.5")}


@st.composite
def histories(draw: st.DrawFn) -> list[Event | DesiredChange]:
    seqs = draw(st.lists(st.integers(1, WINDOW), min_size=1, max_size=12, unique=True))
    events: list[Event | DesiredChange] = [
        ev(seq, T0 + draw(st.integers(0, 100)), version=draw(st.sampled_from(VERSIONS)),
           firmware=draw(st.sampled_from(FIELDS["firmware"])),
           **({"config": {"max_speed_mps": draw(st.sampled_from(("1.0", "1.5")))}}
              if draw(st.booleans()) else {}))  # type: ignore[arg-type]  # keyword-only config
        for seq in seqs]
    for n in range(draw(st.integers(0, 6))):
        field = draw(st.sampled_from(sorted(FIELDS)))
        events.append(DesiredChange(
            change_id=f"c{n}", ts=T0 + draw(st.integers(0, 100)), principal="operator", reason="prop",
            selector=draw(st.sampled_from(SELECTORS)), field=field,
            value=draw(st.one_of(st.none(), st.sampled_from(FIELDS[field])))))
    return events


def outcome(history: list[Event | DesiredChange]) -> tuple[Any, ...]:
    fold = new_fold()
    for offset, item in enumerate(history):
        fold.feed(desired_record(offset, item) if isinstance(item, DesiredChange) else tele(offset, item))
    twin = fold.twins["r-1"]
    wants = resolve(fold.state.desired, twin)
    return wants, reported(twin), [(d.field, d.desired, d.reported) for d in deltas(twin, wants)]


@settings(max_examples=60, deadline=None)
@given(histories(), st.randoms(use_true_random=False))
def test_any_order_of_changes_and_reports_gives_the_same_desired_reported_and_delta(
        history: list[Event | DesiredChange], rnd: random.Random) -> None:
    shuffled = list(history)
    rnd.shuffle(shuffled)
    assert outcome(shuffled) == outcome(history)


def test_a_config_default_outside_its_values_is_refused_in_the_seeds() -> None:
    import yaml

    from twin.exceptions import InvalidSeed
    from twin.fleet import load_fleet
    seeds_dir = Settings().seeds_dir
    sectors = yaml.safe_load((seeds_dir / "sectors.yaml").read_text())
    models = yaml.safe_load((seeds_dir / "models.yaml").read_text())
    models["models"]["amr"]["control"]["config"]["safety_profile"]["default"] = "reckless"
    with pytest.raises(InvalidSeed, match="control.config.safety_profile: default 'reckless'"):
        load_fleet(sectors, models)
    models["models"]["amr"]["control"]["config"]["safety_profile"] = {"type": "enum"}
    with pytest.raises(InvalidSeed, match="an enum needs a non-empty 'values' list"):
        load_fleet(sectors, models)

"""twin.desired_summary: the fold's columns summarised as `summarize_desired` of its twins (the oracle).

The fold: the chaos scenario on three partitions, one robot reporting another safety profile and
one reporting no configuration at all. Random desired rules, drawn from what the robots report and
values none of them reports, with every selector constraint, clears and rollout waves.
"""

from __future__ import annotations

import functools

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_batch_fold import chaos_log, rules
from twin import batch_fold as bf
from twin import desired_summary
from twin.batch_reduce import to_twins
from twin.desired import DesiredChange, DesiredRules, Selector, add_change, robot_share
from twin.desired_summary import DesiredSummary, Shares, Wave, merge, summarize_desired, summarize_desired_fold
from twin.record import Record
from twin.state import Twin


@functools.cache
def fold() -> bf.FoldState:
    records = chaos_log(robots=24, seconds=40, seed=5, partitions=3)
    robots = sorted({r.key for r in records if r.key})
    edited = [_edited(r, robots[1], robots[2]) if r.kind == "telemetry" else r for r in records]
    state = bf.FoldState(rules())
    bf.fold_log(state, rules(), edited)
    return state


def _edited(record: Record, cautious: bytes, bare: bytes) -> Record:
    if record.key not in (cautious, bare):
        return record
    try:
        doc = msgspec.json.decode(record.value)
        if record.key == bare:
            doc.pop("config", None)
        else:
            doc["config"] = {**doc["config"], "safety_profile": "cautious"}
    except (msgspec.DecodeError, KeyError, TypeError, AttributeError):
        return record  # a malformed record of the noise stays as it is
    return msgspec.structs.replace(record, value=msgspec.json.encode(doc))


@functools.cache
def twins() -> tuple[Twin, ...]:
    red = fold().red
    return tuple(to_twins(red, red.robot_ids, signals=False))


def vocabulary(attr: str) -> list[str]:
    return sorted({getattr(t, attr) for t in twins()}) + ["unknown"]


FIELDS = ["ai_model", "firmware", "config.safety_profile", "config.max_speed_mps", "config.no_such"]


@st.composite
def a_change(draw: st.DrawFn, k: int) -> DesiredChange:
    ts_ = twins()
    field = draw(st.sampled_from(FIELDS))
    reported = {"ai_model": vocabulary("ai_model_version"), "firmware": vocabulary("firmware"),
                "config.safety_profile": ["standard", "cautious"], "config.max_speed_mps": ["1.05", "0.8"],
                "config.no_such": ["x"]}[field]

    def maybe(values: list[str]) -> str | None:
        return draw(st.none() | st.sampled_from(values))

    selector = Selector(
        robots=tuple(draw(st.lists(st.sampled_from([t.robot_id for t in ts_] + ["r-elsewhere"]), max_size=4))),
        sector=maybe(vocabulary("sector")), site=maybe(vocabulary("site")), model=maybe(vocabulary("model")),
        version=maybe(vocabulary("ai_model_version")), share=draw(st.none() | st.sampled_from([0.1, 0.5, 1.0])))
    plan = draw(st.sampled_from(["", "p", "q"]))  # "": not a rollout's
    return DesiredChange(change_id=f"c{k}", ts=float(k), principal="test", reason="test", selector=selector,
                         field=field, value=draw(st.none() | st.sampled_from(reported + [""])),
                         plan=plan, wave=draw(st.integers(0, 1)) if plan else 0)


@st.composite
def some_rules(draw: st.DrawFn) -> DesiredRules:
    out = DesiredRules()
    for k in range(draw(st.integers(1, 8))):
        out = add_change(out, draw(a_change(k)))
    return out


@settings(max_examples=300, deadline=None)
@given(some_rules())
def test_the_columns_summarise_as_the_twins_do(desired: DesiredRules) -> None:
    assert summarize_desired_fold(fold().red, desired) == summarize_desired(twins(), desired)


def test_a_drift_a_wave_and_a_clear_are_counted() -> None:
    """A hand-checked case, so the equality above is not of two empty summaries."""
    first = twins()[0]
    wave = DesiredChange(change_id="w", ts=1.0, principal="t", reason="t", selector=Selector(model=first.model),
                         field="ai_model", value="policy-9", plan="p", wave=0)
    pin = DesiredChange(change_id="f", ts=2.0, principal="t", reason="t", selector=Selector(sector=first.sector),
                        field="firmware", value=first.firmware)
    cleared = DesiredChange(change_id="x", ts=3.0, principal="t", reason="t",
                            selector=Selector(robots=(first.robot_id,)), field="ai_model", value=None)
    desired = add_change(add_change(add_change(DesiredRules(), wave), pin), cleared)
    same_model = [t for t in twins() if t.model == first.model]
    got = summarize_desired_fold(fold().red, desired)
    assert got.waves == {("p", 0): Wave(len(same_model), 0)}
    assert sum(got.robots[k] for k in {(t.sector, t.model, "ai_model") for t in same_model}) == len(same_model) - 1
    assert sum(got.drift.values()) == len(same_model) - 1  # the pinned firmware is what they report
    assert got.robots[(first.sector, first.model, "firmware")] >= 1
    assert got == summarize_desired(twins(), desired)


def test_merge_adds_two_workers_worth() -> None:
    a = DesiredSummary(waves={("p", 0): Wave(3, 1)})
    a.robots[("s", "m", "ai_model")] = 3
    b = DesiredSummary(waves={("p", 0): Wave(2, 2), ("q", 1): Wave(1, 0)})
    b.robots[("s", "m", "ai_model")] = 2
    b.drift[("s", "m", "ai_model")] = 1
    got = merge(a, b)
    assert got.robots == {("s", "m", "ai_model"): 5} and got.drift == {("s", "m", "ai_model"): 1}
    assert got.waves == {("p", 0): Wave(5, 3), ("q", 1): Wave(1, 0)}


def test_shares_are_hashed_once_and_start_over_with_a_new_fold(monkeypatch: pytest.MonkeyPatch) -> None:
    hashed: list[str] = []

    def counted(robot_id: str) -> float:
        hashed.append(robot_id)
        return robot_share(robot_id)

    monkeypatch.setattr(desired_summary, "robot_share", counted)
    red, shares = fold().red, Shares()
    first = shares(red)
    assert first.tolist() == [robot_share(r) for r in red.robot_ids]
    assert (shares(red) == first).all() and hashed == red.robot_ids  # the second ask hashed nothing
    other = bf.FoldState(rules()).red
    assert len(shares(other)) == 0

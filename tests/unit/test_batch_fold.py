"""twin.batch_fold.fold_batch against `on_record` folded record by record (the oracle).

The log: the chaos scenario's records on one partition (telemetry and interleaved silence checks,
as `fold_scenario` writes them), plus malformed records, duplicated reports at new offsets and a
stretch of records redelivered with their old offsets (a restart re-reading from an older commit).
Compared: every record's event, effects, anomaly messages (ticks' first), rejection, redelivery and
commands; at the end every twin's `encode_twin` bytes (with its watch) and the fleet state's cohorts
and rollout statistics. The cohort trend rates stay below `cohort.PARAMS.min_weight` in these runs
(asserted), so the round join judges trends exactly as `on_record` does; the cohort baselines do get
fitted and are passed to the join per segment.
"""

from __future__ import annotations

import functools
import random
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st

from streams.seeds import read_detectors, read_fleet, read_scenario
from twin import batch_fold as bf
from twin.desired import DesiredChange, DesiredRules, Selector, add_change
from twin.detect.cohort import PARAMS as COHORT
from twin.fleet_fold import FleetState, RecordOut, Rules, on_record
from twin.record import Record
from twin.score.ground_truth import fold_scenario
from twin.sim import load_scenario
from twin.state import Twin, encode_twin

SEEDS = Path(__file__).resolve().parents[2] / "seeds"
encode = msgspec.msgpack.encode


@functools.cache
def rules() -> Rules:
    return Rules(read_fleet(SEEDS), read_detectors(SEEDS))


@functools.cache
def chaos_log(robots: int, seconds: int, seed: int) -> tuple[Record, ...]:
    """The chaos scenario's log on one partition, with bad, duplicated and redelivered records added."""
    doc = msgspec.to_builtins(read_scenario(SEEDS, "chaos"))
    scenario = load_scenario({**doc, "robots": robots, "duration_s": seconds}, "chaos")
    records: list[Record] = []
    fold_scenario(rules().fleet, scenario, seed, rules().config, partition_of=lambda key: 0,
                  on_record=records.append, check_every_s=3.0)
    rng = random.Random(seed)
    out: list[Record] = []
    for r in records:
        out.append(r)
        if r.kind == "telemetry" and rng.random() < 0.01:
            out.append(msgspec.structs.replace(r, value=r.value[: len(r.value) // 2]))  # truncated
        if r.kind == "telemetry" and rng.random() < 0.005:
            out.append(msgspec.structs.replace(r, key=b"r-nobody", value=b'{"schema": 1}'))
        if r.kind == "telemetry" and rng.random() < 0.01:
            out.append(r)  # the same report again (a duplicate the reducer sees)
    out = [msgspec.structs.replace(r, offset=i) for i, r in enumerate(out)]
    cut = len(out) * 2 // 3
    redelivered = out[cut - 300: cut]  # a restart re-reads from an older commit
    return tuple([*out[:cut], *redelivered, *out[cut:]])


def oracle(records: tuple[Record, ...], start: FleetState | None = None
           ) -> tuple[list[RecordOut], dict[str, Twin], FleetState]:
    twins: dict[str, Twin] = {}
    state = start or FleetState()
    outs = []
    for record in records:
        state, out = on_record(state, twins.get, record, rules())
        if out.step.twin is not None:
            twins[out.step.twin.robot_id] = out.step.twin
        outs.append(out)
    return outs, twins, state


def batched(records: tuple[Record, ...], sizes: list[int], start: FleetState | None = None
            ) -> tuple[list[RecordOut], bf.FoldState]:
    state = bf.FoldState(rules(), start)
    outs: list[RecordOut] = []
    at, k = 0, 0
    while at < len(records):
        size = sizes[k % len(sizes)]
        state, out = bf.fold_batch(state, rules(), list(records[at:at + size]))
        outs += out
        at, k = at + size, k + 1
    return outs, state


def record_view(out: RecordOut) -> bytes:
    s = out.step
    return encode((s.event, s.effects, list(s.found), None if s.error is None else (s.error.reason, str(s.error)),
                   s.redelivered, list(s.commands), out.publish))


def cohorts_view(state: FleetState) -> bytes:
    return encode({p: (sorted((m, n, s1.tolist(), s2.tolist()) for m, (n, s1, s2) in c.sums.items()),
                       sorted((m, repr(b)) for m, b in c.baselines.items()),
                       sorted(c.fitted_at.items()), sorted((m, sorted(r.items())) for m, r in c.rates.items()))
                   for p, c in state.cohorts.items()})


@functools.cache
def plain_oracle(records: tuple[Record, ...]) -> tuple[list[RecordOut], dict[str, Twin], FleetState]:
    return oracle(records)


def assert_same(records: tuple[Record, ...], sizes: list[int], start: FleetState | None = None) -> bf.FoldState:
    want, twins, fleet = oracle(records, start) if start is not None else plain_oracle(records)
    got, state = batched(records, sizes, start)
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert record_view(g) == record_view(w), (i, records[i].kind)
    assert bf.robot_ids(state) == set(twins)
    for rid, twin in twins.items():
        assert encode_twin(bf.twin_of(state, rid)) == encode_twin(twin), rid  # type: ignore[arg-type]
    assert cohorts_view(state.fleet) == cohorts_view(fleet)
    assert encode(state.fleet.versions) == encode(fleet.versions)
    assert state.fleet.next_tick == fleet.next_tick
    for c in fleet.cohorts.values():  # the join judged trends without cohort rates: they must not count yet
        assert all(w < COHORT.min_weight for r in c.rates.values() for w, _, _ in r.values())
    return state


@pytest.mark.parametrize("sizes", [[1], [7], [333], [2000], [5, 120, 1, 41, 777, 64]])
def test_chaos_log_folds_as_on_record_at_every_split(sizes: list[int]) -> None:
    records = chaos_log(24, 150, 5)
    assert {r.kind for r in records} == {"telemetry", "check"}
    want, _, _ = plain_oracle(records)
    assert any(o.step.error for o in want) and any(o.step.redelivered for o in want)
    assert any(o.publish for o in want)
    assert_same(records, sizes)


@settings(max_examples=3, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate])
@given(st.lists(st.integers(1, 500), min_size=1, max_size=40))
@example([215, 361, 3, 448, 94, 223, 41])  # a restart's re-read within one batch, after the originals
def test_drawn_splits(sizes: list[int]) -> None:
    assert_same(chaos_log(24, 150, 6), sizes)


def test_models_near_live_cohort_rates_learn_row_by_row_on_the_scalar_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the routing threshold lowered, models whose trend rates could count take the scalar path and
    learn there in log order while the other models learn deferred: still the oracle's result."""
    monkeypatch.setattr(bf, "COHORT_PARAMS", msgspec.structs.replace(COHORT, min_weight=40.0))
    routed: list[set[str]] = []
    live = bf._live_models

    def recorded(*args: Any) -> set[str]:
        routed.append(live(*args))
        return routed[-1]
    monkeypatch.setattr(bf, "_live_models", recorded)
    state = assert_same(chaos_log(24, 150, 5), [333])
    assert any(routed) and not all(routed)
    assert state.fleet.cohorts[0].rates


def test_with_desired_changes_every_batch_goes_through_on_record() -> None:
    """Drift and commands are judged per row by `desire`: the batch takes `on_record` whole, over twins
    materialised from the columns and stored back."""
    c = DesiredChange(change_id="c1", ts=0.0, principal="operator", reason="test", field="ai_model",
                      value="policy-9.9.9", selector=Selector(model="amr"))
    start = FleetState(desired=add_change(DesiredRules(), c))
    records = chaos_log(24, 60, 7)
    want, _, _ = oracle(records, start)
    assert any(o.step.commands for o in want)
    assert_same(records, [7, 333, 1], start)

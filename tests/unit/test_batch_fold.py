"""twin.batch_fold.fold_batch against `on_record` folded record by record (the oracle).

The log: the chaos scenario's records on one partition (telemetry and interleaved silence checks,
as `fold_scenario` writes them), plus malformed records, duplicated reports at new offsets and a
stretch of records redelivered with their old offsets (a restart re-reading from an older commit).
Compared: every record's event, effects, anomaly messages (ticks' first), rejection, redelivery and
commands; at the end every twin's `encode_twin` bytes (with its watch) and the fleet state's cohorts
and rollout statistics. From empty cohorts the trend rates stay below `cohort.PARAMS.min_weight`
in these short runs; `test_cohorts_reaching_min_weight_within_the_run` seeds baselines and rates just
short of it (with a quick drift reference), so both cohort checks fire, learned in log order by the
join and, for robots on the scalar path, by `feed` (the routing of mixed models is recorded).
"""

from __future__ import annotations

import functools
import random
import sys
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st

from streams.seeds import read_detectors, read_fleet, read_scenario
from twin import batch_fold as bf
from twin.desired import DesiredChange, DesiredRules, Selector, add_change
from twin.detect import multivariate as mv
from twin.detect.cohort import PARAMS as COHORT
from twin.detect.cohort import Cohorts, features
from twin.detect.robot import drift_view
from twin.detect.params import DetectorConfig
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


@functools.cache
def quick_rules() -> Rules:
    """The seeds' rules with a 30 s drift reference and 20 s settling, so that robots settle and trend
    references are long enough to be judged against their cohort within a short run."""
    base = rules().config
    quick = {"drift_reference_s": 30.0, "settle_s": 20.0}
    models = {m: msgspec.structs.replace(p, **quick) for m, p in base.models.items()}
    return Rules(rules().fleet, DetectorConfig(msgspec.structs.replace(base.defaults, **quick), models))


def seeded(records: tuple[Record, ...], short: float) -> FleetState:
    """Partition 0's cohorts `short` reports short of `min_weight` (baselines and trend-rate moments), so
    that both start to count within the run, with a 4 s refit: the baselines from the log's own working
    reports, every other model's moved off them; the rates tight around a slow drain."""
    want, _, _ = plain_oracle(records)
    events = [o.step.event for o in want if o.step.event is not None and o.step.event.mode == "working"]
    n = COHORT.min_weight - short
    sums, base, rates = {}, {}, {}
    for k, (name, model) in enumerate(rules().fleet.models.items()):
        xs = [x for e in events if e.model == name and (x := features(e, model)) is not None]
        if len(xs) < 2:
            continue
        mean = np.mean(xs, axis=0) + (SHIFT if k % 2 else 0.0)
        cov = np.cov(np.array(xs).T, bias=True).reshape(len(mean), len(mean))
        sums[name] = (int(n), n * mean, n * (cov + np.outer(mean, mean)))
        base[name] = mv.from_moments(mean, cov, n, COHORT)
        p = quick_rules().config.for_model(name)
        trends = [s for s in model.signals if drift_view(s, p) == "trend"]
        if trends:
            rates[name] = {s: (n, n * -2e-5, n * (4e-5 ** 2 + 2e-5 ** 2)) for s in trends}
    t0 = min(e.ts for e in events)
    return FleetState(cohorts={0: Cohorts(4.0, sums, base, {m: t0 for m in base}, rates)})


SHIFT = 0.4


@pytest.mark.parametrize("sizes", [[333], [1, 7, 2000, 64], [5, 120, 1, 41, 777, 64]])
def test_cohorts_reaching_min_weight_within_the_run(sizes: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Baselines and trend rates seeded just short of `min_weight`: within the run they count (the join
    judges against them, learning in log order, beside robots on the scalar path), as `on_record`."""
    records = chaos_log(24, 150, 5)
    start = seeded(records, 1.0)
    monkeypatch.setattr(sys.modules[__name__], "rules", quick_rules)
    want, _, _ = oracle(records, start)
    fired = {f"{m.detector}:{m.evidence.get('view', '')}" for o in want for m in o.publish}
    routed: list[tuple[int, int, int]] = []  # per batch: robots on the scalar path, then with mixed models, joined
    mixed, learning = bf._mixed, bf._learning_models

    def recorded(state: bf.FoldState, events: dict[int, Any], scalar: set[str]) -> set[str]:
        out = mixed(state, events, scalar)
        joined = {e.robot_id for e in events.values() if e.robot_id not in out and e.model in learning(state, events)}
        routed.append((len(scalar), len(out), len(joined)))
        return out
    cut: list[int] = []
    pieces = bf._pieces

    def recorded_pieces(records: Any, events: Any) -> list[tuple[int, int]]:
        cut.append(len(pieces(records, events)))
        return pieces(records, events)
    monkeypatch.setattr(bf, "_mixed", recorded)
    monkeypatch.setattr(bf, "_pieces", recorded_pieces)
    state = assert_same(records, sizes, start)
    assert any(n < m for n, m, _ in routed) and any(j for _, _, j in routed), routed  # both sides learn
    assert any(k > 1 for k in cut), cut  # batches folded in pieces around their checks
    c = state.fleet.cohorts[0]
    assert any(w >= COHORT.min_weight for r in c.rates.values() for w, _, _ in r.values())
    assert all(w < COHORT.min_weight for r in start.cohorts[0].rates.values() for w, _, _ in r.values())
    assert any(b.weight >= COHORT.min_weight for b in c.baselines.values())
    assert {"cohort:", "drift:cohort"} <= fired, fired


def test_with_desired_changes_every_row_goes_through_feed() -> None:
    """Drift and commands are judged per row by `desire`: the batch takes `on_record` whole, over twins
    materialised from the columns and stored back."""
    c = DesiredChange(change_id="c1", ts=0.0, principal="operator", reason="test", field="ai_model",
                      value="policy-9.9.9", selector=Selector(model="amr"))
    start = FleetState(desired=add_change(DesiredRules(), c))
    records = chaos_log(24, 60, 7)
    want, _, _ = oracle(records, start)
    assert any(o.step.commands for o in want)
    assert_same(records, [7, 333, 1], start)

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
Desired state (`desired_run`): changes for a site, a model, one robot, a wave, some stamped within
the run and a clear, over a log whose robots go silent and report again; only robots whose reports
differ from their desire (or with drift open) take `feed`, with cohorts learning and without.
`test_no_learning_branch_against_ingest_and_on_record` checks the join's no-learning branch
against `ingest_partitions` and `on_record` directly. The cohort tests also run on three partitions,
each with cohorts of its own, folded by `fold_log` with one join spanning them.
"""

from __future__ import annotations

import copy
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
from tests.support.noise import with_noise
from twin import batch_fold as bf
from twin.batch_observe import ingest_partitions
from twin.desired import DesiredChange, DesiredRules, Selector, add_change, check_change, robot_share
from twin.detect import multivariate as mv
from twin.detect.cohort import PARAMS as COHORT
from twin.detect.cohort import Cohorts, features
from twin.detect.robot import drift_view
from twin.detect.params import DetectorConfig
from twin.fleet_fold import FleetState, RecordOut, Rules, on_record
from twin.record import Record
from twin.score.ground_truth import crc_partitions, fold_scenario
from twin.sim import load_scenario
from twin.state import Twin, encode_twin
from twin.validate import parse

pytestmark = pytest.mark.usefixtures("join_every_batch")
SEEDS = Path(__file__).resolve().parents[2] / "seeds"
encode = msgspec.msgpack.encode


@functools.cache
def rules() -> Rules:
    return Rules(read_fleet(SEEDS), read_detectors(SEEDS))


seed_rules = rules
"""The seeds' rules, also while a test patches `rules`."""


@functools.cache
def chaos_log(robots: int, seconds: int, seed: int, reconnect: bool = False, noise: bool = True,
              partitions: int = 1) -> tuple[Record, ...]:
    """The chaos scenario's log on `partitions` partitions (robots spread by key), with bad, duplicated
    and redelivered records added (unless not `noise`); `reconnect`: its communication loss lasts 25 s
    from 20% of the run (robots flagged silent by their checks, then reporting again)."""
    doc = msgspec.to_builtins(read_scenario(SEEDS, "chaos"))
    if reconnect:
        doc["faults"] = [f if f["type"] != "comm_loss" else {**f, "start": "20%", "duration": 25}
                         for f in doc["faults"]]
    scenario = load_scenario({**doc, "robots": robots, "duration_s": seconds}, "chaos")
    records: list[Record] = []
    fold_scenario(rules().fleet, scenario, seed, rules().config, partition_of=crc_partitions(partitions),
                  on_record=records.append, check_every_s=3.0)
    if not noise:
        return tuple(records)
    rng = random.Random(seed)
    out: list[Record] = []
    for r in records:
        out += with_noise(r, rng)
    out = renumbered(out)
    cut = len(out) * 2 // 3
    redelivered = out[cut - 300: cut]  # a restart re-reads from an older commit
    return tuple([*out[:cut], *redelivered, *out[cut:]])


def renumbered(records: list[Record]) -> list[Record]:
    """Each partition's records at consecutive offsets from 0."""
    ends: dict[int, int] = {}
    out = []
    for r in records:
        ends[r.partition] = ends.get(r.partition, -1) + 1
        out.append(msgspec.structs.replace(r, offset=ends[r.partition]))
    return out


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
        outs += bf.fold_log(state, rules(), list(records[at:at + size]))
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


@pytest.mark.parametrize("sizes", [[333], [5, 120, 1, 41, 777, 64]])
def test_a_fold_reloaded_from_its_twins_folds_on_as_straight_through(sizes: list[int]) -> None:
    """What a worker does after a rebalance: a new fold, the twins loaded from the table (`load_twins`),
    the fleet state kept. Every record's output and every twin byte stay those of `on_record`."""
    records = chaos_log(24, 150, 5)
    want, twins, fleet = plain_oracle(records)
    state, got, at, k = bf.FoldState(rules()), [], 0, 0
    while at < len(records):
        size = sizes[k % len(sizes)]
        state, out = bf.fold_batch(state, rules(), list(records[at:at + size]))
        got += out
        reloaded = bf.FoldState(rules(), state.fleet)
        bf.load_twins(reloaded, [t for rid in sorted(bf.robot_ids(state)) if (t := bf.twin_of(state, rid))])
        state, at, k = reloaded, at + size, k + 1
    assert [record_view(g) for g in got] == [record_view(w) for w in want]
    assert {rid: encode_twin(bf.twin_of(state, rid)) for rid in twins} == {  # type: ignore[arg-type]
        rid: encode_twin(t) for rid, t in twins.items()}
    assert cohorts_view(state.fleet) == cohorts_view(fleet)


def test_narrow_batches_take_the_scalar_path_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """Below `NARROW_ROBOTS` robots a batch goes through `feed` whole, above it joins: the same outputs."""
    monkeypatch.setattr(bf, "NARROW_ROBOTS", 12)
    joined: list[int] = []
    real_join = bf._join

    def join(state: bf.FoldState, rules: Rules, records: Any, events: Any, rows: list[int], *rest: Any) -> Any:
        joined.append(len({events[i].robot_id for i in rows}))
        return real_join(state, rules, records, events, rows, *rest)
    monkeypatch.setattr(bf, "_join", join)
    assert_same(chaos_log(24, 150, 5), [5, 120, 1, 41, 777, 64, 3, 2000])
    assert joined and min(joined) >= 12  # some batches joined, none of fewer robots


@settings(max_examples=3, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate])
@given(st.lists(st.integers(1, 500), min_size=1, max_size=40))
@example([215, 361, 3, 448, 94, 223, 41])  # a restart's re-read within one batch, after the originals
def test_drawn_splits(sizes: list[int]) -> None:
    assert_same(chaos_log(24, 150, 6), sizes)


def shuffled(records: tuple[Record, ...], seed: int) -> tuple[Record, ...]:
    """Each well-formed report with its signals in a random order of its own (a sender need not keep
    the catalogue's); the noise records as they are."""
    rng, out = random.Random(seed), []
    for r in records:
        try:
            doc = msgspec.json.decode(r.value) if r.kind == "telemetry" else None
        except msgspec.DecodeError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("signals"), dict):
            items = list(doc["signals"].items())
            rng.shuffle(items)
            r = msgspec.structs.replace(r, value=msgspec.json.encode({**doc, "signals": dict(items)}))
        out.append(r)
    return tuple(out)


def test_a_sender_s_signal_order_does_not_change_the_fold() -> None:
    """The join reduces from the decoder's signal matrix (catalogue order), `on_record` from each
    event's dict (the sender's order): the same twins and outputs."""
    records = chaos_log(24, 150, 5)
    mixed = shuffled(records, 3)
    assert sum(a.value != b.value for a, b in zip(records, mixed)) > len(records) // 2
    assert_same(mixed, [333])


@functools.cache
def quick_rules() -> Rules:
    """The seeds' rules with a 30 s drift reference and 20 s settling, so that robots settle and trend
    references are long enough to be judged against their cohort within a short run."""
    base = rules().config
    quick = {"drift_reference_s": 30.0, "settle_s": 20.0}
    models = {m: msgspec.structs.replace(p, **quick) for m, p in base.models.items()}
    return Rules(rules().fleet, DetectorConfig(msgspec.structs.replace(base.defaults, **quick), models))


def seeded(records: tuple[Record, ...], short: float, partitions: int = 1) -> FleetState:
    """Each partition's cohorts `short` reports short of `min_weight` (baselines and trend-rate moments),
    so that both start to count within the run, with a 4 s refit: the baselines from the log's own
    working reports, every other model's moved off them (which ones alternates with the partition, so
    a row judged against another partition's cohort tells); the rates tight around a slow drain."""
    want, _, _ = plain_oracle(records)
    events = [o.step.event for o in want if o.step.event is not None and o.step.event.mode == "working"]
    n = COHORT.min_weight - short
    t0 = min(e.ts for e in events)
    cohorts = {}
    for partition in range(partitions):
        sums, base, rates = {}, {}, {}
        for k, (name, model) in enumerate(rules().fleet.models.items()):
            xs = [x for e in events if e.model == name and (x := features(e, model)) is not None]
            if len(xs) < 2:
                continue
            mean = np.mean(xs, axis=0) + (SHIFT if (k + partition) % 2 else 0.0)
            cov = np.cov(np.array(xs).T, bias=True).reshape(len(mean), len(mean))
            sums[name] = (int(n), n * mean, n * (cov + np.outer(mean, mean)))
            base[name] = mv.from_moments(mean, cov, n, COHORT)
            p = quick_rules().config.for_model(name)
            trends = [s for s in model.signals if drift_view(s, p) == "trend"]
            if trends:
                rates[name] = {s: (n, n * -2e-5, n * (4e-5 ** 2 + 2e-5 ** 2)) for s in trends}
        cohorts[partition] = Cohorts(4.0, sums, base, {m: t0 for m in base}, rates)
    return FleetState(cohorts=cohorts)


SHIFT = 0.4


@pytest.mark.parametrize(("sizes", "partitions"), [([333], 1), ([1, 7, 2000, 64], 1), ([5, 120, 1, 41, 777, 64], 1),
                                                    ([333], 3), ([5, 120, 1, 41, 777, 64], 3)])
def test_cohorts_reaching_min_weight_within_the_run(sizes: list[int], partitions: int,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Baselines and trend rates seeded just short of `min_weight`: within the run they count (the join
    judges against them, learning in log order, beside robots on the scalar path), as `on_record`. On
    three partitions, each with cohorts of its own, one join spans them (learning per partition)."""
    records = chaos_log(24, 150, 5, partitions=partitions)
    start = seeded(records, 1.0, partitions)
    monkeypatch.setattr(sys.modules[__name__], "rules", quick_rules)
    want, _, _ = oracle(records, start)
    fired = {f"{m.detector}:{m.evidence.get('view', '')}" for o in want for m in o.publish}
    routed: list[tuple[int, int, int]] = []  # per batch: robots on the scalar path, then with mixed models, joined
    mixed = bf._mixed

    def recorded(events: dict[int, Any], keys: dict[int, Any], scalar: set[str], learning: set[Any]) -> set[str]:
        out = mixed(events, keys, scalar, learning)
        joined = {e.robot_id for i, e in events.items() if e.robot_id not in out and keys[i] in learning}
        routed.append((len(scalar), len(out), len(joined)))
        spans.append(len({keys[i][0] for i, e in events.items() if e.robot_id not in out}))
        return out
    spans: list[int] = []  # per batch: partitions of the joined rows
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
    assert max(spans) == partitions, spans
    for p in range(partitions):
        c = state.fleet.cohorts[p]
        assert any(w >= COHORT.min_weight for r in c.rates.values() for w, _, _ in r.values())
        assert all(w < COHORT.min_weight for r in start.cohorts[p].rates.values() for w, _, _ in r.values())
        assert any(b.weight >= COHORT.min_weight for b in c.baselines.values())
    assert {"cohort:", "drift:cohort"} <= fired, fired


@functools.cache
def grace_rules(learn: bool = True) -> Rules:
    """The seeds' rules with a 40 s drift grace, so that drift anomalies open and resolve within a run;
    not `learn`: no robot ever settles at work, so no cohort learns and no model is *mixed* (every
    robot `_desiring` leaves out takes the join)."""
    base = seed_rules().config
    quick: dict[str, Any] = {"drift_grace_s": 40.0} if learn else {"drift_grace_s": 40.0, "settle_s": 1e9}
    models = {m: msgspec.structs.replace(p, **quick) for m, p in base.models.items()}
    return Rules(seed_rules().fleet, DetectorConfig(msgspec.structs.replace(base.defaults, **quick), models))


def change(n: int, ts: float, field: str, value: str | None, **selector: Any) -> DesiredChange:
    c = DesiredChange(change_id=f"c{n}", ts=ts, principal="operator", reason="test", field=field, value=value,
                      selector=Selector(**selector))
    check_change(c, seed_rules().fleet)
    return c


@functools.cache
def desired_run() -> tuple[tuple[Record, ...], FleetState, tuple[str, ...]]:
    """The reconnecting chaos log, desired changes for parts of its fleet, and the robots flagged silent.

    One site wants another AI model since long before the run (cleared for its whole sector at
    100 s); the humanoids want the chaos rollout's version from 40 s; a silenced robot outside both
    and the 15% wave wants new firmware from 5 s to 90 s (drift open, then cleared: no delta left,
    its drift resolved by `desire`); another silenced robot a safety profile from 25 s, just before
    its silence (a young delta when it reconnects: due by the silence alone); a 15% wave new
    firmware from 70 s; service robots at policy-2.4.0
    and the AMRs' safety profile are selected by changes they already meet (no delta: the join)."""
    records = chaos_log(24, 150, 5, reconnect=True)
    want, twins, _ = plain_oracle(records)
    silenced = tuple(sorted({m.robot_id for o in want for m in o.publish if m.detector == "silence"}))
    t0 = records[0].timestamp
    site = twins[silenced[0]].site
    sector = twins[silenced[0]].sector
    target = next(r for r in silenced if twins[r].model != "humanoid" and twins[r].sector != sector
                  and robot_share(r) >= 0.15)
    other = next(r for r in silenced if r not in (target, silenced[0])
                 and twins[r].model not in ("inspection-drone", "humanoid"))
    changes = [
        change(1, t0 - 1000.0, "ai_model", "policy-2.5.0", site=site),
        change(2, t0 + 40.0, "ai_model", "policy-2.5.0", model="humanoid"),
        change(3, t0 + 5.0, "firmware", "fw-1.9.0", robots=(target,)),
        change(8, t0 + 90.0, "firmware", None, robots=(target, silenced[0])),
        change(9, t0 + 25.0, "config.safety_profile", "cautious", robots=(other,)),
        change(4, t0 + 70.0, "firmware", "fw-1.9.0", share=0.15),
        change(5, t0 - 10.0, "ai_model", "policy-2.4.0", model="service-robot", version="policy-2.4.0"),
        change(7, t0 + 20.0, "config.safety_profile", "standard", model="amr"),
        change(6, t0 + 100.0, "ai_model", None, sector=sector),
    ]
    desired = DesiredRules()
    for c in changes:
        desired = add_change(desired, c)
    return records, FleetState(desired=desired), silenced


def desired_same(sizes: list[int], learn: bool = True) -> list[tuple[int, int, int]]:
    """`assert_same` on `desired_run` under `grace_rules(learn)`; per `fold_twins` call (batch or piece),
    the robots `_desiring` sent to the scalar path, those it left to the join with a possible command,
    and the robots of its telemetry."""
    records, start, _ = desired_run()
    routed: list[tuple[int, int, int]] = []
    desiring = bf._desiring

    def recorded(state: bf.FoldState, events: dict[int, Any], scalar: set[str]) -> tuple[set[str], set[str]]:
        judged, commanded = desiring(state, events, scalar)
        routed.append((len(judged), len(commanded), len({e.robot_id for e in events.values()})))
        return judged, commanded
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys.modules[__name__], "rules", lambda: grace_rules(learn))
        mp.setattr(sys.modules[__name__], "plain_oracle", lambda records: desired_oracle(records, learn))
        mp.setattr(bf, "_desiring", recorded)
        assert_same(records, sizes, start)
    return routed


@functools.cache
def desired_oracle(records: tuple[Record, ...], learn: bool = True
                   ) -> tuple[list[RecordOut], dict[str, Twin], FleetState]:
    """`on_record` over `desired_run` (under `grace_rules(learn)`: called with them patched in)."""
    return oracle(records, desired_run()[1])


@pytest.mark.parametrize("learn", [True, False])
def test_desired_run_exercises_drift_commands_and_reconnects(learn: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The oracle's own run: commands on first events, on changes taking effect and on reconnects after
    silence; drift opened and resolved (by clears)."""
    records, start, silenced = desired_run()
    monkeypatch.setattr(sys.modules[__name__], "rules", lambda: grace_rules(learn))
    want, _, _ = desired_oracle(records, learn)
    drift = {m.status for o in want for m in o.publish if m.detector == "desired_drift"}
    assert drift == {"open", "resolved"}
    commanded = [(o.step.event.robot_id, o.step.event.ts) for o in want if o.step.commands and o.step.event]
    t0 = records[0].timestamp
    back = [ts - t0 for rid, ts in commanded if rid in silenced and ts - t0 > 50]
    assert back, commanded  # a robot reconnecting after silence is sent its delta
    assert any(abs(ts - t0 - 40.0) < 2 for _, ts in commanded)  # change 2 took effect at its robots' reports
    assert len({rid for rid, _ in commanded}) < 24


@pytest.mark.parametrize(("sizes", "learn"), [([1], True), ([7], True), ([333], True), ([2000], True),
                                              ([5, 120, 1, 41, 777, 64], True), ([1], False), ([333], False),
                                              ([5, 120, 1, 41, 777, 64], False)])
def test_desired_changes_for_part_of_the_fleet_fold_as_on_record(sizes: list[int], learn: bool) -> None:
    """Only robots whose drift may open or resolve in the batch (or that reconnect with a delta) take
    `feed`; the others join (robots with a young delta get their commands from `_commands`), and
    every record's messages and commands, every twin and the fleet state are `on_record`'s. With
    cohorts learning, mixed models send more robots to `feed`; without, all others join."""
    routed = desired_same(sizes, learn)
    assert any(d for d, _, _ in routed) and any(c for _, c, _ in routed), routed  # judged, commanded
    assert sum(d for d, _, _ in routed) < sum(n for _, _, n in routed) / 2, routed  # the others joined


@settings(max_examples=3, deadline=None, derandomize=True)
@given(st.lists(st.integers(1, 500), min_size=1, max_size=40), st.booleans())
def test_desired_changes_at_drawn_splits(sizes: list[int], learn: bool) -> None:
    desired_same(sizes, learn)


@pytest.mark.parametrize("partitions", [1, 3])
def test_no_learning_branch_against_ingest_and_on_record(partitions: int) -> None:
    """Telemetry before any robot is settled at work (no row can learn), with silent robots reporting
    again, on seeded baselines (each partition's its own): `_observe_fixed` gives `ingest_partitions`'s
    effects, messages and twins (and leaves the cohorts), and `on_record`'s steps; `fold_log` takes
    that branch for it."""
    records = chaos_log(24, 150, 5, reconnect=True, noise=False, partitions=partitions)
    start = seeded(records, -50.0, partitions)
    want, _, _ = oracle(records, start)
    t0 = records[0].timestamp
    lo = next(i for i, r in enumerate(records) if r.timestamp >= t0 + 45.5)
    hi = next(i for i, r in enumerate(records) if r.timestamp >= t0 + 59.5)
    part = records[lo:hi]
    assert {r.kind for r in part} == {"telemetry"}
    _, state = batched(records[:lo], [333], start)
    events = [parse(r.value, rules().fleet, key=r.key, received_ts=r.timestamp) for r in part]
    recv = [r.timestamp for r in part]
    parts = [r.partition for r in part]
    assert not bf._learning_models(state, dict(enumerate(events)), {i: (p, e.model) for i, (p, e) in
                                                                    enumerate(zip(parts, events))})
    cohorts = state.fleet.cohorts
    fixed, joined = copy.deepcopy(state), copy.deepcopy(state)
    effects, found = bf._observe_fixed(fixed, rules(), events, recv, [cohorts[p] for p in parts])
    effects2, found2, after = ingest_partitions(joined.obs, joined.red, events, recv, parts, rules().fleet.models,
                                                joined.params, cohorts)
    assert encode((effects, found)) == encode((effects2, found2))
    assert cohorts_view(FleetState(cohorts={p: after.get(p, c) for p, c in cohorts.items()})) == cohorts_view(
        FleetState(cohorts=cohorts))
    for rid in bf.robot_ids(state):
        assert encode_twin(bf.twin_of(fixed, rid)) == encode_twin(bf.twin_of(joined, rid)), rid  # type: ignore[arg-type]
    assert encode((effects, found)) == encode(([o.step.effects for o in want[lo:hi]],
                                               [list(o.step.found) for o in want[lo:hi]]))
    assert {"silence", "seq_gap", "dropout"} <= {m.detector for f in found for m in f}
    calls: list[int] = []
    observe_fixed = bf._observe_fixed

    def spied(*args: Any) -> Any:
        calls.append(len(args[2]))
        return observe_fixed(*args)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bf, "_observe_fixed", spied)
        bf.fold_log(copy.deepcopy(state), rules(), list(part))
    assert calls == [len(part)]

"""twin.batch_signals against the scalar detectors of twin.detect.signals: equal state, equal findings."""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from streams.seeds import read_detectors, read_fleet, read_scenario
from twin import batch_signals as bs
from twin.detect import signals as sig
from twin.detect.findings import Finding
from twin.detect.params import RobotDetectorParams
from twin.detect.robot import _aligned, _signals, _work_step
from twin.detect.watch import COUNTER_MAX, HITS_MAX, Drift, SignalWatch, Watch
from twin.fleet import Fleet, Signal
from twin.reduce import ALPHA, apply
from twin.schema import Event, Mode
from twin.sim import FleetSim
from twin.sim.scenario import load_scenario
from twin.state import SignalState, Twin

SEEDS = Path(__file__).resolve().parents[2] / "seeds"

SPECS: dict[str, Signal] = {
    "motor_temp_c": Signal("C", (20.0, 60.0), (-40.0, 150.0)),
    "inference_ms": Signal("ms", (0.0, 50.0), (0.0, 10_000.0)),  # band and spike skip it
    "control_jitter_ms": Signal("ms", (0.1, 0.7), (0.0, 100.0)),  # spike skips it
    "position_error_mm": Signal("mm", (0.0, 1.0), (0.0, 100.0)),  # level drift
    "battery_soc_pct": Signal("%", (20.0, 100.0), (0.0, 100.0)),  # trend; the band's top is a limit
    "joint1_current_a": Signal("A", (-2.0, 2.0), (-10.0, 10.0)),
    "flat": Signal("x", (5.0, 5.0), (0.0, 10.0)),  # a zero-width band: the 1e-9 floors
}
NAMES = tuple(SPECS)
REPEAT = object()
"""A drawn 'value' meaning: the cell's previous value again (a stuck sensor)."""
SPIKE_EDGE = object()
"""A drawn 'value' meaning: the running mean plus the spike threshold in running stds (z on the edge)."""

finite = st.floats(allow_nan=False, allow_infinity=False)
params = st.builds(
    RobotDetectorParams,
    band_reports=st.integers(1, 3), stuck_reports=st.integers(1, 4), spike_hits=st.sampled_from([0.5, 1.0, 2.0]),
    spike_threshold=st.sampled_from([1.0, 2.5, 8.0]), band_margin=st.sampled_from([0.0, 0.15, 0.5]),
    stuck_skip=st.sampled_from([(), ("motor_temp_c",)]),
)


def values(spec: Signal, p: RobotDetectorParams) -> st.SearchStrategy[Any]:
    """Readings of one signal: its edges (band, band plus margin, limits), near them, stuck, and wild."""
    lo, hi = spec.nominal
    margin = p.band_margin * (hi - lo)
    edges = [lo, hi, lo - margin, hi + margin, *spec.limits, math.nextafter(hi + margin, math.inf),
             math.nextafter(lo - margin, -math.inf), 0.0, -0.0]
    width = max(hi - lo, 1.0)
    return st.one_of(st.sampled_from(edges), st.just(REPEAT), st.just(REPEAT), st.just(SPIKE_EDGE),
                     st.floats(lo - 2 * width, hi + 2 * width), finite)


def updated(old: SignalState | None, value: float) -> SignalState:
    """The reducer's running statistics (twin.reduce._update_signal) after `value`."""
    if old is None:
        return SignalState(value, None, None, None, value, 0.0)
    delta = value - old.mean
    return SignalState(value, None, None, None, old.mean + ALPHA * delta, (1 - ALPHA) * (old.var + ALPHA * delta * delta))


def edge(v: Any, b: SignalState | None, spec: Signal, p: RobotDetectorParams) -> float:
    """Resolve the drawn tokens against the cell's previous state."""
    if v is REPEAT:
        return b.value if b else 1.0
    if v is SPIKE_EDGE:
        width = spec.nominal[1] - spec.nominal[0]
        return b.mean + p.spike_threshold * max(math.sqrt(b.var), p.spike_std_floor * width, 1e-9) if b else 2.0
    return float(v)


def same(a: object, b: object) -> bool:
    """Equal bytes: findings of wild readings carry NaN scores, which == never calls equal."""
    return msgspec.msgpack.encode(a) == msgspec.msgpack.encode(b)


def priors(states: list[SignalState | None]) -> bs.Prior:
    return bs.Prior(np.array([s is not None for s in states], dtype=bool), *(
        np.array([getattr(s, f) if s else np.nan for s in states], dtype=np.float64) for f in ("value", "mean", "var")))


@settings(max_examples=60, deadline=None)
@given(p=params, data=st.data())
def test_value_checks_equal_watch_signal_round_by_round(p: RobotDetectorParams, data: st.DataObject) -> None:
    kinds = bs.Kinds(list(SPECS.items()), p)
    kind = np.array(data.draw(st.lists(st.integers(0, len(NAMES) - 1), min_size=1, max_size=6)))
    n = len(kind)
    counts, hits = st.sampled_from([0, 3, COUNTER_MAX - 2, COUNTER_MAX]), st.sampled_from([0, 100, 420, HITS_MAX])
    scalar = data.draw(st.lists(st.builds(SignalWatch, counts, counts, hits), min_size=n, max_size=n))  # caps too
    before: list[SignalState | None] = [None] * n
    w = bs.watches_of(scalar)
    for _ in range(data.draw(st.integers(1, 25))):
        value = [data.draw(values(SPECS[NAMES[j]], p)) for j in kind.tolist()]
        value = [edge(v, b, SPECS[NAMES[j]], p) for v, b, j in zip(value, before, kind.tolist())]
        operating = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
        steps = [sig.watch_signal(scalar[i], NAMES[kind[i]], value[i], before[i], SPECS[NAMES[kind[i]]], operating[i], p)
                 for i in range(n)]
        new, mask = bs.watch_round(w, kind, np.array(value), priors(before), np.array(operating), kinds)
        found = bs.watch_findings(w, new, np.flatnonzero(mask), kind, np.array(value), priors(before),
                                  np.array(operating), kinds)
        scalar = [s for s, _ in steps]
        assert bs.to_watches(new) == scalar
        assert same(found, {i: f for i, (_, f) in enumerate(steps) if f})
        w, before = new, [updated(b, v) for b, v in zip(before, value)]


drift_params = st.builds(
    RobotDetectorParams,
    drift_reference_s=st.sampled_from([0.0, 0.3, 1.0, 3.0]), drift_threshold=st.sampled_from([0.2, 1.0, 60.0]),
    drift_floor=st.sampled_from([0.002, 0.0]), trend_floor=st.sampled_from([5e-6, 0.0]),
    drift_allowance=st.sampled_from([0.5, 0.0]), drift_cap=st.sampled_from([2.0, 0.5]),
)
xs = st.one_of(st.floats(-3, 3), st.sampled_from([0.0, -0.0, 1e-4, 0.5e-4, 1.5e-4, 2.5e-7, 1.0]),
               st.floats(-1e-5, 1e-5), finite)
dts = st.one_of(st.sampled_from([0.05, 0.1, 0.15, 0.25, 0.35, 1.0, 2.5, 5.0]), st.floats(0.001, 5.0))


@settings(max_examples=80, deadline=None)
@given(p=drift_params, data=st.data())
def test_drift_equals_the_scalar_cusum_round_by_round(p: RobotDetectorParams, data: st.DataObject) -> None:
    trend = np.array(data.draw(st.lists(st.booleans(), min_size=1, max_size=6)))
    n = len(trend)
    scalar: list[Drift | None] = [None] * n
    d = bs.empty(n).drift
    for _ in range(data.draw(st.integers(1, 30))):
        steady = st.just(0.25)  # the same input again and again: a zero spread
        x = data.draw(st.lists(st.one_of(xs, steady, steady), min_size=n, max_size=n))
        dt = data.draw(st.lists(dts, min_size=n, max_size=n))
        raised: list[type[Exception]] = []
        steps: list[tuple[Drift, list[Finding]]] = []
        for i in range(n):
            try:
                steps.append(sig.drift(scalar[i], f"s{i}", x[i], dt[i], bool(trend[i]), p))
            except (OverflowError, ValueError, ZeroDivisionError) as exc:
                raised.append(type(exc))
        if raised:  # the scalar core raises on such a reading: so must the batch
            with pytest.raises(tuple(raised)):
                bs.drift_round(d, trend, np.array(x), np.array(dt), p)
            return
        new, mask = bs.drift_round(d, trend, np.array(x), np.array(dt), p)
        found = bs.drift_findings(d, new, np.flatnonzero(mask), [f"s{i}" for i in range(n)], trend, np.array(x),
                                  np.array(dt), p)
        scalar = [s for s, _ in steps]
        assert [bs.drift_at(new, i) for i in range(n)] == scalar
        assert same(found, {i: f for i, (_, f) in enumerate(steps) if f})
        d = new


def test_drift_goes_through_learning_into_alarms_on_a_shift() -> None:
    """A plain case with known outcome, so the property test's agreement is not agreement on nothing."""
    p = RobotDetectorParams(drift_reference_s=2.0)
    d = bs.empty(2).drift
    trend = np.array([False, False])
    for step in range(400):
        x = np.array([0.5 + 0.01 * (step % 3), 0.5 + 0.01 * (step % 3) + (2.0 if step > 50 else 0.0)])
        d, mask = bs.drift_round(d, trend, x, np.array([1.0, 1.0]), p)
        if mask[1]:
            break
    assert not mask[0] and mask[1] and bs.drift_at(d, 0) is not None
    f = bs.drift_findings(bs.empty(2).drift, d, np.array([], dtype=np.int64), ["a", "b"], trend, x, np.ones(2), p)
    assert f == {}


@given(st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)), min_size=1, max_size=20),
       st.integers(1, 6))
def test_dropout_equals_the_scalar_check_on_any_seqs(pairs: list[tuple[int, int]], reports: int) -> None:
    p = RobotDetectorParams(dropout_reports=reports)
    latest = np.array([a for a, _ in pairs], dtype=np.uint64)
    seq = np.array([b for _, b in pairs], dtype=np.uint64)
    mask = bs.dropout_round(latest, seq, p)
    names = [f"s{i}" for i in range(len(pairs))]
    assert bs.dropout_findings(np.flatnonzero(mask), names, latest, seq, p) == {
        i: f for i, (a, b) in enumerate(pairs) if (f := sig.dropout(names[i], a, b, p))}


_counts = st.integers(0, COUNTER_MAX)
_drifts = st.none() | st.builds(Drift, *(st.integers(-2**50, 2**50) for _ in range(5)))
_watches = st.builds(SignalWatch, _counts, _counts, st.integers(0, HITS_MAX), _drifts)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40).flatmap(lambda n: st.tuples(st.just(n), st.lists(
    st.dictionaries(st.integers(0, n - 1), _watches, min_size=1), max_size=12))))
def test_the_cell_store_reads_back_every_put_as_a_dense_store_would(case: tuple[int, list[dict[int, SignalWatch]]]) -> None:
    """Puts of drawn cells (drift numbers gained, changed and dropped, cells grown) read back as
    the last `SignalWatch` put in each cell, `SignalWatch()` where none was; a drift row is given
    only to a cell that has had a `Drift`, once."""
    n, puts = case
    store, want = bs.CellStore(1), [SignalWatch()] * n
    store = store.grown(n)
    for put in puts:
        idx = np.array(list(put), np.int64)
        store.put(idx, bs.watches_of(list(put.values())))
        want = [put.get(i, w) for i, w in enumerate(want)]
    assert bs.to_watches(store.take(np.arange(n))) == want
    assert [store.watch_at(i) for i in range(n)] == want
    drifted = {i for put in puts for i, w in put.items() if w.drift is not None}
    assert store.ndrift == len(drifted) and set(np.flatnonzero(store.dslot >= 0).tolist()) == drifted


def test_state_converts_to_and_from_the_scalar_structs_and_scatters() -> None:
    ws = [SignalWatch(), SignalWatch(3, 1, 180, Drift(1800, -12, 7, 0, 1200)), SignalWatch(0, 0, 0, Drift()),
          SignalWatch(1, 2, 3, Drift(5, 2**60, 2**60 + 2**8, 1, 2))]
    w = bs.watches_of(ws)
    assert bs.to_watches(w) == ws
    store = bs.CellStore(6)
    store.put(np.array([5, 0, 2, 3]), w)
    assert bs.to_watches(store.take(np.array([5, 0, 2, 3]))) == ws
    assert store.watch_at(1) == SignalWatch() and store.watch_at(4) == SignalWatch()
    assert store.ndrift == 3  # rows for the three cells with a Drift, none for the others
    with pytest.raises(OverflowError):
        bs.watches_of([SignalWatch(drift=Drift(level=2**60 + 1))])
    for beyond in (SignalWatch(out=COUNTER_MAX + 1), SignalWatch(same=COUNTER_MAX + 1), SignalWatch(hits=2**15)):
        with pytest.raises(OverflowError):  # never made by the detectors: refused, not wrapped round
            bs.watches_of([beyond])


def test_cells_moved_keep_their_numbers_and_drift_rows_and_leave_default_cells_behind() -> None:
    """`CellStore.move` (a robot's run to a wider block): no drift row is copied or orphaned."""
    ws = [SignalWatch(3, 1, 180, Drift(1800, -12, 7, 0, 1200)), SignalWatch(2, 0, 4)]
    store = bs.CellStore(6)
    store.put(np.array([0, 1]), bs.watches_of(ws))
    store.move(np.array([0, 1]), np.array([5, 3]))
    assert [store.watch_at(i) for i in (5, 3)] == ws
    assert [store.watch_at(i) for i in (0, 1)] == [SignalWatch()] * 2
    assert store.ndrift == 1 and store.dslot.tolist() == [-1, -1, -1, -1, -1, 0]


def test_consecutive_counters_stop_at_their_cap_and_hits_never_pass_theirs() -> None:
    spec = Signal(unit="", nominal=(0.0, 1.0), limits=(-100.0, 100.0))
    p = RobotDetectorParams()
    before = SignalState(value=50.0, ts=None, seq=None, n=None, mean=0.5, var=0.01)
    w = SignalWatch(out=COUNTER_MAX - 1, same=COUNTER_MAX - 1)
    for _ in range(3):  # out of band, the same value, a spike: all three counters move every report
        w, found = sig.watch_signal(w, "x", 50.0, before, spec, True, p)
    assert (w.out, w.same, w.hits) == (COUNTER_MAX, COUNTER_MAX, 244) and len(found) == 3
    for _ in range(40):
        w, _ = sig.watch_signal(w, "x", 50.0, before, spec, True, p)
    assert w.hits == 496 and w.out == COUNTER_MAX  # x * 4 // 5 + 100 settles at 496 from 0
    w, _ = sig.watch_signal(SignalWatch(hits=HITS_MAX), "x", 50.0, before, spec, True, p)
    assert w.hits == HITS_MAX  # and maps 500 to itself: no spike count leaves [0, HITS_MAX]


def test_huge_values_raise_as_the_scalar_core_does() -> None:
    p = RobotDetectorParams(drift_reference_s=1.0)
    with pytest.raises(OverflowError):
        sig.drift(None, "s", 1e306, 1.0, True, p)
    with pytest.raises(OverflowError):
        bs.drift_round(bs.empty(1).drift, np.array([True]), np.array([1e306]), np.array([1.0]), p)
    with pytest.raises(ValueError):
        bs.watch_round(bs.empty(1), np.array([0]), np.array([1.0]), bs.Prior(*map(np.array, ([True], [1.0], [0.0], [-1.0]))),
                       np.array([True]), bs.Kinds(list(SPECS.items()), p))


# --- chaos: the reducer's twins through _signals (the scalar core) and through signals_round ----

class Judged(msgspec.Struct):
    """One accepted event and what the scalar core made of it."""

    before: Twin | None
    twin: Twin
    event: Event
    watch: list[SignalWatch]
    """Per-signal state after it."""
    findings: list[Finding]


def fold(events: list[Event], fleet: Fleet, ps: dict[str, RobotDetectorParams]) -> list[Judged]:
    """The scalar core: the reducer, then `_signals` on every accepted event (as `observe` calls it)."""
    twins: dict[str, Twin] = {}
    watches: dict[str, Watch] = {}
    judged: list[Judged] = []
    for event in events:
        before = twins.get(event.robot_id)
        twin, effects = apply(before, event, received_ts=event.ts + 0.2)
        twins[event.robot_id] = twin
        if effects.outcome in ("duplicate", "stale", "late"):
            continue
        watch = watches.get(event.robot_id, Watch())
        new, found = _signals(watch, before, twin, event, fleet.models[twin.model], ps[twin.model], {})
        watches[event.robot_id] = new
        judged.append(Judged(before, twin, event, new.signals, found))
    return judged


@pytest.fixture(scope="module")
def chaos(fleet: Fleet) -> tuple[list[Judged], dict[str, RobotDetectorParams]]:
    scenario = read_scenario(SEEDS, "chaos")
    small = load_scenario({**msgspec.to_builtins(scenario), "robots": 16, "duration_s": 420}, "chaos")
    sim = FleetSim(fleet, small, seed=5)
    config = read_detectors(SEEDS)
    # a shorter reference, so drift alarms within the run (the detectors are the same)
    ps = {m: msgspec.structs.replace(config.for_model(m), drift_reference_s=40.0, drift_threshold=8.0)
          for m in fleet.models}
    return fold(serviced_and_draining([e for _ in range(sim.ticks) for e in sim.step()]), fleet, ps), ps


def serviced_and_draining(events: list[Event]) -> list[Event]:
    """What the chaos scenario lacks: some robots go to maintenance for a while (drift references
    are learned again), and some batteries drain ever faster (trend drift)."""
    t0 = min(e.ts for e in events)
    robots = sorted({e.robot_id for e in events})
    serviced, draining = set(robots[0::5]), set(robots[1::3])
    out = []
    for e in events:
        late = e.ts - t0
        if e.robot_id in serviced and 250 <= late < 290:
            e = msgspec.structs.replace(e, mode="maintenance")
        soc = e.signals.get("battery_soc_pct")
        if e.robot_id in draining and soc is not None and late > 200:
            drained = round(max(soc - 0.0005 * (late - 200) ** 2, 0.0), 3)
            e = msgspec.structs.replace(e, signals={**e.signals, "battery_soc_pct": drained})
        out.append(e)
    return out


def rounds(judged: list[Judged]) -> list[list[Judged]]:
    """Each robot's k-th accepted event in round k."""
    out: list[list[Judged]] = []
    seen: dict[str, int] = defaultdict(int)
    for j in judged:
        k = seen[j.event.robot_id]
        seen[j.event.robot_id] += 1
        if k == len(out):
            out.append([])
        out[k].append(j)
    return out


def round_of(rows: list[tuple[Judged, list[SignalWatch]]], index: dict[str, int],
             p: RobotDetectorParams) -> tuple[bs.Watches, bs.Round, list[int]]:
    """Pack one model's robots of a round into cells (robot by robot, signal by signal), as the columns
    of the batch reducer hold them; returns the old state, the round and each robot's cell count."""
    cols: dict[str, list[Any]] = defaultdict(list)
    old: list[SignalWatch] = []
    counts = []
    for j, mine in rows:
        twin, before, event = j.twin, j.before, j.event
        aligned = _aligned(Watch(signals=mine), before, twin)
        warm = twin.counts.events > p.warmup_reports
        operating = warm and event.mode not in ("fault", "estop", "maintenance") and event.ts - twin.mode_since >= p.settle_s
        dt = _work_step(before, twin, event, p)
        for (name, state), w in zip(twin.signals.items(), aligned):
            prior = before.signals.get(name) if before else None
            value = event.signals.get(name)
            cols["kind"].append(index[name])
            cols["present"].append(value is not None)
            cols["value"].append(np.nan if value is None else value)
            cols["prior"].append(prior)
            cols["fresh"].append(prior is not None and before is not None and before.signal_time(prior)[0] == before.ts)
            cols["seq"].append(twin.signal_time(state)[1])
            cols["latest"].append(twin.latest_seq)
            cols["warm"].append(warm)
            cols["operating"].append(operating)
            cols["maintenance"].append(event.mode == "maintenance")
            cols["dt"].append(np.nan if dt is None else dt)
            old.append(w)
        counts.append(len(twin.signals))
    r = bs.Round(np.array(cols["kind"], dtype=np.int64), np.array(cols["present"], dtype=bool),
                 np.array(cols["value"], dtype=np.float64), priors(cols["prior"]),
                 np.array(cols["warm"], dtype=bool), np.array(cols["operating"], dtype=bool),
                 np.array(cols["maintenance"], dtype=bool),
                 np.array(cols["dt"], dtype=np.float64), np.array(cols["fresh"], dtype=bool),
                 np.array(cols["latest"], dtype=np.uint64), np.array(cols["seq"], dtype=np.uint64))
    return bs.watches_of(old), r, counts


def compare_rounds(judged: list[Judged], fleet: Fleet, ps: dict[str, RobotDetectorParams]) -> tuple[dict[str, int], int]:
    """Fold `judged`'s events round by round through `signals_round`, carrying our own state, and
    assert each robot's signal state and findings equal the scalar core's after every event.
    Returns the findings fired by detector and how many drift states maintenance dropped."""
    kinds = {m: bs.Kinds(list(model.signals.items()), ps[m]) for m, model in fleet.models.items()}
    index = {m: {name: i for i, name in enumerate(model.signals)} for m, model in fleet.models.items()}
    mine: dict[str, list[SignalWatch]] = {}
    fired: dict[str, int] = defaultdict(int)
    resets = 0
    for rnd in rounds(judged):
        by_model: dict[str, list[tuple[Judged, list[SignalWatch]]]] = defaultdict(list)
        for j in rnd:
            by_model[j.twin.model].append((j, mine.get(j.event.robot_id, [])))
        for model, rows in by_model.items():
            old, r, counts = round_of(rows, index[model], ps[model])
            new, found = bs.signals_round(old, r, kinds[model])
            start = 0
            for (j, prev), count in zip(rows, counts):
                cells = range(start, start + count)
                got = [f for i in cells for f in found.get(i, [])]
                assert same(got, j.findings), (j.event.robot_id, j.event.seq)
                mine[j.event.robot_id] = [bs.watch_at(new, i) for i in cells]
                assert mine[j.event.robot_id] == j.watch, (j.event.robot_id, j.event.seq)
                for f in got:
                    fired[f.detector + ("-trend" if f.evidence.get("view") == "trend" else "")] += 1
                resets += sum(a.drift is not None and b.drift is None for a, b in zip(prev, j.watch))
                start += count
    return fired, resets


def test_chaos_rounds_give_the_scalar_cores_signal_state_and_findings(
        chaos: tuple[list[Judged], dict[str, RobotDetectorParams]], fleet: Fleet) -> None:
    judged, ps = chaos
    assert all(set(j.twin.signals) <= set(fleet.models[j.twin.model].signals) for j in judged)
    fired, resets = compare_rounds(judged, fleet, ps)
    assert {"band", "spike", "stuck", "dropout", "drift", "drift-trend"} <= set(fired), dict(fired)
    assert resets > 0  # maintenance dropped drift references


AMR = "amr"
seeded_fleet = functools.cache(lambda: read_fleet(SEEDS))
REPORTED_MODES: tuple[Mode, ...] = ("working",) * 6 + ("idle", "maintenance", "fault", "charging")
amr_params = st.builds(
    RobotDetectorParams, warmup_reports=st.integers(0, 4), settle_s=st.sampled_from([0.0, 1.0, 2.5]),
    band_reports=st.integers(1, 2), stuck_reports=st.integers(1, 3), dropout_reports=st.integers(1, 3),
    drift_reference_s=st.sampled_from([1.0, 3.0]), drift_threshold=st.sampled_from([0.3, 2.0]),
    drift_max_step_s=st.sampled_from([1.5, 5.0]),
)


@st.composite
def robot_events(draw: st.DrawFn, robot: str, signals: dict[str, Signal]) -> list[Event]:
    """One robot's reports: uneven steps and gaps, lost and repeated seqs, modes (maintenance too),
    signals that come and go, values on the band's edges, on the limits, repeated, or anywhere."""
    ts, seq, events = 1_000.0, 0, []
    last: dict[str, float] = {}
    for _ in range(draw(st.integers(1, 20))):
        ts += draw(st.sampled_from([0.5, 1.0, 1.0, 1.0, 2.0, 7.0, 0.0]))
        seq += draw(st.sampled_from([1, 1, 1, 2, 0]))
        mode = draw(st.sampled_from(REPORTED_MODES))
        values = {}
        for name, spec in signals.items():
            if draw(st.integers(0, 9)) == 0:
                continue  # not in this report
            lo, hi = spec.nominal
            v = draw(st.one_of(st.sampled_from([lo, hi, *spec.limits]), st.floats(lo, hi), st.just(last.get(name, lo)),
                               st.just(last.get(name, lo)), st.floats(*spec.limits)))
            values[name] = last[name] = v
        events.append(Event(schema=1, robot_id=robot, seq=seq, ts=ts, sector="s", site="s", model=AMR, mode=mode,
                            signals=values))
    return events


@settings(max_examples=25, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])  # shrinking: minutes
@given(p=amr_params, data=st.data())
def test_random_reports_give_the_scalar_cores_signal_state_and_findings(p: RobotDetectorParams, data: st.DataObject) -> None:
    fleet = seeded_fleet()
    signals = dict(fleet.models[AMR].signals)
    per_robot = [data.draw(robot_events(f"r{i}", signals)) for i in range(data.draw(st.integers(1, 4)))]
    events = [e for i in range(max(map(len, per_robot))) for evs in per_robot for e in evs[i:i + 1]]
    compare_rounds(fold(events, fleet, {AMR: p}), fleet, {m: p for m in fleet.models})

"""twin.batch_robot against the scalar robot-level detectors (`_robot`, `_delivery`, observe's `at`)
and against `twin.pipeline.feed` on chaos runs: equal numbers, equal findings, equal stamp times."""

from __future__ import annotations

import math
import random
import struct
from collections import Counter, defaultdict
from pathlib import Path
from typing import NamedTuple

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from streams.seeds import read_detectors, read_scenario
from twin import batch_robot as br
from twin.desired import DETECTOR as DESIRED_DRIFT
from twin.detect.cohort import Cohorts
from twin.detect.findings import Anomaly, Finding
from twin.detect.params import RobotDetectorParams
from twin.detect.robot import _delivery, _robot
from twin.detect.watch import Watch
from twin.effects import OUTCOMES, Effects, Outcome, SeqGap
from twin.fleet import Fleet
from twin.pipeline import feed
from twin.record import Record
from twin.reduce import apply
from twin.schema import Event, Mode, encode
from twin.sim import FleetSim
from twin.sim.scenario import load_scenario
from twin.state import Twin
from twin.validate import DEFAULT_POLICY

SEEDS = Path(__file__).resolve().parents[2] / "seeds"
I64 = st.integers(br.I64_MIN, br.I64_MAX)


def same(a: object, b: object) -> bool:
    """Equal bytes (NaN scores compare equal to themselves)."""
    return msgspec.msgpack.encode(a) == msgspec.msgpack.encode(b)


def numbers(w: Watch) -> tuple[bytes, int, int, int]:
    return struct.pack("<d", w.interval), w.skew, w.delivery, w.codes


def at_of(event: Event, received_ts: float, p: RobotDetectorParams) -> float:
    """`observe`'s stamp time, as it writes it."""
    return event.ts if abs(event.ts - received_ts) <= p.skew_s else received_ts


def scalar_step(watch: Watch, before: Twin | None, twin: Twin, event: Event, effects: Effects, received: float,
                p: RobotDetectorParams) -> tuple[Watch, list[Finding]]:
    """What `observe` does with the robot-level numbers: `_delivery` alone, or `_robot`."""
    if effects.outcome in ("duplicate", "stale", "late"):
        delivery, found = _delivery(watch.delivery + 100, p)
        return replace(watch, delivery=delivery), found
    return _robot(watch, before, twin, event, effects, received, p)


# --- small exact pieces -----------------------------------------------------------------------

@given(st.lists(st.one_of(I64, st.sampled_from([br.I64_MIN, br.I64_MAX, -101, -100, -1, 0, 99, 2**53 + 1])),
                min_size=1, max_size=50))
def test_decay_is_exact_on_every_int64(xs: list[int]) -> None:
    assert br._decay(np.array(xs, dtype=np.int64)).tolist() == [x * 95 // 100 for x in xs]


thresholds = st.one_of(st.floats(), st.sampled_from([math.nan, math.inf, -math.inf, 2.0**53, 2.0**63, -(2.0**63),
                                                      2.0**64, 300.0, 299.99999999999994, 0.5, 0.0, -0.0]))
counts = st.one_of(I64, st.sampled_from([br.I64_MAX, br.I64_MIN, 2**53, 2**53 + 1, 2**63 - 512, 299, 300, 301, 0]))


@given(thresholds, thresholds, st.integers(-(2**65), 2**65), st.lists(counts, min_size=1, max_size=20))
def test_thresholds_compare_as_python_compares_an_int_with_a_float(delivery: float, codes: float, skew: int,
                                                                   cs: list[int]) -> None:
    p = RobotDetectorParams(delivery_hits=delivery / 100, codes_hits=codes / 100, skew_reports=skew)
    t = br.ParamTable([p])
    c = np.array(cs, dtype=np.int64)
    fires = [(~never & (c >= least)).tolist() for least, never in (
        (t.delivery_min[0], t.delivery_never[0]), (t.codes_min[0], t.codes_never[0]), (t.skew_min[0], t.skew_never[0]))]
    assert fires[0] == [not x < p.delivery_hits * 100 for x in cs]
    assert fires[1] == [x >= p.codes_hits * 100 for x in cs]
    assert fires[2] == [x >= p.skew_reports for x in cs]


def test_state_converts_to_and_from_the_scalar_struct_and_scatters() -> None:
    ws = [Watch(), Watch(interval=1.25, skew=3, delivery=br.I64_MAX, codes=br.I64_MIN),
          Watch(interval=-0.0, skew=0, delivery=7, codes=2**53 + 1)]
    store = br.empty(5)
    br.put(store, np.array([4, 0, 2]), br.watches_of(ws))
    part = br.take(store, np.array([4, 0, 2]))
    assert [numbers(br.with_numbers(w, part, i)) for i, w in enumerate(ws)] == [numbers(w) for w in ws]
    assert br.numbers_at(store, 1) == (0.0, 0, 0, 0) and br.numbers_at(store, 4) == (0.0, 0, 0, 0)
    opened = Watch(legacy_drift={"x": [1.0]})
    assert br.with_numbers(opened, part, 1).legacy_drift == {"x": [1.0]}  # the rest of the watch is kept
    with pytest.raises(OverflowError):
        br.watches_of([Watch(delivery=2**63)])


def test_more_codes_than_an_event_holds_are_refused() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(encode(event("r", 1.0, ("C",) * 33)), type=Event)
    rows = br.rows_of([(None, event("r", 1.0, ("C",) * 33), Effects("applied"), 1.0)], [0])
    with pytest.raises(ValueError):
        br.robot_round(br.empty(1), rows, br.ParamTable([RobotDetectorParams()]))


# --- random steps, random rounds --------------------------------------------------------------

def event(robot: str, ts: float, codes: tuple[str, ...] = (), mode: Mode = "working") -> Event:
    return Event(schema=1, robot_id=robot, seq=1, ts=ts, sector="s", site="s", model="m", mode=mode, signals={},
                 codes=codes)


BASE = apply(None, event("base", 1.0), received_ts=1.0)[0]


class Step(NamedTuple):
    """One event's inputs to the robot-level detectors."""

    before: Twin | None
    event: Event
    effects: Effects
    received: float


edges = [0.0, -0.0, 1.0, 1e9, -1e9, 1.7e9, math.nextafter(1.7e9, 0.0), 1e300, -1e300]
times = st.one_of(st.sampled_from(edges), st.floats(allow_nan=False, allow_infinity=False), st.floats(0, 1e4))
small = st.sampled_from([0.0, -0.0, 0.5, 1.0, 1.0, 2.0, 29.999, 30.0, 30.001, 120.0, -1.0, -30.0, -120.0])
skew_s = st.sampled_from([0.0, 1.5, 30.0])


@st.composite
def steps(draw: st.DrawFn, robot: str, p: RobotDetectorParams) -> list[Step]:
    """A robot's events as the detectors see them: any broker times (before, after or equal to the
    previous twin's last_seen), clocks on and off by the skew limit, outcomes, codes, e-stops, gaps."""
    received = draw(times)
    out = []
    for k in range(draw(st.integers(1, 12))):
        received = received + draw(small) if draw(st.booleans()) else draw(times)
        ts = received + draw(st.one_of(small, st.sampled_from([p.skew_s, -p.skew_s, math.nextafter(p.skew_s, 1e9)])))
        last_seen = received - draw(st.one_of(small, times))
        before = None if k == 0 and draw(st.booleans()) else replace(BASE, last_seen=last_seen)
        outcome: Outcome = draw(st.sampled_from(["applied"] * 4 + list(OUTCOMES)))
        missing = draw(st.sampled_from([0, 0, 0, 1, 9, 10, 11, 2**62]))
        changes = (SeqGap(robot, ts, 5, 5 + missing + 1),) if missing else ()
        codes = ("F-1",) * draw(st.sampled_from([0, 0, 0, 1, 2, 32]))
        mode: Mode = draw(st.sampled_from(["working", "working", "estop"]))
        out.append(Step(before, event(robot, ts, codes, mode), Effects(outcome, changes), received))
    return out


params = st.builds(RobotDetectorParams, skew_s=skew_s, skew_reports=st.integers(1, 4),
                   delivery_hits=st.sampled_from([0.5, 1.0, 2.5, 3.0]), codes_hits=st.sampled_from([0.5, 1.0, 3.0]))
counters = st.one_of(st.integers(0, 400), st.sampled_from([0, 2**53 + 1, br.I64_MAX - 150, br.I64_MAX - 100,
                                                           br.I64_MAX, -1, br.I64_MIN]))
watches = st.builds(Watch, interval=st.one_of(st.sampled_from([0.0, -0.0, -1.0, 1.0, math.nan]), times),
                    skew=counters, delivery=counters, codes=counters)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_random_rounds_give_the_scalar_numbers_findings_and_stamp_times(data: st.DataObject) -> None:
    ps = data.draw(st.lists(params, min_size=1, max_size=3))
    table = br.ParamTable(ps)
    n = data.draw(st.integers(1, 5))
    pk = [data.draw(st.integers(0, len(ps) - 1)) for _ in range(n)]
    todo = [data.draw(steps(f"r{i}", ps[pk[i]])) for i in range(n)]
    scalar = [data.draw(watches) for _ in range(n)]
    store = br.watches_of(scalar)
    left = set(range(n))
    while left:  # a round: any non-empty set of robots with events left, each its next event
        robots = sorted(data.draw(st.sets(st.sampled_from(sorted(left)), min_size=1)))
        rnd = [todo[i].pop(0) for i in robots]
        idx = np.array(robots)
        old = br.take(store, idx)
        rows = br.rows_of(rnd, [pk[i] for i in robots])
        res = br.robot_round(old, rows, table)
        found = br.robot_findings(old, res, rows, table, lambda j: (rnd[j].before, BASE, rnd[j].event, rnd[j].effects))
        br.put(store, idx, res.state)
        for j, (i, s) in enumerate(zip(robots, rnd)):
            p = ps[pk[i]]
            watch, f = scalar_step(scalar[i], s.before, BASE, s.event, s.effects, s.received, p)
            assert struct.pack("<d", float(res.at[j])) == struct.pack("<d", at_of(s.event, s.received, p))
            if res.scalar[j]:  # the batch gives the robot up only if its numbers leave int64
                assert not all(br.I64_MIN <= x <= br.I64_MAX for x in numbers(watch)[1:])
                assert numbers(br.with_numbers(None, res.state, j)) == numbers(scalar[i])  # left as it was
                left.discard(i)
                continue
            assert numbers(br.with_numbers(None, res.state, j)) == numbers(watch), (i, s)
            assert same(found.get(j, []), f)
            scalar[i] = watch
            if not todo[i]:
                left.discard(i)


def test_a_count_past_int64_goes_to_the_scalar_core() -> None:
    p = RobotDetectorParams()
    ws = [Watch(delivery=br.I64_MAX - 99), Watch(delivery=br.I64_MAX - 100), Watch(codes=br.I64_MAX),
          Watch(skew=br.I64_MAX)]
    s = [Step(None, event("a", 1.0), Effects("duplicate"), 1.0), Step(None, event("b", 1.0), Effects("late"), 1.0),
         Step(None, event("c", 1.0, mode="estop"), Effects("applied"), 1.0),
         Step(None, event("d", 1.0), Effects("applied"), 100.0)]
    res = br.robot_round(br.watches_of(ws), br.rows_of(s, [0] * 4), br.ParamTable([p]))
    assert res.scalar.tolist() == [True, False, False, True] and res.found.tolist() == [False, True, True, False]
    assert res.state.delivery.tolist()[:2] == [br.I64_MAX - 99, br.I64_MAX]
    assert res.state.codes[2] == br.I64_MAX * 95 // 100 + 100  # the decay makes room: no overflow


@pytest.mark.parametrize("change", [{"skew_reports": 0}, {"delivery_hits": 0.0}, {"codes_hits": 0.0}])
def test_a_zero_threshold_raises_as_the_scalar_core_does(change: dict[str, float]) -> None:
    p = RobotDetectorParams(skew_s=0.0, **change)  # type: ignore[arg-type]  # one knob per case
    s = Step(replace(BASE, last_seen=0.0), event("a", 5.0, ("C",)), Effects("applied"), 1.0)
    with pytest.raises(ZeroDivisionError):
        scalar_step(Watch(delivery=300), s.before, BASE, s.event, s.effects, s.received, p)
    rows = br.rows_of([s], [0])
    table = br.ParamTable([p])
    res = br.robot_round(br.watches_of([Watch(delivery=300)]), rows, table)
    assert res.found.tolist() == [True]
    with pytest.raises(ZeroDivisionError):
        br.robot_findings(br.watches_of([Watch(delivery=300)]), res, rows, table, lambda j: (s.before, BASE, s.event, s.effects))


# --- chaos records through twin.pipeline.feed -------------------------------------------------

class Fed(NamedTuple):
    """One telemetry record the scalar pipeline observed: the twin before it, its step, broker time."""

    before: Twin | None
    twin: Twin
    event: Event
    effects: Effects
    received: float
    found: list[Anomaly]


@pytest.fixture(scope="module")
def chaos(fleet: Fleet) -> list[Fed]:
    """A small chaos run (clock skew, duplicates, out-of-order, code bursts, comm loss) as records
    with uneven broker delays (so broker time sometimes goes back), folded by `feed`."""
    doc = msgspec.to_builtins(read_scenario(SEEDS, "chaos"))
    for fault in doc["faults"]:  # within the run: robots come back (a seq gap); a clock 120 s slow
        if fault["type"] == "comm_loss":  # reports "late" events for 120 s, then applied skewed ones
            fault["duration"] = 40
        if fault["type"] == "clock_skew":
            fault.update(start="10%", duration=200)
    sim = FleetSim(fleet, load_scenario({**doc, "robots": 30, "duration_s": 300}, "chaos"), seed=4)
    sent: list[tuple[float, Event]] = []
    for _ in range(sim.ticks):  # broker time follows the tick, not a skewed clock's ts
        now = sim.now
        sent += [(now, e) for e in sim.step()]
    rnd = random.Random(3)
    records = [Record("telemetry", 0, n, round((now + rnd.choice([0.02, 0.3, 1.6, 2.5])) * 1000) / 1000,
                      e.robot_id.encode(), encode(e)) for n, (now, e) in enumerate(sent)]
    config = read_detectors(SEEDS)
    twins: dict[str, Twin] = {}
    cohorts = Cohorts()
    out = []
    for record in records:
        before = twins.get((record.key or b"").decode())
        step = feed(twins.get, record, fleet, config, DEFAULT_POLICY, cohorts)
        cohorts = step.cohorts or cohorts
        if step.twin is None or step.event is None or step.effects is None:
            continue
        twins[step.twin.robot_id] = step.twin
        out.append(Fed(before, step.twin, step.event, step.effects, record.timestamp, list(step.found)))
    return out


def batches(fed: list[Fed], rnd: random.Random) -> list[list[list[Fed]]]:
    """Random consecutive batches, each split into rounds (a robot's k-th record of the batch in round k)."""
    out, start = [], 0
    while start < len(fed):
        end = start + rnd.choice([1, 3, 50, 400, 2000])
        rounds: list[list[Fed]] = []
        seen: dict[str, int] = defaultdict(int)
        for f in fed[start:end]:
            k = seen[f.event.robot_id]
            seen[f.event.robot_id] += 1
            if k == len(rounds):
                rounds.append([])
            rounds[k].append(f)
        out.append(rounds)
        start = end
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_chaos_rounds_give_feeds_numbers_findings_and_stamp_times(chaos: list[Fed], fleet: Fleet, seed: int) -> None:
    config = read_detectors(SEEDS)
    table = br.ParamTable([config.for_model(m) for m in fleet.models])
    shared = table.index()  # models that share a parameter set share its row
    pk = {m: shared[config.for_model(m)] for m in fleet.models}
    assert len(shared) < len(table.params) and sorted(set(pk.values())) == sorted(shared.values())
    slot: dict[str, int] = {}
    store = br.empty(len({f.event.robot_id for f in chaos}))
    fired: Counter[str] = Counter()
    for batch in batches(chaos, random.Random(seed)):
        for rnd in batch:
            idx = np.array([slot.setdefault(f.event.robot_id, len(slot)) for f in rnd])
            old = br.take(store, idx)
            rows = br.rows_of([(f.before, f.event, f.effects, f.received) for f in rnd], [pk[f.twin.model] for f in rnd])
            res = br.robot_round(old, rows, table)
            found = br.robot_findings(old, res, rows, table, lambda j: (rnd[j].before, rnd[j].twin, rnd[j].event,
                                                                         rnd[j].effects))
            br.put(store, idx, res.state)
            assert not res.scalar.any()
            for j, f in enumerate(rnd):
                assert f.twin.watch is not None
                assert numbers(br.with_numbers(None, res.state, j)) == numbers(f.twin.watch), f.event
                p = table.params[pk[f.twin.model]]
                prior = f.before.watch if f.before and f.before.watch else Watch()
                _, want = scalar_step(prior, f.before, f.twin, f.event, f.effects, f.received, p)
                assert same(found.get(j, []), want)
                assert all(a.ts == res.at[j] for a in f.found if a.detector != DESIRED_DRIFT)
                fired.update(x.detector for x in found.get(j, []))
    assert set(fired) == {"clock_skew", "delivery", "fault_codes", "seq_gap"}, fired


def test_chaos_run_exercises_every_path(chaos: list[Fed]) -> None:
    """The run the chaos test folds has what the detectors judge: redeliveries, broker time going
    back, skewed clocks and anomaly messages stamped with the broker's time."""
    outcomes = Counter(f.effects.outcome for f in chaos)
    assert outcomes["duplicate"] and outcomes["late"], outcomes
    assert any(f.before is not None and f.received <= f.before.last_seen for f in chaos)
    skewed = [f for f in chaos if abs(f.event.ts - f.received) > 30.0]
    assert skewed and any(a.ts == f.received for f in skewed for a in f.found)

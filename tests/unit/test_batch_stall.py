"""twin.batch_stall against twin.detect.stall.step: equal state, judged flags and findings, round by round."""

from __future__ import annotations

import math
import random
from collections import Counter
from pathlib import Path

import msgspec
import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from streams.seeds import read_detectors, read_scenario
from twin import batch_stall as bst
from twin.detect import stall
from twin.detect.stall import StallParams, State
from twin.fleet import Fleet, Sector
from twin.reduce import apply
from twin.schema import Event
from twin.sim import FleetSim
from twin.sim.scenario import load_scenario

SEEDS = Path(__file__).resolve().parents[2] / "seeds"
Reading = tuple[dict[str, float], float, bool]
"""What `observe` passes to `step` besides the state and params: signals, ts, working."""


def same(a: object, b: object) -> bool:
    """Equal bytes: states hold NaN, which == never calls equal."""
    return msgspec.msgpack.encode(a) == msgspec.msgpack.encode(b)


def check(seqs: list[list[Reading]], rounds: list[list[int]], plan: bst.Plan) -> Counter[str]:
    """Step every robot's readings through `stall.step` and, round by round, through `stall_round`
    on a store of every robot; assert equal state, judged flag and findings after every reading.
    Returns how many readings were judged, fired, and went by no counter."""
    n = len(seqs)
    scalar: list[State | None] = [None] * n
    store = bst.empty(n)
    pos = [0] * n
    tally: Counter[str] = Counter()
    for robots in rounds:
        idx = np.array(robots, dtype=np.int64)
        rows = [seqs[r][pos[r]] for r in robots]
        matrix = np.array([[s.get(name, math.nan) for name in plan.names] for s, _, _ in rows],
                          dtype=np.float64).reshape(len(rows), len(plan.names))
        counter, speeds = plan.inputs(matrix)
        ts = np.array([t for _, t, _ in rows], dtype=np.float64)
        working = np.array([w for _, _, w in rows], dtype=bool)
        old = bst.take(store, idx)
        new, judged, found = bst.stall_round(old, counter, speeds, ts, working, plan)
        findings = bst.stall_findings(old, new, np.flatnonzero(found), counter, speeds, ts, working, plan)
        bst.put(store, idx, new)
        for i, (r, (signals, t, w)) in enumerate(zip(robots, rows)):
            state, f, j = stall.step(scalar[r], signals, t, w, plan.p)
            scalar[r] = state
            assert same(bst.state_at(new, i), state), (r, pos[r])
            assert bool(judged[i]) == j, (r, pos[r])
            assert same(findings.get(i, []), f), (r, pos[r])
            pos[r] += 1
            tally.update(judged=j, found=bool(f), no_counter=plan.p.cycle not in signals)
    assert pos == [len(s) for s in seqs]
    assert same(bst.to_states(store), scalar)
    return tally


def random_rounds(lengths: list[int], rnd: random.Random) -> list[list[int]]:
    """Rounds of random subsets of the robots with readings left, each in a random order."""
    left = list(lengths)
    rounds = []
    while any(left):
        ready = [r for r, k in enumerate(left) if k]
        chosen = rnd.sample(ready, rnd.randint(1, len(ready)))
        for r in chosen:
            left[r] -= 1
        rounds.append(chosen)
    return rounds


# --- random readings ------------------------------------------------------------------------

NAMES = ("cycle", "j1_speed", "temp", "j2_speed", "j3_speed")
params = st.builds(
    StallParams, cycle=st.sampled_from(["cycle", "cycle", "cycle", "nocycle"]),
    speeds=st.sampled_from([("j*_speed",), ("j*_speed",), ("j1_*", "j3*"), ("*",), ("none*",)]),
    profile=st.lists(st.sampled_from([0.0, 0.5, 0.79, 0.8, 1.0]), max_size=6).map(tuple),
    still=st.sampled_from([0.03, 0.03, 0.0, 1.0]), expect=st.sampled_from([0.8, 0.8, 0.0, 1.0]),
    reports=st.integers(1, 3),
)
steps = st.one_of(st.sampled_from([1.0, 1.0, 1.0, 0.0, 0.5, 0.49999999999, 0.50000000001, -1.0, -2.5, 7.0, 40.0]),
                  st.floats(-5.0, 40.0))


@st.composite
def readings(draw: st.DrawFn, p: StallParams) -> list[Reading]:
    """One robot's readings: counters that repeat, step, come back or are missing; speeds on and
    around `still` (both signs), absent or anywhere; time steps on the phase's rounding edges,
    backwards and in gaps; signals in any key order."""
    ts, last, out = 1_000.0, 0.0, []
    speed = st.one_of(st.sampled_from([0.0, -0.0, p.still, -p.still, math.nextafter(p.still, 0.0), 0.01, -0.5, 2.0]),
                      st.floats(-3.0, 3.0))
    for _ in range(draw(st.integers(1, 25))):
        ts += draw(steps)
        signals: dict[str, float] = {}
        counter = draw(st.sampled_from(["absent", "same", "same", "same", "next", "0", "-0", "7"]))
        if counter != "absent":
            last = last if counter == "same" else last + 1 if counter == "next" else float(counter)
            signals["cycle"] = last
        for name in NAMES[1:]:
            if draw(st.integers(0, 4)):
                signals[name] = draw(speed)
        order = draw(st.permutations(list(signals)))
        out.append(({k: signals[k] for k in order}, ts, draw(st.booleans() | st.just(True))))
    return out


@settings(max_examples=100, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])  # shrinking: minutes
@given(p=params, data=st.data())
def test_random_rounds_equal_step(p: StallParams, data: st.DataObject) -> None:
    seqs = [data.draw(readings(p)) for _ in range(data.draw(st.integers(1, 5)))]
    rounds = random_rounds([len(s) for s in seqs], data.draw(st.randoms(use_true_random=False)))
    check(seqs, rounds, bst.Plan(NAMES, p))


def test_a_stall_fires_on_the_third_still_reading_and_the_round_matches() -> None:
    p = StallParams(cycle="cycle", speeds=("j*_speed",), profile=(0.1, 1.0, 0.95, 0.9, 0.2, 0.0))
    seq = [({"cycle": c, "j1_speed": 0.0 if c == 2.0 else 1.0}, 100.0 + 6 * c + k, True)
           for c in (0.0, 1.0, 2.0) for k in range(6)]
    tally = check([seq, seq[:7]], random_rounds([len(seq), 7], random.Random(3)), bst.Plan(NAMES, p))
    assert tally["found"] == 1 and tally["judged"] == 13  # second 3 of the stalled cycle (its third still one)


def test_what_would_raise_goes_to_step_and_raises() -> None:
    p = StallParams(cycle="cycle", speeds=("j*_speed",), profile=(1.0,) * 4)
    plan = bst.Plan(NAMES, p)
    old = bst.stalls_of([State(1.0, 5.0, 0)])
    counter, speeds = plan.inputs(np.array([[1.0, 0.0, 20.0, 0.0, 0.0]]))
    for ts, error in ((math.inf, OverflowError), (math.nan, ValueError)):
        with pytest.raises(error):
            stall.step(State(1.0, 5.0, 0), {"cycle": 1.0, "j1_speed": 0.0}, ts, True, p)
        with pytest.raises(error):
            bst.stall_round(old, counter, speeds, np.array([ts]), np.array([True]), plan)
    zero = StallParams(cycle="cycle", speeds=("j*_speed",), profile=(1.0,) * 4, reports=0)  # score still / 0
    new, judged, found = bst.stall_round(old, counter, speeds, np.array([6.0]), np.array([True]), bst.Plan(NAMES, zero))
    assert judged.tolist() == found.tolist() == [True]
    with pytest.raises(ZeroDivisionError):
        bst.stall_findings(old, new, np.flatnonzero(found), counter, speeds, np.array([6.0]), np.array([True]),
                           bst.Plan(NAMES, zero))


def test_state_converts_to_and_from_the_scalar_structs_and_scatters() -> None:
    states = [None, State(), State(3.0, math.nan, 0), State(4.0, 17.5, 2)]
    s = bst.stalls_of(states)
    assert same(bst.to_states(s), states) and bst.to_states(s)[0] is None
    store = bst.empty(6)
    bst.put(store, np.array([5, 0, 2, 3]), s)
    assert same(bst.to_states(store), [State(), None, State(3.0, math.nan, 0), State(4.0, 17.5, 2), None, None])
    assert same(bst.to_states(bst.take(store, np.array([3, 2]))), states[:1:-1])


# --- chaos: the simulator's UR3 reports, as observe sees them ---------------------------------

UR3 = "ur3"


def as_cycles(events: list[Event], p: StallParams) -> list[Event]:
    """Give the simulated UR3 robots a work cycle: the counter steps every 22-26 s per robot (26 s
    overruns the profile), joints move where the profile says normal cycles move and jitter
    below `still` elsewhere, and a third of the robots stand still for 40 s (a stall). Signals
    the chaos faults removed stay removed; modes, gaps, skewed clocks and repeats stay."""
    t0 = min(e.ts for e in events)
    robots = sorted({e.robot_id for e in events})
    out = []
    for e in events:
        i = robots.index(e.robot_id)
        at = e.ts - t0 + 3.7 * i
        length = 22 + i % 5
        k = int(at % length)
        moving = k < len(p.profile) and p.profile[k] >= 0.5
        stalled = i % 3 == 0 and 150 <= e.ts - t0 < 190
        signals = {}
        for name, v in e.signals.items():
            if name == p.cycle:
                v = float(at // length)
            elif name.endswith("_speed_rad_s"):
                v = 0.0 if stalled else round(v * (10.0 if moving else 0.1), 3)
            signals[name] = v
        out.append(msgspec.structs.replace(e, signals=signals))
    return out


@pytest.fixture(scope="module")
def chaos(fleet: Fleet) -> tuple[list[list[Reading]], StallParams]:
    """Each UR3 robot's accepted reports of a small chaos run (what observe passes to `step`:
    duplicates, stale and late arrivals never reach it)."""
    arms = Fleet({"manufacturing": Sector(fleet.sectors["manufacturing"].sites, (UR3,))}, fleet.models)
    scenario = read_scenario(SEEDS, "chaos")
    small = load_scenario({**msgspec.to_builtins(scenario), "robots": 16, "duration_s": 420}, "chaos")
    sim = FleetSim(arms, small, seed=7)
    p = read_detectors(SEEDS).for_model(UR3).stall
    assert p is not None
    twins: dict[str, object] = {}
    seqs: dict[str, list[Reading]] = {}
    for e in as_cycles([e for _ in range(sim.ticks) for e in sim.step()], p):
        twin, effects = apply(twins.get(e.robot_id), e, received_ts=e.ts + 0.2)  # type: ignore[arg-type]
        twins[e.robot_id] = twin
        if effects.outcome not in ("duplicate", "stale", "late"):
            seqs.setdefault(e.robot_id, []).append((e.signals, e.ts, e.mode == "working"))
    return list(seqs.values()), p


def test_chaos_rounds_equal_step(chaos: tuple[list[list[Reading]], StallParams], fleet: Fleet) -> None:
    seqs, p = chaos
    plan = bst.Plan(list(fleet.models[UR3].signals), p)
    assert len(plan.speeds) == 6 and plan.cycle is not None
    longest = max(map(len, seqs))
    kth = [[r for r, s in enumerate(seqs) if k < len(s)] for k in range(longest)]  # each robot's k-th report
    tally = check(seqs, kth, plan)
    assert tally["found"] > 0 and tally["judged"] > 100, tally
    again = check(seqs, random_rounds([len(s) for s in seqs], random.Random(11)), plan)
    assert again == tally

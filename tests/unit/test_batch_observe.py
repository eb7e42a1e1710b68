"""twin.batch_observe against the scalar core (`apply` + `observe` with no cohort rates, and no cohort
baseline but in one test): every robot's encoded Watch and every anomaly message, after each round
or batch, at random batch splits; chaos runs with delivery faults added, drawn report sequences,
UR3 arms for stall, and the late-event quirk of `_aligned`."""

from __future__ import annotations

import functools
import random
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from streams.seeds import read_detectors, read_fleet, read_scenario
from twin import batch_observe as bo
from twin.batch_reduce import ReduceState, catalogues_of, reduce_batch
from twin.detect import multivariate as mv
from twin.detect.cohort import PARAMS as COHORT
from twin.detect.cohort import features
from twin.detect.lifecycle import track
from twin.detect.multivariate import Baseline
from twin.detect.cohort import Cohorts
from twin.detect.params import DetectorConfig, RobotDetectorParams
from twin.detect.robot import observe
from twin.detect.watch import Watch
from twin.fleet import Fleet
from twin.pipeline import ingest
from twin.reduce import apply
from twin.schema import Event, Mode
from twin.sim import FleetSim
from twin.sim.scenario import load_scenario
from twin.state import Twin

from .test_batch_cohort import chaos_run, cohort_bytes

SEEDS = Path(__file__).resolve().parents[2] / "seeds"
seeded_fleet = functools.cache(lambda: read_fleet(SEEDS))
encode = msgspec.msgpack.encode

class Oracle(msgspec.Struct):
    """The scalar core's run: per event, its messages and the robot's Watch after it (encoded)."""

    messages: list[bytes]
    watches: list[bytes]


def scalar(events: list[Event], received: list[float], fleet: Fleet, ps: dict[str, RobotDetectorParams],
           baselines: dict[str, Baseline] | None = None) -> Oracle:
    """The oracle: `apply` then `observe` (no cohort rates; a fixed cohort baseline per model, if any)
    event by event."""
    twins: dict[str, Twin] = {}
    out = Oracle([], [])
    for e, r in zip(events, received):
        before = twins.get(e.robot_id)
        twin, effects = apply(before, e, received_ts=r)
        twin, messages = observe(before, twin, e, effects, r, fleet.models[e.model], ps[e.model],
                                 (baselines or {}).get(e.model))
        twins[e.robot_id] = twin
        out.messages.append(encode(messages))
        out.watches.append(encode(twin.watch))
    return out


def batched(events: list[Event], received: list[float], fleet: Fleet, ps: dict[str, RobotDetectorParams],
            cuts: list[int], per_round: bool, oracle: Oracle | None = None,
            baselines: dict[str, Baseline] | None = None, catalogues: bool = True) -> tuple[Counter[str], int]:
    """Fold through the round join at the batch boundaries `cuts`; after every round (`per_round`) or
    batch, compare each robot of it and each message with the scalar core's. Returns the message
    statuses seen by detector and the number of compared rows. Without `catalogues` a robot's block
    holds only the signals it has reported, so a new signal moves it and its cells to a wider one."""
    want = oracle or scalar(events, received, fleet, ps, baselines)
    red, obs = ReduceState(catalogues_of(fleet) if catalogues else None), bo.ObserveState()
    seen: Counter[str] = Counter()
    compared = 0
    last: dict[str, int] = {}
    for lo, hi in zip([0, *cuts], [*cuts, len(events)]):
        idx = list(range(lo, hi))
        units = [[idx[i] for i in r] for r in bo.rounds_of([events[i].robot_id for i in idx])] if per_round else [idx]
        for unit in units:
            evs, recv = [events[i] for i in unit], [received[i] for i in unit]
            if per_round:
                before = bo.snapshot(red, [e.robot_id for e in evs])
                _, eff = reduce_batch(red, evs, np.array(recv))
                got = bo.observe_round(obs, red, bo.Round(evs, np.array(recv), eff, before), fleet.models, ps,
                                       baselines)
            else:
                _, got = bo.observe_batch(obs, red, evs, recv, fleet.models, ps, baselines)
            assert [encode(m) for m in got] == [want.messages[i] for i in unit], unit
            last.update((events[i].robot_id, i) for i in unit)
            for robot in {e.robot_id for e in evs}:
                assert encode(bo.watch_of(obs, red, robot)) == want.watches[last[robot]], robot
            seen.update(f"{m.detector}:{m.status}" for ms in got for m in ms)
            compared += len(unit)
    return seen, compared


def disturbed(events: list[Event], seed: int) -> tuple[list[Event], list[float]]:
    """What the chaos run's delivery lacks at this size: duplicates, late arrivals, a burst of lost
    seqs, clocks far off (received time against event time), fault codes and e-stops."""
    rng = random.Random(seed)
    robots = sorted({e.robot_id for e in events})
    skewed, lossy, coded = set(robots[0::6]), robots[1], set(robots[2::5])
    t0 = min(e.ts for e in events)
    out: list[Event] = []
    received: list[float] = []
    for e in events:
        late = e.ts - t0
        if e.robot_id == lossy and 100 <= late < 115:
            continue  # 15 seqs lost: a seq gap finding
        if e.robot_id in coded and 150 <= late < 170 and rng.random() < 0.6:
            e = msgspec.structs.replace(e, codes=("E42",), mode="estop" if rng.random() < 0.2 else e.mode)
        r = e.ts + 0.2 + (150.0 if e.robot_id in skewed and 60 <= late < 200 else 0.0)
        if rng.random() < 0.03 and out:
            j = rng.randrange(max(0, len(out) - 40), len(out))
            out.append(out[j])  # a duplicate (or, after a later seq, stale or a repeat)
            received.append(r)
        if rng.random() < 0.04:
            out.insert(len(out) - 1 if out else 0, e)  # one place early: the previous one arrives late
            received.insert(len(received) - 1 if received else 0, r)
            continue
        out.append(e)
        received.append(r)
    return out, received


class Chaos(NamedTuple):
    events: list[Event]
    received: list[float]
    ps: dict[str, RobotDetectorParams]
    oracle: Oracle


@pytest.fixture(scope="module")
def chaos() -> Chaos:
    fleet = seeded_fleet()
    scenario = read_scenario(SEEDS, "chaos")
    small = load_scenario({**msgspec.to_builtins(scenario), "robots": 24, "duration_s": 360}, "chaos")
    sim = FleetSim(fleet, small, seed=7)
    config = read_detectors(SEEDS)
    # a shorter reference and a quicker critical escalation, so drift alarms and updates happen within the run
    ps = {m: msgspec.structs.replace(config.for_model(m), drift_reference_s=40.0, drift_threshold=8.0,
                                     critical_after_s=60.0) for m in fleet.models}
    events, received = disturbed([e for _ in range(sim.ticks) for e in sim.step()], seed=3)
    return Chaos(events, received, ps, scalar(events, received, fleet, ps))


def test_chaos_round_by_round_equals_the_scalar_core(
        chaos: Chaos) -> None:
    events, received, ps, oracle = chaos
    rng = random.Random(11)
    cuts = sorted(rng.sample(range(1, len(events)), 25))
    seen, compared = batched(events, received, seeded_fleet(), ps, cuts, per_round=True, oracle=oracle)
    assert compared == len(events)
    detectors = {k.split(":")[0] for k in seen}
    statuses = {k.split(":")[1] for k in seen}
    assert statuses == {"open", "update", "resolved"}, seen
    assert {"band", "stuck", "dropout", "drift", "clock_skew", "delivery", "fault_codes", "seq_gap"} <= detectors, seen


def test_chaos_against_fixed_cohort_baselines_equals_the_scalar_core(chaos: Chaos) -> None:
    """The cohort seam: each model's baseline fitted once on the run's first working reports (the
    cohort's learning in log order is another piece's), then held fixed on both sides."""
    events, received, ps, _ = chaos
    fleet = seeded_fleet()
    rows: dict[str, list[Any]] = {}
    for e in events[: len(events) // 3]:
        x = features(e, fleet.models[e.model])
        if e.mode == "working" and x is not None:
            rows.setdefault(e.model, []).append(x)
    # fitted on shifted reports for half the models, so that their robots stand out and the cohort fires;
    # weighted as if learned on the cohort's minimum (the detector judges nothing below it)
    baselines = {m: msgspec.structs.replace(mv.fit(np.array(xs) + (0.4 if i % 2 else 0.0)), weight=COHORT.min_weight)
                 for i, (m, xs) in enumerate(sorted(rows.items())) if len(xs) > 50}
    assert baselines
    seen, _ = batched(events, received, fleet, ps, [len(events) // 2], per_round=False, baselines=baselines)
    assert {"cohort:open", "cohort:resolved"} <= set(seen), seen


@pytest.mark.parametrize("size", [1, 97, 2_000, 0])
def test_chaos_batches_equal_the_scalar_core_whatever_the_split(
        chaos: Chaos, size: int) -> None:
    events, received, ps, oracle = chaos
    n = len(events)
    if size:
        cuts = list(range(size, n, size))
    else:  # random batch sizes up to 5,000
        rng = random.Random(5)
        cuts, at = [], 0
        while (at := at + rng.randint(1, 5_000)) < n:
            cuts.append(at)
    if size == 1:  # one event a batch costs a round each: the start of the run only
        events, received = events[:1_500], received[:1_500]
        cuts = [c for c in cuts if c < 1_500]
        oracle = Oracle(oracle.messages[:1_500], oracle.watches[:1_500])
    seen, compared = batched(events, received, seeded_fleet(), ps, cuts, per_round=False, oracle=oracle)
    assert compared == len(events)
    assert seen or size == 1  # the first 1,500 events are the robots' warm-up: nothing to say yet


def test_rows_without_finding_or_open_anomaly_need_no_lifecycle() -> None:
    """What the join relies on to skip them: `track` of nothing open and nothing found is nothing."""
    twin = bo._STUB
    p = RobotDetectorParams()
    for evaluated in bo._EVALUATED:
        assert track([], [], evaluated, twin, 1.0, p) == ([], [])


AMR = "amr"
MODES_DRAWN: tuple[Mode, ...] = ("working",) * 6 + ("idle", "maintenance", "fault", "estop", "charging")
amr_params = st.builds(
    RobotDetectorParams, warmup_reports=st.integers(0, 4), settle_s=st.sampled_from([0.0, 1.0, 2.5]),
    band_reports=st.integers(1, 2), stuck_reports=st.integers(1, 3), dropout_reports=st.integers(1, 3),
    drift_reference_s=st.sampled_from([1.0, 3.0]), drift_threshold=st.sampled_from([0.3, 2.0]),
    close_reports=st.integers(1, 3), skew_s=st.sampled_from([0.5, 5.0]), skew_reports=st.integers(1, 3),
    delivery_hits=st.sampled_from([0.5, 2.0]), codes_hits=st.sampled_from([0.5, 2.0]),
    critical_after_s=st.sampled_from([3.0, 600.0]),
)


@st.composite
def robot_events(draw: st.DrawFn, robot: str) -> tuple[list[Event], list[float]]:
    """One robot's reports as delivered: uneven steps, lost, repeated and reordered seqs, modes,
    signals that come and go, values anywhere, codes, clocks off."""
    signals = seeded_fleet().models[AMR].signals
    ts, seq, events, received = 1_000.0, 0, [], []
    for _ in range(draw(st.integers(1, 16))):
        ts += draw(st.sampled_from([0.5, 1.0, 1.0, 2.0, 7.0, 0.0]))
        seq += draw(st.sampled_from([1, 1, 1, 2, 12, 0]))
        values = {name: draw(st.one_of(st.sampled_from([*spec.nominal, *spec.limits]), st.floats(*spec.limits)))
                  for name, spec in signals.items() if draw(st.integers(0, 6))}
        e = Event(schema=1, robot_id=robot, seq=seq, ts=ts, sector="s", site="s", model=AMR,
                  mode=draw(st.sampled_from(MODES_DRAWN)), signals=values,
                  codes=draw(st.sampled_from([(), (), ("E1",)])))
        events.append(e)
        received.append(ts + draw(st.sampled_from([0.1, 0.1, 9.0, -9.0])))
    swaps = draw(st.lists(st.integers(0, len(events) - 1), max_size=3))
    for j in swaps:  # late arrivals
        if j + 1 < len(events):
            events[j], events[j + 1] = events[j + 1], events[j]
    return events, received


@settings(max_examples=25, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(p=amr_params, data=st.data())
def test_random_reports_equal_the_scalar_core(p: RobotDetectorParams, data: st.DataObject) -> None:
    fleet = seeded_fleet()
    drawn = [data.draw(robot_events(f"r{i}")) for i in range(data.draw(st.integers(1, 4)))]
    longest = max(len(evs) for evs, _ in drawn)
    pairs = [(evs[i], recv[i]) for i in range(longest) for evs, recv in drawn if i < len(evs)]
    events, received = [e for e, _ in pairs], [r for _, r in pairs]
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(events) - 1)), max_size=4))))
    batched(events, received, fleet, {m: p for m in fleet.models}, [c for c in cuts if c < len(events)],
            per_round=data.draw(st.booleans()), catalogues=data.draw(st.booleans()))


UR3 = "ur3"


def arm_run(robot: str, length: int, reports: int, stills: set[int], idle: set[int]) -> tuple[list[Event], list[float]]:
    """One UR3's reports through work cycles: its counter steps every `length` s, its joints move
    except at the reports `stills` (runs of them where the profile expects motion are stalls), and
    it is idle at the reports `idle`."""
    signals = seeded_fleet().models[UR3].signals
    ts, cycle, events, received = 5_000.0, 0.0, [], []
    for k in range(reports):
        ts += 1.0
        if k % length == 0:
            cycle += 1
        values = {name: (spec.nominal[0] + spec.nominal[1]) / 2 for name, spec in signals.items()}
        values.update({name: 0.0 if k in stills else 0.8 for name in signals if name.endswith("_speed_rad_s")})
        values["work_cycle"] = cycle
        events.append(Event(schema=1, robot_id=robot, seq=k + 1, ts=ts, sector="s", site="s", model=UR3,
                            mode="idle" if k in idle else "working", signals=values))
        received.append(ts + 0.1)
    return events, received


def arms(runs: list[tuple[list[Event], list[float]]]) -> Counter[str]:
    """Interleave the arms' runs (a report of each in turn) and compare; the stall messages seen."""
    fleet = seeded_fleet()
    p = msgspec.structs.replace(read_detectors(SEEDS).for_model(UR3), warmup_reports=2, close_reports=2)
    assert p.stall is not None
    longest = max(len(evs) for evs, _ in runs)
    pairs = [(evs[i], recv[i]) for i in range(longest) for evs, recv in runs if i < len(evs)]
    events, received = [e for e, _ in pairs], [r for _, r in pairs]
    seen, _ = batched(events, received, fleet, {m: p for m in fleet.models}, [len(events) // 2], per_round=True)
    return Counter({k: v for k, v in seen.items() if k.startswith("stall")})


def test_an_arm_that_stands_still_mid_cycle_stalls_and_recovers() -> None:
    """The stall seam (no chaos robot is a UR3): state in the Watch, findings, the judged flag."""
    seen = arms([arm_run("arm0", 25, 80, set(range(28, 36)) | set(range(53, 60)), {70}),
                 arm_run("arm1", 25, 60, set(), set())])
    assert {"stall:open", "stall:resolved"} <= set(seen), seen


@settings(max_examples=15, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(data=st.data())
def test_arms_in_work_cycles_stall_as_the_scalar_core_says(data: st.DataObject) -> None:
    runs = []
    for i in range(data.draw(st.integers(1, 3))):
        reports = data.draw(st.integers(30, 90))
        stills = set(data.draw(st.lists(st.integers(0, reports), max_size=30)))
        start = data.draw(st.integers(0, reports))
        stills |= set(range(start, start + data.draw(st.integers(0, 8))))
        idle = set(data.draw(st.lists(st.integers(0, reports), max_size=5)))
        runs.append(arm_run(f"arm{i}", data.draw(st.integers(20, 30)), reports, stills, idle))
    arms(runs)


def test_a_late_event_that_adds_a_signal_restarts_every_signals_state() -> None:
    """The scalar quirk the join keeps: a late event gives the twin a new signal but not the per-signal
    state (the delivery path returns early), so on the next judged event `_aligned` sees lengths
    that differ and starts every signal's state afresh (here: the stuck counters count from zero again)."""
    fleet = seeded_fleet()
    names = sorted(fleet.models[AMR].signals)[:3]
    a, b, c = names

    def report(seq: int, carried: tuple[str, ...]) -> Event:
        return Event(schema=1, robot_id="r", seq=seq, ts=100.0 + seq, sector="s", site="s", model=AMR, mode="working",
                     signals={n: 1.0 for n in carried})

    events = [report(s, (a, b)) for s in range(1, 6)] + [report(7, (a, b)), report(6, (a, b, c)), report(8, (a, b))]
    received = [e.ts + 0.1 for e in events]
    p = RobotDetectorParams(warmup_reports=1, stuck_reports=50)
    want = scalar(events, received, fleet, {m: p for m in fleet.models})
    stuck = [msgspec.msgpack.decode(w, type=Watch).signals for w in want.watches]
    assert [s.same for s in stuck[-2]] == [5, 5] and [s.same for s in stuck[-1]] == [1, 1, 0]  # not 6, 6, 0
    for per_round in (True, False):
        for catalogues in (True, False):
            batched(events, received, fleet, {m: p for m in fleet.models}, [], per_round=per_round, oracle=want,
                    catalogues=catalogues)


def test_a_robot_moved_to_a_wider_block_takes_its_cells_and_leaves_its_run_to_another() -> None:
    """Cells are runs laid out as the robot's reducer block: a new signal moves a robot to a wider block,
    its cells follow by signal (here they start afresh anyway: `_aligned` sees a new length), and the
    run it leaves is the next narrow robot's."""
    fleet = seeded_fleet()
    a, b, c = sorted(fleet.models[AMR].signals)[:3]

    def report(robot: str, seq: int, carried: tuple[str, ...]) -> Event:
        return Event(schema=1, robot_id=robot, seq=seq, ts=100.0 + seq, sector="s", site="s", model=AMR,
                     mode="working", signals={n: 1.0 + (seq % 3 == 0) for n in carried})

    events = ([report("r1", s, (a, b)) for s in range(1, 6)] + [report("r1", s, (a, b, c)) for s in range(6, 9)]
              + [report("r2", s, (a, b)) for s in range(1, 6)])
    received = [e.ts + 0.1 for e in events]
    p = RobotDetectorParams(warmup_reports=1, stuck_reports=2, drift_reference_s=1.0, drift_threshold=0.3)
    _, compared = batched(events, received, fleet, {m: p for m in fleet.models}, [3, 6, 9], per_round=True,
                          catalogues=False)
    assert compared == len(events)
    red, obs = ReduceState(), bo.ObserveState()
    for lo, hi in ((0, 5), (5, 8), (8, 13)):
        bo.observe_batch(obs, red, events[lo:hi], received[lo:hi], fleet.models, {m: p for m in fleet.models})
    r1, r2 = red.slot_of["r1"], red.slot_of["r2"]
    assert obs.ncells == 2 + 3 and obs.base[r2] == 0 and obs.base[r1] == 2, (obs.ncells, obs.base[:2])
    assert len(bo.watch_of(obs, red, "r1").signals) == 3 and len(bo.watch_of(obs, red, "r2").signals) == 2


def test_a_count_beyond_int64_raises_before_the_round_changes_state() -> None:
    """`robot_round`'s `scalar` rows: the scalar core would keep a Python int no array can hold."""
    fleet = seeded_fleet()
    p = RobotDetectorParams()
    events = [Event(schema=1, robot_id="r", seq=s, ts=100.0 + s, sector="s", site="s", model=AMR, mode="working",
                    signals={}) for s in (1, 2)]
    red, obs = ReduceState(catalogues_of(fleet)), bo.ObserveState()
    ps = {m: p for m in fleet.models}
    bo.observe_batch(obs, red, events[:1], [101.1], fleet.models, ps)
    slot = red.slot_of["r"]
    obs.robot.delivery[slot] = 2**63 - 50  # a duplicate adds 100
    watch = encode(bo.watch_of(obs, red, "r"))
    with pytest.raises(OverflowError):
        bo.observe_batch(obs, red, events[:1], [102.1], fleet.models, ps)
    assert encode(bo.watch_of(obs, red, "r")) == watch


# --- ingest_batch: cohorts learned in log order ----------------------------------------------------

class Ingested(NamedTuple):
    events: list[Event]
    config: DetectorConfig
    start: Cohorts
    messages: list[bytes]
    watches: list[bytes]
    cohorts: list[Cohorts]
    """After each event."""


@pytest.fixture(scope="module")
def ingested() -> Ingested:
    """The cohort test's chaos run (batteries draining fast, robots off their cohort, cohorts seeded just
    short of `min_weight` with a 4 s refit) through `twin.pipeline.ingest` event by event."""
    fleet = seeded_fleet()
    events, config, start = chaos_run(fleet)
    cohorts = start
    twins: dict[str, Twin] = {}
    out = Ingested(events, config, start, [], [], [])
    for e in events:
        twin, _, messages, cohorts = ingest(twins.get(e.robot_id), e, e.ts + 0.2, fleet, config, cohorts)
        twins[e.robot_id] = twin
        out.messages.append(encode(messages))
        out.watches.append(encode(twin.watch))
        out.cohorts.append(cohorts)
    return out


@pytest.mark.parametrize("guess", ["likely", "none open", "all open"])
@pytest.mark.parametrize("seed", [1])
def test_ingest_batch_equals_the_pipeline_at_random_splits(ingested: Ingested, seed: int, guess: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Every message, every robot's Watch and the cohorts' bytes after each batch, against `ingest`,
    whatever `settle`'s first guess (`_likely_open`; wrong both ways, it only costs passes)."""
    if guess != "likely":
        monkeypatch.setattr(bo, "_likely_open", lambda begun, opened, n, robots: np.full(n, guess == "all open"))
    fleet, run = seeded_fleet(), ingested
    ps = {m: run.config.for_model(m) for m in fleet.models}
    rng = random.Random(seed)
    red, obs, cohorts = ReduceState(catalogues_of(fleet)), bo.ObserveState(), run.start
    seen: Counter[str] = Counter()
    lo = 0
    while lo < len(run.events):
        hi = min(len(run.events), lo + rng.choice([1, 5, 300, 2_000, 4_000]))
        evs = run.events[lo:hi]
        _, got, cohorts = bo.ingest_batch(obs, red, evs, [e.ts + 0.2 for e in evs], fleet.models, ps, cohorts)
        assert [encode(m) for m in got] == run.messages[lo:hi], lo
        last = {e.robot_id: lo + k for k, e in enumerate(evs)}
        for robot, i in last.items():
            assert encode(bo.watch_of(obs, red, robot)) == run.watches[i], robot
        assert cohort_bytes(cohorts) == cohort_bytes(run.cohorts[hi - 1]), hi
        seen.update(f"{m.detector}:{m.evidence.get('view', '')}" for ms in got for m in ms)
        lo = hi
    assert seen["cohort:"] and seen["drift:cohort"], seen  # both cohort checks fired
    assert cohort_bytes(cohorts) != cohort_bytes(run.start)


def test_ingest_batch_enters_new_models_in_the_scalar_order(ingested: Ingested) -> None:
    """From empty cohorts: each model enters `sums` at its first learning row, `baselines` and
    `fitted_at` at its first refit, `rates` at its first trend rate (orders that differ here)."""
    fleet = seeded_fleet()
    events = ingested.events[:2_500]
    ps = {m: ingested.config.for_model(m) for m in fleet.models}
    twins: dict[str, Twin] = {}
    want = Cohorts(refit_s=4.0)
    for e in events:
        twins[e.robot_id], _, _, want = ingest(twins.get(e.robot_id), e, e.ts + 0.2, fleet, ingested.config, want)
    assert list(want.sums) != list(want.baselines) or list(want.sums) != list(want.rates)
    for cut in ([], [900], [700, 1_300, 1_900]):
        red, obs, got = ReduceState(catalogues_of(fleet)), bo.ObserveState(), Cohorts(refit_s=4.0)
        for lo, hi in zip([0, *cut], [*cut, len(events)]):
            evs = events[lo:hi]
            _, _, got = bo.ingest_batch(obs, red, evs, [e.ts + 0.2 for e in evs], fleet.models, ps, got)
        assert cohort_bytes(got) == cohort_bytes(want), cut


@settings(max_examples=25, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(p=amr_params, data=st.data())
def test_trend_references_against_per_row_rates_equal_the_scalar_core(p: RobotDetectorParams,
                                                                      data: st.DataObject) -> None:
    """`observe_round`'s `rates_at`: every AMR signal a trend (several trend cells a row, between other
    signals' findings), each row judged against its own moments, drawn near and far from alarming."""
    fleet = seeded_fleet()
    p = msgspec.structs.replace(p, trend_signals=("*",))
    drawn = [data.draw(robot_events(f"r{i}")) for i in range(data.draw(st.integers(1, 3)))]
    longest = max(len(evs) for evs, _ in drawn)
    pairs = [(evs[i], recv[i]) for i in range(longest) for evs, recv in drawn if i < len(evs)]
    names = sorted(fleet.models[AMR].signals)
    moments = st.sampled_from([(1e4, 0.0, 1e4 * 1e-12), (1e4, 1e4 * 1e-3, 1e4 * 2e-6), (10.0, 0.0, 0.0),
                               (1e4, -1e4 * 1e-2, 1e4 * 1e-4)])
    rates = [data.draw(st.one_of(st.none(), st.dictionaries(st.sampled_from(names), moments))) for _ in pairs]
    observed_against_rates(fleet, p, [e for e, _ in pairs], [r for _, r in pairs], rates)


def test_a_battery_draining_faster_than_its_cohort_is_seen_against_per_row_rates() -> None:
    """The cohort trend check reached for sure: steady working reports of two AMRs whose batteries
    drain at a steady rate (their own reference holds it normal), judged against moments that
    move row by row (the cohort's rates at each row's log position); one robot's rows get none."""
    fleet = seeded_fleet()
    spec = fleet.models[AMR].signals
    p = RobotDetectorParams(warmup_reports=1, settle_s=0.0, drift_reference_s=2.0)
    events, received, rates = [], [], []
    for k in range(60):
        for robot, drain in (("a", 0.05), ("b", 0.02)):
            values = {n: (s.nominal[0] + s.nominal[1]) / 2 for n, s in spec.items()}
            values["battery_soc_pct"] = 90.0 - drain * k
            events.append(Event(schema=1, robot_id=robot, seq=k + 1, ts=100.0 + k, sector="s", site="s", model=AMR,
                                mode="working", signals=values))
            received.append(100.1 + k)
            n = 3e3 + k
            rates.append({"battery_soc_pct": (n, n * -1e-5 * (1 + k / 30), n * 1e-10)} if robot == "a" or k % 3 else None)
    views = Counter(f"{m.robot_id}:{m.evidence.get('view')}:{m.status}"
                    for m in observed_against_rates(fleet, p, events, received, rates))
    assert views["a:cohort:open"] and views["b:cohort:open"], views


def observed_against_rates(fleet: Fleet, p: RobotDetectorParams, events: list[Event], received: list[float],
                           rates: list[dict[str, Any] | None]) -> list[Any]:
    """AMR reports through `observe_round` with per-row cohort rates (`rates_at`) and through `observe`
    with the same rates, compared row by row (messages and Watch); the scalar messages, in order."""
    ps = {m: p for m in fleet.models}
    twins: dict[str, Twin] = {}
    red, obs = ReduceState(catalogues_of(fleet)), bo.ObserveState()
    out: list[Any] = []
    for idx in bo.rounds_of([e.robot_id for e in events]):
        evs, recv = [events[i] for i in idx], np.array([received[i] for i in idx])
        before = bo.snapshot(red, [e.robot_id for e in evs])
        _, eff = reduce_batch(red, evs, recv)
        got = bo.observe_round(obs, red, bo.Round(evs, recv, eff, before), fleet.models, ps,
                               rates_at=[rates[i] for i in idx])
        for j, i in enumerate(idx):
            e = events[i]
            twin, effects = apply(twins.get(e.robot_id), e, received_ts=received[i])
            twin, want = observe(twins.get(e.robot_id), twin, e, effects, received[i], fleet.models[AMR], p,
                                 None, rates[i])
            twins[e.robot_id] = twin
            assert encode(got[j]) == encode(want), i
            assert encode(bo.watch_of(obs, red, e.robot_id)) == encode(twin.watch)
            out += want
    return out

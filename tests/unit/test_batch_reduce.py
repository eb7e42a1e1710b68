"""The batch reducer against its oracle, the scalar `twin.reduce.apply`: every twin's bytes and every
event's Effects equal, whatever the batch boundaries and arrival orders."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.seeds import read_scenario
from twin.batch_reduce import (NARROW, ReduceState, catalogues_of, from_twins, labels_of, priors_of, reduce_batch,
                               to_twin, to_twins)
from twin.effects import Effects
from twin.fleet import Fleet
from twin.kpi import INFERENCE, prior_of
from twin.reduce import apply
from twin.schema import MODES, SEQ_MAX, Event, Location
from twin.sim import FleetSim
from twin.sim.scenario import load_scenario
from twin.state import WINDOW, Twin, encode_twin
from twin.summary import Labels

SEEDS = Path(__file__).resolve().parents[2] / "seeds"


class Oracle(msgspec.Struct):
    events: list[Event]
    received: list[float]
    twins: dict[str, Twin]
    effects: list[Effects]


def scalar(events: list[Event], received: list[float], twins: dict[str, Twin] | None = None) -> Oracle:
    """Fold through `apply` one by one: the reference."""
    twins = dict(twins or {})
    effects = []
    for event, when in zip(events, received):
        twins[event.robot_id], effect = apply(twins.get(event.robot_id), event, received_ts=when)
        effects.append(effect)
    return Oracle(events, received, twins, effects)


def batched(state: ReduceState, events: list[Event], received: list[float], sizes: list[int],
            narrow: int = NARROW) -> list[Effects]:
    """Fold through `reduce_batch` in consecutive batches of the given sizes (the last repeats)."""
    effects: list[Effects] = []
    start, k = 0, 0
    while start < len(events):
        end = start + sizes[min(k, len(sizes) - 1)]
        effects.extend(reduce_batch(state, events[start:end], received[start:end], narrow=narrow)[1])
        start, k = end, k + 1
    return effects


def assert_same(state: ReduceState, oracle: Oracle, effects: list[Effects]) -> None:
    assert effects == oracle.effects
    assert state.robots == len(oracle.twins)
    for robot, twin in oracle.twins.items():
        assert encode_twin(to_twin(state, robot)) == encode_twin(twin), robot
    explicit = sum(twin.signals[name].ts is not None for twin in oracle.twins.values() for name in twin.signals)
    assert state.sparse_times() == explicit  # no entry left behind


@pytest.fixture(scope="module")
def chaos(fleet: Fleet) -> Oracle:
    scenario = read_scenario(SEEDS, "chaos")
    small = load_scenario({**msgspec.to_builtins(scenario), "robots": 60, "duration_s": 200}, "chaos")
    sim = FleetSim(fleet, small, seed=3)
    events = [e for _ in range(sim.ticks) for e in sim.step()]
    rnd = random.Random(7)
    received = [e.ts + 0.05 + rnd.random() for e in events]  # not monotonic: last_seen's max matters
    oracle = scalar(events, received)
    outcomes = Counter(e.outcome for e in oracle.effects)
    kinds = Counter(type(c).__name__ for e in oracle.effects for c in e.changes)
    assert outcomes["late"] and outcomes["duplicate"], outcomes  # the scenario exercises what it should
    assert kinds["SeqGap"] and kinds["ModeChanged"] and kinds["VersionChanged"], kinds
    return oracle


_rnd = random.Random(11)
RANDOM_SIZES = [_rnd.choice([1, 2, 3, 50, 400, 1500, 5000]) for _ in range(400)]


@pytest.mark.parametrize(("sizes", "narrow"), [
    ([1], 0), ([7], 0), ([7], NARROW), ([333], NARROW), ([2000], NARROW), ([2000], 0), (RANDOM_SIZES, NARROW),
], ids=["1-vectorised", "7-vectorised", "7", "333", "2000", "2000-vectorised", "random"])
def test_chaos_folds_to_the_same_bytes_and_effects_whatever_the_batches(
        chaos: Oracle, fleet: Fleet, sizes: list[int], narrow: int) -> None:
    """`narrow=0` keeps every round vectorised; by default narrow rounds go through `apply` itself."""
    state = ReduceState(catalogues_of(fleet))
    assert_same(state, chaos, batched(state, chaos.events, chaos.received, sizes, narrow))


@pytest.mark.parametrize("narrow", [0, NARROW])
def test_a_robot_reporting_a_signal_its_block_lacks_moves_and_stays_exact(chaos: Oracle, narrow: int) -> None:
    firsts: set[str] = set()
    events = []
    for e in chaos.events:  # each robot's first event carries half its signals: no catalogue can know
        if e.robot_id not in firsts:
            firsts.add(e.robot_id)
            e = msgspec.structs.replace(e, signals=dict(list(e.signals.items())[::2]))
        events.append(e)
    oracle = scalar(events, chaos.received)
    state = ReduceState()
    assert_same(state, oracle, batched(state, events, chaos.received, [1] * len(firsts) + [500], narrow))
    models = {to_twin(state, r).model for r in oracle.twins}
    assert len(state.blocks) > len(models)  # the half blocks, left behind
    assert sum(b.rows - len(b.free) for b in state.blocks) == state.robots


def test_loaded_twins_give_back_their_bytes_and_fold_on_like_the_scalar_core(chaos: Oracle, fleet: Fleet) -> None:
    cut = len(chaos.events) // 2
    head = scalar(chaos.events[:cut], chaos.received[:cut])
    twins = {r: msgspec.structs.replace(t, partition=i % 3, offset=i) if i % 2 else t
             for i, (r, t) in enumerate(head.twins.items())}
    state = from_twins(twins.values(), catalogues_of(fleet))
    for robot, twin in twins.items():
        assert encode_twin(to_twin(state, robot)) == encode_twin(twin)
    tail = scalar(chaos.events[cut:], chaos.received[cut:], twins)
    assert_same(state, tail, batched(state, chaos.events[cut:], chaos.received[cut:], [997]))


def _skewed(twin: Twin, change: str) -> Twin:
    name, sig = next(iter(twin.signals.items()))
    if change == "signals not sorted":
        return msgspec.structs.replace(twin, signals=dict(reversed(twin.signals.items())))
    if change == "config not sorted":
        return msgspec.structs.replace(twin, config={"z": "1", "a": "2"})
    if change == "only one of ts and seq":
        sig = msgspec.structs.replace(sig, ts=1.0, seq=None)
    else:
        sig = msgspec.structs.replace(sig, n=twin.counts.events)
    return msgspec.structs.replace(twin, signals={**twin.signals, name: sig})


@pytest.mark.parametrize("change", ["signals not sorted", "config not sorted", "only one of ts and seq",
                                    "n equal to the accepted events"])
def test_a_twin_the_reducer_cannot_make_is_refused(chaos: Oracle, change: str) -> None:
    twins = list(chaos.twins.values())[:5]
    from_twins(twins)  # as they are: fine
    with pytest.raises(ValueError, match=change):
        from_twins([*twins[:2], _skewed(twins[2], change), *twins[3:]])


def test_a_robot_loaded_twice_is_refused(chaos: Oracle) -> None:
    twin = next(iter(chaos.twins.values()))
    with pytest.raises(ValueError, match="twice"):
        from_twins([twin, twin])


# -- properties: a few robots, any arrival order, duplicates, far jumps ---------------------------

SIGNALS = ("battery_soc_pct", "battery_temp_c", "speed_mps", "joint1_current_a")
LOCATIONS = (None, Location(lat=1.5, lon=2.5), Location(lat=-3.0, lon=4.0, floor=2))
CONFIGS: tuple[Any, ...] = (msgspec.UNSET, {}, {"b": "1", "a": "2"}, {"a": "2", "b": "1"}, {"a": "3"})


@st.composite
def robot_events(draw: st.DrawFn, robot: str) -> list[Event]:
    """One robot's events: distinct seqs, mostly within the window, some far above or below it; at
    the top of the range they reach `SEQ_MAX`, the largest `parse` accepts."""
    start = draw(st.sampled_from([0, 5, SEQ_MAX - 2 * WINDOW - 100]))
    seqs = draw(st.lists(st.integers(start, start + 2 * WINDOW + 100), min_size=1, max_size=15, unique=True))
    return [Event(
        schema=1, robot_id=robot, seq=seq, ts=draw(st.sampled_from([10.0, 11.0, 12.5, 13.0])),
        sector="logistics", site="s-1", model=draw(st.sampled_from(["amr", "amr", "humanoid"])),
        mode=draw(st.sampled_from(MODES)),
        signals=draw(st.dictionaries(st.sampled_from(SIGNALS), st.floats(-1e3, 1e3, allow_nan=False), max_size=4)),
        ai_model_version=draw(st.sampled_from(["p-1", "p-2"])), firmware=draw(st.sampled_from(["", "fw-1"])),
        codes=draw(st.sampled_from([(), ("E-STOP",), ("A", "B")])), location=draw(st.sampled_from(LOCATIONS)),
        config=draw(st.sampled_from(CONFIGS)),
    ) for seq in seqs]


@given(st.lists(st.sampled_from(["r-1", "r-2", "r-3"]), min_size=1, max_size=3, unique=True).flatmap(
    lambda robots: st.tuples(*[robot_events(r) for r in robots])), st.randoms(use_true_random=False),
    st.booleans(), st.sampled_from([0, 2, NARROW]))
@settings(max_examples=100, deadline=None)
def test_any_arrival_order_with_duplicates_matches_the_scalar_core(
        per_robot: tuple[list[Event], ...], rnd: Any, with_catalogue: bool, narrow: int) -> None:
    events = [e for evs in per_robot for e in evs]
    events += [rnd.choice(events) for _ in range(rnd.randint(0, 6))]  # redelivered copies
    rnd.shuffle(events)
    received = [rnd.choice([10.0, 11.0, 12.0]) for _ in events]
    oracle = scalar(events, received)
    state = ReduceState({"amr": SIGNALS[:2]} if with_catalogue else None)
    sizes = [rnd.randint(1, 12) for _ in range(len(events))]
    assert_same(state, oracle, batched(state, events, received, sizes, narrow))


def test_labels_are_those_of_the_twins(chaos: Oracle, fleet: Fleet) -> None:
    """The /twins listing reads three columns instead of building twins: the same labels, every mode seen."""
    state = ReduceState(catalogues_of(fleet))
    batched(state, chaos.events, chaos.received, [333])
    robots = sorted(chaos.twins)
    assert labels_of(state, robots) == [Labels.of(chaos.twins[r]) for r in robots]
    assert labels_of(state, robots[:1]) == [Labels.of(chaos.twins[robots[0]])]
    assert len({label.mode for label in labels_of(state, robots)}) > 1


def test_the_kpis_priors_are_those_of_the_twins_at_every_batch(chaos: Oracle, fleet: Fleet) -> None:
    """The worker reads each batch's `kpi.Prior`s from the columns instead of carrying one per robot:
    equal to `prior_of` of the twins after every batch, the inference value's own (late) times too."""
    state = ReduceState(catalogues_of(fleet))
    own_times = absent = 0
    for start in range(0, len(chaos.events), 997):
        reduce_batch(state, chaos.events[start:start + 997], chaos.received[start:start + 997])
        robots = list(state.robot_ids)
        priors = priors_of(state, robots)
        assert priors == [prior_of(t) for t in to_twins(state, robots)]
        assert priors_of(state, robots[-1:]) == priors[-1:]
        own_times += sum(p.inference_at is not None and p.inference_at != (p.ts, p.latest_seq) for p in priors)
        absent += sum(p.inference is None for p in priors)
    assert absent and priors_of(state, []) == []


@pytest.mark.parametrize("narrow", [0, NARROW])
def test_a_prior_s_inference_keeps_its_own_time_when_the_newest_report_lacks_it(narrow: int) -> None:
    def event(robot: str, seq: int, ts: float, signals: dict[str, float]) -> Event:
        return Event(schema=1, robot_id=robot, seq=seq, ts=ts, sector="logistics", site="s-1", model="amr",
                     mode="working", signals=signals, ai_model_version="p-1", firmware="fw-1")

    events = [event("r-1", 2, 12.0, {INFERENCE: 20.0, "speed_mps": 1.0}), event("r-2", 1, 12.0, {"speed_mps": 1.0}),
              event("r-1", 3, 13.0, {"speed_mps": 1.5}), event("r-1", 1, 11.0, {INFERENCE: 25.0})]  # the last: late
    state = ReduceState()
    batched(state, events, [e.ts + 0.5 for e in events], [1, 3], narrow)
    twins = scalar(events, [e.ts + 0.5 for e in events]).twins
    assert priors_of(state, ["r-1", "r-2"]) == [prior_of(twins["r-1"]), prior_of(twins["r-2"])]
    assert priors_of(state, ["r-1"])[0].inference_at == (12.0, 2) and priors_of(state, ["r-2"])[0].inference is None

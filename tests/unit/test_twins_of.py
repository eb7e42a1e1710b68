"""`batch_fold.twins_of` (one gather per column for many robots) against `twin_of` robot by robot.

States: the chaos logs of tests/unit/test_batch_fold.py folded through `fold_log` in batches, read
at every cut: the plain log (bad, duplicated and redelivered records), the reconnecting one (robots
silent, then reporting again: silence opened and resolved) and `desired_run` under its rules
(desired drift open, commands). At each: every robot in id order, a shuffled subset with duplicates
and unknown ids, and an empty list give `encode_twin` bytes equal to `twin_of`'s (None for unknown
ids). `batch_reduce.to_twin` is `to_twins` of one robot, so the batched twins are also held to
`on_record`'s at the end of a fold; `batch_observe.watch_of` is kept beside `watches_of` and held
equal here (through `twin_of`). Stall and cohort state and locations, which these runs do not
reach, are given to loaded twins.
"""

from __future__ import annotations

import gc
import math
import random
import sys
from collections.abc import Iterator

import pytest
from msgspec.structs import replace

from tests.unit import test_batch_fold as tbf
from tests.unit.test_batch_fold import chaos_log, desired_run, grace_rules, plain_oracle, rules
from twin import batch_fold as bf
from twin.detect import multivariate as mv
from twin.detect.stall import State as StallState
from twin.detect.watch import Watch
from twin.fleet_fold import FleetState, Rules
from twin.record import Record
from twin.schema import Location
from twin.state import Twin, encode_twin

pytestmark = pytest.mark.usefixtures("join_every_batch")


def states(records: tuple[Record, ...], rules: Rules, start: FleetState | None, size: int
           ) -> Iterator[bf.FoldState]:
    """The fold after each batch of `size` records (one state, updated in place)."""
    state = bf.FoldState(rules, start)
    for at in range(0, len(records), size):
        bf.fold_log(state, rules, list(records[at:at + size]))
        yield state


def view(twins: list[Twin | None]) -> list[bytes | None]:
    return [None if t is None else encode_twin(t) for t in twins]


def assert_batched(state: bf.FoldState, rng: random.Random) -> None:
    ids = sorted(bf.robot_ids(state))
    some = rng.sample(ids, len(ids) // 2) + ["no-such-robot", *ids[:3], ""] + rng.sample(ids, 3)
    for asked in (ids, some, [], ["no-such-robot"]):
        assert view(bf.twins_of(state, asked)) == view([bf.twin_of(state, r) for r in asked])
    got = bf.twins_of(state, some)
    assert got[len(ids) // 2] is None and all(t is not None and t.robot_id == r for r, t in zip(some, got)
                                               if r in ids)


def seen(state: bf.FoldState) -> set[str]:
    """What the state holds that the comparison must reach: open anomaly detectors, explicit signal
    times, signals with their own count, drift and stall and cohort state."""
    out = {o.detector for opens in state.obs.opened.values() for o in opens}
    for t in bf.twins_of(state, sorted(bf.robot_ids(state))):
        assert t is not None and t.watch is not None
        sigs = t.signals.values()
        out |= {"ts"} if any(s.ts is not None for s in sigs) else set()
        out |= {"n"} if any(s.n is not None for s in sigs) else set()
        out |= {"location"} if t.location is not None else set()
        out |= {"config"} if t.config else set()
        out |= {"offset"} if t.offset >= 0 else set()
        out |= {"drift-state"} if any(w.drift is not None for w in t.watch.signals) else set()
        out |= {"stall-state"} if t.watch.stall is not None else set()
        out |= {"cohort-state"} if t.watch.cohort is not None else set()
    return out


@pytest.mark.parametrize("reconnect", [False, True])
def test_chaos_states_read_batched_as_robot_by_robot(reconnect: bool) -> None:
    rng = random.Random(7)
    found: set[str] = set()
    for state in states(chaos_log(24, 150, 5, reconnect=reconnect), rules(), None, 300):
        assert_batched(state, rng)
        found |= seen(state)
    assert {"ts", "n", "offset", "drift-state", "config"} <= found, found
    if reconnect:
        assert "silence" in found, found


def test_batched_twins_are_on_records() -> None:
    """`to_twin` is `to_twins` of one robot, so the comparison above cannot see a fault they share: at the
    end of the fold the batched twins are also those of `on_record` folded record by record."""
    records = chaos_log(24, 150, 5, reconnect=True)
    _, twins, _ = plain_oracle(records)
    state = list(states(records, rules(), None, 300))[-1]
    ids = sorted(twins)
    assert view(bf.twins_of(state, ids)) == view([twins[r] for r in ids])


def test_desired_drift_states_read_batched_as_robot_by_robot(monkeypatch: pytest.MonkeyPatch) -> None:
    records, start, _ = desired_run()
    monkeypatch.setattr(sys.modules[tbf.__name__], "rules", lambda: grace_rules(True))
    rng = random.Random(8)
    found: set[str] = set()
    for state in states(records, grace_rules(True), start, 300):
        assert_batched(state, rng)
        found |= seen(state)
    assert {"desired_drift", "silence"} <= found, found


def test_loaded_stall_and_cohort_states_read_batched() -> None:
    """Stall and cohort detector state and locations (the chaos fleet's short runs have no stall state
    and no locations): twins of a fold, every other one given them, loaded into a new fold
    (`load_twins`), read back batched as robot by robot."""
    state = list(states(chaos_log(24, 150, 5, reconnect=True), rules(), None, 2000))[-1]
    twins = [t for t in bf.twins_of(state, sorted(bf.robot_ids(state))) if t is not None]
    given = [t if k % 2 == 0 else replace(
        t, location=Location(lat=1.5, lon=-2.25 * k, floor=k if k % 4 == 3 else None),
        watch=replace(t.watch or Watch(), stall=StallState(float(k), math.nan if k % 3 else 2.5, k),
                      cohort=mv.State(0.5 * k, 100.0 + k, k % 4 == 1, 90.0)))
        for k, t in enumerate(twins)]
    loaded = bf.FoldState(rules(), state.fleet)
    bf.load_twins(loaded, given)
    assert_batched(loaded, random.Random(9))
    assert {"stall-state", "cohort-state", "location"} <= seen(loaded)
    assert view(bf.twins_of(loaded, [t.robot_id for t in given])) == view(list(given))


def test_empty_state() -> None:
    state = bf.FoldState(rules())
    assert bf.twins_of(state, []) == []
    assert bf.twins_of(state, ["r1", "r1"]) == [None, None]


@pytest.mark.parametrize("chunk", [1, 5, 256])
def test_encoded_twins_are_the_batched_twins_encoded(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    """What a checkpoint stores, built a chunk at a time: the same bytes, in the order asked, across
    chunk boundaries, with repeats and unknown robots (None)."""
    monkeypatch.setattr(bf, "ENCODE_CHUNK", chunk)
    state = list(states(chaos_log(24, 150, 5, reconnect=True), rules(), None, 300))[-1]
    ids = sorted(bf.robot_ids(state))
    asked = [*ids[::-1], "no-such-robot", ids[0], *ids[:7]]
    assert bf.encoded_twins(state, asked) == view(bf.twins_of(state, asked))
    assert bf.encoded_twins(state, []) == []


def test_a_twin_is_untracked_by_the_cycle_collector() -> None:
    """Its structs are `gc=False` (twin.state): building a checkpoint's twins sets off no collections
    for them. Its lists stay tracked (a dict of untracked values is not, CPython's own rule)."""
    state = list(states(chaos_log(24, 150, 5, reconnect=True), rules(), None, 2000))[-1]
    twin = bf.twins_of(state, sorted(bf.robot_ids(state)))[0]
    assert twin is not None and twin.watch is not None
    structs = [twin, twin.counts, twin.watch, *twin.signals.values(), *twin.watch.signals,
               *(w.drift for w in twin.watch.signals if w.drift is not None)]
    assert len(structs) > 10 and not any(gc.is_tracked(s) for s in structs)
    assert gc.is_tracked(twin.watch.signals) and not gc.is_tracked(twin.signals)

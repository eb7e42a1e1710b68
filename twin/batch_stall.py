"""The work-cycle stall detector of `twin.detect.stall`, over a round of robots at once.

`twin.detect.robot.observe` calls `stall.step(watch.stall, event.signals, event.ts,
event.mode == "working", p.stall)` once per accepted event of a robot model whose parameters
set `stall`: a few Python lines and a `fnmatch` per signal per event. Here a *round* (an
index array of rows, each robot at most once, as in `twin.batch_reduce` and
`twin.batch_signals`) is stepped with one numpy operation per line of `step`:

* State is struct-of-arrays: `Stalls` holds `stall.State`'s three numbers per robot plus
  `has` (False: the scalar state is None, no reading seen yet). `stalls_of` / `state_at`
  convert from / to the scalar structs; `take` / `put` gather and scatter a round.
* Inputs are columns, as the batch reducer holds a model's signals (a matrix, one column per
  signal of the model's catalogue, NaN where the event has no such signal). `Plan` is built
  once per (model, StallParams): the column of `p.cycle` and the columns whose names match a
  pattern of `p.speeds` (what `stall._speeds` picks: events carry only catalogue signals,
  `parse` rejects any other name). `Plan.inputs` picks them out of the matrix.
* Parameters: one `Plan` per call, so a round is called per model (its rows share one signal
  layout and one StallParams); models with equal params and layouts may share a call.
* `stall_round` returns the new state, the `judged` mask (the third value of `step`) and the
  mask of rows with a finding. Findings are built by `stall.step` itself on those rows only
  (`stall_findings`), which must give the state we computed (an invariant).

Bit identity with `step`, and how it is kept:
* Only comparisons, `ts - since + 0.5` (IEEE, as Python's floats) and `np.floor`, which is
  exact; the phase is compared and indexed as an integral float64, exactly as the int of
  `math.floor`. `profile[k] >= expect` is evaluated by Python once per second of the
  profile. No float reduction: "max(|speed|) < still" is "every present |speed| < still".
* NaN marks an absent signal, as in `twin.columns`' matrix: valid readings are finite
  (`parse` dead-letters non-finite values), so a present speed is never NaN and the max over
  the speeds does not depend on their order (Python's max over a list starting with NaN would).
  Callers must not pass NaN as a value.
* What would raise in `step` (the phase of an infinite or NaN `ts - since + 0.5`:
  `int(math.floor(...))` raises) is not computed by numpy: those rows go to `stall.step`
  itself (the sparse path), which raises exactly as the scalar core would.
* `state or State()`: a robot's first step gives a State whatever the reading, so every row
  of a round leaves with `has` True; a new State's `since` is NaN (math.nan's bits).

tests/unit/test_batch_stall.py holds `stall_round` to `stall.step` on random rounds and on
the simulator's chaos sequences; bench/stall_detector.py measures it against the scalar calls.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from twin.detect import stall
from twin.detect.findings import Finding
from twin.detect.stall import StallParams, State

Array = npt.NDArray[Any]


class Stalls(NamedTuple):
    """`stall.State` per robot: `has` (False: no state yet, the scalar None), the counter's last
    value (NaN: none seen), the event time it took that value (NaN: its start not seen), and the
    unexpected still readings in a row (int64)."""

    has: Array
    cycle: Array
    since: Array
    still: Array


class Plan:
    """One robot model's stall detector over its signal columns (`names`: the model's catalogue
    in column order), for one StallParams."""

    def __init__(self, names: Sequence[str], p: StallParams) -> None:
        self.p = p
        self.names = tuple(names)
        self.cycle = self.names.index(p.cycle) if p.cycle in self.names else None
        """Column of the work-cycle counter; None: the model has no such signal (never judged)."""
        picked = [j for j, name in enumerate(self.names) if any(fnmatchcase(name, pat) for pat in p.speeds)]
        self.speeds = np.array(picked, dtype=np.int64)
        """Columns `stall._speeds` picks (catalogue order; the order does not matter without NaN)."""
        self.speed_names = tuple(self.names[j] for j in picked)
        self.expected = np.array([share >= p.expect for share in p.profile], dtype=bool)
        """Per second of the cycle: normal cycles move there (Python's comparison, once)."""

    def inputs(self, matrix: Array) -> tuple[Array, Array]:
        """(counter, speeds) of the rows of a signal matrix (NaN: absent)."""
        counter = matrix[:, self.cycle] if self.cycle is not None else np.full(len(matrix), np.nan)
        return counter, matrix[:, self.speeds]

    def reading(self, counter: float, speeds: Array) -> dict[str, float]:
        """A row's signals as `step` reads them: the counter and the present speeds."""
        out = {name: float(v) for name, v in zip(self.speed_names, speeds.tolist()) if not math.isnan(v)}
        if not math.isnan(counter):
            out[self.p.cycle] = counter
        return out


# --- state conversion -------------------------------------------------------------------------

def empty(n: int) -> Stalls:
    """`n` robots without state (the scalar None)."""
    return Stalls(np.zeros(n, dtype=bool), np.full(n, math.nan), np.full(n, math.nan), np.zeros(n, dtype=np.int64))


def stalls_of(states: Sequence[State | None]) -> Stalls:
    """The arrays of scalar states (None: no state yet)."""
    s = [x or State() for x in states]
    return Stalls(np.array([x is not None for x in states], dtype=bool), np.array([x.cycle for x in s], dtype=np.float64),
                  np.array([x.since for x in s], dtype=np.float64), np.array([x.still for x in s], dtype=np.int64))


def state_at(s: Stalls, i: int) -> State | None:
    """Row `i` as the scalar state."""
    if not s.has[i]:
        return None
    return State(float(s.cycle[i]), float(s.since[i]), int(s.still[i]))


def to_states(s: Stalls) -> list[State | None]:
    """Every row as a scalar state."""
    return [state_at(s, i) for i in range(len(s.has))]


def take(s: Stalls, idx: Array) -> Stalls:
    """The rows `idx` (a copy): a round's state gathered from the store."""
    return Stalls(*(col[idx] for col in s))


def put(s: Stalls, idx: Array, part: Stalls) -> None:
    """Scatter a round's new state back into the store (in place)."""
    for dst, src in zip(s, part):
        dst[idx] = src


# --- the round --------------------------------------------------------------------------------

def stall_round(s: Stalls, counter: Array, speeds: Array, ts: Array, working: Array,
                plan: Plan) -> tuple[Stalls, Array, Array]:
    """`stall.step` for every row of a round: (new state, judged mask, finding mask).

    Per row: the counter (NaN: absent), the speed columns of `plan` (rows x columns, NaN:
    absent), the event time and whether the robot reports `working`."""
    fresh = ~np.isnan(counter) & (counter != s.cycle)  # NaN != anything: a first counter is a change
    cycle = np.where(fresh, counter, s.cycle)
    since = np.where(fresh, np.where(np.isnan(s.cycle), math.nan, ts), s.since)
    still = np.where(fresh, 0, s.still)
    go = ~np.isnan(counter) & working & (~np.isnan(speeds)).any(axis=1) & ~np.isnan(since)
    with np.errstate(invalid="ignore", over="ignore"):
        x = ts - since + 0.5
    bad = go & ~np.isfinite(x)  # int(math.floor(x)) raises: the scalar function's to say how
    go &= ~bad
    k = np.floor(np.where(go, x, 0.0))
    judged = go & (k >= 0) & (k < len(plan.expected))
    expected = plan.expected[np.where(judged, k, 0).astype(np.int64)] if len(plan.expected) else judged
    with np.errstate(invalid="ignore"):
        all_still = np.where(np.isnan(speeds), True, np.abs(speeds) < plan.p.still).all(axis=1)
    unexpected = judged & all_still & expected
    still = np.where(go, np.where(unexpected, still + 1, 0), still)  # go but not judged: overrun, reset
    new = Stalls(np.ones(len(ts), dtype=bool), cycle, since, still)
    found = judged & (still >= plan.p.reports)
    if bad.any():
        _scalar_rows(s, new, judged, found, np.flatnonzero(bad), counter, speeds, ts, working, plan)
    return new, judged, found


def _scalar_rows(old: Stalls, new: Stalls, judged: Array, found: Array, rows: Array, counter: Array, speeds: Array,
                 ts: Array, working: Array, plan: Plan) -> None:
    """The sparse path: rows numpy cannot do as Python does (`step` raises on them); in place."""
    for i in rows.tolist():
        st, f, j = stall.step(state_at(old, i), plan.reading(float(counter[i]), speeds[i]), float(ts[i]),
                              bool(working[i]), plan.p)
        new.cycle[i], new.since[i], new.still[i] = st.cycle, st.since, st.still
        judged[i], found[i] = j, bool(f)


def stall_findings(old: Stalls, new: Stalls, rows: Array, counter: Array, speeds: Array, ts: Array,
                   working: Array, plan: Plan) -> dict[int, list[Finding]]:
    """The findings of `rows` (the round's finding mask, as indices), built by `stall.step`
    itself, whose state must equal ours (an invariant: a mismatch is our bug)."""
    out: dict[int, list[Finding]] = {}
    for i in rows.tolist():
        st, f, judged = stall.step(state_at(old, i), plan.reading(float(counter[i]), speeds[i]), float(ts[i]),
                                   bool(working[i]), plan.p)
        if st != state_at(new, i) or not f or not judged:
            raise AssertionError(f"batch stall detector disagrees with stall.step on row {i}")
        out[i] = f
    return out

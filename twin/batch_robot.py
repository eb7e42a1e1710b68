"""The robot-level detectors of `twin.detect.robot` (clock skew, delivery, fault codes, seq gap)
over a round of rows at once.

`twin.detect.robot.observe` runs them once per event in Python: the stamp time `at`, then
either `_delivery` alone (a duplicate, stale or late event) or `_robot` (the report
interval's EMA, the skew counter, the decayed delivery and fault-code counts, the seq gap).
Here a *round* (each robot at most once, as in `twin.batch_reduce` and `twin.batch_signals`)
is judged with a few numpy operations for every row together:

* State is struct-of-arrays: `RobotWatches` holds the four numbers of `Watch` (interval,
  skew, delivery, codes), one row per robot slot; `watches_of` / `numbers_at` / `with_numbers`
  convert from / to the scalar struct, `take` / `put` gather and scatter a round's rows.
* A round's inputs are the columns of `Rows` (documented there); `rows_of` builds them from
  the scalar objects. Robots of models with different detector parameters may share a round:
  each row names its parameter set by index into a `ParamTable` (`pk`).
* `robot_round` returns the new state, the `at` column, the mask of rows with a finding and
  the mask of rows it could not hold in int64 (below). Findings are rare: `robot_findings`
  builds them for the masked rows only, by `_robot` / `_delivery` themselves (the same scores
  and evidence by construction), and checks that their numbers equal ours (an invariant).

Bit identity, and how it is kept:
* The interval is elementwise `+ - *` on float64 in the scalar expression's order; Python's
  `min(gap, 10 * interval)` keeps `gap` unless the other is strictly less, which is what
  `np.where(b < a, b, a)` does (np.minimum would differ on NaN). The comparisons of floats
  (`<=`, `>`) are IEEE in both.
* The decays are integer: `x * 95 // 100` is computed as `(x // 100) * 95 + (x % 100) * 95 // 100`,
  equal for every int64 `x` (Python's and numpy's `//` and `%` both floor), so the product
  never leaves int64. What can leave it is the addition after it (`delivery + 100`, `codes +
  100 * (codes + estop)`, `skew + 1`): such rows are flagged in `scalar`, keep their old state
  here, and must be folded by the scalar core (no robot reaches them from zero: that takes
  about 10**14 reports of one robot, but a loaded twin may hold any int64).
* A Python int compared with a float is compared exactly, while numpy would round an int64
  above 2**53 to float64 first. So the float thresholds (`delivery_hits * 100`,
  `codes_hits * 100`) become exact integer thresholds in `ParamTable` (`c >= t` is
  `c >= ceil(t)` for an int `c` and a finite `t`), with NaN and infinities decided as Python
  decides them (`count < nan` is False, so NaN `delivery_hits` fires on every count).

bench/robot_detectors.py measures `robot_round` against the scalar calls;
tests/unit/test_batch_robot.py checks it against them and against `twin.pipeline.feed`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from msgspec.structs import replace

from twin.detect.findings import Finding
from twin.detect.params import RobotDetectorParams
from twin.detect.robot import _delivery, _robot
from twin.detect.watch import Watch
from twin.effects import OUTCOMES, Effects, SeqGap
from twin.schema import Event
from twin.state import Twin

Array = npt.NDArray[Any]

I64_MIN, I64_MAX = -(2**63), 2**63 - 1
MAX_CODES = 32
"""`Event.codes` holds at most this many codes (twin.schema): `100 * (codes + 1)` fits easily."""
APPLIED = OUTCOMES.index("applied")
"""`Rows.outcome` is the index of the reducer's outcome in `twin.effects.OUTCOMES` (as in
`twin.batch_reduce`); every other outcome (late, duplicate, stale) is judged by `_delivery` only."""


class RobotWatches(NamedTuple):
    """The numbers of `Watch` the robot-level detectors keep, one row per robot."""

    interval: Array
    """float64: learned time between reports (broker time)."""
    skew: Array
    """int64: reports in a row with a clock off by more than `skew_s`."""
    delivery: Array
    """int64: decayed count of duplicates and out-of-order arrivals, x100."""
    codes: Array
    """int64: decayed count of fault codes and e-stops, x100."""


class Rows(NamedTuple):
    """A round's inputs, one row per event (each robot at most once).

    `has_before`: the robot had a twin before the event (`before` is not None); `last_seen`:
    that twin's `last_seen` (any value when it had none). `received`: the broker time;
    `ts`: the event time. `codes`: `len(event.codes)` (0..MAX_CODES); `estop`: the event's
    mode is "estop". `outcome`: the reducer's outcome as an index into `OUTCOMES`. `gap`: the
    `missing` count of the event's `SeqGap` (the reducer makes at most one), 0 when none.
    `pk`: the row's detector parameters, a row of the round's `ParamTable`."""

    has_before: Array
    last_seen: Array
    received: Array
    ts: Array
    codes: Array
    estop: Array
    outcome: Array
    gap: Array
    pk: Array


class Result(NamedTuple):
    """What a round gives: the new state of its rows, the stamp time of each row's anomaly
    messages, the rows with a finding, and the rows whose numbers would leave int64 (their
    state is the old one here: fold them with the scalar core; they are never in `found`)."""

    state: RobotWatches
    at: Array
    found: Array
    scalar: Array


class ParamTable:
    """The detector parameters a round reads, one row per parameter set (one per robot model,
    say), as exact integer thresholds. Row `k` is `params[k]`; rows of `Rows` carry `k` as `pk`."""

    def __init__(self, params: Sequence[RobotDetectorParams]) -> None:
        self.params = tuple(params)
        self.skew_s = np.array([p.skew_s for p in self.params], dtype=np.float64)
        skew = [_threshold(p.skew_reports, nan_fires=False) for p in self.params]
        delivery = [_threshold(p.delivery_hits * 100, nan_fires=True) for p in self.params]
        codes = [_threshold(p.codes_hits * 100, nan_fires=False) for p in self.params]
        (self.skew_min, self.skew_never), (self.delivery_min, self.delivery_never), (self.codes_min, self.codes_never) = (
            (np.array([t for t, _ in col], dtype=np.int64), np.array([n for _, n in col], dtype=bool))
            for col in (skew, delivery, codes))

    def index(self) -> dict[RobotDetectorParams, int]:
        """Each parameter set's row (the first, if one is listed twice)."""
        out: dict[RobotDetectorParams, int] = {}
        for k, p in enumerate(self.params):
            out.setdefault(p, k)
        return out


def _threshold(t: float | int, nan_fires: bool) -> tuple[int, bool]:
    """(least int64 count that fires, never fires) for a count compared with `t` as Python does:
    a count fires when `count >= t` (for the delivery check: when not `count < t`)."""
    if isinstance(t, float) and math.isnan(t):
        return (I64_MIN, False) if nan_fires else (I64_MAX, True)
    if t == math.inf:
        return I64_MAX, True
    if t == -math.inf:
        return I64_MIN, False
    least = math.ceil(t)
    return (I64_MAX, True) if least > I64_MAX else (max(least, I64_MIN), False)


# --- state conversion -------------------------------------------------------------------------

def empty(n: int) -> RobotWatches:
    """`n` robots with the numbers of `Watch()`."""
    return RobotWatches(np.zeros(n, dtype=np.float64), *(np.zeros(n, dtype=np.int64) for _ in range(3)))


def watches_of(ws: Sequence[Watch]) -> RobotWatches:
    """The arrays of scalar `Watch`es (OverflowError if a count is outside int64)."""
    return RobotWatches(np.array([float(w.interval) for w in ws], dtype=np.float64),
                        *(np.array([getattr(w, f) for w in ws], dtype=np.int64) for f in ("skew", "delivery", "codes")))


def numbers_at(w: RobotWatches, i: int) -> tuple[float, int, int, int]:
    """Row `i`'s (interval, skew, delivery, codes) as Python numbers."""
    return float(w.interval[i]), int(w.skew[i]), int(w.delivery[i]), int(w.codes[i])


def with_numbers(watch: Watch | None, w: RobotWatches, i: int) -> Watch:
    """The scalar `watch` (or `Watch()`) with row `i`'s numbers."""
    interval, skew, delivery, codes = numbers_at(w, i)
    return replace(watch or Watch(), interval=interval, skew=skew, delivery=delivery, codes=codes)


def take(w: RobotWatches, idx: Array) -> RobotWatches:
    """The rows `idx` (a copy): a round's state gathered from the store."""
    return RobotWatches(*(col[idx] for col in w))


def put(w: RobotWatches, idx: Array, part: RobotWatches) -> None:
    """Scatter a round's new state back into the store (in place)."""
    for dst, src in zip(w, part):
        dst[idx] = src


# --- inputs -----------------------------------------------------------------------------------

def rows_of(items: Sequence[tuple[Twin | None, Event, Effects, float]], pk: Sequence[int]) -> Rows:
    """The columns of (before, event, effects, received_ts) per row, with each row's parameter row."""
    gaps = [[c.missing for c in e.changes if isinstance(c, SeqGap)] for _, _, e, _ in items]
    if any(len(g) > 1 for g in gaps):
        raise ValueError("more than one SeqGap in one event's effects: the reducer makes at most one")
    return Rows(np.array([b is not None for b, _, _, _ in items], dtype=bool),
                np.array([b.last_seen if b is not None else 0.0 for b, _, _, _ in items], dtype=np.float64),
                np.array([r for _, _, _, r in items], dtype=np.float64),
                np.array([e.ts for _, e, _, _ in items], dtype=np.float64),
                np.array([len(e.codes) for _, e, _, _ in items], dtype=np.int64),
                np.array([e.mode == "estop" for _, e, _, _ in items], dtype=bool),
                np.array([OUTCOMES.index(e.outcome) for _, _, e, _ in items], dtype=np.int8),
                np.array([g[0] if g else 0 for g in gaps], dtype=np.int64),
                np.asarray(pk, dtype=np.int64))


# --- the round --------------------------------------------------------------------------------

def robot_round(w: RobotWatches, r: Rows, t: ParamTable) -> Result:
    """What `observe` does with the robot-level numbers of each row of a round (`w`: the rows'
    state before it, as `take` gives): the new state, `at`, the finding mask and the overflow mask."""
    if r.codes.size and (int(r.codes.min()) < 0 or int(r.codes.max()) > MAX_CODES):
        raise ValueError(f"a code count outside 0..{MAX_CODES}: not an Event's")
    pk = r.pk
    skew_s = t.skew_s[pk]
    offset = np.abs(r.ts - r.received)
    at = np.where(offset <= skew_s, r.ts, r.received)
    applied = r.outcome == APPLIED
    interval = _interval(w.interval, r)
    skewed = offset > skew_s
    skew = np.where(skewed, w.skew + 1, 0)  # wraps only where flagged below
    decayed = _decay(w.delivery)
    delivery = np.where(applied, decayed, w.delivery + 100)
    add = 100 * (r.codes + r.estop)
    kept = _decay(w.codes)
    codes = kept + add
    scalar = np.where(applied, (skewed & (w.skew == I64_MAX)) | (kept > I64_MAX - add), w.delivery > I64_MAX - 100)
    found = ~t.delivery_never[pk] & (delivery >= t.delivery_min[pk])
    found |= applied & (
        (~t.skew_never[pk] & (skew >= t.skew_min[pk])) | (~t.codes_never[pk] & (codes >= t.codes_min[pk]))
        | (r.gap >= 10))
    new = RobotWatches(np.where(applied, interval, w.interval), np.where(applied, skew, w.skew), delivery,
                       np.where(applied, codes, w.codes))
    if scalar.any():
        new = RobotWatches(*(np.where(scalar, old, col) for old, col in zip(w, new)))
    return Result(new, at, found & ~scalar, scalar)


def _interval(interval: Array, r: Rows) -> Array:
    """The report interval's EMA, as `_robot` learns it from the gap since `before.last_seen`."""
    with np.errstate(all="ignore"):
        gap = r.received - r.last_seen
        ten = 10 * interval
        smoothed = 0.9 * interval + 0.1 * np.where(ten < gap, ten, gap)  # min(gap, 10 * interval)
    learned = np.where(interval <= 0, gap, smoothed)
    return np.where(r.has_before & (r.received > r.last_seen), learned, interval)


def _decay(x: Array) -> Array:
    """`x * 95 // 100` exactly, for every int64 `x` (the product itself could leave int64)."""
    out: Array = (x // 100) * 95 + (x % 100) * 95 // 100
    return out


# --- findings on the masked rows --------------------------------------------------------------

Scalars = Callable[[int], tuple[Twin | None, Twin, Event, Effects]]
"""Row `i`'s (before, twin, event, effects), as `_robot` takes them (asked for found rows only)."""


def robot_findings(old: RobotWatches, res: Result, r: Rows, t: ParamTable, scalars: Scalars) -> dict[int, list[Finding]]:
    """The findings of the rows in `res.found`, built by `_robot` / `_delivery` themselves, whose
    numbers must equal ours (an invariant: a mismatch is our bug, and raises)."""
    rows = np.flatnonzero(res.found)
    before, after = (zip(*(col[rows].tolist() for col in w)) for w in (old, res.state))
    found: dict[int, list[Finding]] = {}
    for i, pk, outcome, received, (interval, skew, delivery, codes), now in zip(
            rows.tolist(), r.pk[rows].tolist(), r.outcome[rows].tolist(), r.received[rows].tolist(), before, after):
        p = t.params[pk]
        if outcome != APPLIED:
            count, f = _delivery(delivery + 100, p)
            same = count == now[2]
        else:
            prior, twin, event, effects = scalars(i)
            watch, f = _robot(Watch(interval=interval, skew=skew, delivery=delivery, codes=codes), prior, twin, event,
                              effects, received, p)
            same = _bits(watch) == (struct.pack("<d", now[0]), *now[1:])
        if not same or not f:
            raise AssertionError(f"batch robot detectors disagree with the scalar ones on row {i}")
        found[i] = f
    return found


def _bits(w: Watch) -> tuple[bytes, int, int, int]:
    """The numbers of a `Watch`, the interval as its bits (NaN equals itself, -0.0 is not 0.0)."""
    return struct.pack("<d", w.interval), w.skew, w.delivery, w.codes

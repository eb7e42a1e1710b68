"""The per-signal value detectors of `twin.detect.signals`, over many (robot, signal) cells at once.

`twin.detect.signals` judges one value of one signal per call (band, spike,
stuck, dropout, drift); `twin.detect.robot._signals` calls it per signal per
event, about a dozen Python calls an event. Here a *round* (each robot at most
once, as in `twin.batch_reduce`) is judged with one numpy operation per step
of each detector, for every cell of the round together:

* State is struct-of-arrays: `Watches` holds the numbers of `SignalWatch`
  (out, same, hits) and of its `Drift` (ref, level, spread, up, down, plus a
  flag for "no drift state yet"), one row per cell of a round. `watches_of` /
  `watch_at` convert from / to the scalar structs. `CellStore` keeps every
  cell between rounds, the drift numbers only for cells that have one.
* What every cell of a signal shares (nominal band, physical limits, which
  detectors skip it, its drift view) is a row of `Kinds`, looked up by a
  per-cell kind index.
* The round functions return the new state and a boolean mask of the cells
  with a finding. Findings are rare, so they are built in Python for those
  cells only, by the scalar function itself (the same scores and evidence by
  construction); that call also checks that its state equals ours.

Bit identity with the scalar functions, and how it is kept:
* Only elementwise + - * / on float64, np.sqrt (IEEE correctly rounded, as
  math.sqrt), abs, comparisons and integer floor division; evaluated in the same
  order as the scalar expressions. The counters are int32 and the spike hits
  int16: the scalar counters stop at `COUNTER_MAX` and hits never pass
  `HITS_MAX` (twin.detect.watch), so no value of either core is out of range.
* Python's `max(a, b, ...)` keeps the first argument unless a later one is
  strictly greater (so `max(0.0, nan)` is 0.0 and `max(nan, 1.0)` is nan, and
  of 0.0 and -0.0 the first wins); np.maximum propagates NaN and does not follow
  that rule, so `_pymax` / `_pymin` are `np.where(b > a, b, a)`, which does.
* `round(x)` on a float is round-half-to-even to a Python int, as np.rint is
  to an integral float; every integer of `Drift` comes from such a round (or
  is a small sum of tenths of a second, `ref`), so it is held exactly in a
  float64, and int / int true division (correctly rounded) equals the float
  division of the same exact values. `np.rint(-0.4)` is -0.0 where round gives
  0, so rounded values get `+ 0.0` (-0.0 + 0.0 is 0.0).
* What would raise in Python (round of inf or NaN, a division by a zero
  spread, math.sqrt of a negative variance) cannot be matched by numpy, which
  returns inf or NaN; those cells are sent to the scalar function (the sparse
  path), which raises exactly as the scalar core would. (When several cells of a round
  would raise different errors, which one surfaces may differ from the scalar loop's order.)

Not here: the trend reference's check against its cohort (`robot._against_cohort`, which
needs the cohort's rates; `signals_round` behaves as `_signals` with no rates), the
robot-level detectors, stall, cohort and the lifecycle. bench/signal_detectors.py measures
`signals_round` against the scalar calls; tests/unit/test_batch_signals.py checks it against
them, and against `_signals` on chaos and random report sequences.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from twin.detect import signals as sig
from twin.detect.findings import Finding
from twin.detect.params import RobotDetectorParams
from twin.detect.robot import drift_view
from twin.detect.watch import COUNTER_MAX, Drift, SignalWatch
from twin.fleet import Signal
from twin.state import SignalState

Array = npt.NDArray[Any]
Names = Sequence[str] | Mapping[int, str]
"""Each cell's signal name, by cell index (a mapping is enough: only the cells with a finding are read)."""

VIEW_NONE, VIEW_LEVEL, VIEW_TREND = 0, 1, 2
"""`Kinds.view`: the signal is not watched for drift, its level is, or its rate of change is."""

EXACT_INT = float(2**53)
"""Integers of `Drift` are kept in float64: exact below this (every round() of a float is
representable; only `ref`, a sum of steps, could leave the exact range, and `dt` is bounded)."""


class Drifts(NamedTuple):
    """The numbers of `Drift` per cell (integral float64 values) and whether the cell has one."""

    has: Array
    ref: Array
    level: Array
    spread: Array
    up: Array
    down: Array


COUNTS, HITS = np.int32, np.int16
"""The dtypes of `out` and `same` (`COUNTER_MAX` fits) and of `hits` (`HITS_MAX` fits): a cell's
counters in 10 bytes instead of 24."""


class Watches(NamedTuple):
    """The numbers of `SignalWatch` per cell: consecutive counters and decayed spike hits (`COUNTS`, `HITS`)."""

    out: Array
    same: Array
    hits: Array
    drift: Drifts


class Prior(NamedTuple):
    """Each cell's `SignalState` before the reading (`present` False: the scalar `before` is None)."""

    present: Array
    value: Array
    mean: Array
    var: Array


class Kinds:
    """What every cell of one signal of one robot model shares, for one parameter set.

    Row `k` is `entries[k]`; cells carry `k` as their kind. Models whose detector
    parameters differ need a `Kinds` each (the parameters are scalars of a round).
    """

    def __init__(self, entries: Sequence[tuple[str, Signal]], p: RobotDetectorParams) -> None:
        self.p = p
        self.names = tuple(name for name, _ in entries)
        self.specs = tuple(spec for _, spec in entries)
        self.lo = np.array([s.nominal[0] for s in self.specs], dtype=np.float64)
        self.hi = np.array([s.nominal[1] for s in self.specs], dtype=np.float64)
        self.lim_lo = np.array([s.limits[0] for s in self.specs], dtype=np.float64)
        self.lim_hi = np.array([s.limits[1] for s in self.specs], dtype=np.float64)
        self.band_skip = np.array([n in p.band_skip for n in self.names], dtype=bool)
        self.spike_skip = np.array([n in p.spike_skip for n in self.names], dtype=bool)
        self.stuck_skip = np.array([n in p.stuck_skip for n in self.names], dtype=bool)
        views = {None: VIEW_NONE, "level": VIEW_LEVEL, "trend": VIEW_TREND}
        self.view = np.array([views[drift_view(n, p)] for n in self.names], dtype=np.int8)


# --- state conversion -------------------------------------------------------------------------

def empty(n: int) -> Watches:
    """`n` cells of `SignalWatch()`: zero counters, no drift state."""
    f = np.zeros(n, dtype=np.float64)
    drifts = Drifts(np.zeros(n, dtype=bool), f, f.copy(), f.copy(), f.copy(), f.copy())
    return Watches(np.zeros(n, COUNTS), np.zeros(n, COUNTS), np.zeros(n, HITS), drifts)


def watches_of(ws: Sequence[SignalWatch]) -> Watches:
    """The arrays of scalar `SignalWatch`es (raises OverflowError for a drift integer outside the exact
    range, or a counter outside its dtype: neither comes from the detectors)."""
    ds = [w.drift or Drift() for w in ws]
    cols = [np.array([getattr(d, f) for d in ds], dtype=np.float64) for f in ("ref", "level", "spread", "up", "down")]
    for name, col in zip(("ref", "level", "spread", "up", "down"), cols):
        if any(float(v) != getattr(d, name) for v, d in zip(col.tolist(), ds)):
            raise OverflowError(f"Drift.{name} is not exact in float64")
    drifts = Drifts(np.array([w.drift is not None for w in ws], dtype=bool), *cols)
    return Watches(np.array([w.out for w in ws], COUNTS), np.array([w.same for w in ws], COUNTS),
                   np.array([w.hits for w in ws], HITS), drifts)


def drift_at(d: Drifts, i: int) -> Drift | None:
    """Cell `i`'s drift state as the scalar struct."""
    if not d.has[i]:
        return None
    return Drift(int(d.ref[i]), int(d.level[i]), int(d.spread[i]), int(d.up[i]), int(d.down[i]))


def watch_at(w: Watches, i: int) -> SignalWatch:
    """Cell `i` as the scalar `SignalWatch`."""
    return SignalWatch(int(w.out[i]), int(w.same[i]), int(w.hits[i]), drift_at(w.drift, i))


def to_watches(w: Watches) -> list[SignalWatch]:
    """Every cell as a scalar `SignalWatch`."""
    return [watch_at(w, i) for i in range(len(w.out))]


class CellStore:
    """Every cell's `SignalWatch` numbers, the drift numbers only for cells that have had a `Drift`.

    Only the signals a model watches for drift (level or trend) ever get one, under half of the
    cells of the seeds' fleet; their five float64 numbers and flag were 41 of the 65 bytes of a
    cell, at every cell. Here a cell holds its three counters and `dslot`, its row in the compact
    `drift` columns, given to the cell the first time it is `put` with a `Drift` and kept after
    (a cell whose drift is dropped writes `has` False there). Rounds read and write dense
    `Watches` through `take` and `put`, so no detector sees the layout.
    """

    def __init__(self, n: int) -> None:
        self.out: Array = np.zeros(n, COUNTS)
        self.same: Array = np.zeros(n, COUNTS)
        self.hits: Array = np.zeros(n, HITS)
        self.dslot: Array = np.full(n, -1, np.int32)
        self.drift = empty(0).drift
        self.ndrift = 0

    def __len__(self) -> int:
        return len(self.out)

    def take(self, idx: Array) -> Watches:
        """The cells `idx` (a copy): a round's state gathered from the store."""
        ds = self.dslot[idx]
        at = ds >= 0
        where = ds[at]
        drift = empty(len(idx)).drift
        for dst, src in zip(drift, self.drift):
            dst[at] = src[where]
        return Watches(self.out[idx], self.same[idx], self.hits[idx], drift)

    def put(self, idx: Array, part: Watches) -> None:
        """Scatter a round's new state back (in place; `idx` without repeats, as a round's cells are)."""
        self.out[idx], self.same[idx], self.hits[idx] = part.out, part.same, part.hits
        ds = self.dslot[idx]
        new = part.drift.has & (ds < 0)
        if new.any():
            ds[new] = self._rows(int(new.sum()))
            self.dslot[idx[new]] = ds[new]
        at = ds >= 0
        where = ds[at]
        for dst, src in zip(self.drift, part.drift):
            dst[where] = src[at]

    def move(self, src: Array, dst: Array) -> None:
        """Cells `src` to the fresh cells `dst`, drift rows handed over (none copied or left behind);
        `src` left `SignalWatch()`, ready to be used again."""
        for column in (self.out, self.same, self.hits, self.dslot):
            column[dst] = column[src]
        self.out[src], self.same[src], self.hits[src], self.dslot[src] = 0, 0, 0, -1

    def watch_at(self, i: int) -> SignalWatch:
        """Cell `i` as the scalar `SignalWatch` (read in place: `twin_of` calls it per cell)."""
        d = int(self.dslot[i])
        return SignalWatch(int(self.out[i]), int(self.same[i]), int(self.hits[i]),
                           drift_at(self.drift, d) if d >= 0 else None)

    def grown(self, n: int) -> CellStore:
        """A copy with room for `n` cells (new ones `SignalWatch()`); the drift rows are shared."""
        out = CellStore(n)
        have = len(self)
        for dst, src in zip((out.out, out.same, out.hits, out.dslot), (self.out, self.same, self.hits, self.dslot)):
            dst[:have] = src
        out.drift, out.ndrift = self.drift, self.ndrift
        return out

    def _rows(self, count: int) -> Array:
        """`count` new drift rows (no drift state), growing the columns by a quarter when full."""
        if self.ndrift + count > len(self.drift.has):
            cap = max(64, (self.ndrift + count) * 5 // 4)
            grown = empty(cap).drift
            for dst, src in zip(grown, self.drift):
                dst[: self.ndrift] = src[: self.ndrift]
            self.drift = grown
        rows = np.arange(self.ndrift, self.ndrift + count, dtype=np.int32)
        self.ndrift += count
        return rows


# --- Python's max/min, elementwise ------------------------------------------------------------

def _pymax(a: Array | float, b: Array | float) -> Array:
    """`max(a, b)` as Python computes it: `a` unless `b > a` (NaN and signed zeros included)."""
    return np.where(np.greater(b, a), b, a)


def _pymin(a: Array | float, b: Array | float) -> Array:
    """`min(a, b)` as Python computes it: `a` unless `b < a`."""
    return np.where(np.less(b, a), b, a)


def _round(x: Array) -> Array:
    """`round(x)` for finite floats, as an integral float64 (never -0.0)."""
    return np.rint(x) + 0.0


# --- band, spike, stuck -----------------------------------------------------------------------

def watch_round(w: Watches, kind: Array, value: Array, prior: Prior, operating: Array, k: Kinds) -> tuple[Watches, Array]:
    """`sig.watch_signal` for every cell of a round: the new counters (drift passes through) and
    the mask of cells for which it returns a finding."""
    p = k.p
    lo, hi = k.lo[kind], k.hi[kind]
    with np.errstate(all="ignore"):
        out, band = _band(w.out, value, lo, hi, operating & ~k.band_skip[kind], p)
        hits, spike = _spike(w.hits, value, lo, hi, prior, operating & ~k.spike_skip[kind], p)
    same, stuck = _stuck(w.same, value, prior, k.lim_lo[kind], k.lim_hi[kind], k.stuck_skip[kind], p)
    return Watches(out, same, hits, w.drift), band | spike | stuck


def _band(out: Array, value: Array, lo: Array, hi: Array, judged: Array, p: RobotDetectorParams) -> tuple[Array, Array]:
    margin = p.band_margin * (hi - lo)
    beyond = _pymax(lo - margin - value, value - hi - margin)
    reset = ~judged | (beyond <= 0)
    out = np.where(reset, 0, np.minimum(out, COUNTER_MAX - 1) + 1)  # saturates, as `sig._band` does
    return out, ~reset & (out >= p.band_reports)


def _spike(hits: Array, value: Array, lo: Array, hi: Array, prior: Prior, judged: Array,
           p: RobotDetectorParams) -> tuple[Array, Array]:
    hits = hits * 4 // 5
    judged = judged & prior.present
    if np.any(judged & (prior.var < 0)):
        raise ValueError("math domain error")  # what math.sqrt says to the scalar core
    width = hi - lo
    sd = np.sqrt(np.where(judged, prior.var, 0.0))
    z = np.abs(value - prior.mean) / _pymax(_pymax(sd, p.spike_std_floor * width), 1e-9)
    hits = np.where(judged & (z > p.spike_threshold), hits + 100, hits)
    return hits, judged & (hits >= p.spike_hits * 100)


def _stuck(same: Array, value: Array, prior: Prior, lim_lo: Array, lim_hi: Array, skip: Array,
           p: RobotDetectorParams) -> tuple[Array, Array]:
    at_limit = (value == lim_lo) | (value == lim_hi)
    reset = ~prior.present | (value != prior.value) | at_limit | skip
    same = np.where(reset, 0, np.minimum(same, COUNTER_MAX - 1) + 1)
    return same, ~reset & (same >= p.stuck_reports)


def prior_state(prior: Prior, i: int) -> SignalState | None:
    """Cell `i`'s `before` as the scalar detectors see it (only value, mean and var are read)."""
    if not prior.present[i]:
        return None
    return SignalState(float(prior.value[i]), None, None, None, float(prior.mean[i]), float(prior.var[i]))


def watch_findings(old: Watches, new: Watches, cells: Array, kind: Array, value: Array, prior: Prior,
                   operating: Array, k: Kinds) -> dict[int, list[Finding]]:
    """The findings of `cells` (the round's mask, as indices), built by `sig.watch_signal` itself,
    which must agree with the vectorised counters (an invariant: a mismatch is our bug)."""
    found: dict[int, list[Finding]] = {}
    for i in cells.tolist():
        j = int(kind[i])
        spec = k.specs[j]
        w, f = sig.watch_signal(watch_at(old, i), k.names[j], float(value[i]), prior_state(prior, i), spec,
                                bool(operating[i]), k.p)
        if (w.out, w.same, w.hits) != (int(new.out[i]), int(new.same[i]), int(new.hits[i])) or not f:
            raise AssertionError(f"batch signal detectors disagree with watch_signal on cell {i}")
        found[i] = f
    return found


# --- drift ------------------------------------------------------------------------------------

def drift_input(kind: Array, value: Array, prior: Prior, fresh: Array, dt: Array, k: Kinds) -> tuple[Array, Array]:
    """`twin.detect.robot._drift_input` per cell: (x, has x). `fresh`: the prior value came with
    the previous report (its time is the previous twin's ts), which a trend needs."""
    lo, hi = k.lo[kind], k.hi[kind]
    trend = k.view[kind] == VIEW_TREND
    with np.errstate(all="ignore"):
        width = _pymax(hi - lo, 1e-9)
        level = (value - lo) / width
        rate = (value - prior.value) / width / dt
    return np.where(trend, rate, level), ~trend | (prior.present & fresh)


def drift_round(d: Drifts, trend: Array, x: Array, dt: Array, p: RobotDetectorParams) -> tuple[Drifts, Array]:
    """`sig.drift` for every cell of a round (every cell is stepped): the new state and the mask of
    cells with a finding. Cells the scalar function would raise on go to it and raise."""
    unit = np.where(trend, sig.TREND_UNIT, sig.LEVEL_UNIT)
    full = round(p.drift_reference_s * 10)
    learning = d.ref < full
    with np.errstate(all="ignore"):
        q = x / unit
        learned, bad_l = _learn(d, q, dt, full)
        judged, found, bad_j = _judge(d, q, dt, trend, unit, p)
    new = Drifts(np.ones(len(x), dtype=bool), *(np.where(learning, a, b) for a, b in zip(learned, judged)))
    bad = np.where(learning, bad_l, bad_j)
    if np.any(bad):
        _scalar_drift(d, new, np.flatnonzero(bad), trend, x, dt, p)
    return new, ~learning & found


def _learn(d: Drifts, q: Array, dt: Array, full: int) -> tuple[tuple[Array, ...], Array]:
    """The learning branch: time-weighted sums, divided into the reference once it is full."""
    step = _pymax(np.rint(dt * 10), 1.0)
    ref = d.ref + step
    first = d.ref == 0
    spread = np.where(first, 0.0, d.spread + np.abs(q - d.level / np.where(first, 1.0, d.ref)) * step)
    level = d.level + q * step
    done = ref >= full
    level = np.where(done, level / ref, level)
    spread = np.where(done, spread / ref, spread)
    bad = ~(np.isfinite(dt * 10) & np.isfinite(level) & np.isfinite(spread)) | (ref >= EXACT_INT)
    zero = np.zeros(len(q))
    return (ref, _round(np.where(bad, 0.0, level)), _round(np.where(bad, 0.0, spread)), zero, zero), bad


def _judge(d: Drifts, q: Array, dt: Array, trend: Array, unit: Array,
           p: RobotDetectorParams) -> tuple[tuple[Array, ...], Array, Array]:
    """The CUSUM branch against a full reference."""
    floor = np.where(trend, p.trend_floor, p.drift_floor) / unit
    den = _pymax(1.25 * d.spread, floor)
    z = (q - d.level) / den
    cap = p.drift_cap * p.drift_threshold * 10
    up = _pymin(_pymax(0.0, d.up + (z - p.drift_allowance) * dt * 10), cap)
    down = _pymin(_pymax(0.0, d.down + (-z - p.drift_allowance) * dt * 10), cap)
    bad = (den == 0) | ~(np.isfinite(up) & np.isfinite(down))
    up, down = _round(np.where(bad, 0.0, up)), _round(np.where(bad, 0.0, down))
    stat = _pymax(up, down) / 10
    return (d.ref, d.level, d.spread, up, down), ~(stat < p.drift_threshold), bad


def _scalar_drift(old: Drifts, new: Drifts, cells: Array, trend: Array, x: Array, dt: Array,
                  p: RobotDetectorParams) -> None:
    """The sparse path: cells numpy cannot do as Python does (the scalar function raises on them)."""
    for i in cells.tolist():
        d, _ = sig.drift(drift_at(old, i), "", float(x[i]), float(dt[i]), bool(trend[i]), p)
        for col, v in zip(new[1:], (d.ref, d.level, d.spread, d.up, d.down)):
            if float(v) != v or abs(v) >= EXACT_INT and col is new.ref:
                raise OverflowError("Drift state outside the exact range of float64")
            col[i] = float(v)


def drift_findings(old: Drifts, new: Drifts, cells: Array, names: Names, trend: Array, x: Array,
                   dt: Array, p: RobotDetectorParams) -> dict[int, list[Finding]]:
    """The drift findings of `cells` (`names`: each cell's signal), built by `sig.drift` itself,
    whose state must equal ours."""
    found: dict[int, list[Finding]] = {}
    for i in cells.tolist():
        d, f = sig.drift(drift_at(old, i), names[i], float(x[i]), float(dt[i]), bool(trend[i]), p)
        if d != drift_at(new, i) or not f:
            raise AssertionError(f"batch drift disagrees with sig.drift on cell {i}")
        found[i] = f
    return found


# --- dropout ----------------------------------------------------------------------------------

def dropout_round(latest_seq: Array, seq: Array, p: RobotDetectorParams) -> Array:
    """`sig.dropout` per cell: the mask of signals missing from their robot's last reports
    (`seq`: the signal's newest seq; works for int64 and uint64 seqs, no wrap-around)."""
    return (latest_seq >= seq) & (latest_seq - seq >= p.dropout_reports)


def dropout_findings(cells: Array, names: Names, latest_seq: Array, seq: Array,
                     p: RobotDetectorParams) -> dict[int, list[Finding]]:
    """The dropout findings of `cells`, built by `sig.dropout`."""
    return {i: sig.dropout(names[i], int(latest_seq[i]), int(seq[i]), p) for i in cells.tolist()}


# --- all of a round, as twin.detect.robot._signals --------------------------------------------

class Round(NamedTuple):
    """One round's cells, in the order their findings are wanted (robot, then signal).

    Per cell: `present` (the event carries the signal and the model knows it; else the
    dropout check), `warm` (the robot is past its warm-up: findings count),
    `operating`, `maintenance`, `dt` (the settled working step, NaN when there is none),
    `fresh` (the prior value came with the previous report), and the robot's latest seq
    and the signal's own seq (for dropout)."""

    kind: Array
    present: Array
    value: Array
    prior: Prior
    warm: Array
    operating: Array
    maintenance: Array
    dt: Array
    fresh: Array
    latest_seq: Array
    seq: Array


def signals_round(w: Watches, r: Round, k: Kinds) -> tuple[Watches, dict[int, list[Finding]]]:
    """What `twin.detect.robot._signals` does for each cell of a round (without the cohort check of
    trend references, which needs the cohort's rates): new state, and findings by cell."""
    p = k.p
    r = r._replace(prior=r.prior._replace(present=r.prior.present & r.present))  # absent: not judged
    new, watch_mask = watch_round(w, r.kind, r.value, r.prior, r.operating & r.present, k)
    keep = ~r.present  # absent signals keep their state whole
    new = Watches(np.where(keep, w.out, new.out), np.where(keep, w.same, new.same), np.where(keep, w.hits, new.hits),
                  w.drift)
    view = k.view[r.kind]
    x, has_x = drift_input(r.kind, r.value, r.prior, r.fresh, r.dt, k)
    reset = r.present & r.maintenance & w.drift.has
    stepped = r.present & ~reset & ~np.isnan(r.dt) & (view != VIEW_NONE) & has_x
    idx = np.flatnonzero(stepped)
    trend = view[idx] == VIEW_TREND
    before = Drifts(*(col[idx] for col in w.drift))
    part, drift_mask = drift_round(before, trend, x[idx], r.dt[idx], p)
    if reset.any():  # serviced: the signal's reference is learned again
        drifts = Drifts(*(np.where(reset, False if col.dtype == bool else 0.0, col) for col in w.drift))
    else:
        drifts = Drifts(*(col.copy() for col in w.drift))
    for dst, src in zip(drifts, part):
        dst[idx] = src
    findings = _round_findings(w, new, r, k, watch_mask, (idx, before, part, drift_mask, x[idx], trend))
    return Watches(new.out, new.same, new.hits, drifts), findings


def _round_findings(old: Watches, new: Watches, r: Round, k: Kinds, watch_mask: Array,
                    stepped: tuple[Array, Drifts, Drifts, Array, Array, Array]) -> dict[int, list[Finding]]:
    """Findings by cell, in the scalar order: the value checks (if warm), then drift; dropout.
    `stepped`: the drift cells (indices), their state before and after, their mask, x and trend flags."""
    p = k.p
    found = watch_findings(old, new, np.flatnonzero(watch_mask & r.present & r.warm), r.kind, r.value, r.prior,
                           r.operating, k)
    idx, before, after, mask, x, trend = stepped
    sub = np.flatnonzero(mask)
    names = {int(j): k.names[r.kind[idx[j]]] for j in sub.tolist()}
    for j, f in drift_findings(before, after, sub, names, trend, x, r.dt[idx], p).items():
        found.setdefault(int(idx[j]), []).extend(f)
    absent = np.flatnonzero(~r.present & r.warm & dropout_round(r.latest_seq, r.seq, p))
    names = {i: k.names[r.kind[i]] for i in absent.tolist()}
    found.update(dropout_findings(absent, names, r.latest_seq, r.seq, p))
    return dict(sorted(found.items()))


def kinds_of(models: Mapping[str, Mapping[str, Signal]], p: RobotDetectorParams) -> tuple[Kinds, dict[tuple[str, str], int]]:
    """One `Kinds` over every (model, signal) of a fleet under one parameter set, and its index."""
    entries = [(model, name, spec) for model, sigs in models.items() for name, spec in sigs.items()]
    return Kinds([(n, s) for _, n, s in entries], p), {(m, n): i for i, (m, n, _) in enumerate(entries)}

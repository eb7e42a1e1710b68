"""The Numenta Anomaly Benchmark (NAB v1.x) scoring rule, as pure functions.

Written from NAB's documentation and its `nab/sweeper.py` / `sweep_optimizer.py`
(read for understanding, not copied), so that our detectors are scored by the
same rule as NAB's published scoreboard. No I/O: inputs are arrays and lists.

The rule, per file of `n` rows fed in time order:

* Probation: rows `i < min(floor(0.15 n), 0.15 * 5000)` (at most 750) are
  not scored at all: a detector needs time to learn.
* A row is a detection when its score is `>= threshold`.
* Every row carries a weight, fixed by its position only:
  - inside a window of `w` rows whose last row is `r`: the scaled sigmoid of
    `-(r - i + 1) / w`, divided by its value at the window's left edge, times
    the TP weight (1.0 at the first row, falling towards 0 at the right edge);
  - after a window (last row `r`, `w` rows): the scaled sigmoid of
    `(i - r) / (w - 1)` times the FP weight (about 0 just after the window,
    -FP weight from three window lengths on);
  - before the first window: -FP weight.
* Per window only the earliest detection counts (the largest weight); a
  window without detection costs -FN weight (a window lying wholly in
  probation is not scored). Every detection outside windows adds its
  (negative) weight.
* Corpus: raw scores add up; normalised = 100 (S - S_null) / (S_perfect -
  S_null), S_perfect = windows x TP weight, S_null = -windows x FN weight
  (the score of a detector that never fires).
* Threshold: NAB picks, per detector and profile, the one threshold that
  maximises the corpus raw score (in-sample), ties to the highest threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec
import numpy as np
from numpy.typing import NDArray

PROBATION_FRACTION = 0.15
"""Share of each file's rows that is never scored (NAB's default)."""

PROBATION_CAP_ROWS = 5000
"""NAB caps probation at `PROBATION_FRACTION * 5000` rows, i.e. 750."""

OUTSIDE = -1
"""Window id of a scored row outside every window."""

UNSCORED = -2
"""Window id of a probation row: excluded from everything."""

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]


class Costs(msgspec.Struct, frozen=True):
    """The weights of one NAB application profile (config/profiles.json)."""

    tp: float
    fp: float
    fn: float


PROFILES: dict[str, Costs] = {
    "standard": Costs(tp=1.0, fp=0.11, fn=1.0),
    "reward_low_FP_rate": Costs(tp=1.0, fp=0.22, fn=1.0),
    "reward_low_FN_rate": Costs(tp=1.0, fp=0.11, fn=2.0),
}
"""NAB's three profiles, as published in config/profiles.json."""


class Layout(msgspec.Struct, frozen=True):
    """What NAB knows about each row of one file before seeing any score.

    `window[i]` is the index of the window row i lies in (`OUTSIDE`,
    `UNSCORED` for probation); `sigmoid[i]` its unweighted position value:
    in a window the scaled sigmoid of its relative position, outside the one
    of its distance past the previous window (-1 before any window).
    """

    window: Ints
    sigmoid: Floats
    n_windows: int


class FileScore(msgspec.Struct, frozen=True):
    """A file's raw NAB score and NAB's row counts (probation rows excluded)."""

    score: float
    tp: int
    fp: int
    fn: int
    tn: int


class Sweep(msgspec.Struct, frozen=True):
    """Corpus raw score for every distinct threshold, highest threshold first.

    `thresholds[0]` is above every score (nothing detected), then one entry per
    distinct detector score `t`, holding the score when rows `>= t` fire.
    """

    thresholds: Floats
    scores: Floats


def sigmoid(x: float) -> float:
    """The logistic function."""
    return 1.0 / (1.0 + math.exp(-x))


def scaled_sigmoid(position: float) -> float:
    """NAB's reward/penalty of a detection at a relative position.

    -1 is a window's left edge (0.98661), 0 its right edge (0), positive values
    lie after the window (-0.98661 at one window length); from 3 on it is -1.
    """
    if position >= 3.0:
        return -1.0
    return 2.0 * sigmoid(-5.0 * position) - 1.0


MAX_TP = scaled_sigmoid(-1.0)
"""Sigmoid at a window's left edge: NAB divides by it so an immediate detection earns 1."""


def probation_rows(n_rows: int, fraction: float = PROBATION_FRACTION) -> int:
    """How many leading rows are probation: min(floor(f n), f 5000)."""
    limit = min(math.floor(fraction * n_rows), fraction * PROBATION_CAP_ROWS)
    return math.ceil(limit)


def window_spans(timestamps: Sequence[float] | Floats, windows: Sequence[tuple[float, float]]) -> list[tuple[int, int]]:
    """Row index spans `(first, last)` of each window, inclusive.

    A window covers the rows whose timestamp lies in `[start, end]`. NAB's
    label windows start and end on row timestamps, where this is exactly
    NAB's rule; windows must be sorted, disjoint and non-empty.
    """
    ts = np.asarray(timestamps, dtype=np.float64)
    spans: list[tuple[int, int]] = []
    for start, end in windows:
        first = int(np.searchsorted(ts, start, side="left"))
        last = int(np.searchsorted(ts, end, side="right")) - 1
        if last < first:
            raise ValueError(f"window [{start}, {end}] contains no row")
        if spans and first <= spans[-1][1]:
            raise ValueError("windows overlap or are out of order")
        spans.append((first, last))
    return spans


def layout(n_rows: int, spans: Sequence[tuple[int, int]], fraction: float = PROBATION_FRACTION) -> Layout:
    """Each row's window and position value, the part of NAB's score that needs no detector."""
    window = np.full(n_rows, OUTSIDE, dtype=np.int64)
    value = np.full(n_rows, -1.0)  # before any window: as far away as it gets
    idx = np.arange(n_rows)
    for k, (first, last) in enumerate(spans):
        width = last - first + 1
        inside = slice(first, last + 1)
        window[inside] = k
        value[inside] = [scaled_sigmoid(-(last - i + 1) / width) for i in range(first, last + 1)]
        nxt = spans[k + 1][0] if k + 1 < len(spans) else n_rows
        after = idx[last + 1 : nxt]
        # A one-row window has no length to measure distance by: treat as far.
        value[last + 1 : nxt] = [scaled_sigmoid((i - last) / (width - 1)) if width > 1 else -1.0 for i in after]
    window[: probation_rows(n_rows, fraction)] = UNSCORED
    return Layout(window=window, sigmoid=value, n_windows=len(spans))


def row_weights(lay: Layout, costs: Costs) -> Floats:
    """Weight each row would add if detected: TP-weighted in windows, FP-weighted outside."""
    inside = lay.window >= 0
    tp = lay.sigmoid * costs.tp / MAX_TP
    fp = lay.sigmoid * costs.fp
    return np.where(inside, tp, fp)


def score_file(scores: Sequence[float] | Floats, lay: Layout, threshold: float, costs: Costs) -> FileScore:
    """Raw NAB score of one file at a threshold (rows with score >= threshold fire)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.shape[0] != lay.window.shape[0]:
        raise ValueError("one score per row")
    fired = s >= threshold
    scored = lay.window != UNSCORED
    outside = lay.window == OUTSIDE
    weights = row_weights(lay, costs)
    total = float(np.sum(weights[fired & outside]))
    for k in range(lay.n_windows):
        rows = lay.window == k
        if not np.any(rows):
            continue  # entirely in probation: NAB does not score it at all
        hits = weights[fired & rows]
        total += max(float(hits.max()), -costs.fn) if hits.size else -costs.fn
    inside = scored & ~outside
    return FileScore(
        score=total,
        tp=int(np.sum(fired & inside)),
        fp=int(np.sum(fired & outside)),
        fn=int(np.sum(~fired & inside)),
        tn=int(np.sum(~fired & outside)),
    )


def sweep(scores: Sequence[Floats], layouts: Sequence[Layout], costs: Costs) -> Sweep:
    """Corpus raw score at every threshold, as NAB's optimiser sweeps it.

    All scored rows of all files are pooled and lowered through in score
    order; each distinct score is a candidate threshold. A window's
    contribution moves from -FN to the largest weight fired in it so far.
    """
    rows_s, rows_w, rows_win = [], [], []
    offset = 0
    for s, lay in zip(scores, layouts, strict=True):
        keep = lay.window != UNSCORED
        rows_s.append(np.asarray(s, dtype=np.float64)[keep])
        rows_w.append(row_weights(lay, costs)[keep])
        win = lay.window[keep]
        rows_win.append(np.where(win >= 0, win + offset, OUTSIDE))
        offset += lay.n_windows
    s_all, w_all, win_all = np.concatenate(rows_s), np.concatenate(rows_w), np.concatenate(rows_win)
    order = np.argsort(-s_all, kind="stable")
    s_sorted, w_sorted, win_sorted = s_all[order], w_all[order], win_all[order]

    delta = np.where(win_sorted == OUTSIDE, w_sorted, 0.0)
    scored_windows = 0
    for k in range(offset):
        at = np.flatnonzero(win_sorted == k)
        if at.size == 0:
            continue  # entirely in probation: not scored
        scored_windows += 1
        best = np.maximum.accumulate(np.maximum(w_sorted[at], -costs.fn))
        delta[at] = np.diff(best, prepend=-costs.fn)
    start = -costs.fn * scored_windows
    running = start + np.cumsum(delta)

    last_of_value = np.flatnonzero(np.append(s_sorted[1:] != s_sorted[:-1], True))
    top = max(1.1, float(s_sorted[0]) + 1.0) if s_sorted.size else 1.1
    thresholds = np.concatenate([[top], s_sorted[last_of_value]])
    totals = np.concatenate([[start], running[last_of_value]])
    return Sweep(thresholds=thresholds, scores=totals)


def best_threshold(sw: Sweep) -> tuple[float, float]:
    """NAB's in-sample choice: the threshold with the highest corpus score, ties to the highest threshold."""
    i = int(np.argmax(sw.scores))
    return float(sw.thresholds[i]), float(sw.scores[i])


def null_score(n_windows: int, costs: Costs) -> float:
    """Raw score of a detector that never fires: every window missed."""
    return -costs.fn * n_windows


def perfect_score(n_windows: int, costs: Costs) -> float:
    """Raw score of a detector firing at each window's first row and nowhere else."""
    return costs.tp * n_windows


def normalise(raw: float, n_windows: int, costs: Costs) -> float:
    """NAB's reported figure: 0 for the null detector, 100 for the perfect one."""
    null = null_score(n_windows, costs)
    return 100.0 * (raw - null) / (perfect_score(n_windows, costs) - null)

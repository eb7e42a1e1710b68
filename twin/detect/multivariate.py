"""Multivariate detector: shrunk Mahalanobis distance to a learned normal baseline.

Why Mahalanobis with shrinkage, not PCA T-squared + Q: tried side by side on
SKAB with the same smoothing, they reached the same point (PCA with 3
components F1 0.787 at FAR 13.4 %, shrunk Mahalanobis 0.786 at 13.6 %), but
Mahalanobis needs only a mean and a covariance, which an exponentially
weighted estimator keeps exactly, so a cohort baseline can be learned row by
row with no eigendecomposition and no rank to choose.

Two ways to get a `Baseline`:

* `fit(rows, params)`: from a matrix of normal rows (one row per reading);
* `update(baseline, x, params)`: one row at a time, exponentially weighted, so
  the baseline of a robot model can be learned from the whole cohort of
  robots of that model. With `forget=0` it is the exact running mean and
  (population) covariance and agrees with `fit` on the same rows.

Scoring, per stream (per robot), by `step(state, baseline, x, ts, params)`:

1. raw = d^2 / p, the squared Mahalanobis distance of x to the baseline mean
   under the shrunk covariance, divided by the dimension: about 1 on normal
   rows whatever p is, so one threshold serves any number of signals;
2. capped at `cap` times the threshold, so one absurd row cannot hold an
   alarm for minutes;
3. smoothed in event time, rising with time constant `rise_s` and falling
   with `fall_s`: sustained deviations add up, lone spikes do not, and an
   alarm outlives the last bad row by a few seconds;
4. hysteresis: the alarm turns on when the smoothed level reaches
   `threshold`, off when it falls under `release * threshold`.

The score returned is normalised: level / (threshold * (release if alarmed
else 1)), so **score >= 1 exactly when the alarm is on**; it jumps by
1 / release when the alarm opens. The per-stream `State` is three floats and a
bool (29 bytes as msgpack).

Offline (eval, benchmarks) a whole stream is scored by `stream`: the same
`_advance` rule as `step`, with the distances batched (`distances_at`) and
followed by `follow`, so a threshold search reuses one batch of distances.

Optionally (`smooth_s` > 0) the input rows are averaged in event time before
the distance (`smooth_input`, a multivariate EWMA chart): a small sustained
shift stands out of the noise that way, where averaging d^2 adds the noise's
variance to it. That stage keeps its own p + 1 numbers per stream (`Inputs`).

Operating points (`Operating`, `fit_operating`): one baseline per mode or
speed set-point seen in normal data; a numeric point between two seen ones
gets a baseline interpolated between them, and a point never seen answers
None, "unknown operating point": the row is not scored and never alarms,
rather than every row of a new regime being called anomalous.

Robust fit: `trim` drops the farthest share of the normal rows after a
first fit and refits (the reweighting step of robust covariance estimators).

Pure and deterministic: numpy only, no I/O, no clock; the same inputs give
the same bits.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import NamedTuple

import msgspec
import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float64]


class MultivariateParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Tuning of the detector; the defaults are the frozen SKAB parameter set."""

    shrinkage: float = 0.2
    """Weight of the diagonal in the shrunk covariance, 0..1. 400 rows estimate
    the correlations of 6..30 signals poorly; pulling them towards 0 keeps
    distances stable (0.1..0.5 score alike on SKAB; more would hide
    the off-correlation deviations this detector exists for)."""
    ridge: float = 1e-6
    """Added to every variance, relative to the mean variance, so a constant
    signal does not make the covariance singular."""
    min_var: float = 1e-12
    """Absolute variance floor, for a baseline whose signals are all constant."""
    forget: float = 0.0
    """Smallest per-row weight of the incremental estimator (0 = running mean
    forever). 1e-3 remembers about the last 1,000 cohort rows."""
    min_weight: float = 20.0
    """Rows a baseline must have seen before `step` trusts it (score 0 before)."""
    threshold: float = 2.9
    """Alarm level of the smoothed d^2/p (about 1 on normal rows)."""
    release: float = 0.6
    """The alarm closes when the smoothed level falls under release * threshold."""
    cap: float = 4.0
    """Raw d^2/p is capped at cap * threshold before smoothing."""
    rise_s: float = 3.0
    """Time constant (s) of the smoothing while the raw value is above the level."""
    fall_s: float = 20.0
    """Time constant (s) of the smoothing while the raw value is below the level."""
    smooth_s: float = 0.0
    """Time constant (s) of an exponential average of the input rows taken before the
    distance (`Inputs`, the multivariate EWMA chart of Lowry et al., 1992). Averaging
    the readings lets a small sustained shift stand out of the noise; averaging the
    distance (`rise_s`, `fall_s`) adds the noise's own variance to it. The baseline
    is then fitted on rows averaged the same way. 0: off (the cohort detector)."""
    trim: float = 0.0
    """Share of the normal rows farthest from a first fit that `fit` drops before
    refitting (robust reweighting); 0 fits every row."""


DEFAULT = MultivariateParams()


class Baseline(msgspec.Struct, frozen=True, array_like=True):
    """The learned normal behaviour: mean, covariance and its shrunk inverse.

    Tuples, not arrays, so it serialises with msgspec like the rest of the
    twin; `cov` and `precision` are p x p, row-major.
    """

    mean: tuple[float, ...]
    cov: tuple[float, ...]
    """Population covariance (divided by the weight, not weight - 1)."""
    weight: float
    """Rows seen (effective count once forgetting applies)."""
    precision: tuple[float, ...]
    """Inverse of the shrunk covariance; what `step` uses."""

    @property
    def dim(self) -> int:
        return len(self.mean)


class Inputs(msgspec.Struct, frozen=True, array_like=True):
    """Per-stream average of the input rows when `smooth_s` > 0: p + 1 numbers."""

    values: tuple[float, ...]
    ts: float
    """Event time of the newest complete row averaged in."""


def smooth_input(prev: Inputs | None, x: Vector, ts: float, params: MultivariateParams = DEFAULT) -> Inputs | None:
    """The input average after one more row: weight 1 - exp(-dt / smooth_s), as `smooth`.

    A row with a missing value is not averaged in (the average stays, None
    before the first complete row); with `smooth_s` 0 the average is the row.
    """
    row = np.asarray(x, dtype=np.float64)
    if not bool(np.isfinite(row).all()):
        return prev
    if prev is None or params.smooth_s <= 0:
        return Inputs(values=tuple(float(v) for v in row), ts=ts)
    alpha = 1.0 - math.exp(-max(ts - prev.ts, 0.0) / params.smooth_s)
    old = _as_vector(prev.values)
    return Inputs(values=tuple(float(v) for v in old + alpha * (row - old)), ts=max(ts, prev.ts))


def smooth_rows(rows: Vector, ts: Vector, params: MultivariateParams = DEFAULT) -> Vector:
    """`smooth_input` over a stream's rows in time order: the averaged row at each row
    (NaN before the first complete one); the rows themselves when `smooth_s` is 0."""
    data = np.asarray(rows, dtype=np.float64)
    if params.smooth_s <= 0:
        return data
    out = np.full(data.shape, np.nan)
    state: Inputs | None = None
    for i in range(len(data)):
        state = smooth_input(state, data[i], float(ts[i]), params)
        if state is not None:
            out[i] = state.values
    return out


class State(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """Per-stream state: the smoothed level and the hysteresis flag."""

    level: float
    """Smoothed, capped d^2/p."""
    ts: float
    """Event time of the newest row seen (rows never move it backwards)."""
    alarm: bool
    """Whether the alarm is open (hysteresis)."""
    since: float
    """Event time the current alarm opened (or closed, when alarm is False)."""


def _as_vector(values: tuple[float, ...] | Vector) -> Vector:
    return np.asarray(values, dtype=np.float64)


def _matrix(values: tuple[float, ...], p: int) -> Vector:
    return np.asarray(values, dtype=np.float64).reshape(p, p)


def _pack(matrix: Vector) -> tuple[float, ...]:
    return tuple(float(v) for v in matrix.ravel())


def shrunk(cov: Vector, params: MultivariateParams = DEFAULT) -> Vector:
    """Covariance with its correlations pulled towards 0, ridged to be invertible.

    The target keeps the variances and drops the correlations, with a fixed
    weight `shrinkage`: a few hundred rows estimate variances well but
    correlations poorly, and a spurious tight correlation would make an
    ordinary row look far away.
    """
    var = np.maximum(np.diag(cov), params.min_var)
    mixed = (1.0 - params.shrinkage) * cov + params.shrinkage * np.diag(var)
    ridge = params.ridge * float(var.mean()) + params.min_var
    return mixed + ridge * np.eye(len(var))


def _baseline(mean: Vector, cov: Vector, weight: float, params: MultivariateParams) -> Baseline:
    precision = np.linalg.inv(shrunk(cov, params))
    return Baseline(
        mean=tuple(float(v) for v in mean),
        cov=_pack(cov),
        weight=float(weight),
        precision=_pack(0.5 * (precision + precision.T)),
    )


def from_moments(mean: Vector, cov: Vector, weight: float, params: MultivariateParams = DEFAULT) -> Baseline:
    """A baseline from a mean and (population) covariance accumulated elsewhere, e.g. from
    running sums over a cohort (twin.detect.cohort)."""
    return _baseline(np.asarray(mean, dtype=np.float64), np.asarray(cov, dtype=np.float64), weight, params)


def fit(rows: Vector, params: MultivariateParams = DEFAULT) -> Baseline:
    """Baseline from a matrix of normal rows (n x p), n >= 1.

    With `trim` > 0 the fit is reweighted once, as robust covariance
    estimators (MCD) do: the `trim` share of rows farthest from a first fit
    is dropped and the rest refitted, so a few glitches in rows labelled
    normal (a sensor dropout, a bump) do not widen the baseline.
    """
    data = np.asarray(rows, dtype=np.float64)
    if data.ndim != 2 or data.shape[0] < 1:
        raise ValueError(f"fit needs an n x p matrix with n >= 1, got shape {data.shape}")
    first = _moments(data, params)
    keep = int(round(data.shape[0] * (1.0 - params.trim)))
    if params.trim <= 0 or keep < 2 or keep >= data.shape[0]:
        return first
    near = np.argsort(distances(first, data), kind="stable")[:keep]
    refit = _moments(data[np.sort(near)], params)
    return Baseline(mean=refit.mean, cov=refit.cov, weight=float(data.shape[0]), precision=refit.precision)


def _moments(data: Vector, params: MultivariateParams) -> Baseline:
    mean = data.mean(axis=0)
    centred = data - mean
    cov = centred.T @ centred / data.shape[0]
    return _baseline(mean, cov, data.shape[0], params)


def update(
    baseline: Baseline | None,
    x: Vector,
    params: MultivariateParams = DEFAULT,
) -> Baseline:
    """The baseline after one more normal row: exponentially weighted mean/cov.

    The row weight is 1/n while that is above `forget` (so the first rows give
    the exact running mean and covariance) and `forget` after: old cohort
    behaviour fades, with memory about 1/forget rows. Recomputes the shrunk
    inverse, O(p^3): cheap for the few dozen signals of a robot model. A row
    with a missing (non-finite) value is not learned from.
    """
    row = np.asarray(x, dtype=np.float64)
    if not bool(np.isfinite(row).all()):
        if baseline is None:
            raise ValueError("the first row of a baseline must be complete")
        return baseline
    if baseline is None:
        return _baseline(row, np.zeros((len(row), len(row))), 1.0, params)
    weight = baseline.weight + 1.0
    alpha = max(1.0 / weight, params.forget)
    mean = _as_vector(baseline.mean)
    delta = row - mean
    cov = (1.0 - alpha) * (_matrix(baseline.cov, baseline.dim) + alpha * np.outer(delta, delta))
    weight = min(weight, 1.0 / params.forget) if params.forget > 0 else weight
    return _baseline(mean + alpha * delta, cov, weight, params)


def distance(baseline: Baseline, x: Vector) -> float:
    """d^2 / p: squared Mahalanobis distance per dimension (about 1 when normal)."""
    delta = np.asarray(x, dtype=np.float64) - _as_vector(baseline.mean)
    precision = _matrix(baseline.precision, baseline.dim)
    return float(delta @ precision @ delta) / baseline.dim


def smooth(level: float, raw: float, dt: float, params: MultivariateParams = DEFAULT) -> float:
    """Exponential smoothing in event time, faster up than down.

    Weight 1 - exp(-dt / tau): a row at the same instant as the previous one
    adds nothing, a row after a long gap replaces the level.
    """
    return _smooth(level, raw, dt, params.rise_s, params.fall_s)


def _smooth(level: float, raw: float, dt: float, rise_s: float, fall_s: float) -> float:
    tau = rise_s if raw > level else fall_s
    alpha = 1.0 - math.exp(-(dt if dt > 0.0 else 0.0) / tau) if tau > 0 else 1.0
    return level + alpha * (raw - level)


class _Rule(NamedTuple):
    """The numbers `_advance` needs, worked out once per parameter set (it runs per row)."""

    cap: float
    """cap * threshold."""
    on: float
    """The level an alarm opens at: threshold."""
    off: float
    """The level under which an open alarm closes: threshold * release."""
    rise_s: float
    fall_s: float


def _rule(params: MultivariateParams) -> _Rule:
    return _Rule(params.cap * params.threshold, params.threshold * 1.0, params.threshold * params.release,
                 params.rise_s, params.fall_s)


def _score(state: State, params: MultivariateParams) -> float:
    return _normalised(state.level, state.alarm, params)


def _normalised(level: float, alarm: bool, params: MultivariateParams) -> float:
    """level / the level the alarm flips at from here: >= 1 exactly while the alarm is open."""
    rule = _rule(params)
    return level / (rule.off if alarm else rule.on)


def step(
    state: State | None,
    baseline: Baseline,
    x: Vector,
    ts: float,
    params: MultivariateParams = DEFAULT,
) -> tuple[State, float]:
    """Score one row of a stream; returns the new state and the normalised score.

    Score >= 1 means the alarm is open. Rows with a non-finite value, and any
    row before the baseline has `min_weight` rows, leave the state unchanged
    (score from the current level; 0 with no state yet).
    """
    row = np.asarray(x, dtype=np.float64)
    if baseline.weight < params.min_weight or not bool(np.isfinite(row).all()):
        return _hold(state, ts, params)
    return advance(state, distance(baseline, row), ts, params)


def advance(state: State | None, raw: float, ts: float, params: MultivariateParams = DEFAULT) -> tuple[State, float]:
    """The state after one scored row whose d^2/p is `raw`: cap, smooth in event time, hysteresis.

    `step` is `distance` then this; `follow` (offline, many rows) runs the
    same `_advance` on plain numbers, so both apply one rule.
    """
    prev = (state.level, state.ts, state.alarm, state.since) if state is not None else None
    new = State(*_advance(prev, raw, ts, _rule(params)))
    return new, _score(new, params)


def _advance(
    prev: tuple[float, float, bool, float] | None, raw: float, ts: float, rule: _Rule
) -> tuple[float, float, bool, float]:
    """(level, ts, alarm, since) after one row; `State`'s fields as a tuple (fast in a loop)."""
    cap, on, off, rise_s, fall_s = rule
    if raw > cap:
        raw = cap
    if prev is None:
        level, last, prev_alarm, since = raw, ts, False, ts
    else:
        level, last, prev_alarm, since = prev
        level = _smooth(level, raw, ts - last, rise_s, fall_s)
        if ts > last:
            last = ts
    alarm = level >= (off if prev_alarm else on)
    return level, last, alarm, ts if alarm != prev_alarm else since


def _hold(state: State | None, ts: float, params: MultivariateParams) -> tuple[State, float]:
    """A row that is not scored: the state as it was (an idle one if there is none yet)."""
    return (state, _score(state, params)) if state is not None else (_idle(ts), 0.0)


def _idle(ts: float) -> State:
    return State(level=0.0, ts=ts, alarm=False, since=ts)


def distances(baseline: Baseline, rows: Vector) -> Vector:
    """`distance` of every row of an n x p matrix at once (NaN where a value is missing)."""
    delta = np.asarray(rows, dtype=np.float64) - _as_vector(baseline.mean)
    precision = _matrix(baseline.precision, baseline.dim)
    return np.asarray(np.einsum("ij,jk,ik->i", delta, precision, delta) / baseline.dim, dtype=np.float64)


def stream(
    baselines: Sequence[Baseline | None],
    rows: Vector,
    ts: Vector,
    params: MultivariateParams = DEFAULT,
    state: State | None = None,
) -> tuple[State | None, Vector]:
    """Score a whole stream in time order, as `step` row after row would, with the
    distances computed in one batch; for offline scoring (eval, benchmarks).

    `baselines[i]` is the baseline in force at row i (the same object for every
    row of one operating point), None where the operating point is unknown
    (`Operating.at`). Returns the final state and the scores (see `follow`).
    """
    raw, known = distances_at(baselines, rows, params)
    return follow(raw, ts, params, known, state)


def distances_at(
    baselines: Sequence[Baseline | None],
    rows: Vector,
    params: MultivariateParams = DEFAULT,
) -> tuple[Vector, npt.NDArray[np.bool_]]:
    """d^2/p of each row to the baseline in force at it, batched per baseline, and
    whether its operating point is known. NaN where `step` would not score the
    row (a missing value, a baseline under `min_weight` rows, an unknown point)."""
    data = np.asarray(rows, dtype=np.float64)
    raw = np.full(len(data), np.nan)
    known = np.array([b is not None for b in baselines], dtype=bool)
    groups: dict[int, list[int]] = {}
    for i, base in enumerate(baselines):
        if base is not None and base.weight >= params.min_weight:
            groups.setdefault(id(base), []).append(i)
    for index in groups.values():
        base = baselines[index[0]]
        assert base is not None
        raw[index] = distances(base, data[index])
    return raw, known


def follow(
    raw: Vector,
    ts: Vector,
    params: MultivariateParams = DEFAULT,
    known: npt.NDArray[np.bool_] | None = None,
    state: State | None = None,
) -> tuple[State | None, Vector]:
    """`advance` over precomputed d^2/p values in time order: what a stream of `step` calls gives.

    A NaN in `raw` (a missing value, an untrained baseline) holds the state,
    as `step` does. A row with `known` False is at an unknown operating point:
    not scored, state untouched, score NaN, never an alarm. Kept apart from
    the distances so a threshold search reuses one batch of them.
    """
    values = np.asarray(raw, dtype=np.float64).tolist()
    times = np.asarray(ts, dtype=np.float64).tolist()
    usable = [True] * len(values) if known is None else np.asarray(known, dtype=bool).tolist()
    scores = [math.nan] * len(values)
    fields = (state.level, state.ts, state.alarm, state.since) if state is not None else None
    rule = _rule(params)
    isfinite = math.isfinite
    for i, (value, t) in enumerate(zip(values, times, strict=True)):
        if not usable[i]:
            continue
        if isfinite(value):
            fields = _advance(fields, value, t, rule)
        elif fields is None:
            fields = (0.0, t, False, t)
        scores[i] = fields[0] / (rule.off if fields[2] else rule.on)
    return (State(*fields) if fields is not None else None), np.asarray(scores, dtype=np.float64)


class Operating(msgspec.Struct, frozen=True, array_like=True):
    """Normal baselines per operating point (a mode, a speed set-point), learned from normal rows.

    A robot at a speed set-point between two it was seen at in normal runs
    behaves in between: the baseline there is interpolated (mean and
    covariance linearly between the two nearest set-points). Outside the
    range seen, or at a mode never seen, nothing says what normal is, so
    `at` answers None: "unknown operating point", no alarm, instead of
    calling every row of a new regime anomalous.
    """

    points: tuple[float | str, ...]
    """Operating points with a baseline; numbers ascending, or labels in first-seen order."""
    baselines: tuple[Baseline, ...]

    @property
    def numeric(self) -> bool:
        return bool(self.points) and all(isinstance(p, float) for p in self.points)

    def at(self, point: float | str, params: MultivariateParams = DEFAULT) -> Baseline | None:
        """The baseline in force at `point`, or None for an operating point never seen in normal data."""
        if point in self.points:
            return self.baselines[self.points.index(point)]
        if not self.numeric or isinstance(point, str) or not math.isfinite(point):
            return None
        values = [float(p) for p in self.points]
        hi = bisect.bisect_left(values, point)
        if hi == 0 or hi == len(values):
            return None
        lo = hi - 1
        w = (point - values[lo]) / (values[hi] - values[lo])
        a, b = self.baselines[lo], self.baselines[hi]
        mean = (1 - w) * _as_vector(a.mean) + w * _as_vector(b.mean)
        cov = (1 - w) * _matrix(a.cov, a.dim) + w * _matrix(b.cov, b.dim)
        return _baseline(mean, cov, min(a.weight, b.weight), params)


def fit_operating(
    rows: Vector,
    points: Sequence[float | str],
    params: MultivariateParams = DEFAULT,
) -> Operating:
    """One baseline per operating point from normal rows (n x p) and their points (n).

    A point with fewer than `min_weight` complete rows gets no baseline: too
    few rows to say what normal is there, so it stays unknown.
    """
    data = np.asarray(rows, dtype=np.float64)
    labels = [p if isinstance(p, str) else float(p) for p in points]
    if len(labels) != len(data):
        raise ValueError(f"{len(data)} rows but {len(labels)} operating points")
    order: list[float | str] = list(dict.fromkeys(labels))
    if order and all(isinstance(p, float) for p in order):
        order = sorted(order, key=float)
    keep: list[tuple[float | str, Baseline]] = []
    for point in order:
        chosen = data[[i for i, p in enumerate(labels) if p == point]]
        chosen = chosen[np.isfinite(chosen).all(axis=1)]
        if len(chosen) >= max(params.min_weight, 2):
            keep.append((point, fit(chosen, params)))
    return Operating(points=tuple(p for p, _ in keep), baselines=tuple(b for _, b in keep))

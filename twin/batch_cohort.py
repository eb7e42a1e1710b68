"""The cohort detector over a micro-batch: scores, learning in log order, the trend check.

The scalar core (`twin.pipeline.ingest`) does, per applied report: `observe` scores the
robot against its model's baseline *as it is at that report's position in the log*
(`twin.detect.robot._cohort` -> `multivariate.step`) and checks a trend reference against
the model's rate moments at that position (`robot._against_cohort`); then, if the report
is settled at work and the robot has no open anomaly after it, the report teaches the
partition's `Cohorts` (`cohort.learn`: sums, a refit every `refit_s` of event time;
`cohort.learn_rates`: moments of the trend rates). Learning is in log order across all
robots of a model, and whether a row learns depends on its own outcome.

**The contract with the caller (a batch fold), per robot model:**

1. `plan(cohorts, model, reports, learn)` takes *all* that model's rows of the batch in
   log order (`Reports`) and a learn mask, and returns a `Plan`: for every row the
   baseline in force when it is observed (`Plan.baselines[Plan.epoch[i]]`, before the
   row's own learning), the rate moments before it (`Plan.rates`), the rows at which a
   refit happened (`Plan.refits`), and the `Cohorts` after the batch. The plan is a pure
   function of the mask; rows are only ever affected by the mask of rows before them.
2. The caller scores rows against the plan: `distances(plan, x, scored)` (d^2/p of each
   row to its own epoch's baseline, batched), then `advance_round` round by round (a
   round holds each robot at most once, as in `twin.batch_signals`), and the trend check
   `against_round` on the moments before each row; findings for the masked rows by
   `cohort_findings` / `against_findings`. From the outcome it knows each row's learn flag.
3. If that learn mask differs from the one the plan was made with, plan again with the new
   mask and score again (`settle` does exactly this loop). The mask's effect is causal in
   log order, so each pass makes the mask right up to and including the first row where
   the guess was wrong: the loop ends, and its fixed point is the scalar log-order result.
   Rows up to and including the first row where two passes' masks differ saw the same plan
   inputs in both, so a caller may keep their outcome and re-score only the rows after it.
   A good first guess (each robot learns as its previous report did) makes one pass the
   rule: the baselines change only at refits, and the rate moments move each row by one
   report in thousands, which flips a trend check only near its threshold
   (bench/cohort_batch.py: 1.07 passes per batch of 2,000).

Bit identity, and what stays per row:
* `multivariate.distance` is `delta @ precision @ delta`: BLAS gemv then dot, whose bits
  depend on the kernel. numpy's matmul over a stack of (1, p) @ (p, p) calls the same
  gemv once per row, and a stack of (1, p) @ (p, 1) the same dot, so `distances` is the
  scalar's calls without the Python loop (checked bit for bit by the tests on this
  machine, p = 1..33; a (n, p) @ (p, p) gemm differed from the scalar on 18-47% of rows
  from p = 4 on, einsum on 40-93%, a row-wise `(u * delta).sum(1)` on 9-51%).
* The smoothing's `math.exp` is called per scored row (numpy's exp differs).
* Sums accumulate with `np.cumsum` along the rows (sequential, as `s1 + x` one report
  after another; `s2` on its upper triangle, mirrored, when it is exactly symmetric, as
  every `s2` that `learn` makes is); a refit row goes through `cohort.learn` itself (its
  `np.linalg.inv`), so refits cost what they cost in the scalar core.
* The trend check's standard deviation is `x ** 0.5` in the scalar (libm pow, not
  always correctly rounded): `np.sqrt` decides the rows clear of the threshold, and the
  rows within 1e-9 of it, or on a zero denominator, are decided by the scalar function.

Caveat: models new to `cohorts` within one batch get their dict keys (`sums`, `baselines`,
`rates`) in the order the caller plans them; the scalar inserts each at its first learning
or refit row. Values are equal either way; a caller that wants equal encodings plans
models in order of their first learning row (exact unless two new models interleave).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from twin.detect import multivariate as mv
from twin.detect import signals as sig
from twin.detect.cohort import PARAMS, Cohorts, Moments, learn
from twin.detect.findings import Finding
from twin.detect.params import RobotDetectorParams
from twin.detect.robot import _against_cohort
from twin.detect.watch import Drift
from twin.fleet import RobotModel

Array = npt.NDArray[Any]

NEAR = 1e-9
"""Relative distance to the trend check's threshold under which the scalar function decides."""
CHUNK = 4096
"""Rows of outer products accumulated at once (bounds memory at p = 30 to ~15 MB)."""


# --- per-robot state --------------------------------------------------------------------------

class States(NamedTuple):
    """`multivariate.State | None` per robot: `has` False is None."""

    has: Array
    level: Array
    ts: Array
    alarm: Array
    since: Array


def states_of(states: Sequence[mv.State | None]) -> States:
    """The arrays of scalar cohort states."""
    f = [s or mv.State(0.0, 0.0, False, 0.0) for s in states]
    return States(np.array([s is not None for s in states], dtype=bool),
                  np.array([s.level for s in f], dtype=np.float64), np.array([s.ts for s in f], dtype=np.float64),
                  np.array([s.alarm for s in f], dtype=bool), np.array([s.since for s in f], dtype=np.float64))


def state_at(s: States, i: int) -> mv.State | None:
    """Row `i` as the scalar struct."""
    if not s.has[i]:
        return None
    return mv.State(float(s.level[i]), float(s.ts[i]), bool(s.alarm[i]), float(s.since[i]))


def features(values: Array, model: RobotModel) -> tuple[Array, Array]:
    """`cohort.features` per row of a (n, p) matrix of the model's signals in catalogue order
    (NaN: not reported): the vectors and whether each row is complete."""
    lo = np.array([s.nominal[0] for s in model.signals.values()], dtype=np.float64)
    hi = np.array([s.nominal[1] for s in model.signals.values()], dtype=np.float64)
    if np.any(hi == lo):
        raise ZeroDivisionError("float division by zero")  # what the scalar's features raises
    return (values - lo) / (hi - lo), np.asarray(~np.isnan(values).any(axis=1), dtype=bool)


# --- learning in log order --------------------------------------------------------------------

class Reports(NamedTuple):
    """All of one model's rows of a batch, in log order (those that teach and those that do not)."""

    ts: Array
    """Event time (float64)."""
    x: Array
    """(n, p) features in band units (`features`); a row with `has_x` False does not teach sums."""
    has_x: Array
    rates: Array
    """(n, k) trend rates (`robot.trend_rates`), one column per name of `names`."""
    has_rate: Array
    """(n, k): whether the row has that rate."""
    names: tuple[str, ...] = ()
    """The trend signals, in the order new ones enter the moments when a row brings several."""


class Rates(NamedTuple):
    """One trend signal's moments before each row of a model (what `_against_cohort` reads)."""

    known: Array
    """The model had moments for it (else the scalar passes None)."""
    n: Array
    s1: Array
    s2: Array


class Plan(NamedTuple):
    """What a learn mask makes of one model's rows; see the module's contract."""

    cohorts: Cohorts
    """After the batch."""
    baselines: tuple[mv.Baseline | None, ...]
    """[0]: the model's baseline at the batch's start; [k]: after the k-th refit."""
    epoch: Array
    """Per row: index into `baselines` of the one in force when it is observed."""
    refits: Array
    """Rows (indices into the reports) whose learning refitted the baseline, ascending."""
    rates: dict[str, Rates]


def plan(cohorts: Cohorts, model: str, reports: Reports, learn_mask: Array) -> Plan:
    """`learn` and `learn_rates` over the rows with `learn_mask`, in order (see the module doc)."""
    rows = np.flatnonzero(learn_mask & reports.has_x)
    sums, refits, fits = _learn_sums(cohorts, model, reports.x[rows], reports.ts[rows])
    out = cohorts
    if sums is not None:
        baselines = {**cohorts.baselines, model: fits[-1][0]} if fits else cohorts.baselines
        fitted = {**cohorts.fitted_at, model: fits[-1][1]} if fits else cohorts.fitted_at
        out = replace(cohorts, sums={**cohorts.sums, model: sums}, baselines=baselines, fitted_at=fitted)
    at = rows[refits]
    epoch = np.searchsorted(at, np.arange(len(reports.ts)), side="left")
    out, rates = _learn_rates(out, model, reports, learn_mask)
    start = cohorts.baselines.get(model)
    return Plan(out, (start, *(b for b, _ in fits)), epoch, at, rates)


def _learn_sums(cohorts: Cohorts, model: str, x: Array,
                ts: Array) -> tuple[tuple[int, Array, Array] | None, Array, list[tuple[mv.Baseline, float]]]:
    """The sums after the learning rows `x` (None if none), the refit rows among them, and each
    refit's baseline and time. Refit rows go through `cohort.learn` itself."""
    m, p = x.shape
    if m == 0:
        return None, np.zeros(0, dtype=np.int64), []
    n, s1, s2 = cohorts.sums.get(model) or (0, np.zeros(p), np.zeros((p, p)))
    fitted = cohorts.fitted_at.get(model, -np.inf)
    refits: list[int] = []
    fits: list[tuple[mv.Baseline, float]] = []
    j = 0
    while j < m:
        k = _next_refit(ts[j:], n, fitted, cohorts.refit_s)
        end = m if k is None else j + k
        n, s1, s2 = n + (end - j), *_accumulate(s1, s2, x[j:end])
        if k is None:
            break
        one = Cohorts(cohorts.refit_s, sums={model: (n, s1, s2)}, fitted_at={model: fitted})
        one = learn(one, model, x[end], float(ts[end]))
        n, s1, s2 = one.sums[model]
        fitted = one.fitted_at[model]
        refits.append(end)
        fits.append((one.baselines[model], fitted))
        j = end + 1
    return (n, s1, s2), np.array(refits, dtype=np.int64), fits


def _next_refit(ts: Array, n: int, fitted: float, refit_s: float) -> int | None:
    """The first of these learning rows at which `learn` refits (as its condition reads)."""
    count = n + np.arange(1, len(ts) + 1)
    due = ~(ts - fitted < refit_s) & (count >= 2)
    hits = np.flatnonzero(due)
    return int(hits[0]) if len(hits) else None


def _accumulate(s1: Array, s2: Array, x: Array) -> tuple[Array, Array]:
    """`s1 + x`, `s2 + outer(x, x)` one row after another: `np.cumsum` along the rows, which is
    sequential. Rows lie along the contiguous axis (the cumsum runs in cache), and a symmetric
    `s2` (every one `learn` makes: x_a * x_b == x_b * x_a exactly) is summed on its upper
    triangle only and mirrored."""
    if len(x) == 0:
        return s1, s2
    xt = np.ascontiguousarray(x.T)
    s1 = np.cumsum(np.hstack([s1[:, None], xt]), axis=1)[:, -1].copy()
    p = len(s1)
    symmetric = bool(np.array_equal(s2, s2.T))
    i, j = np.triu_indices(p) if symmetric else np.indices((p, p)).reshape(2, -1)
    acc = s2[i, j]
    for c in range(0, len(x), CHUNK):
        part = xt[:, c:c + CHUNK]
        buf = np.empty((len(acc), part.shape[1] + 1))
        buf[:, 0] = acc
        k = 0
        for a in range(p):  # row a of outer(x, x) (from the diagonal on if symmetric), per report
            rest = part[a:] if symmetric else part
            np.multiply(part[a], rest, out=buf[k:k + len(rest), 1:])
            k += len(rest)
        acc = np.cumsum(buf, axis=1, out=buf)[:, -1].copy()
    out = np.empty((p, p))
    out[i, j] = acc
    if symmetric:
        out[j, i] = acc
    return s1, out


def _learn_rates(cohorts: Cohorts, model: str, reports: Reports, learn_mask: Array) -> tuple[Cohorts, dict[str, Rates]]:
    """`learn_rates` over the learning rows, and each name's moments before every row."""
    known = cohorts.rates.get(model, {})
    new = dict(known)
    firsts: list[tuple[int, int, str]] = []
    out: dict[str, Rates] = {}
    for j, name in enumerate(reports.names):
        rows = np.flatnonzero(learn_mask & reports.has_rate[:, j])
        r = reports.rates[rows, j]
        n0, a0, b0 = known.get(name, (0.0, 0.0, 0.0))
        n = np.cumsum(np.concatenate([[n0], np.ones(len(r))]))
        s1 = np.cumsum(np.concatenate([[a0], r]))
        s2 = np.cumsum(np.concatenate([[b0], r * r]))
        before = np.searchsorted(rows, np.arange(len(reports.ts)), side="left")
        out[name] = Rates(before > 0 if name not in known else np.ones(len(before), dtype=bool),
                          n[before], s1[before], s2[before])
        if len(rows):
            if name not in known:
                firsts.append((int(rows[0]), j, name))
            new[name] = (float(n[-1]), float(s1[-1]), float(s2[-1]))
    if all(name not in new or new[name] is known.get(name) for name in reports.names):
        return cohorts, out  # no learning row had a rate: `learn_rates` changed nothing
    ordered = {name: new[name] for name in known} | {name: new[name] for _, _, name in sorted(firsts)}
    return replace(cohorts, rates={**cohorts.rates, model: ordered}), out


def in_force(p: Plan) -> Array:
    """Per row: whether the model has a baseline when it is observed (else `_cohort` does not run)."""
    return np.array([b is not None for b in p.baselines], dtype=bool)[p.epoch]


def moments_at(rates: Rates, i: int) -> Moments | None:
    """Row `i`'s moments before it, as the scalar passes them to `_against_cohort`."""
    if not rates.known[i]:
        return None
    return float(rates.n[i]), float(rates.s1[i]), float(rates.s2[i])


# --- scoring ----------------------------------------------------------------------------------

def distances(p: Plan, x: Array, scored: Array, params: mv.MultivariateParams = PARAMS) -> tuple[Array, Array]:
    """d^2/p of each row to the baseline of its epoch, where `mv.step` would compute it: the
    raw values and the mask of rows that advance (the others hold: no baseline weight yet,
    or a missing value). `scored`: the rows `_cohort` runs on (settled at work, complete,
    a baseline in force)."""
    raw = np.full(len(x), np.nan)
    advance = np.zeros(len(x), dtype=bool)
    for e in np.unique(p.epoch[scored]).tolist():
        base = p.baselines[e]
        if base is None or base.weight < params.min_weight:
            continue
        rows = np.flatnonzero(scored & (p.epoch == e) & np.isfinite(x).all(axis=1))
        raw[rows] = distance_rows(base, x[rows])
        advance[rows] = True
    return raw, advance


def distance_rows(base: mv.Baseline, x: Array) -> Array:
    """`mv.distance` of every row: the same gemv and dot per row, through stacked matmul."""
    delta = np.ascontiguousarray(x - np.asarray(base.mean, dtype=np.float64))
    precision = np.asarray(base.precision, dtype=np.float64).reshape(base.dim, base.dim)
    u = np.matmul(delta[:, None, :], precision)
    return np.asarray(np.matmul(u, delta[:, :, None])[:, 0, 0] / base.dim, dtype=np.float64)


def advance_round(s: States, raw: Array, advance: Array, ts: Array,
                  params: mv.MultivariateParams = PARAMS) -> tuple[States, Array, Array]:
    """`mv.step` for each robot of a round (each robot at most once): rows with `advance` go
    through `_advance` with their `raw`, the others hold (an idle state if none yet). Returns
    the new states, the scores and the mask of rows with a cohort finding (score >= 1)."""
    cap, on, off, rise_s, fall_s = mv._rule(params)
    raw = np.where(raw > cap, cap, raw)
    fresh = advance & ~s.has
    moving = advance & s.has
    tau = np.where(raw > s.level, rise_s, fall_s)
    dt = ts - s.ts
    arg = -np.where(dt > 0.0, dt, 0.0) / np.where(tau > 0, tau, 1.0)
    rows = np.flatnonzero(moving & (tau > 0))
    alpha = np.ones(len(raw))
    alpha[rows] = 1.0 - np.array([math.exp(v) for v in arg[rows].tolist()], dtype=np.float64)
    level = np.where(moving, s.level + alpha * (raw - s.level), np.where(fresh, raw, s.level))
    last = np.where(moving & (ts > s.ts) | fresh, ts, s.ts)
    was = s.alarm & s.has
    alarm = np.where(advance, level >= np.where(was, off, on), s.alarm)
    since = np.where(advance & ((alarm != was) | fresh), ts, s.since)
    idle = ~advance & ~s.has
    new = States(s.has | advance | idle, np.where(idle, 0.0, level), np.where(idle, ts, last),
                 np.where(idle, False, alarm), np.where(idle, ts, since))
    score = new.level / np.where(new.alarm, off, on)
    return new, score, score >= 1


def cohort_findings(old: States, new: States, score: Array, cells: Array, base: Sequence[mv.Baseline] | Mapping[int, mv.Baseline],
                    x: Array, advance: Array, ts: Array, params: mv.MultivariateParams = PARAMS) -> dict[int, list[Finding]]:
    """The cohort findings of `cells` (a round's mask, as indices), as `robot._cohort` builds them,
    after `mv.step` itself agrees on the row's state and score (`base`: each row's baseline)."""
    out: dict[int, list[Finding]] = {}
    for i in cells.tolist():
        state, sc = mv.step(state_at(old, i), base[i], x[i], float(ts[i]), params) if advance[i] else \
            mv._hold(state_at(old, i), float(ts[i]), params)
        if state != state_at(new, i) or sc != score[i]:
            raise AssertionError(f"batch cohort score disagrees with multivariate.step on row {i}")
        out[i] = [Finding("cohort", "", sc, {"level": round(state.level, 3)})]
    return out


# --- the trend reference against the cohort's rates --------------------------------------------

def against_round(level: Array, ref: Array, rates: Rates, p: RobotDetectorParams,
                  params: mv.MultivariateParams = PARAMS) -> Array:
    """`robot._against_cohort` per row: the mask of rows it returns a finding for. `level`, `ref`:
    each row's trend `Drift` after the step (integral floats); `rates`: the moments before each
    row. Rows near the threshold, or with a zero denominator, are decided by the scalar function."""
    full = round(p.drift_reference_s * 10)
    ready = rates.known & ~(rates.n < params.min_weight) & ~(ref < full)
    with np.errstate(all="ignore"):
        mean = rates.s1 / rates.n
        var = rates.s2 / rates.n - mean * mean
        sd = np.sqrt(np.where(0.0 > var, 0.0, var))
        den = np.where(p.trend_floor > sd, p.trend_floor, sd)
        z = (level * sig.TREND_UNIT - mean) / den
        near = ~(np.abs(np.abs(z) - p.drift_cohort_z) > NEAR * p.drift_cohort_z) | (den == 0)
    found = ready & ~(np.abs(z) < p.drift_cohort_z)
    for i in np.flatnonzero(ready & near).tolist():
        d = Drift(int(ref[i]), int(level[i]))
        found[i] = bool(_against_cohort("", d, moments_at(rates, i), p))
    return np.asarray(found, dtype=bool)


def against_findings(name: str, level: Array, ref: Array, rates: Rates, cells: Array,
                     p: RobotDetectorParams) -> dict[int, list[Finding]]:
    """The findings of `cells`, built by `robot._against_cohort` (only `ref` and `level` of the
    drift state are read)."""
    out: dict[int, list[Finding]] = {}
    for i in cells.tolist():
        f = _against_cohort(name, Drift(int(ref[i]), int(level[i])), moments_at(rates, i), p)
        if not f:
            raise AssertionError(f"batch trend check disagrees with _against_cohort on row {i}")
        out[i] = f
    return out


# --- the caller's loop ------------------------------------------------------------------------

def settle(cohorts: Cohorts, model: str, reports: Reports, guess: Array,
           outcome: Callable[[Plan], Array]) -> tuple[Plan, Array, int]:
    """Plan with `guess`, let `outcome` score the rows against the plan and say which learn,
    until the mask stops changing (at most one pass per row plus one, see the module doc).
    Returns the plan, its mask and the passes taken."""
    mask = np.asarray(guess, dtype=bool)
    for passes in range(1, len(mask) + 2):
        made = plan(cohorts, model, reports, mask)
        new = np.asarray(outcome(made), dtype=bool)
        if np.array_equal(new, mask):
            return made, mask, passes
        mask = new
    raise AssertionError("the learn mask did not settle: the outcome is not causal in log order")

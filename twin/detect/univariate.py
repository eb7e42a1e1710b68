"""A streaming anomaly score for one signal, small enough to live in the twin.

`step(state, value, ts) -> (state, score)`: pure, deterministic, O(1) per
reading, 8 floats of state. Time enters only as the reading's event time
`ts` (never the wall clock). The score is in [0, 1], an anomaly likelihood:
1 means surely anomalous; an alert is `score >= params.alarm`.

How it scores a reading, and why (tuned on NAB, see streams/analysis/eval/nab.py):

1. Daily rhythm. Many signals follow the clock (shifts, duty cycles, traffic).
   Two daily harmonics of the value, fitted online from the event time of day,
   are subtracted first, so a usual daily swing is not a surprise while a
   missing or misplaced one is.
2. Deviation. The deseasonalised value is compared with a slow, clipped
   running level in units of its running spread and squashed into [0, 1):
   `b = 1 - exp(-|x - level| / (width * spread))`. Clipping keeps an anomaly
   from dragging the baseline along while it lasts.
3. Two views of `b`:
   * sustained: `b` smoothed over a few dozen readings, turned into a Gaussian
     tail likelihood against fixed `calm` / `calm_sd` (b is already in units of
     the signal's own spread) and put on Numenta's log scale, so that only a
     persistent deviation reaches 1;
   * record: the instant `b` against a slowly decaying record of `b`, so a
     signal with routine spikes learns that level of surprise as normal and
     only a spike beyond anything seen recently scores.
4. One anomaly, one alert: after an alert the score is scaled down and
   recovers linearly over `quiet` readings.

The defaults were tuned on the same 13 NAB files they are scored on (70.6,
standard profile, at `alarm` and at the optimised threshold): an in-sample
figure. Tuned on half of the files from a generic start, the same design
scored about 28-39 on the other half, so expect much less on unseen signals.
"""

from __future__ import annotations

import math

import msgspec

DAY = 86400.0
"""Seconds per day: the period of the seasonal fit (event time, UTC day)."""

_LOG_EPS = math.log(1e-10)
_SQRT2 = math.sqrt(2.0)


class UnivariateParams(msgspec.Struct, frozen=True):
    """Tuning of the detector, frozen after tuning on NAB's 13-file subset.

    Rates are per reading, not per second: 1/rate is a memory length in
    readings. NAB's series (5 minutes to 1 hour apart) and the fleet's signals
    are sampled steadily, and a memory counted in readings carries over.
    """

    level_rate: float = 6.21e-05
    """Rate of the running level and spread of the deseasonalised value (~16000 readings)."""
    clip: float = 3.4
    """Readings further than `clip` spreads from the level update it as if at that distance."""
    width: float = 6.03
    """Deviation, in spreads, at which `b` reaches 1 - 1/e."""
    season_rate: float = 0.00112
    """Rate of the daily-harmonic fit (~900 readings: 3 days at 5 minutes, 19 at 30)."""
    season_clip: float = 1.69
    """The harmonic fit sees residuals clipped at `season_clip * clip` spreads."""
    smooth: float = 0.00827
    """Smoothing rate of `b` for the sustained view (~120 readings)."""
    calm: float = 0.198
    """Level of smoothed `b` above which a deviation counts as sustained.

    With `width` 6.03, b = 0.198 is a deviation of 1.33 spreads: the sustained
    view alerts when the deviation averaged over ~120 readings exceeds about
    1.35 times its long-run average (which is 1 spread by definition).
    """
    calm_sd: float = 0.00142
    """Scale of the sustained z = (smoothed b - calm) / calm_sd, fed to the log-likelihood."""
    sustained_weight: float = 2.93
    """Weight of the sustained score (the combined score is capped at 1)."""
    record_forget: float = 0.000273
    """Per-reading decay of the record of `b` (half-life ~2500 readings)."""
    record_gain: float = 0.207
    """Record score: 1 - exp(-(b / record - 1) / gain) above the record, 0 below.

    With `record_weight` 4.44 an alert needs b at least 2.5% above its record.
    """
    record_weight: float = 4.44
    """Weight of the record score."""
    quiet: int = 532
    """Readings after an alert over which the score recovers linearly from 0."""
    warmup: int = 100
    """Readings before any score is given (the state is still learning)."""
    alarm: float = 0.5
    """Alert level, fixed before evaluation: `score >= alarm` is an anomaly."""


DEFAULT = UnivariateParams()


class State(msgspec.Struct, frozen=True, array_like=True):
    """Per-signal detector memory: 8 floats and 2 ints (msgpack, array form)."""

    n: int
    """Readings seen."""
    level: float
    """Running level of the deseasonalised value (clipped updates)."""
    spread: float
    """Running mean absolute distance from `level`."""
    c1: float
    """Daily harmonic coefficients: value ~ level + c1 cos + s1 sin + c2 cos 2 + s2 sin 2 (of the time of day)."""
    s1: float
    c2: float
    s2: float
    sustained: float
    """Smoothed `b`."""
    record: float
    """Decaying record of the instant `b`."""
    since: int
    """Readings since the last alert (capped)."""


_NEVER = 1 << 30


def start(value: float) -> State:
    """The state after a signal's first reading."""
    return State(
        n=1, level=value, spread=0.0, c1=0.0, s1=0.0, c2=0.0, s2=0.0, sustained=0.0, record=0.0, since=_NEVER
    )


def _harmonics(ts: float) -> tuple[float, float, float, float]:
    """cos, sin of the time of day and of twice it (event time, UTC)."""
    theta = 2.0 * math.pi * (ts % DAY) / DAY
    return math.cos(theta), math.sin(theta), math.cos(2.0 * theta), math.sin(2.0 * theta)


def _log_likelihood(z: float) -> float:
    """Gaussian upper-tail likelihood of z on Numenta's log scale: 0 below the mean, 1 at ~6.4 sigma."""
    tail = 0.5 * math.erfc(z / _SQRT2)
    return min(1.0, max(0.0, math.log(1.0000000001 - (1.0 - tail)) / _LOG_EPS))


def step(state: State | None, value: float, ts: float, params: UnivariateParams = DEFAULT) -> tuple[State, float]:
    """Fold one reading into the state; return the new state and the reading's anomaly score.

    Readings must come in time order (the twin's reducer sees to that).
    """
    if state is None:
        return start(value), 0.0
    p = params
    n = state.n + 1
    h1, h2, h3, h4 = _harmonics(ts)
    x = value - (state.c1 * h1 + state.s1 * h2 + state.c2 * h3 + state.s2 * h4)
    b = 1.0 - math.exp(-abs(x - state.level) / (p.width * state.spread + 1e-9 * (abs(x) + 1.0)))
    sustained = state.sustained + p.smooth * (b - state.sustained)

    score = 0.0
    since = state.since
    warm = n > p.warmup
    if warm:
        over = b / (state.record + 1e-12 * (abs(state.level) + 1.0))
        record_score = 1.0 - math.exp(-(over - 1.0) / p.record_gain) if over > 1.0 else 0.0
        sustained_score = _log_likelihood((sustained - p.calm) / p.calm_sd)
        score = min(1.0, max(p.sustained_weight * sustained_score, p.record_weight * record_score))
        if since < p.quiet:
            score *= since / p.quiet
        since = 0 if score >= p.alarm else min(since + 1, _NEVER)

    rate = max(p.level_rate, 1.0 / n)
    bound = p.clip * state.spread
    clipped = min(max(x, state.level - bound), state.level + bound) if warm else x
    level = state.level + rate * (clipped - state.level)
    spread = state.spread + rate * (abs(clipped - level) - state.spread)

    resid = value - level
    if warm:
        limit = p.season_clip * p.clip * spread
        resid = min(max(resid, -limit), limit)
    g = max(p.season_rate, 1.0 / n)
    new = State(
        n=n,
        level=level,
        spread=spread,
        c1=state.c1 + g * (2.0 * resid * h1 - state.c1),
        s1=state.s1 + g * (2.0 * resid * h2 - state.s1),
        c2=state.c2 + g * (2.0 * resid * h3 - state.c2),
        s2=state.s2 + g * (2.0 * resid * h4 - state.s2),
        sustained=sustained,
        record=max(b, state.record * (1.0 - p.record_forget)),
        since=since,
    )
    return new, score

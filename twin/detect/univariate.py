"""A streaming anomaly score for one signal, with its state a fixed set of numbers.

`step(state, value, ts, params) -> (state, score)`: pure, deterministic,
O(1) per reading, `math` only (no numpy: a later batch engine must reproduce
it bit for bit). Time enters only as the reading's event time `ts` (never the
wall clock). The score is in [0, 1]; an alert is `score >= params.alarm`. The
score is a calibrated tail probability, not a raw distance:
`score = s / (s + alarm_surprise)`, where `s = -ln(VIEWS * p)` and `p` is the
estimated chance, under the signal's own history, of a reading at least this
unusual in its most unusual view.

How a reading is judged, and why each piece is there (each answers a way the
earlier detector failed on series it had not been tuned on):

1. Cadence. The signal's own reading interval is learned (a clipped running
   mean of the gaps). The quiet horizon is counted in it, so a rule means the
   same number of readings on a 1 s robot signal, a 5-minute server metric and
   an hourly sensor, and never three weeks.
2. Robust baseline. A running location (Huber-clipped mean: a reading further
   than `clip` spreads moves it as if at that distance, so an anomaly does not
   drag the baseline along) and spread (running mean absolute deviation of the
   clipped residual). Both start as plain averages (rate 1/n), so nothing is
   frozen from the first, spread-less readings.
3. Periodic baseline. A robust running mean and spread per time-of-day bin
   (`bins` bins of the UTC day, event time); each bin's memory is
   `season_days` days whatever the cadence, and its spread is floored at
   `bin_floor` of the pooled seasonal spread (a bin's few readings a day
   understate it on spiky series). It is used only while it explains
   the series (its residual spread below `periodic_gain` times the plain one:
   a daily square wave yes, a random walk no), decided at most once a day.
4. Views. The standardised residual z feeds three statistics: spike |z|,
   level shift |running mean of z| and variance change (running mean of |z|),
   the means over ~1/`views_rate` readings; each on a log scale.
5. Calibration. Each view has a running tail model: an upper-tail location
   (the running `tail_q` expectile, which an online update tracks from a
   stale start within a few dozen readings, where a quantile update takes
   thousands) and the mean excess above it (exponential tail of the log
   statistic, i.e. a power-law tail, as in peaks-over-threshold / SPOT).
   The view's surprise is -ln P(statistic >= this), so a signal with routine
   spikes learns that such spikes are common, and only what is rarer than its
   own history scores. An alarming reading teaches the tail only as
   much as one at the alarm level (an anomaly must not become the norm while
   it lasts). Views combine by the smallest tail probability times the
   number of views (Bonferroni).
6. Warm-up, scale-free. No alert before `warmup` readings, and a view speaks
   only after its tail has seen `warmup_exceed` exceedances. Every average
   runs at rate 1/n until its floor, so the normalisers are learned, never
   frozen at start-up values. When z changes meaning (the periodic baseline
   switched on or off) the views and their tails start again.
7. One episode, one alert. After an alert the bar is raised: a new alert
   needs `quiet_bar` times the surprise that fired on top of the alarm level,
   the extra falling linearly to nothing over `quiet` cadences, counted from
   the episode's last alarming reading (a long anomaly is one episode however
   long it lasts). Why: an anomaly is an episode; repeating its alert is noise
   for whoever acts on it, while a much worse development still gets through
   (ARTime masks its detections the same way, with a similarity bar raised
   after each one). 144 cadences: half a day at 5 minutes, 2.4 minutes at 1 s.

On white noise, Gaussian or heavy-tailed alike, the default alarm fires about
once in 1,000-2,000 readings (tests/unit/test_univariate.py) and 0.6 about
never: pick `alarm` as the false-alarm rate the signal can afford (NAB's cost
of a false positive suits 0.5; a 1 Hz robot signal wants 0.6 or more).

Read, not copied: how ARTime (probation, masking with a raised bar), NAB's
HTM anomaly likelihood (tail probability of a running statistic) and SPOT
(peaks over threshold) warm up, calibrate and suppress.

Where the parameters come from: chosen by hand while looking at NAB's 13 dev
files (see docs/ANOMALY.md); only the threshold, `quiet` and `bin_floor`
are searched out-of-fold by `streams.analysis.eval.nab`.

State per signal: `State`, 13 numbers plus 3 per view and 3 per bin: 94
numbers at 24 bins, at most 737 bytes as msgpack (bench/anomaly_nab.py
prints it). That does not fit every signal of a robot in the twin's 2 KiB:
docs/ANOMALY.md says which signals get it.
"""

from __future__ import annotations

import math

import msgspec

DAY = 86400.0
"""Seconds per day: the period of the seasonal baseline (event time, UTC day)."""


class UnivariateParams(msgspec.Struct, frozen=True):
    """Tuning of the detector. Rates per reading; horizons in cadences (the signal's own reading interval)."""

    bins: int = 24
    """Time-of-day bins of the seasonal baseline."""
    level_rate: float = 0.002
    """Floor of the rate of the plain running location and spread (~500 readings)."""
    season_days: float = 5.0
    """Memory of each seasonal bin, in days (its rate adapts to how many readings a bin gets per day)."""
    clip: float = 4.0
    """Residuals beyond `clip` spreads update the baselines as if at that distance."""
    bin_floor: float = 0.3
    """A bin's spread counts as at least this share of the pooled seasonal spread.

    A bin sees a few readings a day, and on a spiky series most of them are
    calm: its own spread can be far below the truth. Pooling bounds it.
    """
    periodic_gain: float = 0.6
    """The seasonal baseline is used while its residual spread is below this share of the plain one."""
    views_rate: float = 0.005
    """Rate of the running means of z and |z| (level-shift and variance views): ~200 readings."""
    tail_q: float = 0.95
    """Expectile above which each view's tail is modelled as exponential (with mass 1 - tail_q above it: cautious)."""
    tail_rate: float = 0.0005
    """Floor of the rate of the tail models (per reading for the quantile, per exceedance for the excess)."""
    warmup: int = 150
    """Readings before any alert."""
    warmup_exceed: int = 10
    """Exceedances each view's tail must have seen before it may alert."""
    alarm_surprise: float = 6.0
    """-ln of the tail probability at which the score is 0.5 (6.0: a reading rarer than 1 in 400 after the views' Bonferroni factor 3)."""
    quiet: float = 144.0
    """Cadences after an alert (or after the last alarming reading of its episode) during which the bar is raised."""
    quiet_bar: float = 2.0
    """Right after an alert a new one needs `quiet_bar` times its surprise on top of the alarm level (falling to 0 at `quiet`)."""
    alarm: float = 0.5
    """Alert level: `score >= alarm` is an anomaly; also what opens an episode for the raised bar."""


DEFAULT = UnivariateParams()

VIEWS = 3
"""Spike, level shift, variance change."""


class State(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """Per-signal detector memory: a fixed set of numbers (msgpack, array form)."""

    n: int
    """Readings seen."""
    first_ts: float
    """Event time of the first reading."""
    last_ts: float
    """Event time of the last reading."""
    cadence: float
    """Learned reading interval, seconds."""
    level: float
    """Robust running location of the value."""
    spread: float
    """Running mean absolute deviation from `level` (clipped)."""
    season_spread: float
    """Running mean absolute seasonal residual (clipped): compared with `spread` to decide if the series is periodic."""
    views_n: int
    """Readings the views and their tails have learned from since they last (re)started."""
    periodic: bool
    """Whether z is taken against the seasonal baseline (flipping it restarts the views' tails: z changed meaning)."""
    mean_z: float
    """Running mean of z over ~1/`views_rate` readings (level-shift view)."""
    mean_abs: float
    """Running mean of |z| over the same span (variance view)."""
    quantile: tuple[float, ...]
    """Per view: the running `tail_q` expectile of its statistic (the tail model's threshold)."""
    excess: tuple[float, ...]
    """Per view: the running mean excess above `quantile`."""
    exceed: tuple[int, ...]
    """Per view: exceedances seen (capped)."""
    last_alert_ts: float
    """Event time of the last alert (-inf: never)."""
    last_alert_surprise: float
    """Surprise of the last alert."""
    bin_mean: tuple[float, ...]
    """Per time-of-day bin: robust running mean."""
    bin_spread: tuple[float, ...]
    """Per bin: running mean absolute deviation (-1: never visited)."""
    bin_n: tuple[int, ...]
    """Per bin: readings seen (capped)."""


_CAP = 1 << 30

_SETTLE = 20
"""Readings before the tails learn: the first spreads are estimated from too few readings to standardise by."""

_STAT_CAP = 14.0
"""View statistics (log1p of robust units) are capped here before a tail learns from them."""


def start(value: float, ts: float, params: UnivariateParams = DEFAULT) -> State:
    """The state after a signal's first reading."""
    b = params.bins
    return State(
        n=1,
        first_ts=ts,
        last_ts=ts,
        cadence=0.0,
        level=value,
        spread=0.0,
        season_spread=0.0,
        views_n=0,
        periodic=False,
        mean_z=0.0,
        mean_abs=0.0,
        quantile=(0.0,) * VIEWS,
        excess=(0.0,) * VIEWS,
        exceed=(0,) * VIEWS,
        last_alert_ts=-math.inf,
        last_alert_surprise=0.0,
        bin_mean=(0.0,) * b,
        bin_spread=(-1.0,) * b,
        bin_n=(0,) * b,
    )


def _bin(ts: float, bins: int) -> int:
    """Time-of-day bin of an event time (UTC day)."""
    return min(bins - 1, int((ts % DAY) / DAY * bins))


def _bound(limit: float, count: int) -> float:
    """The Huber clip of an update: none for the first readings, nor while the spread is still 0.

    A spread of 0 (a constant signal so far) would clip every later change to
    nothing and the baseline could never follow a new level.
    """
    return limit if count > 2 and limit > 0.0 else math.inf


def _tail(stat: float, q: float, e: float, tail_q: float) -> float:
    """Surprise -ln P(statistic >= stat) under the view's exponential tail above its quantile."""
    if stat <= q or e <= 0.0:
        return 0.0
    return -math.log(1.0 - tail_q) + (stat - q) / e


def step(state: State | None, value: float, ts: float, params: UnivariateParams = DEFAULT) -> tuple[State, float]:
    """Fold one reading into the state; return the new state and the reading's anomaly score.

    Readings must come in time order (the twin's reducer sees to that); a
    non-finite value is ignored (score 0, state unchanged).
    """
    if not math.isfinite(value):
        return (state if state is not None else start(0.0, ts, params)), 0.0
    if state is None:
        return start(value, ts, params), 0.0
    p = params
    n = state.n + 1
    rate = 1.0 / n

    # 1. cadence: a clipped running mean of the gaps (one outage does not reset it)
    gap = max(0.0, ts - state.last_ts)
    if state.cadence <= 0.0:
        cadence = gap
    else:
        cadence = state.cadence + max(rate, 0.01) * (min(max(gap, 0.5 * state.cadence), 2.0 * state.cadence) - state.cadence)

    # 2-3. residuals against the plain and the seasonal baselines
    k = _bin(ts, p.bins)
    plain = value - state.level
    seen = state.bin_spread[k] >= 0.0
    season = value - state.bin_mean[k] if seen else plain
    # hysteresis: switch on below `periodic_gain`, off only above 1.25 times it
    gain = p.periodic_gain * (1.25 if state.periodic else 1.0)
    new_day = math.floor(ts / DAY) != math.floor(state.last_ts / DAY)
    if new_day:  # decided once a day at most: each decision restarts the views' calibration
        periodic = n > p.warmup and ts - state.first_ts > DAY and state.season_spread < gain * state.spread
    else:
        periodic = state.periodic
    flipped = periodic != state.periodic
    tiny = 1e-9 * (abs(state.level) + 1.0)
    if periodic:
        scale = max(state.bin_spread[k], p.bin_floor * state.season_spread, tiny)
        z = season / scale
    else:
        z = plain / max(state.spread, tiny)

    # 4. views
    zc = min(max(z, -p.clip * 4.0), p.clip * 4.0)
    views_n = 1 if flipped else min(state.views_n + 1, _CAP)
    vrate = 1.0 / views_n
    mean_z = state.mean_z + max(vrate, p.views_rate) * (zc - state.mean_z)
    mean_abs = state.mean_abs + max(vrate, p.views_rate) * (abs(zc) - state.mean_abs)
    stats = (math.log1p(abs(z)), math.log1p(abs(mean_z)), math.log1p(mean_abs))

    # 5. calibration: surprise per view against its tail, then update the tails
    surprise = 0.0
    ready = n > p.warmup
    quantile, excess, exceed = [], [], []
    learn = n > _SETTLE and views_n > 1
    for i, raw in enumerate(stats):
        x = min(raw, _STAT_CAP)
        q, e, m = (0.0, 0.0, 0) if flipped else (state.quantile[i], state.excess[i], state.exceed[i])
        if m >= p.warmup_exceed:
            surprise = max(surprise, _tail(raw, q, e, p.tail_q))
        if learn:
            if e <= 0.0:  # first reading the tail sees: it starts there, with a unit excess (z is unit-free)
                q, e = x, 1.0
            elif m >= p.warmup_exceed:  # an alarming reading teaches the tail only as much as a reading at the alarm level
                x = min(x, q + e * (p.alarm_surprise + math.log(1.0 - p.tail_q)))
            over = x > q
            g = max(vrate, p.tail_rate)
            # Steps as large as the distance to it make this the running 0.95 *expectile* (Newey-Powell)
            # rather than the quantile: unlike the quantile update it leaves a stale start within a few
            # dozen readings (the level and variance views were stuck at their start-up value). It sits
            # a little higher than the quantile, so tail probabilities from it err on the cautious side.
            q = q + g * max(e, abs(x - q)) * ((1.0 if over else 0.0) - (1.0 - p.tail_q)) / (1.0 - p.tail_q)
            if over:
                m = min(m + 1, _CAP)
                e = e + max(1.0 / m, p.tail_rate) * (min(x - q, 10.0 * e) - e)
        quantile.append(q)
        excess.append(e)
        exceed.append(m)
    surprise = max(0.0, surprise - math.log(VIEWS))

    # 7. one episode, one alert
    last_ts, last_s = state.last_alert_ts, state.last_alert_surprise
    horizon = p.quiet * cadence
    if horizon > 0.0 and ts - last_ts < horizon:
        effective = surprise - p.quiet_bar * last_s * (1.0 - (ts - last_ts) / horizon)
    else:
        effective = surprise
    score = effective / (effective + p.alarm_surprise) if ready and effective > 0.0 else 0.0
    if score >= p.alarm:
        last_ts, last_s = ts, surprise
    elif ready and surprise >= p.alarm_surprise and ts - last_ts < horizon:
        last_ts = ts  # the episode goes on: its horizon starts again from here

    # 2-3. update the baselines (clipped: an anomaly does not drag them along)
    g = max(rate, p.level_rate)
    bound = _bound(p.clip * state.spread, n)
    pc = min(max(plain, -bound), bound)
    level = state.level + g * pc
    spread = state.spread + g * (abs(pc) - state.spread)
    bin_mean, bin_spread, bin_n = state.bin_mean, state.bin_spread, state.bin_n
    per_day = max(1.0, DAY / p.bins / cadence) if cadence > 0.0 else 1.0
    if seen:
        kn = min(bin_n[k] + 1, _CAP)
        gb = max(1.0 / kn, 1.0 / (p.season_days * per_day))
        sb = bin_spread[k]
        bbound = _bound(p.clip * max(sb, 0.1 * state.season_spread), kn)
        sc = min(max(season, -bbound), bbound)
        new_mean = bin_mean[k] + gb * sc
        new_spread = sb + gb * (abs(sc) - sb)
        sbound = _bound(p.clip * state.season_spread, n)
        season_spread = state.season_spread + g * (min(abs(season), sbound) - state.season_spread)
    else:
        kn, new_mean, new_spread = 1, value, spread
        season_spread = state.season_spread + g * (min(abs(plain), bound) - state.season_spread)
    bin_mean = bin_mean[:k] + (new_mean,) + bin_mean[k + 1 :]
    bin_spread = bin_spread[:k] + (new_spread,) + bin_spread[k + 1 :]
    bin_n = bin_n[:k] + (kn,) + bin_n[k + 1 :]

    new = State(
        n=min(n, _CAP),
        first_ts=state.first_ts,
        last_ts=ts,
        cadence=cadence,
        level=level,
        spread=spread,
        season_spread=season_spread,
        views_n=views_n,
        periodic=periodic,
        mean_z=mean_z,
        mean_abs=mean_abs,
        quantile=tuple(quantile),
        excess=tuple(excess),
        exceed=tuple(exceed),
        last_alert_ts=last_ts,
        last_alert_surprise=last_s,
        bin_mean=bin_mean,
        bin_spread=bin_spread,
        bin_n=bin_n,
    )
    return new, score

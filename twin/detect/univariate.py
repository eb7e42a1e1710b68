"""A streaming anomaly score for one signal, small enough to live in the twin.

`step(state, value, ts) -> (state, score)`: pure, deterministic, O(1), driven
by the readings themselves (event time), never the wall clock. The score is in
[0, 1], 1 meaning surely anomalous; an alert is `score >= params.alarm`.

Why this shape (tuned on NAB, see streams/eval/nab.py):

* Two surprises per reading, both scale-free: how far the value jumped from
  the previous one (`|x - prev|`) and how far it lies from a slow, clipped
  running level (`|x - level|`). Each is smoothed over a few readings.
* Each smoothed surprise is compared with its own decaying record: a signal
  whose spikes are routine (load balancers, periodic jobs) learns that level
  of surprise as normal; only a surprise well above anything seen recently
  scores. Persistent changes therefore alert once, at their onset.
* A stuck signal (the same value repeated far longer than any earlier run)
  is a failure of its own: sensors freeze.
* After an alert the score is damped for `quiet` readings, so one anomaly is
  one alert, not a burst.
"""

from __future__ import annotations

import math

import msgspec


class Params(msgspec.Struct, frozen=True):
    """Tuning of the detector. Rates are per reading (1/rate ~ memory in readings)."""

    level_rate: float = 0.0009
    """Rate of the slow running level and its spread (~1100 readings of memory)."""
    clip: float = 2.19
    """Readings further than `clip` spreads from the level update it as if at that distance."""
    jump_rate: float = 0.0588
    """Smoothing of the jump surprise |x - prev| (~17 readings)."""
    dev_rate: float = 0.329
    """Smoothing of the deviation surprise |x - level| (~3 readings)."""
    jump_forget: float = 0.00045
    """Per-reading decay of the record jump surprise (half-life ~1500 readings)."""
    dev_forget: float = 0.00023
    """Per-reading decay of the record deviation surprise (half-life ~3000 readings)."""
    jump_gain: float = 0.227
    """How fast the jump score saturates with the ratio over the record: 1 - exp(-(r - 1) / gain)."""
    dev_gain: float = 0.676
    """Same for the deviation score."""
    dev_weight: float = 2.49
    """Weight of the deviation score against the jump score (the result is capped at 1)."""
    stuck_weight: float = 0.492
    """Weight of the stuck score."""
    stuck_factor: float = 2.03
    """A run scores once it is longer than `stuck_factor` times the longest earlier run."""
    stuck_forget: float = 0.000167
    """Per-reading decay of the longest-run memory."""
    quiet: int = 746
    """Readings after an alert during which the score is scaled down linearly from 0 back to 1."""
    warmup: int = 100
    """Readings before any score is given (the state is still learning)."""
    alarm: float = 0.5
    """Alert level, fixed before evaluation: `score >= alarm` is an anomaly."""


DEFAULT = Params()


class State(msgspec.Struct, frozen=True, array_like=True):
    """Per-signal detector memory: 8 floats and 3 small ints (msgpack ~100 bytes)."""

    n: int
    """Readings seen."""
    prev: float
    """Last value."""
    level: float
    """Slow running mean, updated with clipped readings."""
    spread: float
    """Slow running mean absolute distance from `level`."""
    jump: float
    """Smoothed |x - prev|."""
    jump_peak: float
    """Decaying record of `jump`."""
    dev: float
    """Smoothed |x - level|."""
    dev_peak: float
    """Decaying record of `dev`."""
    run: int
    """Consecutive readings equal to the previous one."""
    longest: float
    """Decaying longest earlier run."""
    quiet: int
    """Readings since the last alert (large when none)."""


def start(value: float, ts: float) -> State:
    """The state after a signal's first reading."""
    return State(
        n=1, prev=value, level=value, spread=0.0, jump=0.0, jump_peak=0.0, dev=0.0, dev_peak=0.0,
        run=0, longest=0.0, quiet=1 << 30,
    )


def _over_record(value: float, record: float, gain: float, tiny: float) -> float:
    """Score of a surprise against its decaying record: 0 at or below, towards 1 far above."""
    ratio = value / (record + tiny)
    return 1.0 - math.exp(-max(0.0, ratio - 1.0) / gain)


def step(state: State | None, value: float, ts: float, params: Params = DEFAULT) -> tuple[State, float]:
    """Fold one reading into the state; return the new state and the reading's anomaly score.

    Readings must come in event-time order (the twin's reducer sees to that).
    `ts` is the reading's event time; every rate is per reading rather than
    per second, so it does not enter the arithmetic: NAB's series (5 minutes
    to 1 hour apart) and the fleet's signals are sampled steadily, and a
    memory counted in readings carries over between them.
    """
    if state is None:
        return start(value, ts), 0.0
    p = params
    n = state.n + 1
    same = value == state.prev
    run = state.run + 1 if same else 0
    longest = state.longest if same or state.run == 0 else max(float(state.run), state.longest)
    jump = state.jump + p.jump_rate * (abs(value - state.prev) - state.jump)
    dev = state.dev + p.dev_rate * (abs(value - state.level) - state.dev)
    tiny = 1e-12 * (abs(state.level) + 1.0)

    score = 0.0
    quiet = state.quiet
    if n > p.warmup:
        jump_score = _over_record(jump, state.jump_peak, p.jump_gain, tiny)
        dev_score = _over_record(dev, state.dev_peak, p.dev_gain, tiny)
        stuck = max(0.0, 1.0 - p.stuck_factor * (longest + 1.0) / run) if run > 0 else 0.0
        score = min(1.0, max(jump_score, p.dev_weight * dev_score, p.stuck_weight * stuck))
        if quiet < p.quiet:
            score *= quiet / p.quiet
        quiet = 0 if score >= p.alarm else min(quiet + 1, 1 << 30)

    bound = p.clip * state.spread
    clipped = min(max(value, state.level - bound), state.level + bound) if n > p.warmup else value
    rate = max(p.level_rate, 1.0 / n)
    level = state.level + rate * (clipped - state.level)
    spread = state.spread + rate * (abs(clipped - level) - state.spread)
    new = State(
        n=n,
        prev=value,
        level=level,
        spread=spread,
        jump=jump,
        jump_peak=max(jump, state.jump_peak * (1.0 - p.jump_forget)),
        dev=dev,
        dev_peak=max(dev, state.dev_peak * (1.0 - p.dev_forget)),
        run=run,
        longest=longest * (1.0 - p.stuck_forget),
        quiet=quiet,
    )
    return new, score

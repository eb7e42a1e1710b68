"""The univariate detector's mechanisms, on small synthetic series (pure, no I/O)."""

from __future__ import annotations

import math
import random

import msgspec
import pytest

from twin.detect import univariate as uv

P = uv.DEFAULT


def run(values: list[float], step_s: float = 300.0, t0: float = 1_400_000_000.0, params: uv.UnivariateParams = P) -> list[float]:
    state: uv.State | None = None
    out = []
    for i, v in enumerate(values):
        state, s = uv.step(state, v, t0 + i * step_s, params)
        out.append(s)
    return out


def noise(n: int, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(0.0, 1.0) for _ in range(n)]


def test_no_alert_during_warm_up_even_on_wild_readings() -> None:
    """Scale-free warm-up: the first readings teach the baseline, they cannot alarm, whatever their size."""
    values = noise(P.warmup)
    values[10] = 1e6
    values[60] = -1e6
    assert max(run(values)) == 0.0


def test_a_spike_after_warm_up_is_flagged_and_noise_is_not() -> None:
    values = noise(1500)
    values[1200] = 12.0
    scores = run(values)
    assert scores[1200] >= 0.6
    assert max(scores[:1200]) < 0.6


def test_false_alarms_follow_the_calibrated_rate_whatever_the_noise() -> None:
    """The score is a tail probability learned from the signal itself: Gaussian or heavy-tailed (Laplace)
    noise alarm about equally rarely at the default level (~1 in 1,000-2,000 readings), never at 0.6."""
    rng = random.Random(7)
    laplace = [rng.expovariate(1.0) * rng.choice((-1.0, 1.0)) for _ in range(10_000)]
    for values in (noise(10_000, seed=7), laplace):
        scores = run(values)
        alarms = sum(s >= P.alarm for s in scores)
        assert 1 <= alarms <= 15, alarms
        assert max(scores) < 0.6


def test_routine_spikes_are_learned_as_normal() -> None:
    """A signal that spikes now and then by the same amount: once its tail has learned them, they do not alert."""
    values = [0.01 * v for v in noise(4000, seed=6)]
    for i in range(50, 4000, 97):
        values[i] += 20.0
    scores = run(values)
    assert sum(s >= P.alarm for s in scores[1000:]) == 0


def test_scores_do_not_depend_on_units_or_offset() -> None:
    """z is in the signal's own robust units: Kelvin or milli-Kelvin, the same alerts."""
    values = noise(1200)
    values[1000] = 10.0
    base = run(values)
    scaled = run([273.15 + 1000.0 * v for v in values])
    assert [s >= P.alarm for s in base] == [s >= P.alarm for s in scaled]
    assert max(abs(a - b) for a, b in zip(base, scaled, strict=True)) < 1e-6


def test_quiet_horizon_counts_cadences_not_seconds() -> None:
    """The same readings every 5 minutes or every hour alert on the same rows (no daily pattern here)."""
    values = noise(2500, seed=3)
    for i in (1200, 1230, 1500):
        values[i] = 15.0
    five_min = run(values, step_s=300.0)
    hourly = run(values, step_s=3600.0)
    assert [i for i, s in enumerate(five_min) if s >= P.alarm] == [i for i, s in enumerate(hourly) if s >= P.alarm]
    fired = [i for i, s in enumerate(five_min) if s >= P.alarm]
    assert 1200 in fired and 1500 in fired  # 1500 is past the 144-cadence horizon: alerts again
    assert 1230 not in fired  # inside it, a spike no worse than the first is the same episode


def test_a_worse_reading_inside_the_quiet_horizon_still_alerts() -> None:
    values = noise(1500, seed=4)
    values[1200] = 8.0
    values[1220] = 400.0
    scores = run(values)
    assert scores[1200] >= P.alarm and scores[1220] >= P.alarm


def test_periodic_baseline_a_missing_daily_peak_alerts_the_usual_ones_do_not() -> None:
    """A daily square wave (5-minute readings): the usual peaks are no surprise, a day without one is."""
    rng = random.Random(5)
    day = 288
    values = [(60.0 if 100 <= i % day < 200 else 20.0) + rng.gauss(0.0, 1.0) for i in range(12 * day)]
    for i in range(9 * day + 100, 9 * day + 200):
        values[i] = 20.0 + rng.gauss(0.0, 1.0)
    scores = run(values)
    fired = [i for i, s in enumerate(scores) if s >= P.alarm]
    assert fired and all(9 * day + 100 <= i < 9 * day + 200 for i in fired), fired


def test_non_finite_readings_are_ignored() -> None:
    values = noise(300)
    state: uv.State | None = None
    for i, v in enumerate(values):
        state, _ = uv.step(state, v, 1e9 + 300.0 * i)
    assert state is not None
    after, score = uv.step(state, math.nan, 1e9 + 300.0 * 300)
    assert after == state and score == 0.0


@pytest.mark.parametrize("n", [1, 50, 400])
def test_state_is_a_fixed_set_of_numbers(n: int) -> None:
    """Same shape after any number of readings; survives msgpack unchanged."""
    state: uv.State | None = None
    for i, v in enumerate(noise(n)):
        state, _ = uv.step(state, v, 1e9 + 60.0 * i)
    assert state is not None
    assert len(state.bin_mean) == len(state.bin_spread) == len(state.bin_n) == P.bins
    assert len(state.quantile) == len(state.excess) == len(state.exceed) == uv.VIEWS
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(state), type=uv.State) == state


def test_a_constant_signal_that_steps_is_one_alert_then_a_new_normal() -> None:
    """A spread of 0 must not freeze the baseline: after a step the level follows and the episode ends."""
    state: uv.State | None = None
    fired = []
    for i, v in enumerate([5.0] * 2000 + [6.0] * 4000):
        state, s = uv.step(state, v, 1e9 + i)
        if s >= P.alarm:
            fired.append(i)
    assert state is not None
    assert fired == [2000]
    assert abs(state.level - 6.0) < 0.01

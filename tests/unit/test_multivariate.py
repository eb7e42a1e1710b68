"""The multivariate detector on synthetic data with a known covariance."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from twin.detect.multivariate import (
    DEFAULT,
    Baseline,
    MultivariateParams,
    State,
    distance,
    fit,
    shrunk,
    step,
    update,
)

# Strongly correlated pair plus an independent signal: the off-manifold
# direction (x0 up, x1 down) is normal per signal but impossible jointly.
COV = np.array([[1.0, 0.9, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 4.0]])
MEAN = np.array([10.0, -5.0, 100.0])
EXACT = MultivariateParams(shrinkage=0.0)


def normal_rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).multivariate_normal(MEAN, COV, size=n)


def matrix(values: tuple[float, ...], p: int) -> np.ndarray:
    return np.asarray(values).reshape(p, p)


def stream(baseline: Baseline, rows: np.ndarray, params: MultivariateParams = DEFAULT) -> list[float]:
    state: State | None = None
    scores = []
    for i, row in enumerate(rows):
        state, score = step(state, baseline, row, 1000.0 + i, params)
        scores.append(score)
    return scores


def test_fit_recovers_the_known_covariance() -> None:
    base = fit(normal_rows(20_000), EXACT)
    assert np.allclose(base.mean, MEAN, atol=0.05)
    assert np.allclose(matrix(base.cov, 3), COV, atol=0.1)
    assert base.weight == 20_000
    # the precision is the inverse of the (here unshrunk, barely ridged) covariance
    assert np.allclose(matrix(base.precision, 3) @ matrix(base.cov, 3), np.eye(3), atol=1e-4)


def test_distance_is_about_one_per_dimension_on_normal_rows() -> None:
    base = fit(normal_rows(5_000), EXACT)
    fresh = normal_rows(2_000, seed=1)
    assert np.mean([distance(base, r) for r in fresh]) == pytest.approx(1.0, abs=0.1)


def test_off_manifold_point_scores_high_a_normal_one_low() -> None:
    # each coordinate within 1.5 sd of its mean, but against the correlation
    off = MEAN + np.array([1.5, -1.5, 0.0])
    along = MEAN + np.array([1.5, 1.5, 0.0])
    exact = fit(normal_rows(2_000), EXACT)
    assert distance(exact, off) > 10 * distance(exact, along)
    base = fit(normal_rows(2_000))
    assert distance(base, off) > 1.5 * DEFAULT.threshold
    assert distance(base, along) < 1.0
    _, bad = step(None, base, off, 0.0)
    _, good = step(None, base, along, 0.0)
    assert bad >= 1.0 > good


def test_shrinkage_pulls_correlations_towards_zero_and_keeps_variances() -> None:
    half = shrunk(COV, MultivariateParams(shrinkage=0.5, ridge=0.0, min_var=0.0))
    assert np.allclose(np.diag(half), np.diag(COV))
    assert half[0, 1] == pytest.approx(0.45)


def test_sustained_shift_alarms_and_normal_stream_stays_quiet() -> None:
    base = fit(normal_rows(400))
    quiet = stream(base, normal_rows(600, seed=2))
    assert max(quiet) < 1.0
    shifted = normal_rows(60, seed=3) + np.array([2.0, -2.0, 0.0])
    scores = stream(base, np.vstack([normal_rows(30, seed=4), shifted]))
    assert max(scores[:30]) < 1.0
    assert min(scores[45:]) >= 1.0


def test_hysteresis_holds_the_alarm_then_releases() -> None:
    base = fit(normal_rows(400))
    bad = np.tile(MEAN + np.array([3.0, -3.0, 0.0]), (20, 1))
    rows = np.vstack([bad, np.tile(MEAN, (200, 1))])
    state: State | None = None
    alarms = []
    for i, row in enumerate(rows):
        state, score = step(state, base, row, float(i))
        alarms.append(score >= 1.0)
        assert state.alarm == (score >= 1.0)
    first_quiet = alarms.index(False, 20)
    # the level falls with fall_s = 20 s from the cap (4x threshold) to 0.6x
    # threshold: ln(4 / 0.6) * 20 = 38 s; without hysteresis ln(4) * 20 = 28 s
    assert 20 + 30 < first_quiet < 20 + 45
    assert not any(alarms[first_quiet:])


def test_incremental_baseline_converges_to_the_fitted_one() -> None:
    rows = normal_rows(3_000, seed=5)
    batch = fit(rows)
    live: Baseline | None = None
    for row in rows:
        live = update(live, row)
    assert live is not None and live.weight == 3_000
    assert np.allclose(live.mean, batch.mean, atol=1e-9)
    assert np.allclose(live.cov, batch.cov, atol=1e-9)
    assert np.allclose(live.precision, batch.precision, atol=1e-6)


def test_forgetting_follows_a_moved_cohort() -> None:
    params = MultivariateParams(forget=0.01)
    live: Baseline | None = None
    for row in normal_rows(2_000, seed=6):
        live = update(live, row, params)
    for row in normal_rows(1_000, seed=7) + np.array([5.0, 5.0, 0.0]):
        live = update(live, row, params)
    assert live is not None and live.weight == pytest.approx(100.0)
    assert np.allclose(live.mean, MEAN + np.array([5.0, 5.0, 0.0]), atol=0.6)


def test_untrained_baseline_and_missing_values_do_not_alarm() -> None:
    young = update(update(None, MEAN), MEAN + 1.0)
    state, score = step(None, young, MEAN + 100.0, 0.0)
    assert score == 0.0 and not state.alarm
    base = fit(normal_rows(400))
    state, _ = step(None, base, MEAN, 0.0)
    after, score = step(state, base, np.array([np.nan, 0.0, 0.0]), 1.0)
    assert after == state and score == state.level / DEFAULT.threshold


def test_deterministic_and_small() -> None:
    rows = normal_rows(500, seed=8)
    a = stream(fit(rows[:300]), rows[300:])
    b = stream(fit(rows[:300]), rows[300:])
    assert a == b
    state, _ = step(None, fit(rows), rows[0], 1.7e9)
    assert len(State.__struct_fields__) == 4
    assert len(msgspec.msgpack.encode(state)) <= 32
    blob = msgspec.msgpack.encode(fit(rows))
    assert msgspec.msgpack.decode(blob, type=Baseline) == fit(rows)


def test_fit_rejects_a_vector() -> None:
    with pytest.raises(ValueError):
        fit(np.zeros(3))


def test_update_skips_rows_with_missing_values() -> None:
    base = update(update(None, MEAN), MEAN + 1.0)
    assert update(base, np.array([np.nan, 0.0, 0.0])) is base
    with pytest.raises(ValueError):
        update(None, np.array([np.nan, 0.0, 0.0]))

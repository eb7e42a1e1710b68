"""The multivariate detector's offline path and operating points: the same rule as `step`,
robust fitting, input averaging, interpolation and "unknown operating point"."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest

from twin.detect.multivariate import (
    DEFAULT,
    MultivariateParams,
    State,
    distance,
    distances,
    fit,
    fit_operating,
    follow,
    smooth_input,
    smooth_rows,
    step,
    stream,
)

COV = np.array([[1.0, 0.9, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 4.0]])


def rows(n: int, seed: int = 0, mean: tuple[float, ...] = (0.0, 0.0, 0.0)) -> np.ndarray:
    return np.random.default_rng(seed).multivariate_normal(mean, COV, size=n)


def test_batched_stream_is_step_row_after_row() -> None:
    base = fit(rows(400))
    data = np.vstack([rows(50, 1), rows(40, 2) + [2.0, -2.0, 0.0], rows(50, 3)])
    data[[10, 60]] = np.nan  # missing values hold the state in both
    ts = 100.0 + np.cumsum(np.random.default_rng(4).uniform(0.5, 2.0, len(data)))
    state: State | None = None
    one_by_one = []
    for x, t in zip(data, ts, strict=True):
        state, score = step(state, base, x, float(t))
        one_by_one.append(score)
    final, batched = stream([base] * len(data), data, ts)
    assert batched.tolist() == pytest.approx(one_by_one, rel=1e-12)
    assert final == state
    assert max(one_by_one) >= 1.0  # the shift alarmed, so the comparison covers the hysteresis
    assert distances(base, data[:5]) == pytest.approx([distance(base, x) for x in data[:5]])


def test_unknown_rows_are_not_scored_and_never_alarm() -> None:
    base = fit(rows(400))
    data = rows(30, 5) + [4.0, -4.0, 0.0]
    _, scores = stream([None] * 30, data, np.arange(30.0))
    assert all(math.isnan(s) for s in scores)
    state, scores = follow(np.full(3, 50.0), np.arange(3.0), DEFAULT, np.array([True, False, True]))
    assert scores[0] >= 1.0 and math.isnan(scores[1]) and state is not None and state.ts == 2.0
    assert stream([base] * 30, data, np.arange(30.0))[1].max() >= 1.0


def test_trimmed_fit_ignores_glitches_in_normal_rows() -> None:
    clean = rows(1_000, 6)
    dirty = clean.copy()
    dirty[::50] += [30.0, -30.0, 40.0]  # 2 % glitches
    plain, robust = fit(dirty), fit(dirty, MultivariateParams(trim=0.05))
    truth = fit(clean)
    assert np.trace(np.reshape(plain.cov, (3, 3))) > 10 * np.trace(np.reshape(truth.cov, (3, 3)))
    assert np.allclose(np.reshape(robust.cov, (3, 3)), np.reshape(truth.cov, (3, 3)), atol=0.5)
    assert robust.weight == 1_000


def test_input_average_follows_event_time_and_skips_missing_rows() -> None:
    p = MultivariateParams(smooth_s=10.0)
    first = smooth_input(None, np.array([0.0, 0.0]), 0.0, p)
    assert first is not None and first.values == (0.0, 0.0)
    same = smooth_input(first, np.array([5.0, 5.0]), 0.0, p)
    assert same is not None and same.values == (0.0, 0.0)  # no time passed: nothing moves
    later = smooth_input(first, np.array([1.0, 2.0]), 10.0, p)
    assert later is not None and later.values == pytest.approx((1 - math.exp(-1), 2 * (1 - math.exp(-1))))
    assert smooth_input(later, np.array([np.nan, 1.0]), 11.0, p) is later
    assert smooth_rows(np.ones((3, 2)), np.arange(3.0), DEFAULT).tolist() == [[1.0, 1.0]] * 3
    averaged = smooth_rows(np.array([[np.nan, 1.0], [2.0, 2.0], [4.0, 4.0]]), np.arange(3.0), p)
    assert np.isnan(averaged[0]).all() and averaged[1].tolist() == [2.0, 2.0]
    assert len(msgspec.msgpack.encode(later)) <= 1 + 9 * 3 + 2


def test_averaged_inputs_separate_a_small_shift_better_than_averaged_distances() -> None:
    """Why `smooth_s` exists: a 0.5-sd shift along the uncorrelated axis."""
    shift = np.array([0.0, 0.0, 1.0])
    train, quiet, shifted = rows(2_000, 7), rows(2_000, 8), rows(2_000, 9) + shift
    ts = np.arange(2_000.0)

    def separation(params: MultivariateParams) -> float:
        base = fit(smooth_rows(train, ts, params), params)
        q = distances(base, smooth_rows(quiet, ts, params))[50:]
        s = distances(base, smooth_rows(shifted, ts, params))[50:]
        return float((np.median(s) - np.median(q)) / np.std(q))

    assert separation(MultivariateParams(smooth_s=10.0)) > 3 * separation(DEFAULT)


def test_operating_points_interpolate_between_set_points_and_refuse_the_unseen() -> None:
    speeds = [1.0] * 500 + [3.0] * 500
    data = np.vstack([rows(500, 10, (1.0, 1.0, 0.0)), rows(500, 11, (3.0, 3.0, 0.0))])
    op = fit_operating(data, speeds)
    assert op.points == (1.0, 3.0) and op.numeric
    middle = op.at(2.0)
    assert middle is not None and middle.mean == pytest.approx((2.0, 2.0, 0.0), abs=0.15)
    assert op.at(0.5) is None and op.at(3.5) is None and op.at(float("nan")) is None
    assert distance(middle, np.array([2.0, 2.0, 0.0])) < 1.0
    assert op.at(1.0) is op.baselines[0]
    modes = fit_operating(data, ["slow"] * 500 + ["fast"] * 500)
    assert modes.points == ("slow", "fast") and not modes.numeric
    assert modes.at("turbo") is None and modes.at(2.0) is None
    sparse = fit_operating(data[:510], speeds[:510])  # 10 rows at 3.0: under min_weight
    assert sparse.points == (1.0,)
    with pytest.raises(ValueError):
        fit_operating(data, speeds[:10])

"""Cohort detector: each robot against the normal behaviour of all robots of its model.

The baseline of a robot model (mean and covariance of its signals, in band
units) is learned from every settled, working report of every robot of that
model: sums accumulate per report and the baseline is refitted every
`refit_s` of event time, so a fault on a few robots barely moves it. Each
robot is then scored with the multivariate detector (`twin.detect.multivariate`:
shrunk Mahalanobis distance, smoothed in event time, with hysteresis).
The live worker keeps one `Cohorts` per Kafka partition (a random share of
the fleet), so a replay of that partition's log learns the same baselines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from twin.detect import multivariate as mv
from twin.fleet import RobotModel
from twin.schema import Event

PARAMS = mv.MultivariateParams(min_weight=2000.0, threshold=20.0, rise_s=30.0, fall_s=60.0)
"""Fleet settings: judge no robot before its model's baseline has 2000 reports behind
it; robots of one model differ legitimately (wear-in, duty cycle, site climate), so
the threshold on the smoothed d^2/p is 20. A first setting of 8, twice the highest a
healthy robot reached in 40 minutes, gave 27 false alarms over a 360-robot day
(healthy robots reached 13.9): rare excursions need a day to show."""


@dataclass(frozen=True)
class Cohorts:
    """Baselines of one partition's robot models; `learn` returns a new one, never changes this."""

    refit_s: float = 60.0
    sums: Mapping[str, tuple[int, np.ndarray, np.ndarray]] = field(default_factory=dict)
    baselines: Mapping[str, mv.Baseline] = field(default_factory=dict)
    fitted_at: Mapping[str, float] = field(default_factory=dict)
    rates: Mapping[str, Mapping[str, Moments]] = field(default_factory=dict)
    """Per robot model and trend signal: moments of the rate of change (band widths per second)
    over the settled working reports of its healthy robots: what a robot's own reference
    rate is compared with (`twin.detect.robot`), so a robot that was already failing when
    its reference was learned is still seen."""


Moments = tuple[float, float, float]
"""Weight, sum and sum of squares."""


def rate_stats(moments: Moments | None, min_weight: float) -> tuple[float, float] | None:
    """Mean and standard deviation of a cohort's rates, once `min_weight` reports are behind them."""
    if moments is None or moments[0] < min_weight:
        return None
    n, s1, s2 = moments
    mean = s1 / n
    return mean, max(s2 / n - mean * mean, 0.0) ** 0.5


def learn_rates(cohorts: Cohorts, model: str, rates: Mapping[str, float]) -> Cohorts:
    """The cohorts after one more normal report's rates of change (one per trend signal)."""
    if not rates:
        return cohorts
    known = cohorts.rates.get(model, {})
    new = dict(known)
    for name, r in rates.items():
        n, s1, s2 = known.get(name, (0.0, 0.0, 0.0))
        new[name] = (n + 1.0, s1 + r, s2 + r * r)
    return replace(cohorts, rates={**cohorts.rates, model: new})


def features(event: Event, model: RobotModel) -> np.ndarray | None:
    """The report as a vector in band units, in catalogue order; None if a signal is missing."""
    out = np.empty(len(model.signals))
    for i, (name, spec) in enumerate(model.signals.items()):
        value = event.signals.get(name)
        if value is None:
            return None
        lo, hi = spec.nominal
        out[i] = (value - lo) / (hi - lo)
    return out


def learn(cohorts: Cohorts, model: str, x: np.ndarray, ts: float) -> Cohorts:
    """The cohorts after one more normal report of `model`, its baseline refitted when due."""
    n, s1, s2 = cohorts.sums.get(model) or (0, np.zeros(len(x)), np.zeros((len(x), len(x))))
    n, s1, s2 = n + 1, s1 + x, s2 + np.outer(x, x)
    sums = {**cohorts.sums, model: (n, s1, s2)}
    if ts - cohorts.fitted_at.get(model, -np.inf) < cohorts.refit_s or n < 2:
        return replace(cohorts, sums=sums)
    mean = s1 / n
    cov = s2 / n - np.outer(mean, mean)
    return replace(cohorts, sums=sums, baselines={**cohorts.baselines, model: mv.from_moments(mean, cov, float(n), PARAMS)},
                   fitted_at={**cohorts.fitted_at, model: ts})

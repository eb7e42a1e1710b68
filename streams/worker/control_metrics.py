"""Desired state and rollouts as Prometheus metrics, computed at scrape time.

Like `metrics.FleetCollector`, nothing here runs on the hot path: drift is
computed when Prometheus asks, from the robots this worker holds and the
desired rules it folded from `fleet.desired` (`twin.desired_summary`, held
equal to the functions the twin API and a replay call, `twin.desired.resolve`
and `deltas`): a robot drifts here exactly when `GET /twins/{id}` shows it a
delta. Labels are
bounded by the fleet model (sector, robot model, the model's desirable
fields) and by the rollout plans in the rules; robot ids never appear.

Counts (`fleet_desired_robots`, `fleet_desired_drift`,
`fleet_rollout_wave_robots`, `fleet_rollout_wave_reached_robots`) add up
across workers; `fleet_rollout_wave_reached_ratio` is this worker's own
ratio (exact with one worker; the recording rule
`plan_wave:fleet_rollout_wave_reached:ratio` sums the counts across workers).
The gate's gauges are the latest look per plan read from `fleet.rollouts`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import msgspec
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from twin.desired import DesiredRules
from twin.desired_summary import DesiredSummary
from twin.fleet import Fleet, RobotModel
from twin.plan import GateRecord

SUMMARY_MIN_AGE_S = 5.0
"""A summary is reused for at least this long (and ten times what it took), unless the rules changed."""


GATE_DECODER = msgspec.json.Decoder(GateRecord)
"""Records of `fleet.rollouts` (`twin.plan.GateRecord`, written by `fleet-twin rollout run`)."""


def desirable_fields(model: RobotModel) -> tuple[str, ...]:
    """The fields a desired change may set on robots of `model` (seeds' `control` block)."""
    return ("ai_model", "firmware", *(f"config.{name}" for name in sorted(model.control.config)))


def desire_space(fleet: Fleet) -> list[tuple[str, str, str]]:
    """Every (sector, robot model, field) the fleet model allows: the drift gauges' label sets."""
    return [(name, model, f) for name, sector in sorted(fleet.sectors.items())
            for model in sector.models if model in fleet.models
            for f in desirable_fields(fleet.models[model])]


@dataclass(frozen=True)
class _Held:
    summary: DesiredSummary
    rules: DesiredRules
    done_at: float
    took_s: float


class ControlCollector(Collector):
    """Desired-state, drift and rollout gauges for one worker (registered beside `FleetCollector`)."""

    def __init__(self, fleet: Fleet, summarise: Callable[[DesiredRules], DesiredSummary],
                 rules: Callable[[], DesiredRules], gates: Callable[[], Mapping[str, GateRecord]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`summarise`: the summary of every robot the worker holds under the rules
        (`twin.desired_summary`; the worker's `Ingest.desired_summary`)."""
        self._space = desire_space(fleet)
        self._summarise = summarise
        self._rules = rules
        self._gates = gates
        self._clock = clock
        self._last: _Held | None = None

    def _summary(self) -> DesiredSummary:
        """Reused while young, as `FleetCollector` does (a pass over every twin is the cost), unless the rules moved."""
        now, rules, last = self._clock(), self._rules(), self._last
        if (last is not None and last.rules is rules
                and now - last.done_at < max(SUMMARY_MIN_AGE_S, 10 * last.took_s)):
            return last.summary
        summary = self._summarise(rules)
        done = self._clock()
        self._last = _Held(summary, rules, done, done - now)
        return summary

    def collect(self) -> Iterator[Metric]:
        s = self._summary()
        yield from desired_families(s, self._space)
        yield from wave_families(s)
        yield from gate_families(self._gates())


def desired_families(s: DesiredSummary, space: list[tuple[str, str, str]]) -> Iterator[Metric]:
    robots = GaugeMetricFamily("fleet_desired_robots", "Robots with a desired value for the field.",
                               labels=["sector", "model", "field"])
    drift = GaugeMetricFamily("fleet_desired_drift", "Robots whose reported value differs from the desired one.",
                              labels=["sector", "model", "field"])
    for key in sorted(set(space) | set(s.robots)):
        robots.add_metric(list(key), s.robots.get(key, 0))
        drift.add_metric(list(key), s.drift.get(key, 0))
    yield robots
    yield drift


def wave_families(s: DesiredSummary) -> Iterator[Metric]:
    robots = GaugeMetricFamily("fleet_rollout_wave_robots", "Robots a rollout wave's selector covers (this worker's).",
                               labels=["plan", "wave"])
    reached = GaugeMetricFamily("fleet_rollout_wave_reached_robots",
                                "Robots of a rollout wave reporting the wave's value (this worker's).",
                                labels=["plan", "wave"])
    ratio = GaugeMetricFamily("fleet_rollout_wave_reached_ratio",
                              "Share of a rollout wave's robots reporting its value (0 while it has none).",
                              labels=["plan", "wave"])
    for (plan, wave), w in sorted(s.waves.items()):
        labels = [plan, str(wave)]
        robots.add_metric(labels, w.robots)
        reached.add_metric(labels, w.reached)
        ratio.add_metric(labels, w.reached / w.robots if w.robots else 0.0)
    yield from (robots, reached, ratio)


def gate_families(gates: Mapping[str, GateRecord]) -> Iterator[Metric]:
    statistic = GaugeMetricFamily("fleet_rollout_gate_statistic", "The rollout gate's test statistic at its latest look.",
                                  labels=["plan"])
    boundary = GaugeMetricFamily("fleet_rollout_gate_boundary",
                                 "The gate's boundaries at its latest look: upper halts, lower advances.",
                                 labels=["plan", "side"])
    wave = GaugeMetricFamily("fleet_rollout_wave", "The wave the plan's latest look judged.", labels=["plan"])
    for plan, look in sorted(gates.items()):
        statistic.add_metric([plan], look.statistic)
        boundary.add_metric([plan, "upper"], look.upper)
        boundary.add_metric([plan, "lower"], look.lower)
        wave.add_metric([plan], look.wave)
    yield from (statistic, boundary, wave)

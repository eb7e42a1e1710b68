"""One event through the whole core: reduce, then detect. Live workers, `fleet-twin eval`
and replay all call this, so they cannot disagree."""

from __future__ import annotations

from twin.detect.findings import Anomaly
from twin.detect.params import DetectorConfig
from twin.detect.cohort import Cohorts, features, learn
from twin.detect.robot import observe, settled_at_work
from twin.effects import Effects
from twin.fleet import Fleet
from twin.reduce import apply
from twin.schema import Event
from twin.state import Twin


def ingest(twin: Twin | None, event: Event, received_ts: float, fleet: Fleet,
           config: DetectorConfig, cohorts: Cohorts | None = None) -> tuple[Twin, Effects, list[Anomaly]]:
    """The twin after `event`, what the reducer did, and the anomaly messages it caused.

    With `cohorts`, the robot is also judged against its model's cohort, and a
    settled working report of a robot with no open anomaly teaches the cohort.
    """
    new, effects = apply(twin, event, received_ts=received_ts)
    model = fleet.models[event.model]
    params = config.for_model(event.model)
    baseline = cohorts.baselines.get(event.model) if cohorts else None
    new, anomalies = observe(twin, new, event, effects, received_ts, model, params, baseline)
    if cohorts is not None and effects.outcome == "applied" and settled_at_work(new, event, params) \
            and not (new.watch and new.watch.open):
        x = features(event, model)
        if x is not None:
            learn(cohorts, event.model, x, event.ts)
    return new, effects, anomalies

"""One event through the whole core: reduce, then detect. Live workers, `fleet-twin eval`
and replay all call this, so they cannot disagree."""

from __future__ import annotations

from twin.detect.findings import Anomaly
from twin.detect.params import DetectorConfig
from twin.detect.robot import observe
from twin.effects import Effects
from twin.fleet import Fleet
from twin.reduce import apply
from twin.schema import Event
from twin.state import Twin


def ingest(twin: Twin | None, event: Event, received_ts: float, fleet: Fleet,
           config: DetectorConfig) -> tuple[Twin, Effects, list[Anomaly]]:
    """The twin after `event`, what the reducer did, and the anomaly messages it caused."""
    new, effects = apply(twin, event, received_ts=received_ts)
    model = fleet.models[event.model]
    new, anomalies = observe(twin, new, event, effects, received_ts, model, config.for_model(event.model))
    return new, effects, anomalies

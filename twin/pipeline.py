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
from msgspec.structs import replace

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


def redelivered(twin: Twin | None, partition: int, offset: int, *, check: bool = False) -> bool:
    """Was this record (telemetry, or a silence check) already applied to the twin?

    Kafka delivers at least once: a worker that crashed re-reads from its last
    committed offset records whose effect its recovered table already holds.
    The twin remembers the newest offset it applied, so those are recognised
    and skipped; a robot's records all live in one partition, in offset order.
    """
    if twin is None or twin.partition != partition:
        return False
    return offset <= (twin.check_offset if check else twin.offset)


def applied(twin: Twin, partition: int, offset: int, *, check: bool = False) -> Twin:
    """The twin, marked as holding the record at `offset` (see `redelivered`)."""
    if twin.partition != partition:  # the topic was repartitioned: old offsets mean nothing here
        twin = replace(twin, partition=partition, offset=-1, check_offset=-1)
    if check:
        return replace(twin, partition=partition, check_offset=offset)
    return replace(twin, partition=partition, offset=offset)

"""One event through the whole core: reduce, then detect. Live workers, `fleet-twin eval`
and replay all call this, so they cannot disagree."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from msgspec.structs import replace

from twin.desired import Command, DesiredRules, command_for, judge_drift, resolve, took_effect
from twin.detect.cohort import Cohorts, features, learn, learn_rates
from twin.detect.findings import Anomaly
from twin.detect.params import DetectorConfig
from twin.detect.robot import observe, settled_at_work, silence, trend_rates
from twin.effects import Effects
from twin.exceptions import InvalidEvent
from twin.fleet import Fleet
from twin.record import Record, robot_of
from twin.reduce import apply, note_rejected
from twin.schema import Event
from twin.state import Twin
from twin.validate import Policy, parse

NO_RULES = DesiredRules()


class Step(NamedTuple):
    """What one record did. `twin` is the robot's new state to keep (None: nothing changed)."""

    twin: Twin | None = None
    event: Event | None = None
    effects: Effects | None = None
    found: Sequence[Anomaly] = ()
    error: InvalidEvent | None = None
    redelivered: bool = False
    cohorts: Cohorts | None = None
    """The partition's cohorts after this record (None: unchanged)."""
    commands: Sequence[Command] = ()
    """Commands for `fleet.commands`: the robot's delta when it (re)connects with one."""


def feed(lookup: Callable[[str], Twin | None], record: Record, fleet: Fleet, config: DetectorConfig,
         policy: Policy, cohorts: Cohorts, desired: DesiredRules = NO_RULES) -> Step:
    """Apply one record to the twin `lookup` returns for its robot, judged against `cohorts`
    (the baselines of the record's partition) and the desired state `desired` (drift, commands).

    `twin.fleet_fold.on_record` calls this for the worker, the replay and
    `eval`, record by record in offset order: that is why they agree bit for
    bit. Nothing passed in is changed; the new twin and cohorts come back in the step.
    """
    if record.kind == "check":
        return _check(lookup, record, config, desired)
    try:
        event = parse(record.value, fleet, key=record.key, received_ts=record.timestamp, policy=policy)
    except InvalidEvent as err:
        return _reject(lookup, record, err)
    before = lookup(event.robot_id)
    if redelivered(before, record.partition, record.offset):
        return Step(redelivered=True)
    twin, effects, found, learned = ingest(before, event, record.timestamp, fleet, config, cohorts)
    commands: tuple[Command, ...] = ()
    if effects.outcome == "applied":
        twin, drifted, commands = desire(before, twin, desired, event.ts, config)
        found = [*found, *drifted]
    return Step(applied(twin, record.partition, record.offset), event, effects, found,
                cohorts=None if learned is cohorts else learned, commands=commands)


def desire(before: Twin | None, twin: Twin, desired: DesiredRules, now: float,
           config: DetectorConfig) -> tuple[Twin, list[Anomaly], tuple[Command, ...]]:
    """Judge the robot's drift from its desired state at event time `now`, and its command if it
    just (re)connected (its first event, or the first after a silence anomaly) or a change took
    effect for it since its previous report (`twin.desired.took_effect`).

    The desire is resolved from the rules at `now` (changes stamped later do not count yet),
    so a replay that folds the same changes and reports gives the same drift.
    """
    if not desired.changes and not (twin.watch and twin.watch.open):
        return twin, [], ()
    wants = resolve(desired, twin, at=now)
    twin, found = judge_drift(twin, wants, now, config.for_model(twin.model).drift_grace_s)
    due = (before is None or any(o.detector == "silence" for o in (before.watch.open if before.watch else []))
           or took_effect(desired, before, now))
    command = command_for(twin, wants, at=now) if due else None
    return twin, found, () if command is None else (command,)


def _check(lookup: Callable[[str], Twin | None], record: Record, config: DetectorConfig,
           desired: DesiredRules = NO_RULES) -> Step:
    twin = lookup((record.key or b"").decode(errors="replace"))
    if twin is None:
        return Step()
    if redelivered(twin, record.partition, record.offset, check=True):
        return Step(redelivered=True)
    try:
        now = float(record.value)
    except ValueError:
        return Step(error=InvalidEvent("undecodable", f"a silence check holds {record.value[:40]!r}, not a time"))
    twin, found = silence(twin, now, config.for_model(twin.model))
    if desired.changes or (twin.watch and twin.watch.open):
        twin, drifted = judge_drift(twin, resolve(desired, twin, at=now), now,
                                    config.for_model(twin.model).drift_grace_s)
        found = [*found, *drifted]
    return Step(applied(twin, record.partition, record.offset, check=True), found=found)


def _reject(lookup: Callable[[str], Twin | None], record: Record, err: InvalidEvent) -> Step:
    """A rejected record counts on the twin its key names (once, even if redelivered)."""
    robot_id = robot_of(record.key)
    twin = lookup(robot_id) if robot_id else None
    if twin is None:
        return Step(error=err)
    if redelivered(twin, record.partition, record.offset):
        return Step(error=err, redelivered=True)
    return Step(applied(note_rejected(twin), record.partition, record.offset), error=err)


def ingest(twin: Twin | None, event: Event, received_ts: float, fleet: Fleet, config: DetectorConfig,
           cohorts: Cohorts) -> tuple[Twin, Effects, list[Anomaly], Cohorts]:
    """The twin after `event`, what the reducer did, the anomaly messages it caused, and the cohorts.

    The robot is judged against its model's cohort, and a settled working
    report of a robot with no open anomaly teaches the cohort (a new `Cohorts`).
    """
    new, effects = apply(twin, event, received_ts=received_ts)
    model = fleet.models[event.model]
    params = config.for_model(event.model)
    new, anomalies = observe(twin, new, event, effects, received_ts, model, params,
                             cohorts.baselines.get(event.model), cohorts.rates.get(event.model))
    if effects.outcome == "applied" and settled_at_work(new, event, params) and not (new.watch and new.watch.open):
        x = features(event, model)
        if x is not None:
            cohorts = learn(cohorts, event.model, x, event.ts)
        cohorts = learn_rates(cohorts, event.model, trend_rates(twin, new, event, model, params))
    return new, effects, anomalies, cohorts


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

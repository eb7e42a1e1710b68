"""The fleet as one fold: what every record, tick and anomaly message does beyond a single twin.

A live worker, `fleet-twin replay` and `fleet-twin eval` are three drivers of
these functions; none of them holds a rule of its own. The rules, in the order
they apply:

- a record (telemetry or a silence check) goes through `twin.pipeline.feed`
  against the cohort baselines of its Kafka partition: a baseline is then a
  function of one partition's log, whatever order a worker interleaves
  partitions in;
- an applied report feeds the rollout statistics of its (robot model, AI-model
  version);
- record time crossing a multiple of `TICK_S` (epoch-aligned, so a replay
  that starts anywhere ticks where the worker did) first judges rollouts and
  expires quiet site incidents, at that boundary: ticks are points of the log,
  not of a wall clock;
- every anomaly message published is correlated with its site
  (`on_anomaly`): enough robots of one site at once open a site incident;
- a robot is worth a silence check when it has been quiet for longer than its
  model's `silence_min_s` and is not already flagged silent
  (`silence_check_due`); the driver checks only robots whose partition it
  has folded to the end (else the twins, not the robots, are behind);
- a record of `fleet.desired` (`on_desired`) adds its change to the desired
  rules, which every later record is judged against (drift, reconnect
  commands); `on_desired_commands` says which robots a change sends a command;
- an anomaly message is posted to Alertmanager only when it is news
  (`alert_is_news`), and a resolved one is forgotten after a day
  (`alert_forgotten`).

The functions return a new state and never change the one passed in.
A worker keeps two of these states: one beside its ingest (cohorts,
rollouts), one beside its consumer of `fleet.anomalies` (sites), because that
topic is keyed by site and so brings each site's messages to one worker;
`on_tick` serves both. A replay and `eval` keep one state for all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from twin.desired import Command, DesiredRules, add_change, check_change, commands_on_change, decode_change
from twin.detect import incidents, rollout
from twin.detect.cohort import Cohorts
from twin.detect.findings import Anomaly
from twin.detect.params import DetectorConfig
from twin.exceptions import InvalidEvent
from twin.fleet import Fleet
from twin.pipeline import Step, feed
from twin.record import Record
from twin.state import Twin
from twin.validate import DEFAULT_POLICY, Policy

TICK_S = 30.0
"""Record time between two judgements of rollouts and site-incident expiries."""
MAX_GAP_S = 86400.0
"""Record time jumping further than this ticks once, at the last boundary (the same in every driver)."""
FORGET_RESOLVED_S = 86400.0
"""A resolved anomaly is remembered this long (so a re-read of its messages posts nothing), then dropped."""


@dataclass(frozen=True)
class Rules:
    """What a fold is configured with: the fleet's catalogue, the detectors and the input policy."""

    fleet: Fleet
    config: DetectorConfig
    policy: Policy = DEFAULT_POLICY


@dataclass(frozen=True)
class FleetState:
    """What a driver knows beyond single robots (the twins themselves live where the driver keeps them)."""

    cohorts: Mapping[int, Cohorts] = field(default_factory=dict)
    """Cohort baselines per Kafka partition of telemetry."""
    versions: rollout.RolloutState = field(default_factory=rollout.RolloutState)
    sites: Mapping[str, incidents.SiteState] = field(default_factory=dict)
    next_tick: float | None = None
    """Record time of the next tick; None until the first record."""
    desired: DesiredRules = field(default_factory=DesiredRules)
    """Every desired-state change folded (latest per key): robots' desires resolve from it."""


class RecordOut(NamedTuple):
    """What one record did: the robot's step, and the anomaly messages to publish, in order
    (fleet-level findings of a tick the record crossed come first)."""

    step: Step
    publish: list[Anomaly]


def on_record(state: FleetState, lookup: Callable[[str], Twin | None], record: Record,
              rules: Rules) -> tuple[FleetState, RecordOut]:
    """Apply one record of the log to the twin `lookup` gives for its robot, and to the fleet."""
    state, ticked = _ticks_until(state, record.timestamp)
    partition = state.cohorts.get(record.partition) or Cohorts()
    step = feed(lookup, record, rules.fleet, rules.config, rules.policy, partition, state.desired)
    if step.cohorts is not None:
        state = replace(state, cohorts={**state.cohorts, record.partition: step.cohorts})
    if step.event is not None and step.effects is not None and step.effects.outcome == "applied":
        state = replace(state, versions=rollout.observe(state.versions, step.event))
    return state, RecordOut(step, [*ticked, *step.found])


def on_desired(state: FleetState, record: Record, fleet: Fleet | None = None
               ) -> tuple[FleetState, InvalidEvent | None]:
    """Fold one `fleet.desired` record into the rules (checked against `fleet` when given).

    A bad record leaves the state as it was and comes back as the error, for the
    driver to dead-letter: a change the API refused never reaches the topic, so
    one that does and fails here was written by something else.
    """
    try:
        change = decode_change(record.value)
        if fleet is not None:
            check_change(change, fleet)
    except InvalidEvent as err:
        return state, err
    desired = add_change(state.desired, change)
    return (state if desired is state.desired else replace(state, desired=desired)), None


def on_desired_commands(before: DesiredRules, after: DesiredRules, twins: Iterable[Twin],
                        at: float) -> list[Command]:
    """The commands a desired change sends: to each robot held whose desired values changed and
    that has a delta (`twin.desired.commands_on_change`)."""
    return commands_on_change(before, after, twins, at)


def on_tick(state: FleetState, now: float) -> tuple[FleetState, list[Anomaly]]:
    """Judge rollouts and resolve site incidents that have gone quiet, at time `now`."""
    versions, found = rollout.judge(state.versions, now)
    sites, ended = incidents.expire_all(state.sites, now)
    return replace(state, versions=versions, sites=sites), [*found, *ended]


def on_anomaly(state: FleetState, anomaly: Anomaly) -> tuple[FleetState, list[Anomaly]]:
    """Correlate one published anomaly message with its site; returns the site-incident messages it causes."""
    if not anomaly.site or anomaly.detector == "site_incident":
        return state, []
    site, found = incidents.correlate(state.sites.get(anomaly.site, incidents.SiteState()), anomaly)
    return replace(state, sites={**state.sites, anomaly.site: site}), found


def silence_check_due(twin: Twin, now: float, config: DetectorConfig) -> bool:
    """Is the robot quiet long enough to be worth a silence check (and not already flagged silent)?

    A pre-filter: the check itself (`twin.detect.robot.silence`, applied when
    the check record is folded) judges against the robot's own cadence.
    """
    if now - twin.last_seen <= config.for_model(twin.model).silence_min_s:
        return False
    return not any(o.detector == "silence" for o in (twin.watch.open if twin.watch else []))


def alert_is_news(before: Anomaly | None, anomaly: Anomaly) -> bool:
    """Should this anomaly message be posted, given the last one taken for its id?

    Not when it repeats that one (a worker re-reading its topic after a restart),
    and nothing after a resolution: a re-read opening must not re-open an alert.
    """
    return before is None or (before != anomaly and before.status != "resolved")


def alert_forgotten(anomaly: Anomaly, now: float) -> bool:
    """May the last message taken for this anomaly be dropped (bounded memory of resolved ones)?"""
    return anomaly.status == "resolved" and now - anomaly.ts > FORGET_RESOLVED_S


def _ticks_until(state: FleetState, now: float) -> tuple[FleetState, list[Anomaly]]:
    """Every tick at or before `now` not yet taken, at its own boundary time."""
    next_tick = state.next_tick if state.next_tick is not None else (math.floor(now / TICK_S) + 1) * TICK_S
    if now - next_tick > MAX_GAP_S:  # an outage, or a producer's clock far ahead: one tick, not thousands
        next_tick = math.floor(now / TICK_S) * TICK_S
    found: list[Anomaly] = []
    while now >= next_tick:
        state, more = on_tick(state, next_tick)
        found += more
        next_tick += TICK_S
    return (state if state.next_tick == next_tick else replace(state, next_tick=next_tick)), found

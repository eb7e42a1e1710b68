"""Replay: the fleet as a pure fold over its log.

`Fold` is a driver of `twin.fleet_fold`, as the live worker and `fleet-twin
eval` are, with the record's broker timestamp as its only clock; a replay of
the same records in the same per-partition order ends in the same twin bytes
and the same robot anomalies as the live worker did. What makes that hold:

- state that spans robots (cohort baselines) is kept per Kafka partition, as
  the worker keeps it, so the interleaving of partitions cannot matter;
- the only clock is the record timestamp (`received_ts`), never the wall;
- rejected records count on the twin their key names, as live;
- each twin holds the offset of the newest record applied to it, as live,
  where it lets a restarted worker skip what it had already applied.

Fleet-level findings come from the same functions at the same log-defined
ticks (`fleet_fold.TICK_S` of record time), but they span partitions: rollouts
agree with a worker that read its partitions in the replay's time order, and
site incidents follow from the robot anomalies in fold order (the worker
correlates them in the order it reads `fleet.anomalies`, and expires them on
its own timer, since that topic's records carry no tick).

Desired-state changes (`fleet.desired` records) are folded with the telemetry,
merged by record time (`on_desired`), so a snapshot at any instant holds the
rules known then (`Result.desired_at`) beside the twins: `twin-at` shows
desired, reported and delta as the worker's API did.

`replay` folds on the batch engine (`twin.batch_replay.BatchFold`, a stretch
of the log at a time); `Fold` is the same driver record by record, kept for
`twin.audit` (which reads every record's twin before and after) and as the
oracle BatchFold is tested against.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from heapq import merge

import msgspec

from twin.batch_replay import BatchFold, Rejection, gateway_rows, rejection
from twin.desired import DesiredRules
from twin.detect.findings import Anomaly
from twin.detect.params import DetectorConfig
from twin.fleet import Fleet
from twin.fleet_fold import FleetState, Rules, on_anomaly, on_desired, on_record
from twin.gateway import is_batch
from twin.record import Record
from twin.schema import Event
from twin.state import Twin
from twin.validate import DEFAULT_POLICY, Policy

__all__ = ["Fold", "Rejection", "Result", "Seen", "Selection", "in_log_order", "replay"]


class Selection(msgspec.Struct, frozen=True, kw_only=True):
    """Which robots a replay reports on; the fold itself covers whole partitions."""

    robot: str | None = None
    site: str | None = None
    sector: str | None = None
    model: str | None = None

    def matches(self, event: Event) -> bool:
        return ((self.robot is None or event.robot_id == self.robot)
                and (self.site is None or event.site == self.site)
                and (self.sector is None or event.sector == self.sector)
                and (self.model is None or event.model == self.model))

    @property
    def everything(self) -> bool:
        return self.robot is self.site is self.sector is self.model is None


class Seen(msgspec.Struct, frozen=True):
    """A parsed event kept for the report and the data sets, with where it sat in the log."""

    event: Event
    received_ts: float
    partition: int
    offset: int


@dataclass
class Fold:
    """The state of a replay; `feed` it records in log order (per partition).

    A driver of `twin.fleet_fold`, as the worker is: the twins live in a dict,
    and every anomaly published is correlated with its site at once (the
    worker does that when it reads the message back from `fleet.anomalies`).
    """

    rules: Rules
    twins: dict[str, Twin] = field(default_factory=dict)
    state: FleetState = field(default_factory=FleetState)
    anomalies: list[Anomaly] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    records: int = 0

    def feed(self, record: Record) -> Event | None:
        """Apply one record as the worker does; returns the event it carried, if it was valid telemetry
        (a site gateway's batch: its rows in turn, the last row's event; `rows` first
        when each row's event matters)."""
        if record.kind == "telemetry" and is_batch(record.value):
            event = None
            for row in self.rows(record):
                event = self.feed(row)
            return event
        self.records += 1
        if record.kind == "desired":
            self.state, error = on_desired(self.state, record)
            if error is not None:
                self.rejected.append(rejection(record, error))
            return None
        self.state, (step, publish) = on_record(self.state, self.twins.get, record, self.rules)
        if step.error is not None and not step.redelivered:
            self.rejected.append(rejection(record, step.error))
        if step.twin is not None:
            self.twins[step.twin.robot_id] = step.twin
        self.publish(publish)
        return step.event

    def rows(self, record: Record) -> list[Record]:
        """The record's rows to feed one by one (a site gateway's batch unpacked; any other record
        itself), what unpacking refused listed and counted as `feed` counts records."""
        rows, refused = gateway_rows(record)
        self.records += len(refused)
        self.rejected += refused
        return rows

    def publish(self, found: Iterable[Anomaly]) -> None:
        for anomaly in found:
            self.anomalies.append(anomaly)
            self.state, caused = on_anomaly(self.state, anomaly)
            self.anomalies.extend(caused)


@dataclass
class Result:
    """What a replay saw and concluded, restricted to the selected robots where that applies."""

    twins: dict[str, Twin]
    anomalies: list[Anomaly]
    snapshots: dict[float, dict[str, Twin]]
    events: list[Seen]
    rejected: list[Rejection]
    records: int
    what_if: list[Anomaly] | None = None
    """The anomalies the same records give under the alternative detector configuration."""
    desired: DesiredRules = DesiredRules()
    """The desired-state rules at the end of the replay."""
    desired_at: dict[float, DesiredRules] = field(default_factory=dict)
    """The rules known at each snapshot instant (beside `snapshots`)."""


def replay(records: Iterable[Record], fleet: Fleet, config: DetectorConfig, *,
           policy: Policy = DEFAULT_POLICY, selection: Selection = Selection(),
           at: Iterable[float] = (), keep: Callable[[Event], bool] | None = None,
           what_if: DetectorConfig | None = None,
           on_record: Callable[[Record], None] | None = None,
           on_event: Callable[[Seen], None] | None = None) -> Result:
    """Fold `records` (already in log order) and report on the robots in `selection`.

    `at` lists instants (record time) to snapshot the selected twins at: a
    snapshot holds every record timed at or before it. `keep` chooses the
    events returned for plots and data sets (default: the selected robots).
    `what_if` folds the same records a second time, side by side, under
    another detector configuration (`twin.compare.compare_runs` says what changed).
    `on_event` takes the kept events as they come instead of `Result.events`:
    a day of a fleet's events does not fit in memory, a caller can write them out.
    """
    keep = keep or selection.matches
    events: list[Seen] = []
    take = on_event or events.append

    def after(record: Record, event: Event | None) -> None:
        if event is not None and keep(event):
            take(Seen(event, record.timestamp, record.partition, record.offset))
        if on_record is not None:
            on_record(record)
    fold = BatchFold(Rules(fleet, config, policy), after=after)
    other = BatchFold(Rules(fleet, what_if, policy)) if what_if is not None else None
    instants = sorted(set(at))
    snapshots: dict[float, dict[str, Twin]] = {}
    desired_at: dict[float, DesiredRules] = {}
    for record in records:
        while instants and record.timestamp > instants[0]:
            desired_at[instants[0]] = fold.state.desired
            snapshots[instants.pop(0)] = _selected(fold.twins, selection)
        fold.feed(record)
        if other is not None:
            other.feed(record)
    for instant in instants:
        snapshots[instant] = _selected(fold.twins, selection)
        desired_at[instant] = fold.state.desired
    twins = fold.twins
    return Result(
        twins=_selected(twins, selection),
        anomalies=[a for a in fold.anomalies if _about(a, selection, twins)],
        snapshots=snapshots,
        events=events,
        rejected=fold.rejected if selection.everything else
        [r for r in fold.rejected if r.key is not None and _key_selected(r.key, selection, twins)],
        records=fold.records,
        what_if=None if other is None else _what_if(other, selection),
        desired=fold.state.desired,
        desired_at=desired_at,
    )


def _what_if(other: BatchFold, selection: Selection) -> list[Anomaly]:
    twins = other.twins
    return [a for a in other.anomalies if _about(a, selection, twins)]


def in_log_order(partitions: Iterable[Iterable[Record]]) -> Iterator[Record]:
    """Interleave per-partition streams (each in offset order) by record time.

    The order within a partition, which is all the twins depend on, is kept
    whatever the timestamps; across partitions, time order makes snapshots and
    the rollout clock meaningful. At the same instant: desired changes, then
    telemetry, then checks (a change stamped at t counts for reports of t).
    """
    return merge(*partitions, key=lambda r: (r.timestamp, _RANK.get(r.kind, 1)))


_RANK = {"desired": -1, "telemetry": 0}


def _selected(twins: dict[str, Twin], selection: Selection) -> dict[str, Twin]:
    if selection.everything:
        return dict(twins)
    return {rid: t for rid, t in twins.items() if _twin_selected(t, selection)}


def _twin_selected(twin: Twin, s: Selection) -> bool:
    return ((s.robot is None or twin.robot_id == s.robot) and (s.site is None or twin.site == s.site)
            and (s.sector is None or twin.sector == s.sector) and (s.model is None or twin.model == s.model))


def _about(anomaly: Anomaly, s: Selection, twins: dict[str, Twin]) -> bool:
    """Robot anomalies of selected robots; fleet-level ones that touch the selection."""
    if s.everything:
        return True
    if anomaly.robot_id:
        twin = twins.get(anomaly.robot_id)
        return twin is not None and _twin_selected(twin, s)
    return ((s.site is None or anomaly.site in ("", s.site)) and (s.sector is None or anomaly.sector in ("", s.sector))
            and (s.model is None or anomaly.model in ("", s.model))
            and (s.robot is None or _robot_place_matches(anomaly, twins.get(s.robot))))


def _robot_place_matches(anomaly: Anomaly, twin: Twin | None) -> bool:
    return twin is not None and (anomaly.site == twin.site or anomaly.model == twin.model)


def _key_selected(key: bytes, s: Selection, twins: dict[str, Twin]) -> bool:
    twin = twins.get(key.decode(errors="replace"))
    return twin is not None and _twin_selected(twin, s)

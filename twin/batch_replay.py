"""`twin.replay.Fold` on the batch engine: a driver of `twin.batch_fold` holding every partition.

`BatchFold` gives the twins, the anomaly messages (each correlated with its site as `Fold.publish`
does), the rejections, the per-record events and the fleet state that `Fold` gives folded record
by record (tests/unit/test_batch_replay.py compares them on chaos runs at random stretch sizes).
Replay and `eval` (`twin.score.ground_truth.fold_scenario`, `streams.analysis.importing.fold_events`)
run on it; `Fold` stays for `twin.audit` (it reads each record's twin before and after) and as the
oracle.

Records are buffered and folded a *stretch* at a time (`flush`) by `batch_fold.fold_log`, as the
worker folds a batch: the stretch's records through `fold_twins` (one join over its partitions), then
`fleet_level` over the whole stretch in log order (cut where a robot moves partition). A stretch ends:
* at `stretch` records (memory and latency; any cut is exact);
* before a `desired` record: `on_desired` changes the rules every later twin is judged against;
* before a record that crosses a tick: a tick judges rollouts and expires site incidents from the
  anomalies correlated before it (`on_anomaly`, which `fleet_level` does not do), so a stretch holds
  at most one tick, taken when its first record arrives (`_ticks_until`, as `on_record` takes it);
  its messages are published then, before that record's own;
* wherever the caller reads the state (`twins`, `anomalies`, `state`, `rejected`): they flush first.

Twins are materialised from the columns (`batch_fold.twin_of`) only when read, and only those of
robots a record named since the last read; `twins` keeps `Fold.twins`' order (first applied event).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import msgspec

from twin import batch_fold as bf
from twin.detect.findings import Anomaly
from twin.exceptions import InvalidEvent
from twin.fleet_fold import FleetState, Rules, _ticks_until, on_anomaly, on_desired
from twin.gateway import is_batch, unpack
from twin.pipeline import Step
from twin.record import Record
from twin.schema import Event
from twin.state import Twin

STRETCH = 6000
"""Records folded at most at once: the batch engine's gain is flat from a few thousand rows."""

AfterRecord = Callable[[Record, Event | None], None]
"""Called for each record once folded, in log order, with the event it carried (valid telemetry)."""


class Rejection(msgspec.Struct, frozen=True):
    partition: int
    offset: int
    timestamp: float
    key: bytes | None
    reason: str
    detail: str


def gateway_rows(record: Record) -> tuple[list[Record], list[Rejection]]:
    """A record's rows to fold (a site gateway's batch unpacked, `twin.gateway.unpack`; any other record
    itself) and what unpacking refused, as a replay lists rejections: what both replay folds share."""
    rows, refused, _ = unpack(record)
    return rows, [rejection(row, error) for row, error in refused]


def rejection(record: Record, error: InvalidEvent) -> Rejection:
    """A refused record as a replay lists it."""
    return Rejection(record.partition, record.offset, record.timestamp, record.key, error.reason, error.detail)


class BatchFold:
    """The state of a replay on the batch engine; `feed` it records in log order (per partition)."""

    def __init__(self, rules: Rules, *, fleet: FleetState | None = None, stretch: int = STRETCH,
                 after: AfterRecord | None = None) -> None:
        self.rules = rules
        self.stretch = stretch
        self.after = after
        self.fold = bf.FoldState(rules, fleet)
        self.records = 0
        self._anomalies: list[Anomaly] = []
        self._rejected: list[Rejection] = []
        self._buffer: list[Record] = []
        self._tick_at = 0.0
        """The next tick after the buffer's first record: a record at or after it starts a stretch."""
        self._robots: dict[str, None] = {}
        """Every robot with a twin, in `Fold.twins`' order (first applied event)."""
        self._twins: dict[str, Twin] = {}
        self._stale: set[str] = set()
        """Robots named by a record since their twin was last materialised into `_twins`."""

    def feed(self, record: Record) -> None:
        """Take one record (folded at the latest when the state is next read); a site gateway's batch
        as its rows (`twin.gateway`), each counted as a record."""
        if record.kind == "telemetry" and is_batch(record.value):
            rows, refused = gateway_rows(record)
            self.records += len(refused)
            self._rejected += refused
            for row in rows:
                self.feed(row)
            return
        self.records += 1
        if record.kind == "desired":
            self.flush()
            self.fold.fleet, error = on_desired(self.fold.fleet, record)
            if error is not None:
                self._rejected.append(rejection(record, error))
            if self.after is not None:
                self.after(record, None)
            return
        if self._buffer and (len(self._buffer) >= self.stretch or record.timestamp >= self._tick_at):
            self.flush()
        if not self._buffer:
            self.fold.fleet, ticked = _ticks_until(self.fold.fleet, record.timestamp)
            self._publish(ticked)
            tick = self.fold.fleet.next_tick  # set by `_ticks_until`
            self._tick_at = math.inf if tick is None else tick
        self._buffer.append(record)

    def flush(self) -> None:
        """Fold the buffered stretch: the twin level (one join over its partitions), then the fleet level."""
        records, self._buffer = self._buffer, []
        if not records:
            return
        for record, out in zip(records, bf.fold_log(self.fold, self.rules, records)):
            self._take(record, out.step)
            self._publish(out.publish)
            if self.after is not None:
                self.after(record, out.step.event)

    def _take(self, record: Record, step: Step) -> None:
        """A folded record's rejection (as `Fold` lists it: not when redelivered) and its robot's twin."""
        if step.error is not None and not step.redelivered:
            self._rejected.append(rejection(record, step.error))
        robot = step.event.robot_id if step.event is not None else (record.key or b"").decode(errors="replace")
        if step.event is not None:
            self._robots[robot] = None
        if robot in self._robots:
            self._stale.add(robot)

    def _publish(self, found: Iterable[Anomaly]) -> None:
        """As `Fold.publish`: each message correlated with its site at once."""
        for anomaly in found:
            self._anomalies.append(anomaly)
            self.fold.fleet, caused = on_anomaly(self.fold.fleet, anomaly)
            self._anomalies.extend(caused)

    @property
    def twins(self) -> dict[str, Twin]:
        """Every twin, as `Fold.twins` holds them (a new dict: changing it changes nothing here)."""
        self.flush()
        for robot in self._stale:
            self._twins[robot] = _twin_of(self.fold, robot)
        self._stale.clear()
        return {robot: self._twins[robot] for robot in self._robots}

    @property
    def anomalies(self) -> list[Anomaly]:
        self.flush()
        return self._anomalies

    @property
    def rejected(self) -> list[Rejection]:
        self.flush()
        return self._rejected

    @property
    def state(self) -> FleetState:
        self.flush()
        return self.fold.fleet


def _twin_of(state: bf.FoldState, robot: str) -> Twin:
    twin = bf.twin_of(state, robot)
    if twin is None:
        raise AssertionError(f"{robot} had an event applied but has no twin")
    return twin

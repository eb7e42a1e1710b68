"""`twin.fleet_fold.on_record` over a batch of records: twins as arrays, a round join.

`fold_batch(state, rules, records)` gives every robot the twin, and every record the anomaly
messages, commands, rejection and redelivery, that `on_record` gives folded record by record
(tests/unit/test_batch_fold.py compares encoded twins with their watch, messages, commands,
rejections and the fleet state on chaos runs at random splits). The state is updated in place.

How a batch is split:
* Robots on the *scalar path* for this batch: any robot a silence check, a rejected record or a
  redelivered offset names, or whose twin was last applied on another partition; and every robot of
  a *mixed* model (below). Each is materialised once as a `Twin` (`to_twin` + `watch_of` + its
  offsets), all of its records of the batch go through `twin.pipeline.feed` in log order (learning
  the cohorts there, row by row), and it is stored back after the batch (`_store` into the
  reducer's columns, `_store_watch` into the `ObserveState`: the inverse of `watch_of`, written here).
* Every other telemetry row takes the *join*: `batch_observe.ingest_partitions` (`pipeline.ingest`
  over a batch: rounds of `reduce_batch` and the detectors, judged against the cohorts in force at
  each row's log position, learning in log order), from each partition's cohorts before the batch;
  the scalar path's rows then follow in log order from the cohorts it returns. One join spans every
  partition of the batch (a round holds rows of all of them): a steady load's batch holds few
  records per partition, and a join per partition paid the fixed numpy cost of each round once per
  partition (bench/batch_size.py, 8 partitions, batches of 100 records: 232 us/event with a join
  per partition, 60 with one; docs/BENCHMARKS.md). When none of
  the join's models can learn in the batch (`_learning_models`), its learn mask would be all false:
  the rounds are then observed against the cohorts as they are (`_observe_fixed`), without the plans.
* Desired state is judged sparsely (`_desiring`): a robot for which `pipeline.desire` could change
  the twin or send a message at one of its rows (a `desired_drift` open before the batch, or a delta
  that may reach the drift grace within it, or a delta while silence is open) takes the scalar path.
  Every other robot's rows take the join: for most `desire` returns the twin as it is, no message
  and no command (nothing desired differs from what they report); for robots with a young delta it
  can only send a command, which `_commands` computes after the join, row by row.

Cohorts stay in log order. Each partition keeps its own `Cohorts` (as `on_record` does); a row reads
only its own partition's entries of its own model (baseline, rates) and teaches only those, so these
*cohorts* (`CohortKey`: partition, model) are independent and each one's learning only has to be in
log order among its own rows. Below, "model" stands for such a cohort. Running the join's rows first
and the scalar path's after is therefore exact for a model whose rows all take one side, or whose
cohort cannot change within the batch (both sides then read the cohort as it was). A model with rows
on the scalar path whose cohort could change (`_learning_models`: a working row of a robot that may
be past warm-up and settled, by bounds from the twins before the batch) is *mixed*: all its robots
take the scalar path for the batch (`_mixed`), unless the batch has silence checks or rejected
records: then it is folded in pieces, cut around each run of them (`_pieces`; folding consecutive
pieces is a fold of `on_record` as well): the pieces of checks and rejections hold no telemetry, so
only redeliveries and robots from another partition still send whole models to the scalar path. What
`ingest_partitions` cannot do is take a scalar-path robot's rows (checks, redeliveries, rejections,
another partition's twin) interleaved with its own learning. Caveat: models new to the partition's
`Cohorts` within one batch, some learned by the join and some on the scalar path, may get their dict
keys in another order than the scalar's (values are equal; the test compares sorted views).

Fleet level (ticks, rollout statistics; `fleet_level`) is folded after the twins (`fold_twins`),
record by record in log order:
it reads only record times and applied events, never a twin (the rollout statistics through
`rollout.latency_of` and `add_latency`, `rollout.observe`'s own steps, on a local dict written back
before each tick and at the end).

Cost (bench/fold_batch.py, 2,000 robots, batches of 2,000 from wire bytes, 2 loaded cores): 2.66x
`on_record` over 80 s of chaos, 5.62x once robots are settled at work (the cohorts learn).

State (`FoldState`, updated in place): the reducer's columns, with each robot's offsets (partition,
offset, check_offset) that `redelivered` reads (its `watches` stay empty here); the
`ObserveState`; the `FleetState` (cohorts, rollout versions, ticks, sites, desired
rules). A checkpoint must hold all three; `twin_of` gives any robot's twin as `on_record` holds it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace as dc_replace
from typing import Any

import numpy as np
from msgspec.structs import replace

from twin import batch_reduce as br
from twin import batch_cohort as bc
from twin import batch_signals as bs
from twin import batch_stall as bst
from twin.batch_observe import CohortKey, ObserveState, ingest_partitions, observe_batch, watch_of, watches_of
from twin.columns import Index, Rows, _event, decode_batch
from twin.desired import DETECTOR as DRIFT
from twin.desired import command_for, deltas, matches, resolve, took_effect
from twin.detect import rollout
from twin.detect.cohort import Cohorts
from twin.detect.findings import Anomaly
from twin.detect.watch import Watch
from twin.effects import Effects
from twin.fleet_fold import FleetState, RecordOut, Rules, _ticks_until
from twin.pipeline import Step, feed
from twin.record import Record, robot_of
from twin.reduce import _latest, apply
from twin.schema import Event
from twin.state import Twin, encode_twin

_QUIET = frozenset({"duplicate", "stale", "late"})
NARROW_ROBOTS = 8
"""A batch with fewer robots for the join than this takes the scalar path whole: a round then holds
at most that many rows, and numpy's cost per call outweighs what the join saves per row
(bench/batch_size.py with one join over 8 partitions, us/event joined against scalar, best of 3:
336 against 277 at batches of 5 records, 220 against 248 at 10, 155 against 230 at 20). Either path
gives the same outputs; tests set it to 0 to join every batch."""


class FoldState:
    """One partition's fold: twins as columns (`red`), detector state (`obs`), and the fleet state."""

    def __init__(self, rules: Rules, fleet: FleetState | None = None) -> None:
        self.red = br.ReduceState(br.catalogues_of(rules.fleet))
        self.obs = ObserveState()
        self.fleet = fleet or FleetState()
        self.params = {m: rules.config.for_model(m) for m in rules.fleet.models}
        self.specs = {m: spec.signals for m, spec in rules.fleet.models.items()}


def twin_of(state: FoldState, robot_id: str) -> Twin | None:
    """The robot's twin as `on_record`'s driver would hold it (None: no twin)."""
    red = state.red
    if robot_id not in red.slot_of:
        return None
    state.obs.grow(red.robots)
    return br.to_twins(red, (robot_id,), watches=(watch_of(state.obs, red, robot_id),))[0]


def twins_of(state: FoldState, robot_ids: Sequence[str]) -> list[Twin | None]:
    """`[twin_of(state, r) for r in robot_ids]` (equal `encode_twin` bytes; None: no twin), batched:
    one gather per column for all the robots (`to_twins`, `watches_of`). A robot named twice gets one
    twin object twice."""
    red = state.red
    known = list(dict.fromkeys(r for r in robot_ids if r in red.slot_of))
    state.obs.grow(red.robots)
    made = {t.robot_id: t for t in br.to_twins(red, known, watches=watches_of(state.obs, red, known))}
    return [made.get(r) for r in robot_ids]


ENCODE_CHUNK = 256
"""Robots per `twins_of` call in `encoded_twins`."""


def encoded_twins(state: FoldState, robot_ids: Sequence[str]) -> list[bytes | None]:
    """`[encode_twin(t) for t in twins_of(state, robot_ids)]` (None: no twin), a chunk of robots at a time.

    What a checkpoint stores. Built all at once, a checkpoint's twins (some thirty objects each) were all
    alive until encoded: at 10,000 robots the collector found them in its older generations and walked
    them again and again, about a third of the checkpoint's time while the twin's structs were tracked
    (bench/twins_of.py at 9915f43: 8.5 of 26.9 us per twin). A chunk's twins are freed before the next
    is built, and the gathers stay as batched as they need to be."""
    return [None if t is None else encode_twin(t) for t in chunked_twins(state, robot_ids)]


def chunked_twins(state: FoldState, robot_ids: Sequence[str]) -> Iterator[Twin | None]:
    """`twins_of(state, robot_ids)` built `ENCODE_CHUNK` robots at a time as it is read, so that only a
    chunk's twins are alive at once (`encoded_twins`)."""
    for at in range(0, len(robot_ids), ENCODE_CHUNK):
        yield from twins_of(state, robot_ids[at:at + ENCODE_CHUNK])


def robot_ids(state: FoldState) -> set[str]:
    """Every robot with a twin."""
    return set(state.red.slot_of)


def fold_batch(state: FoldState, rules: Rules, records: Sequence[Record]) -> tuple[FoldState, list[RecordOut]]:
    """Fold `records` (each partition's in offset order, no robot's on two partitions: else `fold_log`)
    as `on_record` would one by one.

    Out: per record the `RecordOut` of `on_record`, except that `step.twin` and `step.cohorts`
    are None (read twins with `twin_of`, cohorts from `state.fleet`)."""
    return state, fleet_level(state, records, fold_twins(state, rules, records))


def fold_log(state: FoldState, rules: Rules, records: Sequence[Record]) -> list[RecordOut]:
    """Fold records of any partitions held in one `FoldState` (each partition's in offset order), as
    `on_record` would one by one in the order given: what the worker and a replay call.

    The records go through `fold_twins`, then `fleet_level` over all of them in the order given. Exact
    because a twin reads no tick and no rollout statistic, only its own partition's cohorts and the
    desired rules (which no record here changes). The records are cut where a robot's record lands on
    another partition than its earlier ones here (a repartitioned topic: its offsets then say nothing
    of redelivery within the piece), and the pieces are folded in turn."""
    out: list[RecordOut] = []
    for lo, hi in _by_robot_partition(records):
        piece = records[lo:hi]
        out += fleet_level(state, piece, fold_twins(state, rules, piece))
    return out


def _by_robot_partition(records: Sequence[Record]) -> list[tuple[int, int]]:
    """Cuts before each record whose key was last seen on another partition within its piece."""
    cuts, seen = [0], dict[bytes | None, int]()
    for i, r in enumerate(records):
        if seen.get(r.key, r.partition) != r.partition:
            cuts.append(i)
            seen = {}
        seen[r.key] = r.partition
    return list(zip(cuts, [*cuts[1:], len(records)]))


def load_twins(state: FoldState, twins: Sequence[Twin]) -> None:
    """Put twins kept elsewhere (a worker's recovered table) into the fold, as if it had folded them.

    A twin's `watch.signals` stands for the twin's signals at its last judged report, which are its
    signals now unless a later unjudged (late) event added one: then the lengths differ, the next
    judged event starts every signal's state afresh (`detect.robot._aligned`, `nlisted` here), and
    only the names' order matters for `watch_of` to give the watch back; any of the twin's names in
    order will do."""
    fresh = [replace(t, watch=None) for t in twins if t.robot_id not in state.red.slot_of]
    if fresh:
        br._load(state.red, fresh)  # one pass over columns for a takeover's many robots
    for twin in twins:
        watch = twin.watch or Watch()
        _store_twin(state, twin, list(twin.signals)[:len(watch.signals)])


def fold_twins(state: FoldState, rules: Rules, records: Sequence[Record]) -> list[Step]:
    """The twin level of `fold_batch`: each record's `feed` step (twin and cohorts None), the twins and
    the partitions' cohorts updated in `state`; ticks and rollout statistics left to `fleet_level`
    (a twin reads no tick and no rollout statistic, only its partition's cohorts and the desired rules)."""
    if not records:
        return []
    telemetry = [i for i, r in enumerate(records) if r.kind != "check"]
    cols = decode_batch([(records[i].key, records[i].value, records[i].timestamp) for i in telemetry],
                        rules.fleet, rules.policy)
    events: dict[int, Event] = {telemetry[j]: e if isinstance(e, Event) else _event(e)
                                for j, e in zip(cols.row.tolist(), cols.events)}
    errors = {telemetry[j]: err for j, err in cols.rejected.items()}
    own = _scalar_robots(state, records, events, errors)
    keys = {i: (records[i].partition, e.model) for i, e in events.items()}
    commanded: set[str] = set()
    learning: set[CohortKey] = set()
    if len(few := {e.robot_id for e in events.values()} - own) < NARROW_ROBOTS:
        scalar = own | few
    else:
        judged, commanded = _desiring(state, events, own)
        own |= judged
        learning = _learning_models(state, events, keys)
        scalar = _mixed(events, keys, own, learning)
        if len(scalar) > len(own):
            pieces = _pieces(records, events)
            if len(pieces) > 1:  # fold the pieces one after another: a fold of `on_record` either way
                outs: list[Step] = []
                for lo, hi in pieces:
                    outs += fold_twins(state, rules, records[lo:hi])
                return outs
    steps: list[Step] = [Step()] * len(records)
    start = {p: state.fleet.cohorts.get(p) for p in dict.fromkeys(r.partition for r in records)}
    cohorts = {p: c or Cohorts() for p, c in start.items()}
    joins = np.fromiter((e.robot_id not in scalar for e in events.values()), np.bool_, len(events))
    fast = [i for i, join in zip(events, joins.tolist()) if join]
    if fast:
        before = {rid: br.to_twin(state.red, rid) if rid in state.red.slot_of else None for rid in commanded - scalar}
        cohorts = _join(state, rules, records, events, fast, cohorts, steps, (cols.take(joins), cols.index),
                        learning & {keys[i] for i in fast})
        _commands(state, events, before, steps)
    held = {rid: twin_of(state, rid) for rid in scalar}
    names = {rid: _listed(state, rid) for rid in scalar}
    for i, record in enumerate(records):
        if i in events and events[i].robot_id not in scalar:
            continue
        learned = _scalar_row(state, rules, record, held, names, cohorts[record.partition], steps, i)
        if learned is not None:
            cohorts[record.partition] = learned
    for partition, first in start.items():
        _keep_cohorts(state, partition, first, cohorts[partition])
    _keep(state, held, names)
    return steps


def _keep_cohorts(state: FoldState, partition: int, start: Cohorts | None, cohorts: Cohorts) -> None:
    """The partition's cohorts after the batch into the fleet state, as `on_record` keeps them: once learned."""
    if cohorts is not start and (start is not None or cohorts.sums or cohorts.rates):
        state.fleet = dc_replace(state.fleet, cohorts={**state.fleet.cohorts, partition: cohorts})


def _pieces(records: Sequence[Record], events: Mapping[int, Event]) -> list[tuple[int, int]]:
    """The batch cut around each run of silence checks and rejected records (what puts a robot on the
    scalar path for the batch), for when that would send a mixed model's robots there too: within a
    piece without them, their robots' telemetry joins."""
    cuts = [0]
    for i in range(1, len(records)):
        if (i in events) != (i - 1 in events):
            cuts.append(i)
    return list(zip(cuts, [*cuts[1:], len(records)]))


def _keep(state: FoldState, twins: dict[str, Twin | None], names: dict[str, list[str]]) -> None:
    """The scalar path's twins after a batch, back into the columns."""
    for rid, twin in twins.items():
        if twin is not None:
            _store_twin(state, twin, names[rid])


def _mixed(events: Mapping[int, Event], keys: Mapping[int, CohortKey], scalar: set[str],
           learning: set[CohortKey]) -> set[str]:
    """`scalar` plus every robot of a *mixed* cohort (`keys`: each row's partition and model): one with
    rows on the scalar path that could change within the batch (`learning`, `_learning_models`). The join
    learns its rows' cohorts as one `ingest_partitions`, before the scalar path's rows, which learn in `feed`
    row by row: exact only when no cohort has rows on both sides whose learning interleaves, so a mixed
    cohort's robots all take the scalar path (until fixed: a robot's rows all take one path)."""
    out = set(scalar)
    while True:
        mixed = {keys[i] for i, e in events.items() if e.robot_id in out} & learning
        more = {e.robot_id for i, e in events.items() if keys[i] in mixed} - out
        if not more:
            return out
        out |= more


def _scalar_robots(state: FoldState, records: Sequence[Record], events: Mapping[int, Event],
                   errors: Mapping[int, Any]) -> set[str]:
    """Robots whose records of this batch all go through `feed`: named by a check, a rejected record or
    a redelivered offset (at or below one applied before it: the twin's, or an earlier row's of this
    batch, as a restart's re-read may fall within one batch), or last applied on another partition."""
    out: set[str] = set()
    robots = list(dict.fromkeys(e.robot_id for e in events.values()))
    offsets, partitions = _gathered(state, robots, ("offset", "partition"), (-1, _NO_TWIN))
    top = dict(zip(robots, offsets))
    """Per robot: the highest offset applied so far (the twin's, then its rows of the batch)."""
    unseen = dict(zip(robots, partitions))
    """The twins' partitions of the robots whose first row is still to come."""
    for i, r in enumerate(records):
        if r.kind == "check" or i in errors:
            if rid := robot_of(r.key):
                out.add(rid)
            continue
        rid = events[i].robot_id
        if unseen.pop(rid, _NO_TWIN) not in (_NO_TWIN, r.partition):
            out.add(rid)
        if r.offset <= top[rid]:  # redelivered: before the batch, or after a later offset of this batch
            out.add(rid)
        top[rid] = max(top[rid], r.offset)
    return out


_NO_TWIN = -2
"""`_scalar_robots`' partition for a robot without a twin (a twin's own may be -1: unknown)."""


def _desiring(state: FoldState, events: Mapping[int, Event], scalar: set[str]) -> tuple[set[str], set[str]]:
    """Robots of the batch (not in `scalar`) for which `pipeline.desire` might change the twin or send a
    message at one of their rows (they take the scalar path), and those for which it can at most send
    a command (they join; `_commands` sends them). Every other robot: `desire` returns `(twin, [], ())`.

    Why that is exact. The rules do not change within a batch (`on_desired` is no record of it).
    `feed` calls `desire(before, twin, rules, e.ts, config)` only after an *applied* row e, with
    `twin` the twin after it. Both ways a row is applied (`reduce._create`, `_become_latest`) give
    that twin the fields the newest event decides (`reduce._latest(e)`) and its robot id;
    `matches`, `resolve`, `command_for` and whether `deltas` is empty read no other field (robot id,
    sector, site, model, AI-model version, firmware, config; `_field_since` only dates a delta). So
    `_probe(e)` (those fields written over any twin) resolves to the same desire `wants` as that
    twin, has a delta exactly when it has, and gets the same command. A robot is
    * *quiet* when no `desired_drift` is open before the batch and no row has a delta against
      `wants = resolve(rules, twin, at=e.ts)`: `judge_drift` returns `(twin, [])` (with `wants`
      empty at once; else its loop keeps every open anomaly, none a drift, and opens none, so
      `still == opened` and nothing goes out) and `command_for` returns None whatever `due` says;
    * *commanded* when no drift and no silence is open before the batch and at every row each delta
      is younger than the drift grace counted from its desire (`e.ts - desire.ts < drift_grace_s`;
      a delta's `since` is at least `desire.ts`, so `now - since < grace`): `judge_drift` again
      opens none and returns the twin, and only a command can go out (`_commands`);
    * judged by `feed` otherwise.
    Induction over a robot's rows: a quiet or commanded row leaves no drift open (the detectors,
    `observe` and `lifecycle.track`, never open one) and no silence (only a silence check opens
    one, and a checked robot is in `scalar`), so the next row starts as this one did, and `feed`'s
    step is `ingest`'s, which the join computes, plus the command. (Without any change `desire`
    still runs on a twin with anomalies open and would resolve a drift: hence the drift test always.)
    `wants` is empty when no setting change (value not None) stamped at or before e.ts (`resolve`
    stops at the first later one) matches the probe, the usual case, so `resolve` and `deltas` run
    only on rows some change selects. Rows that end up not applied are judged too (a bound).
    """
    red = state.red
    judged: set[str] = set()
    commanded: set[str] = set()
    opened = {red.robot_ids[slot]: {o.detector for o in anomalies} for slot, anomalies in state.obs.opened.items()}
    for e in events.values():
        if e.robot_id not in scalar and DRIFT in opened.get(e.robot_id, ()):
            judged.add(e.robot_id)
    rules = state.fleet.desired
    setting = [c for c in rules.changes if c.value is not None]
    if not setting or not events:
        return judged, commanded
    base = apply(None, next(iter(events.values())), received_ts=0.0)[0]
    for e in events.values():
        rid = e.robot_id
        if rid in judged or rid in scalar or setting[0].ts > e.ts:
            continue
        probe = _probe(base, e)
        if not any(not c.ts > e.ts and matches(c, probe) for c in setting):
            continue
        wants = resolve(rules, probe, at=e.ts)
        delta = deltas(probe, wants)
        grace = state.params[e.model].drift_grace_s
        if delta and ("silence" in opened.get(rid, ()) or any(not e.ts - wants[d.field].ts < grace for d in delta)):
            judged.add(rid)
        elif delta:
            commanded.add(rid)
    return judged, commanded - judged


def _probe(base: Twin, e: Event) -> Twin:
    """`base` with what an applied `e` writes of a twin's identity (`reduce._latest`): what `desire`'s
    selectors, deltas and commands read of the twin after it (see `_desiring`)."""
    return replace(base, robot_id=e.robot_id, **_latest(e))


def _commands(state: FoldState, events: Mapping[int, Event], before: dict[str, Twin | None],
              steps: list[Step]) -> None:
    """`desire`'s commands for the join's rows of *commanded* robots (`_desiring`; `before`: their twins
    before the batch, None for new ones), row by row in log order: at an applied row, the robot's delta
    when it is due (its first event, or a change took effect since the twin before the row: only an
    applied row moves its time and identity, so that twin is the probe of the robot's previous applied
    row). A commanded robot has no silence open, so `desire`'s reconnect case does not arise."""
    rules = state.fleet.desired
    rows = sorted(i for i, e in events.items() if e.robot_id in before)
    if not rows:
        return
    base = apply(None, events[rows[0]], received_ts=0.0)[0]
    for i in rows:
        e, step = events[i], steps[i]
        if step.effects is None or step.effects.outcome != "applied":
            continue
        twin, prior = _probe(base, e), before[e.robot_id]
        if prior is None or took_effect(rules, prior, e.ts):
            command = command_for(twin, resolve(rules, twin, at=e.ts), at=e.ts)
            if command is not None:
                steps[i] = step._replace(commands=(command,))
        before[e.robot_id] = twin


def _learning_models(state: FoldState, events: Mapping[int, Event], keys: Mapping[int, CohortKey]) -> set[CohortKey]:
    """Cohorts (`keys`: each row's partition and model) with a row that could teach them
    (`pipeline.ingest` learns from applied working rows settled at work with nothing open): a working
    report of a robot that may be past warm-up and settled. Bounds, from the twins before the batch: the robot's events then plus its rows so far
    must exceed `warmup_reports`; and as `mode_since` only ever stays or takes the time of one of the
    robot's reports (`twin.reduce`), it is at least the smaller of its value then and the robot's
    earliest report time so far, which must be `settle_s` before the row."""
    robots = list(dict.fromkeys(e.robot_id for e in events.values()))
    seen = dict(zip(robots, zip(*_gathered(state, robots, ("events", "mode_since"), (0, math.inf)))))
    """Per robot: its events before the batch plus its rows so far, and the bound on its `mode_since`."""
    out: set[CohortKey] = set()
    params = state.params
    for i, e in events.items():
        k, low = seen[e.robot_id]
        k, low = seen[e.robot_id] = (k + 1, min(low, e.ts))
        if e.mode == "working" and keys[i] not in out:
            p = params[e.model]
            if k > p.warmup_reports and e.ts - low >= p.settle_s:
                out.add(keys[i])
    return out


def _gathered(state: FoldState, robots: Sequence[str], names: Sequence[str], absent: Sequence[Any]) -> list[list[Any]]:
    """Per column of `names`: each robot's value as a Python number (`absent`: for a robot without a
    twin), one gather per column (reading numpy scalars one robot at a time costs more than the rule)."""
    red = state.red
    slots = np.fromiter((red.slot_of.get(r, -1) for r in robots), np.int64, len(robots))
    known = slots >= 0
    out = []
    for name, default in zip(names, absent):
        column = red.cols[name]
        values = np.full(len(robots), default, column.dtype)
        values[known] = column[slots[known]]
        out.append(values.tolist())
    return out


def _scalar_row(state: FoldState, rules: Rules, record: Record, held: dict[str, Twin | None],
                names: dict[str, list[str]], cohorts: Cohorts, steps: list[Step], i: int) -> Cohorts | None:
    """One record of a scalar-path robot through `feed` (which learns, in log order); the cohorts it
    learned returned (None: unchanged)."""
    step = feed(held.get, record, rules.fleet, rules.config, rules.policy, cohorts, state.fleet.desired)
    steps[i] = step._replace(twin=None, cohorts=None)
    if step.twin is None:
        return None
    held[step.twin.robot_id] = step.twin
    if step.event is not None and step.effects is not None and step.effects.outcome not in _QUIET:
        names[step.twin.robot_id] = list(step.twin.signals)
    return step.cohorts


def _join(state: FoldState, rules: Rules, records: Sequence[Record], events: Mapping[int, Event], rows: list[int],
          cohorts: dict[int, Cohorts], steps: list[Step], columns: tuple[Rows, Index],
          learning: set[CohortKey]) -> dict[int, Cohorts]:
    """The join's rows (log order, any partitions) through `ingest_partitions`, learning in log order
    from `cohorts` (per partition); marks their offsets and returns each partition's cohorts after
    them. `columns`: the decoder's rows of these events; `learning`: the cohorts among theirs that
    can learn (none: `_observe_fixed`). A join robot's rows all join, and a cohort that can learn
    has all its rows on one side (`_mixed`), so `_learning_models` of the whole batch decides it."""
    red = state.red
    evs = [events[i] for i in rows]
    recv = [records[i].timestamp for i in rows]
    parts = [records[i].partition for i in rows]
    if learning:
        effects, found, learned = ingest_partitions(state.obs, red, evs, recv, parts, rules.fleet.models,
                                                    state.params, cohorts, columns=columns)
        cohorts = {**cohorts, **learned}
    else:
        effects, found = _observe_fixed(state, rules, evs, recv, [cohorts[p] for p in parts], columns)
    partition, offset, check = red.cols["partition"], red.cols["offset"], red.cols["check_offset"]
    for i, e, eff, msgs in zip(rows, evs, effects, found):  # `pipeline.applied`, row by row in log order
        slot = red.slot_of[e.robot_id]
        if partition[slot] != records[i].partition:
            check[slot] = -1
        partition[slot], offset[slot] = records[i].partition, records[i].offset
        steps[i] = Step(None, e, eff, msgs)
    return cohorts


def _observe_fixed(state: FoldState, rules: Rules, events: Sequence[Event], received_ts: Sequence[float],
                   cohorts: Sequence[Cohorts], columns: tuple[Rows, Index] | None = None
                   ) -> tuple[list[Effects], list[list[Anomaly]]]:
    """`ingest_partitions` when no row can learn (its learn mask is then all false): `observe_batch`
    against the cohorts as they are (`cohorts`: each event's partition's), without the plans and the
    fixed point."""
    return observe_batch(state.obs, state.red, events, received_ts, rules.fleet.models, state.params,
                         cohorts=cohorts, columns=columns)


def _listed(state: FoldState, robot_id: str) -> list[str]:
    """The names of the signals in the robot's `Watch.signals` (what `watch_of` lists), in order."""
    red, obs = state.red, state.obs
    slot = red.slot_of.get(robot_id)
    if slot is None:
        return []
    obs.grow(red.robots)
    _, _, gids = obs.listed_runs(red, np.array([slot]))
    return [red.names.table[g] for g in gids.tolist()]


def _store_twin(state: FoldState, twin: Twin, names: list[str]) -> None:
    """A scalar-path twin back into the columns (its offsets too), its watch into `obs`."""
    red = state.red
    slot = red.slot_of.get(twin.robot_id)
    if slot is None:
        br._load(red, [replace(twin, watch=None)])
        slot = red.slot_of[twin.robot_id]
    else:
        br._store(red, slot, replace(twin, watch=None))
    _store_watch(state, slot, twin.watch or Watch(), names)


def _store_watch(state: FoldState, slot: int, watch: Watch, names: list[str]) -> None:
    """Write a `Watch` into the `ObserveState` (the inverse of `watch_of`): `names` are the signals its
    `signals` list stands for, in order (the twin's signals at its last judged report)."""
    red, obs = state.red, state.obs
    if len(names) != len(watch.signals):
        raise AssertionError(f"watch of {len(watch.signals)} signals stored against {len(names)} names")
    obs.grow(red.robots)
    at = np.array([slot])
    obs.lay(red, at)
    _, mine, _ = obs.runs(red, at)
    obs.cells.put(mine, bs.empty(len(mine)))
    obs.listed[mine] = False
    if names:
        cells = obs.cells_at(red, np.repeat(at, len(names)), np.array([red.names[n] for n in names], np.int64))
        if (cells < 0).any():  # `names` are the twin's signals at a judged report: its block holds them
            raise AssertionError(f"watch stored against signals {names} its twin's block lacks")
        obs.cells.put(cells, bs.watches_of(watch.signals))
        obs.listed[cells] = True
    obs.nlisted[slot] = len(watch.signals)
    r = obs.robot
    r.interval[slot], r.skew[slot], r.delivery[slot], r.codes[slot] = (watch.interval, watch.skew, watch.delivery,
                                                                       watch.codes)
    _put(obs.opened, slot, watch.open)
    _put_row(obs.cohort, slot, bc.states_of([watch.cohort]))
    _put_row(obs.stall, slot, bst.stalls_of([watch.stall]))


def _put(table: dict[int, Any], slot: int, value: Any) -> None:
    if value is not None and value != []:
        table[slot] = value
    else:
        table.pop(slot, None)


def _put_row(arrays: Any, slot: int, one: Any) -> None:
    """A one-row NamedTuple of columns (one robot's stall or cohort state) into `slot` of `arrays`."""
    for column, value in zip(arrays, one):
        column[slot] = value[0]


def fleet_level(state: FoldState, records: Sequence[Record], steps: Sequence[Step]) -> list[RecordOut]:
    """Ticks and rollout statistics, record by record in log order, as `on_record` takes them
    (`records` may span partitions: with `steps` from `fold_twins` of each).

    Between two ticks the reports each version learns from are taught to it at once, in log order
    (`rollout.add_latencies`); before each tick (which judges them) the statistics are written back."""
    fleet = state.fleet
    stamps = np.fromiter((r.timestamp for r in records), np.float64, len(records))
    taught = list(map(_taught, steps))
    ticks: dict[int, list[Anomaly]] = {}
    start = look = 0
    while True:
        tick = _next_tick(stamps, look, fleet.next_tick)
        fleet = _teach(fleet, taught, start, tick)
        if tick == len(records):
            break
        fleet, ticks[tick] = _ticks_until(fleet, records[tick].timestamp)
        start, look = tick, tick + 1
    state.fleet = fleet
    return [RecordOut(step, [*ticks[i], *step.found] if ticks.get(i) else list(step.found))
            for i, step in enumerate(steps)]


def _next_tick(stamps: Any, look: int, next_tick: float | None) -> int:
    """The first record from `look` on at which a tick is due (`len(stamps)`: none)."""
    if look >= len(stamps) or next_tick is None:
        return min(look, len(stamps))
    due = stamps[look:] >= next_tick
    at = int(due.argmax())
    return look + at if due[at] else len(stamps)


def _teach(fleet: FleetState, taught: Sequence[tuple[str, float, float] | None], lo: int, hi: int) -> FleetState:
    """The rollout statistics after the reports `taught[lo:hi]` ((version key, latency, event time),
    each version's in log order)."""
    by_key: dict[str, tuple[list[float], list[float]]] = {}
    for seen in taught[lo:hi]:
        if seen is not None:
            ts, values = by_key.setdefault(seen[0], ([], []))
            ts.append(seen[2])
            values.append(seen[1])
    if not by_key:
        return fleet
    stats = dict(fleet.versions.stats)
    for key, (ts, values) in by_key.items():
        stats[key] = rollout.add_latencies(stats.get(key), ts, values)
    return dc_replace(fleet, versions=replace(fleet.versions, stats=stats))


def _taught(step: Step) -> tuple[str, float, float] | None:
    """What the record's report teaches the rollout statistics: (version key, latency, event time)."""
    e = step.event
    if e is None or step.effects is None or step.effects.outcome != "applied":
        return None
    seen = rollout.latency_of(e, _ROLLOUT)
    return None if seen is None else (*seen, e.ts)


_ROLLOUT = rollout.RolloutParams()
"""The parameters `on_record` observes rollouts with (the defaults)."""


def plain_effects(out: Sequence[RecordOut]) -> list[Effects | None]:
    """Each record's Effects (None: not applied telemetry), for drivers that count outcomes."""
    return [o.step.effects for o in out]

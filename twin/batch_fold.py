"""`twin.fleet_fold.on_record` over a batch of one partition's records: twins as arrays, a round join.

`fold_batch(state, rules, records)` gives every robot the twin, and every record the anomaly
messages, commands, rejection and redelivery, that `on_record` gives folded record by record
(tests/unit/test_batch_fold.py compares encoded twins with their watch, messages, commands,
rejections and the fleet state on chaos runs at random splits). The state is updated in place.

How a batch is split:
* Robots on the *scalar path* for this batch: any robot a silence check, a rejected record or a
  redelivered offset names, whose twin was last applied on another partition, or whose model is
  *live* (below). Each is materialised once as a `Twin` (`to_twin` + `watch_of` + its offsets) and
  all of its records of the batch go through `twin.pipeline.feed` in log order. After the batch a
  live model's robots stay held as Twins (`FoldState.held`: no column round trip per batch); the
  others are stored back (`_store` into the reducer's columns, `_store_watch` into the
  `ObserveState`: the inverse of `watch_of`, written here).
* Every other telemetry row takes the *round join*: `reduce_batch` and `observe_round` round by
  round (a robot's k-th row in round k), as `batch_observe.observe_batch` does.
* Live models: the join judges trend drift with no cohort rates, which is exact only while the
  model's rate moments are below `cohort.PARAMS.min_weight` (`robot._against_cohort` ignores them
  until then). A model whose moments could reach it within the batch is live: its rows take the
  scalar path and learn there, row by row. `_live_models` is THE PLUG for the join's cohort support:
  once the join (`batch_observe`'s coming `ingest_batch`, on `batch_cohort`) judges rows against the
  cohorts in log order, it returns the empty set and these rows join.
* With desired-state changes the whole batch goes through `on_record` (`desire` judges drift and
  commands per row): `_join_ready`.

Cohorts stay in log order. A row reads only its own model's cohort entries (baseline, rates) and
teaches only its own model's, so models are independent and each model's learning only has to be
in log order among its own rows. For models that are not live: the batch is cut into *segments*,
each ending at the first row that could change what a later row's cohort scoring sees (the first fit
of the model's baseline, or a refit that could reach `min_weight`; a refit below `min_weight` changes
nothing a row sees, as `multivariate.step` holds the state for any such baseline). Rows that could
refit are bounded from the twins before the batch (`_candidates`). Within a segment every row is
judged against the segment's baselines (passed to `observe_round`, or to `feed`), and at its end
the rows that learn (applied, settled at work, nothing open after the row: `pipeline.ingest`'s
rule) teach the cohorts with the scalar `learn`/`learn_rates`, in log order. Caveat: models new
to the partition's `Cohorts` within one batch may get their dict keys in another order than the
scalar's (values are equal; the test compares sorted views).

Fleet level (ticks, rollout statistics) is folded after the twins, record by record in log order:
it reads only record times and applied events, never a twin (the rollout Welford step is
`rollout.observe`'s arithmetic on a local dict, written back before each tick and at the end).

Cost (bench/fold_batch.py, 2,000 robots, batches of 2,000 from wire bytes): 2.1-2.2x `on_record`
over 80 s of chaos, 1.5-1.8x once robots are settled at work, when live models' rows (most of the
fleet's) take the scalar path: the join's cohort support is what moves that.

State (`FoldState`, updated in place): the reducer's columns, whose `extras` hold no watch here but
each robot's offsets (partition, offset, check_offset) that `redelivered` reads; the
`ObserveState`; the held Twins; the `FleetState` (cohorts, rollout versions, ticks, sites, desired
rules). A checkpoint must hold all four; `twin_of` gives any robot's twin as `on_record` holds it.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace as dc_replace
from typing import Any, NamedTuple

import numpy as np
from msgspec.structs import replace

from twin import batch_reduce as br
from twin import batch_cohort as bc
from twin import batch_signals as bs
from twin import batch_stall as bst
from twin.batch_observe import Before, ObserveState, Round, observe_round, rounds_of, snapshot, watch_of
from twin.columns import Columns, _event, decode_batch
from twin.detect import rollout
from twin.detect.cohort import Cohorts, features, learn, learn_rates
from twin.detect.cohort import PARAMS as COHORT_PARAMS
from twin.detect.findings import Anomaly
from twin.detect.params import RobotDetectorParams
from twin.detect.robot import drift_view, settled_at_work, trend_rates
from twin.detect.watch import Watch
from twin.effects import Effects
from twin.fleet_fold import FleetState, RecordOut, Rules, _ticks_until, on_record
from twin.pipeline import Step, feed
from twin.record import Record
from twin.schema import MODES, Event
from twin.state import Twin

_WORKING = MODES.index("working")
_QUIET = frozenset({"duplicate", "stale", "late"})


class FoldState:
    """One partition's fold: twins as columns (`red`), detector state (`obs`), and the fleet state."""

    def __init__(self, rules: Rules, fleet: FleetState | None = None) -> None:
        self.red = br.ReduceState(br.catalogues_of(rules.fleet))
        self.obs = ObserveState()
        self.fleet = fleet or FleetState()
        self.params = {m: rules.config.for_model(m) for m in rules.fleet.models}
        self.specs = {m: spec.signals for m, spec in rules.fleet.models.items()}
        self.held: dict[str, Twin] = {}
        """Robots whose state is a `Twin` (their columns are stale): those of models whose cohort rates
        are live (`_live_models`), which stay on the scalar path batch after batch."""
        self.held_names: dict[str, list[str]] = {}
        """For each held robot: the signals its `Watch.signals` stands for (see `_store_watch`)."""


def twin_of(state: FoldState, robot_id: str) -> Twin | None:
    """The robot's twin as `on_record`'s driver would hold it (None: no twin)."""
    if robot_id in state.held:
        return state.held[robot_id]
    red = state.red
    if robot_id not in red.slot_of:
        return None
    state.obs.grow(red.robots, len(red.names.table))
    return replace(br.to_twin(red, robot_id), watch=watch_of(state.obs, red, robot_id))


def robot_ids(state: FoldState) -> set[str]:
    """Every robot with a twin."""
    return set(state.red.slot_of) | set(state.held)


class _Learn(NamedTuple):
    """What one row teaches its model's cohort (`pipeline.ingest`): features and trend rates."""

    model: str
    x: Any
    ts: float
    rates: dict[str, float]


def fold_batch(state: FoldState, rules: Rules, records: Sequence[Record]) -> tuple[FoldState, list[RecordOut]]:
    """Fold `records` (one partition, offset order) as `on_record` would one by one.

    Out: per record the `RecordOut` of `on_record`, except that `step.twin` and `step.cohorts`
    are None (read twins with `twin_of`, cohorts from `state.fleet`)."""
    if not records:
        return state, []
    if any(r.partition != records[0].partition for r in records):
        raise ValueError("fold_batch folds the records of one partition")
    telemetry = [i for i, r in enumerate(records) if r.kind != "check"]
    cols = decode_batch([(records[i].key, records[i].value, records[i].timestamp) for i in telemetry],
                        rules.fleet, rules.policy)
    if not _join_ready(state):
        return _all_scalar(state, rules, records)
    events: dict[int, Event] = {telemetry[j]: e if isinstance(e, Event) else _event(e)
                                for j, e in zip(cols.row.tolist(), cols.events)}
    errors = {telemetry[j]: err for j, err in cols.rejected.items()}
    live = _live_models(state, records, cols)
    scalar = _scalar_robots(state, records, events, errors) | {
        e.robot_id for e in events.values() if e.model in live or e.robot_id in state.held}
    steps: list[Step] = [Step()] * len(records)
    held = {rid: twin_of(state, rid) for rid in scalar}
    names = {rid: _listed(state, rid) for rid in scalar}
    candidates = _candidates(state, records, events, live)
    start = 0
    while start < len(records):
        end = _segment_end(state, records, events, candidates, start)
        _segment(state, rules, records, events, (scalar, live), held, names, steps, (start, end))
        start = end
    _keep(state, held, names, live)
    return state, _fleet_level(state, records, steps)


def _keep(state: FoldState, twins: dict[str, Twin | None], names: dict[str, list[str]], live: set[str]) -> None:
    """The scalar path's twins after a batch: held as Twins when of a live model, else into the columns."""
    for rid, twin in twins.items():
        if twin is None:
            continue
        if twin.model in live:
            state.held[rid], state.held_names[rid] = twin, names[rid]
        else:
            state.held.pop(rid, None)
            state.held_names.pop(rid, None)
            _store_twin(state, twin, names[rid])


def _join_ready(state: FoldState) -> bool:
    """Can the round join judge this batch? Not with desired-state changes: drift and commands are
    judged by `desire` per row (the whole batch then goes through `on_record`)."""
    return not state.fleet.desired.changes


def _live_models(state: FoldState, records: Sequence[Record], cols: Columns) -> set[str]:
    """Models whose cohort trend rates could reach `min_weight` within the batch: the join judges trends
    without cohort rates, so their rows take the scalar path, against the cohorts as they are at each
    row. THE PLUG for the join's cohort support: once the join judges rows against cohort rates in
    log order (`batch_cohort`), return the empty set here."""
    cohorts = state.fleet.cohorts.get(records[0].partition)
    if cohorts is None or not cohorts.rates:
        return set()
    per_model: dict[str, int] = {}
    for m in cols.model.tolist():
        name = cols.index.models[m]
        per_model[name] = per_model.get(name, 0) + 1
    return {model for model, moments in cohorts.rates.items()
            if max((w for w, _, _ in moments.values()), default=0.0) + per_model.get(model, 0)
            >= COHORT_PARAMS.min_weight}


def _scalar_robots(state: FoldState, records: Sequence[Record], events: Mapping[int, Event],
                   errors: Mapping[int, Any]) -> set[str]:
    """Robots whose records of this batch all go through `feed`: named by a check, a rejected record or
    a redelivered offset (at or below one applied before it: the twin's, or an earlier row's of this
    batch, as a restart's re-read may fall within one batch), or last applied on another partition."""
    out: set[str] = set()
    red = state.red
    top: dict[str, int] = {}
    """Per robot: the highest offset applied so far (the twin's, then its rows of the batch)."""
    for i, r in enumerate(records):
        if r.kind == "check" or i in errors:
            try:
                rid = r.key.decode() if r.key else ""
            except UnicodeDecodeError:
                rid = ""
            if rid:
                out.add(rid)
            continue
        rid = events[i].robot_id
        if rid not in top:
            slot = red.slot_of.get(rid)
            _, part, top[rid], _ = red.extras.get(slot, (None, -1, -1, -1)) if slot is not None else (None, -1, -1, -1)
            if slot is not None and part != r.partition:
                out.add(rid)
        if r.offset <= top[rid]:  # redelivered: before the batch, or after a later offset of this batch
            out.add(rid)
        top[rid] = max(top[rid], r.offset)
    return out


def _candidates(state: FoldState, records: Sequence[Record], events: Mapping[int, Event], live: set[str]) -> list[int]:
    """Rows that could teach a cohort (and so refit its baseline): working reports of robots that may
    be past warm-up and settled. Bounds, from the twins before the batch: the robot's events then plus
    its rows so far must exceed `warmup_reports`; and as `mode_since` only ever stays or takes the
    time of one of the robot's reports (`twin.reduce`), it is at least the smaller of its value then
    and the robot's earliest report time so far, which must be `settle_s` before the row."""
    red = state.red
    seen: dict[str, tuple[int, float]] = {}
    out = []
    events_col, since_col = red.cols["events"], red.cols["mode_since"]
    for i, e in events.items():
        k, low = seen.get(e.robot_id, (0, math.inf))
        slot = red.slot_of.get(e.robot_id)
        twin = state.held.get(e.robot_id)
        if k == 0 and (slot is not None or twin is not None):
            low = twin.mode_since if twin is not None else float(since_col[slot])
        k, low = seen[e.robot_id] = (k + 1, min(low, e.ts))
        if e.mode != "working" or e.model in live:  # live models learn row by row on the scalar path
            continue
        p = state.params[e.model]
        had = twin.counts.events if twin is not None else int(events_col[slot]) if slot is not None else 0
        if had + k > p.warmup_reports and e.ts - low >= p.settle_s:
            out.append(i)
    return out


def _segment_end(state: FoldState, records: Sequence[Record], events: Mapping[int, Event], candidates: list[int],
                 start: int) -> int:
    """One past the first candidate from `start` that could change what a row's cohort scoring sees:
    the first fit of its model's baseline, or a refit (`refit_s` after the last) that could reach
    `min_weight`. A refit below `min_weight` changes nothing a row sees: `multivariate.step` leaves
    the state as it was (or idle) for any baseline of fewer rows, and the dimension is the model's."""
    cohorts = state.fleet.cohorts.get(records[start].partition) or Cohorts()
    taught: dict[str, int] = {}
    for i in candidates[bisect.bisect_left(candidates, start):]:
        e = events[i]
        n = taught[e.model] = taught.get(e.model, 0) + 1
        if e.ts - cohorts.fitted_at.get(e.model, -math.inf) < cohorts.refit_s:
            continue
        n += cohorts.sums[e.model][0] if e.model in cohorts.sums else 0
        if n >= 2 and (e.model not in cohorts.baselines or n >= COHORT_PARAMS.min_weight):
            return i + 1
    return len(records)


def _segment(state: FoldState, rules: Rules, records: Sequence[Record], events: Mapping[int, Event],
             routes: tuple[set[str], set[str]], held: dict[str, Twin | None], names: dict[str, list[str]],
             steps: list[Step], span: tuple[int, int]) -> None:
    """Records [start, end): the join on the plain rows, `feed` on the scalar robots' records in log
    order (a live model's rows learn there and then, `routes[1]`), then the other rows that learn
    teach the cohorts in log order. Models' cohorts are independent (each row reads and teaches only
    its own model's), so the deferred learning of one model commutes with another's."""
    scalar, live = routes
    start, end = span
    partition = records[start].partition
    cohorts = state.fleet.cohorts.get(partition) or Cohorts()
    learns: dict[int, _Learn] = {}
    fast = [i for i in range(start, end) if i in events and events[i].robot_id not in scalar]
    if fast:
        _join(state, rules, records, events, fast, cohorts, steps, learns)
    for i in range(start, end):
        if i in events and events[i].robot_id not in scalar:
            continue
        if i in events and events[i].model in live:  # learns in `feed`, here and now
            learned = _scalar_row(state, rules, records[i], held, names, cohorts, steps, None, i)
            cohorts = cohorts if learned is None else learned
        else:
            _scalar_row(state, rules, records[i], held, names, cohorts, steps, learns, i)
    for i in sorted(learns):
        what = learns[i]
        if what.x is not None:
            cohorts = learn(cohorts, what.model, what.x, what.ts)
        cohorts = learn_rates(cohorts, what.model, what.rates)
    if cohorts is not state.fleet.cohorts.get(partition):
        state.fleet = dc_replace(state.fleet, cohorts={**state.fleet.cohorts, partition: cohorts})


def _scalar_row(state: FoldState, rules: Rules, record: Record, held: dict[str, Twin | None],
                names: dict[str, list[str]], cohorts: Cohorts, steps: list[Step], learns: dict[int, _Learn] | None,
                i: int) -> Cohorts | None:
    """One record of a scalar-path robot through `feed`; its learning noted in `learns` (to be done
    later, in log order; None: not noted), and the cohorts `feed` learned returned (None: unchanged)."""
    step = feed(held.get, record, rules.fleet, rules.config, rules.policy, cohorts, state.fleet.desired)
    if step.twin is None:
        steps[i] = step._replace(cohorts=None)
        return None
    e, twin = step.event, step.twin
    before = held.get(twin.robot_id)
    held[twin.robot_id] = twin
    steps[i] = step._replace(twin=None, cohorts=None)
    if e is None or step.effects is None or step.effects.outcome in _QUIET:
        return step.cohorts
    names[twin.robot_id] = list(twin.signals)
    p = state.params[e.model]
    if learns is not None and step.effects.outcome == "applied" and settled_at_work(twin, e, p) and not (twin.watch and twin.watch.open):
        model = rules.fleet.models[e.model]
        learns[i] = _Learn(e.model, features(e, model), e.ts, trend_rates(before, twin, e, model, p))
    return step.cohorts


def _join(state: FoldState, rules: Rules, records: Sequence[Record], events: Mapping[int, Event], rows: list[int],
          cohorts: Cohorts, steps: list[Step], learns: dict[int, _Learn]) -> None:
    """The plain rows through `reduce_batch` + `observe_round`, round by round; marks their offsets."""
    red, obs = state.red, state.obs
    models = rules.fleet.models
    for idx in rounds_of([events[rows[j]].robot_id for j in range(len(rows))]):
        at = [rows[j] for j in idx]
        evs = [events[i] for i in at]
        recv = np.array([records[i].timestamp for i in at], np.float64)
        before = snapshot(red, [e.robot_id for e in evs])
        _, effects = br.reduce_batch(red, evs, recv)
        found = observe_round(obs, red, Round(evs, recv, effects, before), models, state.params,
                              dict(cohorts.baselines))
        for j, (i, e, eff, msgs) in enumerate(zip(at, evs, effects, found)):
            slot = red.slot_of[e.robot_id]
            _, part, _, chk = red.extras.get(slot, (None, -1, -1, -1))
            red.extras[slot] = (None, records[i].partition, records[i].offset,
                                chk if part == records[i].partition else -1)
            steps[i] = Step(None, e, eff, msgs)
            if eff.outcome == "applied" and slot not in obs.opened:
                _learn_row(state, rules, before, j, e, slot, learns, i)


def _learn_row(state: FoldState, rules: Rules, before: Before, j: int, e: Event, slot: int,
               learns: dict[int, _Learn], i: int) -> None:
    """`pipeline.ingest`'s learning rule on a joined row (no anomaly open after it)."""
    p = state.params[e.model]
    c = state.red.cols
    if not (e.mode == "working" and int(c["events"][slot]) > p.warmup_reports
            and e.ts - float(c["mode_since"][slot]) >= p.settle_s):
        return
    model = rules.fleet.models[e.model]
    learns[i] = _Learn(e.model, features(e, model), e.ts, _rates(state, before, j, e, p))


def _rates(state: FoldState, before: Before, j: int, e: Event, p: RobotDetectorParams) -> dict[str, float]:
    """`robot.trend_rates` from the round's snapshot of the twin before (the row is settled at work)."""
    if not (before.existed[j] and before.mode[j] == _WORKING and before.events[j] > p.warmup_reports
            and before.ts[j] - before.mode_since[j] >= p.settle_s):
        return {}
    b_ts = float(before.ts[j])
    dt = e.ts - b_ts
    if not 0 < dt <= p.drift_max_step_s:
        return {}
    red, flat = state.red, before.signals
    spec_of = state.specs[e.model]
    out: dict[str, float] = {}
    for name, value in e.signals.items():
        spec = spec_of.get(name)
        if spec is None or drift_view(name, p) != "trend":
            continue
        gid = dict.get(red.names, name)
        block = int(flat.block[j])
        colmap = red.colmap()
        if gid is None or block < 0 or gid >= colmap.shape[1] or colmap[block, gid] < 0:
            continue
        pos = int(flat.base[j] + colmap[block, gid])
        if not flat.present[pos] or (flat.explicit[pos] and float(flat.own_ts[pos]) != b_ts):
            continue
        width = max(spec.nominal[1] - spec.nominal[0], 1e-9)
        out[name] = (value - float(flat.value[pos])) / width / dt
    return out


def _listed(state: FoldState, robot_id: str) -> list[str]:
    """The names of the signals in the robot's `Watch.signals` (what `watch_of` lists), in order."""
    if robot_id in state.held:
        return state.held_names[robot_id]
    red, obs = state.red, state.obs
    slot = red.slot_of.get(robot_id)
    if slot is None:
        return []
    obs.grow(red.robots, len(red.names.table))
    gids = np.flatnonzero(obs.cell_of[slot] >= 0)
    gids = gids[obs.listed[obs.cell_of[slot, gids]]]
    return sorted(red.names.table[g] for g in gids.tolist())


def _store_twin(state: FoldState, twin: Twin, names: list[str]) -> None:
    """A scalar-path twin back into the columns (offsets in `extras`, watch into `obs`)."""
    red = state.red
    slot = red.slot_of.get(twin.robot_id)
    if slot is None:
        br._load(red, [replace(twin, watch=None)])
        slot = red.slot_of[twin.robot_id]
    else:
        br._store(red, slot, replace(twin, watch=None))
    red.extras[slot] = (None, twin.partition, twin.offset, twin.check_offset)
    _store_watch(state, slot, twin.watch or Watch(), names)


def _store_watch(state: FoldState, slot: int, watch: Watch, names: list[str]) -> None:
    """Write a `Watch` into the `ObserveState` (the inverse of `watch_of`): `names` are the signals its
    `signals` list stands for, in order (the twin's signals at its last judged report)."""
    red, obs = state.red, state.obs
    if len(names) != len(watch.signals):
        raise AssertionError(f"watch of {len(watch.signals)} signals stored against {len(names)} names")
    gids = [red.names[n] for n in names]
    obs.grow(red.robots, len(red.names.table))
    mine = obs.cell_of[slot][obs.cell_of[slot] >= 0]
    bs.put(obs.cells, mine, bs.empty(len(mine)))
    obs.listed[mine] = False
    if gids:
        cells = obs.cell_of[slot, gids]
        new = cells < 0
        if new.any():
            cells[new] = obs.alloc(int(new.sum()))
            obs.cell_of[slot, np.array(gids)[new]] = cells[new]
        bs.put(obs.cells, cells, bs.watches_of(watch.signals))
        obs.listed[cells] = True
    obs.nlisted[slot] = len(watch.signals)
    r = obs.robot
    r.interval[slot], r.skew[slot], r.delivery[slot], r.codes[slot] = (watch.interval, watch.skew, watch.delivery,
                                                                       watch.codes)
    _put(obs.opened, slot, watch.open)
    _put_state(obs, "cohort", slot, watch.cohort, bc.states_of)
    _put_state(obs, "stall", slot, watch.stall, bst.stalls_of)


def _put(table: dict[int, Any], slot: int, value: Any) -> None:
    if value is not None and value != []:
        table[slot] = value
    else:
        table.pop(slot, None)


def _put_state(obs: ObserveState, name: str, slot: int, value: Any, arrays_of: Any) -> None:
    """One robot's stall or cohort state into `obs`: a dict slot -> state, or (as `batch_observe`
    keeps them now) a NamedTuple of per-slot arrays built by `arrays_of` from scalar states."""
    table = getattr(obs, name)
    if isinstance(table, dict):
        _put(table, slot, value)
        return
    for column, one in zip(table, arrays_of([value])):
        column[slot] = one[0]


def _fleet_level(state: FoldState, records: Sequence[Record], steps: list[Step]) -> list[RecordOut]:
    """Ticks and rollout statistics, record by record in log order, as `on_record` takes them.

    The rollout statistics are folded into a local dict (`rollout.latency_of` and `add_latency`,
    the steps of `rollout.observe`) and written back before each tick (which judges them) and at the end."""
    fleet = state.fleet
    stats = dict(fleet.versions.stats)
    dirty = False
    out = []
    for record, step in zip(records, steps):
        ticked: list[Anomaly] = []
        if fleet.next_tick is None or record.timestamp >= fleet.next_tick:
            if dirty:
                fleet, dirty = dc_replace(fleet, versions=replace(fleet.versions, stats=dict(stats))), False
            fleet, ticked = _ticks_until(fleet, record.timestamp)
            stats = dict(fleet.versions.stats)
        e = step.event
        if e is not None and step.effects is not None and step.effects.outcome == "applied":
            observed = rollout.latency_of(e, _ROLLOUT)
            if observed is not None:
                key, value = observed
                stats[key] = rollout.add_latency(stats.get(key), e.ts, value)
                dirty = True
        out.append(RecordOut(step, [*ticked, *step.found] if ticked else list(step.found)))
    if dirty:
        fleet = dc_replace(fleet, versions=replace(fleet.versions, stats=stats))
    state.fleet = fleet
    return out


_ROLLOUT = rollout.RolloutParams()
"""The parameters `on_record` observes rollouts with (the defaults)."""


def _all_scalar(state: FoldState, rules: Rules, records: Sequence[Record]) -> tuple[FoldState, list[RecordOut]]:
    """The batch through `on_record` itself, over twins materialised from the columns."""
    held: dict[str, Twin | None] = {}
    names: dict[str, list[str]] = {}

    def lookup(rid: str) -> Twin | None:
        if rid not in held:
            held[rid], names[rid] = twin_of(state, rid), _listed(state, rid)
        return held[rid]
    out = []
    for record in records:
        state.fleet, result = on_record(state.fleet, lookup, record, rules)
        step = result.step
        if step.twin is not None:
            held[step.twin.robot_id] = step.twin
            if step.event is not None and step.effects is not None and step.effects.outcome not in _QUIET:
                names[step.twin.robot_id] = list(step.twin.signals)
        out.append(RecordOut(step._replace(twin=None, cohorts=None), result.publish))
    _keep(state, held, names, {t.model for rid, t in held.items() if t is not None and rid in state.held})
    return state, out


def plain_effects(out: Sequence[RecordOut]) -> list[Effects | None]:
    """Each record's Effects (None: not applied telemetry), for drivers that count outcomes."""
    return [o.step.effects for o in out]

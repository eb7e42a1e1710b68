"""`twin.detect.robot.observe` over a round of many robots: detector state as arrays, the lifecycle on sparse rows.

A *round* (as in `twin.batch_reduce` and `twin.batch_signals`) is a set of rows, each robot at most
once. `observe_round` gives every row the anomaly messages, and every robot the detector state
(`Watch`), that `observe` gives event by event (with the cohort baseline and rates given per model
or per row, see "Cohorts"): tests/unit/test_batch_observe.py folds chaos runs through both and
compares every encoded `Watch` and every message after each round or batch. `observe_batch` splits a batch
into rounds and runs `twin.batch_reduce.reduce_batch` and `observe_round` on each.

What is vectorised and what is per row:
* vectorised: the per-signal detectors (band, spike, stuck, dropout, drift: `batch_signals.signals_round`
  on the round's cells), the alignment of per-signal state with the twin's signals (`robot._aligned`),
  the judgement masks (`robot._judged`, `_work_step`, `settled_at_work`), the robot-level detectors and
  the anomaly time `at` (`batch_robot.robot_round` over the whole round, one `ParamTable` row per
  group; duplicate, stale and late rows are its `_delivery`-only rows) and the stall detector
  (`batch_stall.stall_round` per group, counter and speeds read from the events);
* findings are built by the scalar functions on the rows each vectorised step flags (`robot_findings`,
  `stall_findings`, which check that the scalar state equals ours), and appended in `observe`'s
  order: signals, robot-level, stall, cohort;
* the cohort score and the trend check against the cohort's rates: see "Cohorts" below;
* sparse: the lifecycle (`lifecycle.track` itself, so messages are identical by construction) runs
  only on rows with a finding or an open anomaly. For any other row `track([], [], ...)` returns
  `([], [])` (both of its loops are empty), so skipping it changes nothing.

A robot-level count that would leave int64 (`robot_round`'s `scalar` rows: the scalar core keeps a
Python int) raises OverflowError before the round changes any state: no robot gets there from
`Watch()` (about 1e14 reports), only a loaded Watch could.

Inputs: the reducer's state after the round (`twin.batch_reduce.ReduceState`) and, taken before it,
`snapshot` (what `observe` reads of `before`: times, mode, counts, and the signals' block rows laid
end to end, `Flat`); a twin's signals are read from its block row, never as a `Twin`. Rows are
judged per group of models that share one detector parameter set (`Group`: one `batch_signals.Kinds`
over their signals), as the parameters are scalars of the numpy steps.

State (`ObserveState`): per signal cell (each robot a run of cells laid out as its reducer block,
one per signal of it in name order, given when the robot is first judged) the numbers of
`SignalWatch` in a `batch_signals.CellStore`, and whether the cell is in the robot's `Watch.signals`
list; per slot the robot-level numbers (`batch_robot.RobotWatches`), the stall
state (`batch_stall.Stalls`) and the cohort state (`batch_cohort.States`) as arrays; the open
anomalies (rare) as a dict slot -> list. The `evaluated` set of a row is a bit mask
(`_ROBOT` ... `_COHORT`), turned into a frozenset only for the rows the lifecycle sees.

A scalar quirk kept: a late event may add a signal to the twin without the per-signal state
following (the delivery path returns early), and `_aligned` then starts every signal's state
afresh on the next judged event (the lengths no longer match). `nlisted` per slot tracks the length
of `Watch.signals` so that reset happens here too.

Trust in the stand-ins: `_robot_rows` hands `robot._robot` (via `robot_findings`) a stand-in for
the twin before that holds only `last_seen` (all `_robot` reads of it), and the lifecycle's twin
holds only the robot id and labels (all `track` reads); the oracle test would catch either reading more.

Cohorts: `observe_round` takes, per row, the baseline and trend-rate moments in force at the row's
log position (`cohort_at`, `rates_at`: `observe`'s `cohort` and `rates`); the trend check
(`robot._against_cohort`, which `signals_round` leaves out) runs per stepped trend cell without a
drift finding (per cell), and the cohort score of settled working rows (`batch_cohort.distance_rows`
per baseline in force, `advance_round`; findings by `cohort_findings`). `ingest_partitions`
is `twin.pipeline.ingest` over a batch of any partitions: reduce, observe, learn in log order, through
`batch_cohort.plan` per (partition, model) and `settle`'s fixed point (every cohort at once);
`ingest_batch` is it on one partition. A round is observed in two parts:
`_begin` (reducer-fed detectors that do not depend on the cohorts: signals, robot-level, stall; and the
trend rates a plan learns from) runs once, `_finish` (the two cohort checks and the lifecycle) runs once
per pass from the batch's start cohort states and open anomalies, until the learn mask holds (the
first guess, `_likely_open`, leaves out rows of robots with an anomaly open or a finding before them).
Models new to a dict of the cohorts enter it in the scalar's order (`_in_log_order`: `sums` at the
first learning row, `baselines` at the first refit, `rates` at the first trend rate), so the cohorts'
encodings are equal too, not only their values. Features are computed for every row of a model up
front (`batch_cohort.features`), so a model with a zero-width nominal band raises ZeroDivisionError
here where the scalar core raises only on a row it learns or scores. bench/observe_round.py
`--ingest` times it against `pipeline.ingest` (2,000 robots x 90 s from empty cohorts: 83.6 against
28.3 us/event, checked identical).

Not here: `silence` (a timer, not a report). The state starts empty (robots new to it); loading stored
watches is left to the fold.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace as replace_dataclass
from typing import Any, NamedTuple, cast

import numpy as np
import numpy.typing as npt
from msgspec.structs import replace

from twin import batch_cohort as bc
from twin import batch_robot as br
from twin import batch_signals as bs
from twin import batch_stall as bst
from twin.batch_reduce import ReduceState, reduce_batch
from twin.columns import Index, Rows
from twin.detect import multivariate as mv
from twin.detect.findings import Anomaly, Finding
from twin.detect.lifecycle import track
from twin.detect.params import RobotDetectorParams
from twin.detect.cohort import PARAMS as COHORT_PARAMS
from twin.detect.cohort import Cohorts, Moments
from twin.detect.robot import _against_cohort
from twin.detect.stall import State as StallState
from twin.detect.watch import Drift, Open, SignalWatch, Watch
from twin.effects import OUTCOMES, Effects, SeqGap
from twin.fleet import RobotModel
from twin.schema import MODES, Event
from twin.state import Counts, Twin

Array = npt.NDArray[Any]

_ROBOT, _VALUES, _OPERATING, _DRIFT, _STALL, _COHORT = 1, 2, 4, 8, 16, 32
"""Bits of a row's `evaluated` mask: the robot-level detectors (always, on a judged event), stuck and
dropout (warm), band and spike (warm and operating), drift (a settled working step), stall, cohort."""
_NAMES = ((_ROBOT, ("clock_skew", "delivery", "fault_codes", "seq_gap", "silence")), (_VALUES, ("stuck", "dropout")),
          (_OPERATING, ("band", "spike")), (_DRIFT, ("drift",)), (_STALL, ("stall",)), (_COHORT, ("cohort",)))
_EVALUATED = [frozenset(n for bit, names in _NAMES if mask & bit for n in names) for mask in range(64)]
"""Bit mask -> the frozenset `observe` passes to `track` (built once, shared)."""
_AT_WORK = 64
"""Not a detector: marks a row settled at work (the cohort judges it); masked off for `_EVALUATED`."""
_OUTCOME = {o: i for i, o in enumerate(OUTCOMES)}
_MODE = {m: i for i, m in enumerate(MODES)}
_WORKING, _MAINTENANCE = _MODE["working"], _MODE["maintenance"]
_NOT_OPERATING = np.array([m in ("fault", "estop", "maintenance") for m in MODES])
_QUIET = frozenset({"duplicate", "stale", "late"})
"""Outcomes that only feed the delivery count (`observe` returns early on them)."""
_STUB = Twin(robot_id="", sector="", site="", model="", mode="idle", ai_model_version="", firmware="", codes=(),
             location=None, ts=0.0, latest_seq=0, seq=0, first_seq=0, window=0, first_seen=0.0, last_seen=0.0,
             signals={}, counts=Counts(), mode_since=0.0, ai_model_since=0.0, firmware_since=0.0)
"""What the lifecycle's messages read of a twin is its robot id and labels: replaced into this."""


class Layout(NamedTuple):
    """The reducer's blocks as `ObserveState` lays runs out: `nblocks` of `blocks` (the list, which only
    grows), each one's width, and the offset of its signal ids in `gids` (every block's, end to end)."""

    blocks: list[Any]
    nblocks: int
    widths: Array
    offsets: Array
    gids: Array


class ObserveState:
    """The detector state of many robots (see the module doc), indexed by the reducer's slots."""

    def __init__(self) -> None:
        self.base: Array = np.full(0, -1, np.int32)
        """Per slot: the first of the robot's run of cells, -1 for none yet. A run is laid out as the
        reducer's block `laid` (a cell per signal of it, in the block's name order), so a (slot, signal)
        cell is `base + column` and no slot x signal table is kept (it was 232 bytes per robot at
        100,000 robots, bench/fold_memory.py)."""
        self.laid: Array = np.full(0, -1, np.int32)
        """Per slot: the reducer block the run follows (the robot's block when it was last judged or
        loaded; a late event may have moved the robot on since: `lay`)."""
        self._free: dict[int, list[int]] = {}
        """Run width -> first cells of runs left by robots that moved to a wider block (each
        `SignalWatch()` and not listed)."""
        self._layout: Layout | None = None
        self.cells = bs.CellStore(0)
        self.listed: Array = np.zeros(0, bool)
        """Per cell: the signal is in the robot's `Watch.signals` (a cell out of it is `SignalWatch()`)."""
        self.ncells = 0
        self.nlisted: Array = np.zeros(0, np.int64)
        """Per slot: the length of `Watch.signals`."""
        self.robot = br.empty(0)
        """Per slot: interval, skew, delivery, codes."""
        self.opened: dict[int, list[Open]] = {}
        self.stall = bst.empty(0)
        """Per slot: the stall detector's state (`has` False: None)."""
        self.cohort = bc.States(*(np.zeros(0, t) for t in (bool, np.float64, np.float64, bool, np.float64)))
        """Per slot: the cohort detector's state (`has` False: None)."""
        self._groups: tuple[Mapping[str, RobotDetectorParams], dict[str, Group], br.ParamTable] | None = None

    def grow(self, slots: int) -> None:
        """Room for `slots` robots (a quarter more, amortised)."""
        have = len(self.base)
        if slots > have:
            s = slots * 5 // 4 + 16
            self.base, self.laid = _grown(self.base, s, -1), _grown(self.laid, s, -1)
            self.nlisted = _grown(self.nlisted, s)
            self.robot = br.RobotWatches(*(_grown(col, s) for col in self.robot))
            self.stall = bst.Stalls(*(_grown(col, s, fill) for col, fill in zip(self.stall, (False, np.nan, np.nan, 0))))
            self.cohort = bc.States(*(_grown(col, s) for col in self.cohort))

    def lay(self, red: ReduceState, slots: Array) -> None:
        """Give each of `slots` a run of cells laid out as its reducer block is now, before its cells
        are written (reads follow `laid`, so they need none).

        A new robot gets a fresh run; a robot the reducer moved to a wider block (`ReduceState._move`:
        a signal its block lacked) gets a run of the new width, its cells moved over by signal."""
        slots = np.asarray(slots, np.int64)
        blocks = red.cols["block"][slots]
        stale = self.laid[slots] != blocks
        if not stale.any():
            return
        todo = np.unique(slots[stale])
        fresh, moved = todo[self.base[todo] < 0], todo[self.base[todo] >= 0]
        widths = self.layout(red).widths
        if len(fresh) and not any(self._free.values()):
            w = widths[red.cols["block"][fresh]]
            self.base[fresh] = self.alloc(int(w.sum())) + np.cumsum(w) - w
            self.laid[fresh] = red.cols["block"][fresh]
        else:
            for slot in fresh.tolist():
                self.base[slot] = self._run(int(widths[red.cols["block"][slot]]))
                self.laid[slot] = red.cols["block"][slot]
        for slot in moved.tolist():
            self._move(red, slot)

    def _move(self, red: ReduceState, slot: int) -> None:
        old, new = red.blocks[self.laid[slot]], int(red.cols["block"][slot])
        where = red.colmap()[new, list(old.gids)]
        if (where < 0).any():
            raise AssertionError(f"slot {slot} moved from block {self.laid[slot]} to {new}, which lacks some of its signals")
        start = self._run(len(red.blocks[new].gids))
        src, dst = self.base[slot] + np.arange(len(old.gids)), start + where
        self.cells.move(src, dst)
        self.listed[dst], self.listed[src] = self.listed[src], False
        self._free.setdefault(len(old.gids), []).append(int(self.base[slot]))
        self.base[slot], self.laid[slot] = start, new

    def _run(self, width: int) -> int:
        free = self._free.get(width)
        return free.pop() if free else self.alloc(width)

    def layout(self, red: ReduceState) -> Layout:
        """The reducer's blocks as runs are laid out, kept until the reducer adds a block."""
        blocks = red.blocks
        if self._layout is None or self._layout.blocks is not blocks or self._layout.nblocks != len(blocks):
            widths = np.array([len(b.gids) for b in blocks], np.int64)
            gids = np.array([g for b in blocks for g in b.gids], np.int64)
            self._layout = Layout(blocks, len(blocks), widths, np.cumsum(widths) - widths, gids)
        return self._layout

    def runs(self, red: ReduceState, slots: Array) -> tuple[Array, Array, Array]:
        """Every cell of the runs of `slots` (none for a robot without one), robot by robot, each in
        its block's name order: (index into `slots`, cell, global signal id)."""
        layout = self.layout(red)
        widths, offsets, gids = layout.widths, layout.offsets, layout.gids
        has = self.base[slots] >= 0
        blocks = np.where(has, self.laid[slots], 0)
        width = np.where(has, widths[blocks], 0)
        owner = np.repeat(np.arange(len(slots)), width)
        pos = np.arange(len(owner)) - np.repeat(np.cumsum(width) - width, width)
        cells = np.repeat(self.base[slots].astype(np.int64), width) + pos
        return owner, cells, gids[np.repeat(offsets[blocks], width) + pos]

    def listed_runs(self, red: ReduceState, slots: Array) -> tuple[Array, Array, Array]:
        """`runs` of the cells in the robots' `Watch.signals` lists (each robot's in name order)."""
        owner, cells, gids = self.runs(red, slots)
        on = self.listed[cells]
        return owner[on], cells[on], gids[on]

    def cells_at(self, red: ReduceState, slots: Array, gids: Array) -> Array:
        """The cells of (slot, signal id) pairs, after `lay`: -1 where the robot's block lacks the signal."""
        column = red.colmap()[self.laid[slots], gids]
        return np.where(column >= 0, self.base[slots] + column, -1)

    def alloc(self, count: int) -> int:
        """`count` new cells in a row, each `SignalWatch()` and not listed: the first one's."""
        if self.ncells + count > len(self.listed):
            cap = max(64, (self.ncells + count) * 5 // 4)
            listed = np.zeros(cap, bool)
            listed[: self.ncells] = self.listed[: self.ncells]
            self.cells, self.listed = self.cells.grown(cap), listed
        self.ncells += count
        return self.ncells - count

    def groups(self, models: Mapping[str, RobotModel], params: Mapping[str, RobotDetectorParams]) -> dict[str, Group]:
        """Model -> the group of models sharing its detector parameters (rows of one group are judged
        together: the parameters are scalars of the numpy steps). Cached for this `params` object."""
        if self._groups is None or self._groups[0] is not params:
            by_p: dict[RobotDetectorParams, list[str]] = {}
            for m in sorted(params):
                if m in models:
                    by_p.setdefault(params[m], []).append(m)
            made = [Group(k, p, tuple(ms), models) for k, (p, ms) in enumerate(by_p.items())]
            self._groups = (params, {m: g for g in made for m in g.models}, br.ParamTable([g.p for g in made]))
        return self._groups[1]

    def table(self) -> br.ParamTable:
        """The groups' parameters as `batch_robot` reads them (row `Group.k`); after `groups`."""
        assert self._groups is not None
        return self._groups[2]


class Group:
    """Models judged with one parameter set: one `Kinds` over their (model, signal)s."""

    def __init__(self, k: int, p: RobotDetectorParams, models: tuple[str, ...], specs: Mapping[str, RobotModel]) -> None:
        self.k, self.p, self.models = k, p, models
        self.pos = {m: i for i, m in enumerate(models)}
        self.kinds, self.index = bs.kinds_of({m: specs[m].signals for m in models}, p)
        self._table: Array = np.zeros((len(models), 0), np.int64)
        names = sorted({n for m in models for n in specs[m].signals})
        self.stall = bst.Plan(names, p.stall) if p.stall is not None else None
        """The stall detector over the models' catalogue signals (events carry no others: `parse`)."""

    def table(self, names: Sequence[str]) -> Array:
        """(model position, global signal id) -> kind, -1 where the model does not know the signal."""
        if self._table.shape[1] != len(names):
            self._table = np.array([[self.index.get((m, n), -1) for n in names] for m in self.models], np.int64)
        return self._table


def _grown(a: Array, n: int, fill: Any = 0) -> Array:
    out = np.full(n, fill, a.dtype)
    out[: len(a)] = a
    return out


def watch_of(obs: ObserveState, red: ReduceState, robot_id: str) -> Watch:
    """The robot's `Watch`, as `observe` leaves it in the twin (equal msgspec bytes)."""
    slot = red.slot_of[robot_id]
    _, cells, _ = obs.listed_runs(red, np.array([slot]))
    signals = [obs.cells.watch_at(c) for c in cells.tolist()]
    r = obs.robot
    return Watch(signals=signals, interval=float(r.interval[slot]), skew=int(r.skew[slot]),
                 delivery=int(r.delivery[slot]), codes=int(r.codes[slot]), open=obs.opened.get(slot, []),
                 cohort=bc.state_at(obs.cohort, slot), stall=bst.state_at(obs.stall, slot))


def watches_of(obs: ObserveState, red: ReduceState, robot_ids: Sequence[str]) -> list[Watch]:
    """`watch_of` of each robot (KeyError for one without a twin; `obs` grown to the reducer's
    slots): one numpy gather per column for all of them (then `tolist`), the structs built from lists."""
    if not robot_ids:
        return []
    slots = [red.slot_of[r] for r in robot_ids]
    idx = np.array(slots, np.int64)
    owner, listed, _ = obs.listed_runs(red, idx)  # robot by robot, each in name order
    counts = np.bincount(owner, minlength=len(idx)).tolist()
    w = obs.cells.take(listed)
    d = w.drift  # integral float64 values (`batch_signals.drift_at`): exact as int64
    numbers = iter(zip(*(col[d.has].astype(np.int64).tolist() for col in d[1:])))
    drifts = [Drift(*next(numbers)) if y else None for y in d.has.tolist()]
    signals = list(map(SignalWatch, *(col.tolist() for col in w[:3]), drifts))
    r, co, st = obs.robot, obs.cohort, obs.stall
    interval, skew, delivery, codes = (col[idx].tolist() for col in r)
    c_has, c_level, c_ts, c_alarm, c_since = (col[idx].tolist() for col in co)
    s_has, s_cycle, s_since, s_still = (col[idx].tolist() for col in st)
    opened = obs.opened
    watches, at = [], 0
    for i, slot in enumerate(slots):
        k = counts[i]
        watches.append(Watch(
            signals=signals[at:at + k], interval=interval[i], skew=skew[i], delivery=delivery[i], codes=codes[i],
            open=opened.get(slot, []),
            cohort=mv.State(c_level[i], c_ts[i], c_alarm[i], c_since[i]) if c_has[i] else None,
            stall=StallState(s_cycle[i], s_since[i], s_still[i]) if s_has[i] else None))
        at += k
    return watches


# --- the twins' signals, as the reducer's block rows laid end to end ----------------------------

class Flat(NamedTuple):
    """Rows' signal columns: each row's block row copied (flattened) one after another.

    `base[i]`/`block[i]`: where row i's columns start and its block (-1: no twin); per flat
    position its row (`owner`) and global signal id (`gid`); `own_ts`/`own_seq` only where explicit.
    Block rows are a robot's signals in name order, so no wider (all names) matrix is built."""

    base: Array
    block: Array
    nsignals: Array
    owner: Array
    gid: Array
    present: Array
    explicit: Array
    value: Array
    mean: Array
    var: Array
    own_ts: Array
    own_seq: Array


def _flat(red: ReduceState, slots: Array, stats: bool = True) -> Flat:
    """The signal columns of `slots` (-1: a robot with no twin). `stats` False (the twins after the
    round, whose statistics and explicit times are not read): mean, var and own_ts left zero."""
    n = len(slots)
    exists = slots >= 0
    blocks, rows = np.full(n, -1, np.int64), np.zeros(n, np.int64)
    blocks[exists], rows[exists] = red.cols["block"][slots[exists]], red.cols["row"][slots[exists]]
    base, nsignals = np.full(n, -1, np.int64), np.zeros(n, np.int64)
    parts: list[list[Array]] = [[] for _ in range(9)]
    start = 0
    for bid in np.unique(blocks[exists]).tolist():
        sel = np.flatnonzero(blocks == bid)
        block, r = red.blocks[bid], rows[sel]
        nb = len(block.names)
        base[sel] = start + np.arange(len(sel)) * nb
        present, explicit = block.c["present"][r], block.c["explicit"][r]
        nsignals[sel] = np.count_nonzero(present, axis=1)
        own_ts, own_seq = np.zeros(present.shape), np.zeros(present.shape, np.uint64)
        rr = r.tolist()
        for i, j in zip(*(x.tolist() for x in np.nonzero(explicit & present))):
            own_ts[i, j], own_seq[i, j] = block.times[rr[i], j]
        zero = np.zeros(0)
        for part, col in zip(parts, (np.repeat(sel, nb), np.tile(np.array(block.gids, np.int64), len(sel)), present,
                                     explicit, block.c["value"][r], block.c["mean"][r] if stats else zero,
                                     block.c["var"][r] if stats else zero, own_ts if stats else zero, own_seq)):
            part.append(col.ravel())
        start += len(sel) * nb
    types = (np.int64, np.int64, bool, bool, np.float64, np.float64, np.float64, np.float64, np.uint64)
    cols = [np.concatenate([*part, np.zeros(1, t)]) for part, t in zip(parts, types)]  # one spare: never empty
    return Flat(base, blocks, nsignals, *cols)


class Before(NamedTuple):
    """What `observe` reads of the rows' twins before the reducer applies their events."""

    existed: Array
    ts: Array
    mode: Array
    mode_since: Array
    events: Array
    last_seen: Array
    signals: Flat


def snapshot(red: ReduceState, robot_ids: Sequence[str]) -> Before:
    """The rows' twins before the round (`existed` False: a robot new to the state, `before` is None)."""
    slot_of = red.slot_of
    slots = np.array([slot_of.get(r, -1) for r in robot_ids], np.int64)
    existed = slots >= 0
    s = np.where(existed, slots, 0)
    c = red.cols

    def pick(name: str) -> Array:
        return c[name][s] if len(c[name]) else np.zeros(len(slots), c[name].dtype)
    return Before(existed, pick("ts"), pick("mode"), pick("mode_since"), pick("events"), pick("last_seen"),
                  _flat(red, slots))


# --- one round ------------------------------------------------------------------------------------

class Round(NamedTuple):
    """A round's rows (each robot at most once), after the reducer applied them."""

    events: Sequence[Event]
    received_ts: Array
    effects: Sequence[Effects]
    before: Before


def observe_round(obs: ObserveState, red: ReduceState, rnd: Round, models: Mapping[str, RobotModel],
                  params: Mapping[str, RobotDetectorParams],
                  baselines: Mapping[str, mv.Baseline] | None = None, *,
                  cohort_at: Sequence[mv.Baseline | None] | None = None,
                  rates_at: Sequence[Mapping[str, Moments] | None] | None = None,
                  trace: Trace | None = None) -> list[list[Anomaly]]:
    """`observe` for every row of a round (`red` already holds the round's twins): updates `obs` in
    place and returns each row's anomaly messages, in row order.

    `cohort_at` / `rates_at`: per row, the `cohort` and `rates` arguments of `observe` (the baseline
    and trend-rate moments in force at the row's log position); they replace `baselines` (per model).
    `trace`, if given, receives per row what `twin.pipeline.ingest` learns from (`Trace`)."""
    part = _begin(obs, red, rnd, models, params, trace)
    per_row = cohort_at if cohort_at is not None else [(baselines or {}).get(e.model) for e in rnd.events]
    return _finish(obs, red, rnd, part, models, params, per_row, rates_at, trace)


class Trace:
    """Per row of a round, what `twin.pipeline.ingest` decides learning on: settled at work (and
    applied), an anomaly still open after it, and the trend rates (`robot.trend_rates`) in the
    event's signal order."""

    def __init__(self, n: int) -> None:
        self.at_work: Array = np.zeros(n, bool)
        self.open: Array = np.zeros(n, bool)
        self.rates: list[dict[str, float]] = [{} for _ in range(n)]


class _Part(NamedTuple):
    """A round's detectors that do not depend on the cohorts (`_begin`), for `_finish` to complete
    with the cohort checks and the lifecycle (any number of times, against different cohorts).

    `found`: per row the signal, robot-level and stall findings in `observe`'s order; `trend`: the
    trend cells a cohort check could add to, as (row, where in the row's findings that cell's end,
    signal, its drift state, group); `labels`: per row the robot's sector, site and model codes."""

    slots: Array
    found: Found
    bits: Array
    at: Array
    trend: list[tuple[int, int, str, Drift, Group]]
    judged: list[tuple[Group, Array]]
    labels: tuple[Array, Array, Array]


def _begin(obs: ObserveState, red: ReduceState, rnd: Round, models: Mapping[str, RobotModel],
           params: Mapping[str, RobotDetectorParams], trace: Trace | None) -> _Part:
    """Signals, robot-level and stall detectors of a round (updates their state in `obs`)."""
    events = rnd.events
    n = len(events)
    slots = np.array([red.slot_of[e.robot_id] for e in events], np.int64)
    obs.grow(len(red.robot_ids))
    quiet = np.array([f.outcome in _QUIET for f in rnd.effects], bool)
    found: Found = {}
    bits = np.zeros(n, np.int64)
    group_of = obs.groups(models, params)
    members: dict[int, list[int]] = {}
    for i, e in enumerate(events):
        members.setdefault(id(group_of[e.model]), []).append(i)
    pk = np.array([group_of[e.model].k for e in events], np.int64)
    at, robot_found = _robot_rows(obs, slots, rnd, obs.table(), pk)  # first: raises before any state changes
    judged: list[tuple[Group, Array]] = []
    trend: list[tuple[int, int, str, Drift, Group]] = []
    for rows_ in members.values():
        rows = np.array(rows_, np.int64)
        rows = rows[~quiet[rows]]
        g = group_of[events[rows_[0]].model]
        if len(rows):
            _judge(obs, red, rnd, slots, rows, g, found, bits, trend, trace)
            judged.append((g, rows))
    _merge(found, robot_found)  # a row's findings in `observe`'s order: signals, robot-level, stall, cohort
    for g, rows in judged:
        if g.stall is not None:
            stalled, more = _stall_rows(obs, slots[rows], rows, rnd, g.stall)
            _merge(found, more)
            bits[rows] |= np.where(stalled, _STALL, 0)
    c = red.cols
    return _Part(slots, found, bits, at, trend, judged, (c["sector"][slots], c["site"][slots], c["model"][slots]))


def _finish(obs: ObserveState, red: ReduceState, rnd: Round, part: _Part, models: Mapping[str, RobotModel],
            params: Mapping[str, RobotDetectorParams], baselines: Sequence[mv.Baseline | None],
            rates_at: Sequence[Mapping[str, Moments] | None] | None, trace: Trace | None,
            feats: Features | None = None) -> list[list[Anomaly]]:
    """The cohort checks of a begun round (the trend references against `rates_at`, the cohort score
    against `baselines`, per row) and the lifecycle; `part` is left as it was. `feats`: the rows'
    cohort features when already computed (else from the events)."""
    found = {row: list(f) for row, f in part.found.items()}
    bits = part.bits.copy()
    if rates_at is not None:
        for row, end, name, d, g in reversed(part.trend):  # from the last: earlier positions stay put
            moments = rates_at[row]
            f = _against_cohort(name, d, moments.get(name), g.p) if moments else []
            if f:
                found.setdefault(row, [])[end:end] = f
    for g, rows in part.judged:
        mine = ((bits[rows] & _AT_WORK) > 0) & np.array([baselines[i] is not None for i in rows.tolist()], bool)
        if mine.any():
            _merge(found, _cohort_rows(obs, part.slots[rows[mine]], rows[mine], rnd, models, baselines, feats))
            bits[rows[mine]] |= _COHORT
    messages = _lifecycle(obs, red, rnd, part.slots, found, bits, part.at, params, part.labels)
    if trace is not None:
        trace.at_work = (bits & _AT_WORK) > 0
        trace.open = np.array([slot in obs.opened for slot in part.slots.tolist()], bool)
    return messages


def _judge(obs: ObserveState, red: ReduceState, rnd: Round, slots: Array, rows: Array, g: Group,
           found: Found, bits: Array, trend: list[tuple[int, int, str, Drift, Group]], trace: Trace | None) -> None:
    """The per-signal detectors of `observe` on a parameter group's applied rows, and their bits."""
    c, b, p = red.cols, rnd.before, g.p
    s = slots[rows]
    events = c["events"][s]
    ts, mode_since, mode = c["ts"][s], c["mode_since"][s], c["mode"][s]
    warm = events > p.warmup_reports
    settled = ts - mode_since >= p.settle_s
    operating = warm & ~_NOT_OPERATING[mode] & settled
    at_work = (mode == _WORKING) & warm & settled
    step = ts - b.ts[rows]
    prior_ok = (b.existed[rows] & (b.mode[rows] == _WORKING) & (b.events[rows] > p.warmup_reports)
                & (b.ts[rows] - b.mode_since[rows] >= p.settle_s))
    has_dt = at_work & prior_ok & (step > 0) & (step <= p.drift_max_step_s)
    dt = np.where(has_dt, step, np.nan)
    bits[rows] = (_ROBOT | np.where(warm, _VALUES, 0) | np.where(operating, _OPERATING, 0) | np.where(has_dt, _DRIFT, 0)
                  | np.where(at_work, _AT_WORK, 0))
    _signal_rows(obs, red, rnd, slots, rows, g, (warm, operating, mode == _MAINTENANCE, dt), found, trend, trace)


def _signal_rows(obs: ObserveState, red: ReduceState, rnd: Round, slots: Array, rows: Array, g: Group,
                 flags: tuple[Array, Array, Array, Array], found: Found,
                 trend: list[tuple[int, int, str, Drift, Group]], trace: Trace | None) -> None:
    """`robot._signals` on the rows: cells aligned as `_aligned` does, `signals_round`, and the trend
    cells a cohort check could add a finding to (into `trend`; see `_Part`)."""
    s = slots[rows]
    after, prior = _flat(red, s, stats=False), rnd.before.signals
    obs.lay(red, s)
    reset = rnd.before.existed[rows] & (obs.nlisted[s] != prior.nsignals[rows])
    if reset.any():  # _aligned: lengths differ, every signal's state starts afresh
        _, mine, _ = obs.runs(red, s[reset])
        obs.cells.put(mine, bs.empty(len(mine)))
        obs.listed[mine] = False
    at = np.flatnonzero(after.present)
    at = at[np.argsort(after.owner[at], kind="stable")]  # robot by robot, each in name order
    ri, gid = after.owner[at], after.gid[at]
    cell = obs.base[s[ri]] + (at - after.base[ri])  # `after` reads each robot's block as its run is laid
    obs.listed[cell] = True
    obs.nlisted[s] = after.nsignals
    width = len(red.names.table)
    pos = np.array([g.pos[rnd.events[i].model] for i in rows.tolist()], np.int64)
    kind = g.table(red.names.table).ravel()[pos[ri] * width + gid]
    known = kind >= 0  # a signal its model does not know keeps its state (spec None)
    at, ri, gid, cell, kind = at[known], ri[known], gid[known], cell[known], kind[known]
    warm, operating, maintenance, dt = (x[ri] for x in flags)
    latest = red.cols["latest_seq"][s][ri]
    explicit = after.explicit[at]
    was, had = _prior(red, prior, rows[ri], gid)
    fresh = had & (~prior.explicit[was] | (prior.own_ts[was] == rnd.before.ts[rows][ri]))
    r = bs.Round(kind, ~explicit, after.value[at], bs.Prior(had, prior.value[was], prior.mean[was], prior.var[was]),
                 warm, operating, maintenance, dt, fresh, latest, np.where(explicit, after.own_seq[at], latest))
    state, cells_found = bs.signals_round(obs.cells.take(cell), r, g.kinds)
    obs.cells.put(cell, state)
    candidates = _trend_cells(r, g, state, rows[ri], cells_found, trace)
    for i in sorted({*cells_found, *candidates}):  # cells in the scalar order (robot, then signal)
        row = int(rows[ri[i]])
        if i in cells_found:
            found.setdefault(row, []).extend(cells_found[i])
        if i in candidates:
            name, d = candidates[i]
            trend.append((row, len(found.get(row, ())), name, d, g))


def _trend_cells(r: bs.Round, g: Group, state: bs.Watches, row: Array, cells_found: dict[int, list[Finding]],
                 trace: Trace | None) -> dict[int, tuple[str, Drift]]:
    """The trend cells whose drift stepped (as `signals_round` decides it; no trend row is in
    maintenance, which has no work step): their rates into `trace`, and those without a drift
    finding (where `_signals` asks `robot._against_cohort`) by cell, with their new drift state."""
    out: dict[int, tuple[str, Drift]] = {}
    trend = g.kinds.view[r.kind] == bs.VIEW_TREND
    if not trend.any():
        return out
    prior = r.prior._replace(present=r.prior.present & r.present)
    x, has_x = bs.drift_input(r.kind, r.value, prior, r.fresh, r.dt, g.kinds)
    stepped = np.flatnonzero(r.present & ~np.isnan(r.dt) & trend & has_x)
    for i in stepped.tolist():
        name, j = g.kinds.names[r.kind[i]], int(row[i])
        if trace is not None:
            trace.rates[j][name] = float(x[i])
        if not any(f.detector == "drift" for f in cells_found.get(i, [])):
            d = bs.drift_at(state.drift, i)
            assert d is not None
            out[i] = (name, d)
    return out


def _prior(red: ReduceState, prior: Flat, rows: Array, gid: Array) -> tuple[Array, Array]:
    """Where each cell (row of the round, global signal id) was in the snapshot, and whether the
    twin before had that signal (a robot that moved to a wider block is found by its old block)."""
    block = prior.block[rows]
    column = red.colmap()[np.where(block >= 0, block, 0), gid]
    known = (block >= 0) & (column >= 0)
    was = np.where(known, prior.base[rows] + column, 0)
    return was, known & prior.present[was]


# --- robot-level, stall (vectorised) and cohort (per row) ---------------------------------------

RobotNumbers = br.RobotWatches
"""The robot-level numbers of `Watch` per slot (`ObserveState.robot`): `batch_robot`'s state."""

Found = dict[int, list[Finding]]
"""Findings by row of the round."""


class _Seen(NamedTuple):
    """The one field of the twin before that `robot._robot` reads."""

    last_seen: float


def _robot_rows(obs: ObserveState, slots: Array, rnd: Round, t: br.ParamTable, pk: Array) -> tuple[Array, Found]:
    """Interval, clock skew, delivery, fault codes, seq gap of every row of the round (`_delivery` alone
    for duplicate, stale and late rows): `batch_robot.robot_round`, its findings by `robot_findings`
    on the found rows, and OverflowError for a row whose count would leave int64 (`robot_round`'s `scalar`: the scalar core
    keeps a Python int, no array here can; unreachable from `Watch()`, ~1e14 reports; raised before
    any state changes). Stores the new numbers; returns the stamp time `at` and the findings by row."""
    b = rnd.before
    events, effects = rnd.events, rnd.effects
    r = br.Rows(b.existed, b.last_seen, np.asarray(rnd.received_ts, np.float64), np.array([e.ts for e in events]),
                np.array([len(e.codes) for e in events], np.int64), np.array([e.mode == "estop" for e in events], bool),
                np.array([_OUTCOME[f.outcome] for f in effects], np.int8), _gaps(effects), pk)
    old = br.take(obs.robot, slots)
    res = br.robot_round(old, r, t)

    def scalars(i: int) -> tuple[Twin | None, Twin, Event, Effects]:
        return (cast(Twin, _Seen(float(b.last_seen[i]))) if b.existed[i] else None), _STUB, events[i], effects[i]
    if res.scalar.any():  # the scalar core's count leaves int64: our arrays cannot hold it (say so)
        i = int(np.flatnonzero(res.scalar)[0])
        raise OverflowError(f"robot {events[i].robot_id}: a robot-level count beyond int64 (a loaded Watch's?)")
    found = br.robot_findings(old, res, r, t, scalars)
    br.put(obs.robot, slots, res.state)
    return res.at, found


def _gaps(effects: Sequence[Effects]) -> Array:
    """Per row: the missing count of its first `SeqGap` change (0: none). Changes are rare, so only
    the rows with any are looked into."""
    out = np.zeros(len(effects), np.int64)
    for i, f in enumerate(effects):
        if f.changes:
            out[i] = next((c.missing for c in f.changes if isinstance(c, SeqGap)), 0)
    return out


def _stall_rows(obs: ObserveState, s: Array, rows: Array, rnd: Round, plan: bst.Plan) -> tuple[Array, Found]:
    """`stall.step` on the applied `rows` (slots `s`): `batch_stall.stall_round`, findings by
    `stall_findings` on the found rows. Stores the new states; returns the judged mask and the findings."""
    events = [rnd.events[i] for i in rows.tolist()]
    nan = float("nan")
    counter = np.array([e.signals.get(plan.p.cycle, nan) for e in events], np.float64)
    speeds = np.array([[e.signals.get(name, nan) for name in plan.speed_names] for e in events], np.float64)
    speeds = speeds.reshape(len(events), len(plan.speed_names))
    ts = np.array([e.ts for e in events], np.float64)
    working = np.array([e.mode == "working" for e in events], bool)
    old = bst.take(obs.stall, s)
    new, judged, hit = bst.stall_round(old, counter, speeds, ts, working, plan)
    more = bst.stall_findings(old, new, np.flatnonzero(hit), counter, speeds, ts, working, plan)
    bst.put(obs.stall, s, new)
    return judged, {int(rows[i]): f for i, f in more.items()}


Features = Callable[[str, Array], tuple[Array, Array]]
"""(model, rows of a round) -> the rows' `batch_cohort.features`: vectors and whether each is complete."""


def _cohort_rows(obs: ObserveState, s: Array, rows: Array, rnd: Round, models: Mapping[str, RobotModel],
                 baselines: Sequence[mv.Baseline | None], feats: Features | None = None) -> Found:
    """`robot._cohort` on the settled working `rows` (slots `s`) with a baseline in force (`baselines`:
    per row of the round), model by model: `batch_cohort.features`, `distance_rows` per baseline,
    `advance_round`, findings by `cohort_findings` (`mv.step` itself) on the found rows. A row whose
    report lacks a signal, or whose baseline has another dimension, is left as it was (`_cohort`
    returns early). Stores the new states; returns the findings by row."""
    events = rnd.events
    model_of = np.array([events[i].model for i in rows.tolist()], object)
    found: Found = {}
    for model in sorted(set(model_of.tolist())):
        spec = models[model]
        mine = np.flatnonzero(model_of == model)
        names = list(spec.signals)
        x, complete = feats(model, rows[mine]) if feats is not None else _features(events, rows[mine].tolist(), spec)
        base = [baselines[i] for i in rows[mine].tolist()]
        live = np.flatnonzero(complete & np.array([b is not None and b.dim == len(names) for b in base], bool))
        if not len(live):
            continue
        x, base = x[live], [base[j] for j in live.tolist()]
        raw, advance = np.full(len(live), np.nan), np.zeros(len(live), bool)
        for b in {id(b): b for b in base}.values():
            assert b is not None
            if b.weight < COHORT_PARAMS.min_weight:
                continue
            at = np.flatnonzero(np.array([c is b for c in base], bool) & np.isfinite(x).all(axis=1))
            raw[at], advance[at] = bc.distance_rows(b, x[at]), True
        slots, here = s[mine[live]], rows[mine[live]]
        ts = np.array([events[i].ts for i in here.tolist()], np.float64)
        old = bc.States(*(col[slots] for col in obs.cohort))
        new, score, hit = bc.advance_round(old, raw, advance, ts)
        more = bc.cohort_findings(old, new, score, np.flatnonzero(hit), dict(enumerate(base)), x, advance, ts)
        for dst, src in zip(obs.cohort, new):
            dst[slots] = src
        found.update((int(here[j]), f) for j, f in more.items())
    return found


def _merge(found: Found, more: Found) -> None:
    """Each row's findings in `observe`'s order: those already there, then these."""
    for row, f in more.items():
        found.setdefault(row, []).extend(f)


# --- the lifecycle, on sparse rows ----------------------------------------------------------------

def _lifecycle(obs: ObserveState, red: ReduceState, rnd: Round, slots: Array, found: dict[int, list[Finding]],
               bits: Array, at: Array, params: Mapping[str, RobotDetectorParams],
               labels: tuple[Array, Array, Array]) -> list[list[Anomaly]]:
    """`lifecycle.track` itself on the rows with a finding or an open anomaly; the others get none.
    `labels`: per row the sector, site and model codes of the robot after its row."""
    messages: list[list[Anomaly]] = [[] for _ in range(len(slots))]
    opened = obs.opened
    rows = sorted({*found, *(i for i, slot in enumerate(slots.tolist()) if slot in opened)}) if opened else sorted(found)
    strings = red.strings.table
    sector, site, model = labels
    for row in rows:
        slot = int(slots[row])
        e = rnd.events[row]
        twin = replace(_STUB, robot_id=e.robot_id, sector=strings[sector[row]], site=strings[site[row]],
                       model=strings[model[row]])
        still, messages[row] = track(opened.get(slot, []), found.get(row, []), _EVALUATED[int(bits[row]) & 63], twin,
                                     float(at[row]), params[e.model])
        if still:
            opened[slot] = still
        else:
            opened.pop(slot, None)
    return messages


def observe_batch(obs: ObserveState, red: ReduceState, events: Sequence[Event], received_ts: Sequence[float],
                  models: Mapping[str, RobotModel], params: Mapping[str, RobotDetectorParams],
                  baselines: Mapping[str, mv.Baseline] | None = None, *, cohorts: Sequence[Cohorts] | None = None,
                  columns: tuple[Rows, Index] | None = None) -> tuple[list[Effects], list[list[Anomaly]]]:
    """`apply` then `observe` for each event of a batch (log order): round by round, the reducer then
    `observe_round`. Effects and messages per event, in input order; `red` and `obs` change in place.
    With `cohorts` (per event: its partition's), every row is judged against its model's baseline and
    trend rates there, which stay as they are (no learning: what `ingest_partitions` does when no row
    can learn). `columns`: the decoder's rows of exactly these events, for the reducer (`reduce_batch`)."""
    effects: list[Effects] = [Effects("applied")] * len(events)
    messages: list[list[Anomaly]] = [[] for _ in events]
    for idx in rounds_of([e.robot_id for e in events]):
        evs = [events[i] for i in idx]
        recv = np.array([received_ts[i] for i in idx], np.float64)
        before = snapshot(red, [e.robot_id for e in evs])
        _, eff = reduce_batch(red, evs, recv, columns=_round_columns(columns, idx))
        found = observe_round(obs, red, Round(evs, recv, eff, before), models, params, baselines,
                              cohort_at=None if cohorts is None else [cohorts[i].baselines.get(events[i].model)
                                                                      for i in idx],
                              rates_at=None if cohorts is None else [cohorts[i].rates.get(events[i].model)
                                                                     for i in idx])
        for i, f, m in zip(idx, eff, found):
            effects[i], messages[i] = f, m
    return effects, messages


def _round_columns(columns: tuple[Rows, Index] | None, idx: list[int]) -> tuple[Rows, Index] | None:
    """The decoder's rows of one round (`idx`: ascending rows of the batch)."""
    if columns is None:
        return None
    rows, index = columns
    keep = np.zeros(len(rows.row), np.bool_)
    keep[idx] = True
    return rows.take(keep), index


def rounds_of(robot_ids: Sequence[str]) -> list[list[int]]:
    """Row indices per round: a robot's k-th row is in round k."""
    seen: dict[str, int] = {}
    out: list[list[int]] = []
    for i, r in enumerate(robot_ids):
        k = seen[r] = seen.get(r, -1) + 1
        if k == len(out):
            out.append([])
        out[k].append(i)
    return out


# --- ingest: observe with the partition's cohorts, learning in log order ----------------------------

def ingest_batch(obs: ObserveState, red: ReduceState, events: Sequence[Event], received_ts: Sequence[float],
                 models: Mapping[str, RobotModel], params: Mapping[str, RobotDetectorParams],
                 cohorts: Cohorts, *, columns: tuple[Rows, Index] | None = None
                 ) -> tuple[list[Effects], list[list[Anomaly]], Cohorts]:
    """`ingest_partitions` over a batch of one partition: effects, messages, the cohorts after it."""
    effects, messages, after = ingest_partitions(obs, red, events, received_ts, [0] * len(events), models, params,
                                                 {0: cohorts}, columns=columns)
    return effects, messages, after.get(0, cohorts)


CohortKey = tuple[int, str]
"""(partition, model): what a cohort is learned for. Each partition keeps its own `Cohorts`."""


def ingest_partitions(obs: ObserveState, red: ReduceState, events: Sequence[Event], received_ts: Sequence[float],
                      partitions: Sequence[int], models: Mapping[str, RobotModel],
                      params: Mapping[str, RobotDetectorParams], cohorts: Mapping[int, Cohorts], *,
                      columns: tuple[Rows, Index] | None = None
                      ) -> tuple[list[Effects], list[list[Anomaly]], dict[int, Cohorts]]:
    """`twin.pipeline.ingest` for each event of a batch (log order; `partitions`: each event's, whose
    `cohorts` it reads and teaches): reduce, observe against the cohorts in force at each row's log
    position, learn. Effects and messages per event, and each partition's cohorts after the batch
    (those of `cohorts` no row learned from are not returned); `red` and `obs` change in place.

    One batch may span partitions: a round holds rows of any partitions, so the fixed numpy cost of a
    round is paid once for all of them, while learning is planned per (partition, model), the only
    entries a row reads or teaches (`CohortKey`).

    The reducer and every detector but the cohort's two checks run once, round by round (`_begin`:
    they do not depend on the cohorts, nor do the trend rates a plan learns from). Then
    `batch_cohort.settle`'s fixed point, over every cohort of the batch at once: plan each one's
    learning with a learn mask, finish the rounds against the plans (the cohort checks and the
    lifecycle, `_finish`, from the batch's start cohort states and open anomalies), read the mask
    that implies (applied, settled at work, no anomaly open after the row) and finish again if it
    differs. The first guess: every applied row settled at work learns, but for `_likely_open` ones.
    `columns`: as for `observe_batch`."""
    begun: list[tuple[list[int], Round, _Part]] = []
    whole = Trace(len(events))
    effects: list[Effects] = [Effects("applied")] * len(events)
    for idx in rounds_of([e.robot_id for e in events]):
        evs = [events[i] for i in idx]
        recv = np.array([received_ts[i] for i in idx], np.float64)
        before = snapshot(red, [e.robot_id for e in evs])
        _, eff = reduce_batch(red, evs, recv, columns=_round_columns(columns, idx))
        trace = Trace(len(idx))
        rnd = Round(evs, recv, eff, before)
        part = _begin(obs, red, rnd, models, params, trace)
        begun.append((idx, rnd, part))
        for j, i in enumerate(idx):
            effects[i], whole.rates[i] = eff[j], trace.rates[j]
        whole.at_work[idx] = (part.bits & _AT_WORK) > 0
    applied = np.array([f.outcome == "applied" for f in effects], bool)
    by_model: dict[str, list[int]] = {}
    by_key: dict[CohortKey, list[int]] = {}
    for i, (e, p) in enumerate(zip(events, partitions)):
        by_model.setdefault(e.model, []).append(i)
        by_key.setdefault((p, e.model), []).append(i)
    feats = {m: _features(events, rows, models[m]) for m, rows in by_model.items()}
    at = _positions(by_model, len(events))
    reports = {k: _reports(events, rows, _take(feats[k[1]], at[rows]), [whole.rates[i] for i in rows])
               for k, rows in by_key.items()}
    guess = applied & whole.at_work & ~_likely_open(begun, obs.opened, len(events), len(red.robot_ids))
    masks = {k: guess[rows] for k, rows in by_key.items()}
    start_cohort, start_opened = bc.States(*(col.copy() for col in obs.cohort)), dict(obs.opened)
    features_of = _batch_features(feats, at)
    for _ in range(len(events) + 2):
        plans, after = _plans(cohorts, by_key, reports, masks)
        cohort_at, rates_at = _per_row(len(events), cohorts, by_key, plans)
        obs.cohort, obs.opened = bc.States(*(col.copy() for col in start_cohort)), dict(start_opened)
        messages = _finish_all(obs, red, begun, models, params, cohort_at, rates_at, whole, features_of)
        learned = applied & whole.at_work & ~whole.open
        new_masks = {k: learned[rows] for k, rows in by_key.items()}
        if all(np.array_equal(new_masks[k], masks[k]) for k in masks):
            return effects, messages, after
        masks = new_masks
    raise AssertionError("the learn mask did not settle: the outcome is not causal in log order")


def _likely_open(begun: list[tuple[list[int], Round, _Part]], opened: Mapping[int, Any], n: int,
                 robots: int) -> Array:
    """Per row, a guess that an anomaly is open after it: its robot had one open before the batch, or
    a finding of `_begin` on this row or an earlier one. Only `settle`'s first guess: the fixed point
    does not depend on it (a row's outcome depends on earlier rows' learning only), but a right guess
    saves a whole pass of `_finish_all`."""
    hot = np.zeros(robots, bool)
    hot[list(opened)] = True
    out = np.zeros(n, bool)
    for idx, _, part in begun:  # round k holds each robot's k-th row: a robot's rows in log order
        if part.found:
            hot[part.slots[list(part.found)]] = True
        out[idx] = hot[part.slots]
    return out


def _finish_all(obs: ObserveState, red: ReduceState, begun: list[tuple[list[int], Round, _Part]],
                models: Mapping[str, RobotModel], params: Mapping[str, RobotDetectorParams],
                cohort_at: list[mv.Baseline | None], rates_at: list[Mapping[str, Moments] | None],
                whole: Trace, feats: Callable[[list[int]], Features]) -> list[list[Anomaly]]:
    """One pass: `_finish` of every begun round with the per-row baselines and moments; the messages
    per event, and each row's open anomalies after it into `whole`."""
    messages: list[list[Anomaly]] = [[] for _ in cohort_at]
    for idx, rnd, part in begun:
        trace = Trace(len(idx))
        got = _finish(obs, red, rnd, part, models, params, [cohort_at[i] for i in idx], [rates_at[i] for i in idx],
                      trace, feats(idx))
        for i, m in zip(idx, got):
            messages[i] = m
        whole.open[idx] = trace.open
    return messages


def _positions(by_model: Mapping[str, list[int]], n: int) -> Array:
    """Per batch row: its position among its model's rows."""
    at = np.zeros(n, np.int64)
    for rows in by_model.values():
        at[rows] = np.arange(len(rows))
    return at


def _take(feats: tuple[Array, Array], k: Array) -> tuple[Array, Array]:
    return feats[0][k], feats[1][k]


def _batch_features(feats: Mapping[str, tuple[Array, Array]], at: Array) -> Callable[[list[int]], Features]:
    """The features computed for every row of each model up front (`at`: a batch row's position among
    its model's), for a round's cohort score to take rows of (per round: its batch rows `idx`)
    instead of reading the events' signals again."""
    def of_round(idx: list[int]) -> Features:
        batch_rows = np.array(idx, np.int64)

        def take(model: str, rows: Array) -> tuple[Array, Array]:
            return _take(feats[model], at[batch_rows[rows]])
        return take
    return of_round


def _features(events: Sequence[Event], rows: list[int], model: RobotModel) -> tuple[Array, Array]:
    """`cohort.features` of a model's rows: (n, p) vectors and whether each is complete."""
    names = list(model.signals)
    values = np.array([[events[i].signals.get(n, np.nan) for n in names] for i in rows], np.float64)
    return bc.features(values.reshape(len(rows), len(names)), model)


def _reports(events: Sequence[Event], rows: list[int], feats: tuple[Array, Array],
             rates: list[dict[str, float]]) -> bc.Reports:
    """A model's `batch_cohort.Reports`: trend names in order of first appearance (a row's in its
    event's signal order, as `trend_rates` yields them)."""
    names = list(dict.fromkeys(n for r in rates for n in r))
    col = {n: k for k, n in enumerate(names)}
    values, has = np.zeros((len(rows), len(names))), np.zeros((len(rows), len(names)), bool)
    for j, r in enumerate(rates):
        for n, v in r.items():
            values[j, col[n]], has[j, col[n]] = v, True
    return bc.Reports(np.array([events[i].ts for i in rows], np.float64), feats[0], feats[1], values, has, tuple(names))


def _plans(cohorts: Mapping[int, Cohorts], by_key: Mapping[CohortKey, list[int]],
           reports: Mapping[CohortKey, bc.Reports], masks: Mapping[CohortKey, Array]
           ) -> tuple[dict[CohortKey, bc.Plan], dict[int, Cohorts]]:
    """Each cohort's plan (each touches only its partition's entries of its model), and each
    partition's cohorts after all of them with every dict's keys in the scalar's order (`_in_log_order`)."""
    plans: dict[CohortKey, bc.Plan] = {}
    after: dict[int, Cohorts] = {}
    for k in by_key:
        p, m = k
        plans[k] = bc.plan(after.get(p, cohorts[p]), m, reports[k], masks[k])
        after[p] = plans[k].cohorts

    def of(p: int, table: Mapping[CohortKey, Any]) -> dict[str, Any]:
        return {m: v for (q, m), v in table.items() if q == p}
    return plans, {p: _in_log_order(cohorts[p], a, of(p, by_key), of(p, reports), of(p, masks), of(p, plans))
                   for p, a in after.items()}


_NEVER = 1 << 62


def _in_log_order(start: Cohorts, after: Cohorts, by_model: Mapping[str, list[int]],
                  reports: Mapping[str, bc.Reports], masks: Mapping[str, Array], plans: Mapping[str, bc.Plan]) -> Cohorts:
    """`after` with the models new to a dict entered in the order the scalar core enters them (the
    batch row of their first insertion): `sums` at the first learning row with features, `baselines`
    and `fitted_at` at the first refit, `rates` at the first learning row with a trend rate."""
    def first(m: str, hits: Array) -> int:
        at = np.flatnonzero(hits)
        return by_model[m][int(at[0])] if len(at) else _NEVER

    when = {"sums": {m: first(m, masks[m] & reports[m].has_x) for m in by_model},
            "rates": {m: first(m, masks[m] & reports[m].has_rate.any(axis=1)) for m in by_model}}
    when["baselines"] = when["fitted_at"] = {
        m: by_model[m][int(plans[m].refits[0])] if len(plans[m].refits) else _NEVER for m in by_model}
    fields: dict[str, Any] = {}
    for name, at in when.items():
        old, new = getattr(start, name), getattr(after, name)
        fresh = sorted((m for m in new if m not in old), key=lambda m: at.get(m, _NEVER))
        fields[name] = {**{m: new[m] for m in old if m in new}, **{m: new[m] for m in fresh}}
    return replace_dataclass(after, **fields)


def _per_row(n: int, cohorts: Mapping[int, Cohorts], by_key: Mapping[CohortKey, list[int]],
             plans: Mapping[CohortKey, bc.Plan]
             ) -> tuple[list[mv.Baseline | None], list[Mapping[str, Moments] | None]]:
    """Per row of the batch: the baseline in force and the trend-rate moments before it (`observe`'s
    `cohort` and `rates`)."""
    cohort_at: list[mv.Baseline | None] = [None] * n
    rates_at: list[Mapping[str, Moments] | None] = [None] * n
    for (p, m), rows in by_key.items():
        made, start = plans[p, m], cohorts[p].rates.get(m)
        for j, i in enumerate(rows):
            cohort_at[i] = made.baselines[int(made.epoch[j])]
            here = dict(start or {})
            for name, r in made.rates.items():
                moments = bc.moments_at(r, j)
                if moments is None:
                    here.pop(name, None)
                else:
                    here[name] = moments
            rates_at[i] = here if here or start is not None else None
    return cohort_at, rates_at

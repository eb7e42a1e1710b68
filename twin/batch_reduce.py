"""The reducer of `twin.reduce`, over many robots at once: struct-of-arrays state, a batch at a time.

`reduce_batch(state, events, received_ts)` gives every robot the twin that
`twin.reduce.apply` would give it, event by event, and every event the same
`Effects` (tests/unit/test_batch_reduce.py folds chaos scenarios through both
and compares bytes). The point is cost: one numpy operation per column per
*round* instead of Python per signal per event.

How:
* State is columns indexed by a robot slot (`ReduceState.slot_of`). Signals
  live in column blocks, one per signal list (robots of one model share one),
  so a robot costs what its numbers need: per signal two flag bytes and four
  numbers (value, mean, var, count); a signal's own (ts, seq), needed only while
  its value is older than the twin's latest event, is kept in a sparse dict per
  block. A robot that reports a signal its block lacks moves to a wider block.
* A batch is split into rounds: a robot's k-th event of the batch is in round k.
  Within a round each robot appears once, so rounds are elementwise over robots
  and the log order of each robot's events is kept, which is all the scalar
  reducer depends on (robots never read each other's state).
* Strings (labels, versions, codes tuples, configurations) are interned to
  int32 codes: equal codes iff equal values, so change detection is a compare.
* The de-duplication window is WINDOW = 64 bits: exactly one uint64 word. Seqs
  are uint64 too (`parse` bounds them to `twin.schema.SEQ_MAX`, within int64), so
  a difference such as `mark - seq - 1` is computed without a sign and only read
  where it is non-negative.

Bit identity: only elementwise + - * / on float64 (IEEE, the same as Python's
floats, evaluated in the same order as `twin.reduce._update_signal`) and
comparisons; no reductions over floats. The sparse cases stay in Python: the
change values (SeqGap, ModeChanged, VersionChanged), robots new to the state, and
rounds of only a few robots (a batch of one robot's events would otherwise pay a
round's fixed numpy cost per event): those go through `twin.reduce.apply` itself.

`reduce_columns(state, columns)` folds a batch decoded by `twin.columns.decode_batch`
straight from its columns (no `Event` per row), and counts its rejected rows as
`twin.pipeline._reject` does; tests/unit/test_reduce_columns.py holds it to
`parse` + `apply` + `note_rejected`. Both entry points build a `_Batch` and share
one fold (`_fold`).

`reduce_batch` and `reduce_columns` update `state` in place (that is what makes it cheap) and
return it, so callers keep the `(state, input) -> (state, output)` shape.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import chain, repeat
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
from msgspec.structs import astuple

from twin import kpi
from twin.columns import Columns, Index, Rows
from twin.detect.watch import Watch
from twin.effects import OUTCOMES, Change, Effects, ModeChanged, SeqGap, VersionChanged
from twin.fleet import Fleet
from twin.reduce import ALPHA, apply
from twin.record import robot_of
from twin.schema import MODES, Event, Location
from twin.state import WINDOW, Counts, SignalState, Twin
from twin.summary import Labels

if WINDOW != 64:  # pragma: no cover - a loud stop rather than a silently wrong window
    raise ImportError(f"twin.batch_reduce keeps the seq window in one uint64 word; WINDOW is {WINDOW}")

Array = npt.NDArray[Any]

_KEEP = 1 - ALPHA
"""`(1 - ALPHA)` of `_update_signal`, computed by Python once: the same float64."""
_MODE_INDEX = {mode: i for i, mode in enumerate(MODES)}
_APPLIED, _LATE, _DUPLICATE, _STALE = range(4)
_PLAIN = tuple(Effects(outcome) for outcome in OUTCOMES)
"""The Effects of an event without changes, shared (they are frozen)."""
_U1 = np.uint64(1)
_U0 = np.uint64(0)


_SLOT_COLUMNS: dict[str, tuple[type[Any], tuple[int, ...]]] = {
    # latest state, decided by the newest event
    "sector": (np.int32, ()), "site": (np.int32, ()), "model": (np.int32, ()),
    "ai": (np.int32, ()), "fw": (np.int32, ()), "mode": (np.int8, ()),
    "codes": (np.int32, ()), "config": (np.int32, ()),
    "loc_kind": (np.uint8, ()), "lat": (np.float64, ()), "lon": (np.float64, ()), "floor": (np.int64, ()),
    "ts": (np.float64, ()), "latest_seq": (np.uint64, ()),
    # de-duplication
    "seq": (np.uint64, ()), "first_seq": (np.uint64, ()), "window": (np.uint64, ()),
    "first_seen": (np.float64, ()), "last_seen": (np.float64, ()),
    # counts
    "events": (np.int64, ()), "duplicates": (np.int64, ()), "stale": (np.int64, ()),
    "rejected": (np.int64, ()), "modes": (np.int64, (len(MODES),)),
    # arrival-order fields
    "late": (np.int64, ()), "mode_since": (np.float64, ()), "ai_since": (np.float64, ()),
    "fw_since": (np.float64, ()), "version_changes": (np.int64, ()),
    # where the robot's signals are
    "block": (np.int32, ()), "row": (np.int32, ()),
    # fields the reducer never touches: the newest record applied (`twin.pipeline.applied`)
    "partition": (np.int64, ()), "offset": (np.int64, ()), "check_offset": (np.int64, ()),
}
"""One entry per robot slot. loc_kind: 0 no location, 1 without floor, 2 with floor."""
_FILL = {"partition": -1, "offset": -1, "check_offset": -1}
"""Slot columns whose new rows are not zero: the Twin's defaults."""

_LATEST = ("sector", "site", "model", "ai", "fw", "mode", "codes", "config", "loc_kind", "lat", "lon",
           "floor", "ts", "latest_seq")
"""The slot columns the newest event decides (`twin.reduce._latest`); same names in a `_Batch`."""

_SIGNAL_COLUMNS: dict[str, type[Any]] = {
    "present": np.bool_, "explicit": np.bool_, "value": np.float64, "mean": np.float64,
    "var": np.float64, "count": np.int64,
}
"""Per signal of a block row. `present`: the twin has the signal. `explicit`: its ts/seq are
stored (in the block's sparse `times`) rather than None. `count` is the signal's count; `SignalState.n` is None
exactly when it equals the twin's accepted events (an invariant of `twin.reduce`)."""


def _grown(columns: dict[str, Array], capacity: int) -> dict[str, Array]:
    """The same columns with room for `capacity` rows; new rows are zero (or `_FILL`'s). Callers grow by
    a quarter: amortised copying stays linear and at most a fifth of the memory is slack."""
    out = {}
    for name, old in columns.items():
        new = np.full((capacity, *old.shape[1:]), _FILL.get(name, 0), old.dtype)
        new[: len(old)] = old
        out[name] = new
    return out


class _Intern(dict[Any, int]):
    """Value -> code, handed out in order of first sight; `table[code]` is the value.

    A dict subclass with `__missing__`, so `map(intern.__getitem__, column)` runs in C.
    """

    def __init__(self) -> None:
        super().__init__()
        self.table: list[Any] = []

    def __missing__(self, key: Any) -> int:
        code = self[key] = len(self.table)
        self.table.append(key)
        return code


class _ConfigIntern(dict[tuple[tuple[str, str], ...], int]):
    """An event's config items, in the sender's order -> code of the canonical (sorted) dict.

    Code 0 is no configuration. `refs[code]` is what an event's `config` equals when it has that
    code (UNSET for code 0), so a batch finds the events whose config did not change with one
    C-level compare each, and interns only the others.
    """

    def __init__(self) -> None:
        super().__init__()
        self.canonical = _Intern()
        self.refs: list[dict[str, str] | msgspec.UnsetType] = [msgspec.UNSET]
        self[()] = self.canonical[()]

    def __missing__(self, key: tuple[tuple[str, str], ...]) -> int:
        code = self[key] = self.canonical[tuple(sorted(key))]
        if code == len(self.refs):
            self.refs.append(dict(self.canonical.table[code]))
        return code

    def config(self, code: int) -> dict[str, str]:
        return dict(self.canonical.table[code])


class _KeyIntern(dict[tuple[str, ...], int]):
    """An event's signal names, in the sender's order -> a key code; `gids[code]`: their global name ids."""

    def __init__(self, names: _Intern) -> None:
        super().__init__()
        self.names = names
        self.gids: list[tuple[int, ...]] = []
        self.ordered: list[bool] = []
        """Whether the names are in sorted order (as a twin's signals always are)."""
        self._table: Array = np.zeros((0, 0), np.int32)

    def __missing__(self, key: tuple[str, ...]) -> int:
        code = self[key] = len(self.gids)
        self.gids.append(tuple(self.names[name] for name in key))
        self.ordered.append(list(key) == sorted(key))
        return code

    def table(self) -> Array:
        """Key code x position -> global name id (padded with -1)."""
        if len(self._table) != len(self.gids):
            table = np.full((len(self.gids), max(map(len, self.gids), default=0)), -1, np.int32)
            for code, gids in enumerate(self.gids):
                table[code, : len(gids)] = gids
            self._table = table
        return self._table


class _Block:
    """The signal columns of robots sharing one (sorted) signal list: row per robot, column per signal."""

    def __init__(self, names: tuple[str, ...], gids: tuple[int, ...]) -> None:
        self.names = names
        self.gids = gids
        self.local = {gid: j for j, gid in enumerate(gids)}
        self.column = {name: j for j, name in enumerate(names)}
        self.c: dict[str, Array] = {k: np.zeros((0, len(names)), t) for k, t in _SIGNAL_COLUMNS.items()}
        self.rows = 0
        self.free: list[int] = []
        self.times: dict[tuple[int, int], tuple[float, int]] = {}
        """(row, column) -> (ts, seq) of the explicit signals only: a signal's value usually came with
        its twin's latest event (ts/seq None), so 16 bytes per signal are kept only where needed."""

    def alloc(self) -> int:
        """A row with no signal present."""
        return int(self.alloc_many(1)[0])

    def alloc_many(self, count: int) -> Array:
        """`count` rows with no signal present: freed ones first."""
        reused = [self.free.pop() for _ in range(min(count, len(self.free)))]
        for column in self.c.values():
            column[reused] = 0
        fresh = count - len(reused)
        if self.rows + fresh > len(self.c["value"]):
            self.c = _grown(self.c, max(16, len(self.c["value"]) * 5 // 4, self.rows + fresh))
        self.rows += fresh
        return np.array(reused + list(range(self.rows - fresh, self.rows)), np.int64)


class ReduceState:
    """The reducer's state of many robots: the columns of their twins (see the module doc).

    `catalogues` (model -> signal names, e.g. `catalogues_of(fleet)`) sizes a new robot's block to
    its model's whole catalogue, so a robot that has not yet reported every signal does not move.
    """

    def __init__(self, catalogues: Mapping[str, Iterable[str]] | None = None) -> None:
        self.slot_of: dict[str, int] = {}
        self.robot_ids: list[str] = []
        self.cols: dict[str, Array] = {k: np.zeros((0, *shape), t) for k, (t, shape) in _SLOT_COLUMNS.items()}
        self.blocks: list[_Block] = []
        self.block_of: dict[tuple[str, ...], int] = {}
        self.strings = _Intern()
        self.codes = _Intern()
        self.configs = _ConfigIntern()
        self.names = _Intern()
        self.keys = _KeyIntern(self.names)
        self.watches: dict[int, Watch] = {}
        """The watch of slots loaded with one (a Twin's field the reducer never touches; the batch fold
        keeps detector state in its own arrays instead)."""
        self.catalogues = {m: tuple(names) for m, names in (catalogues or {}).items()}
        self._colmap: Array = np.zeros((0, 0), np.int32)
        self._new_blocks: dict[tuple[str, frozenset[int]], int] = {}

    @property
    def robots(self) -> int:
        return len(self.robot_ids)

    def nbytes(self) -> int:
        """Bytes of every array (allocated capacity, up to a quarter more than the rows use); the sparse
        signal times (`sparse_times`) and the interned strings are not in it."""
        slots = sum(a.nbytes for a in self.cols.values())
        return slots + sum(a.nbytes for b in self.blocks for a in b.c.values())

    def sparse_times(self) -> int:
        """How many signals hold their own (ts, seq) (each a dict entry of two Python numbers)."""
        return sum(len(block.times) for block in self.blocks)

    def _new_slots(self, robot_ids: list[str]) -> int:
        """Consecutive slots for robots new to the state; the first one's."""
        start = len(self.robot_ids)
        self.robot_ids.extend(robot_ids)
        self.slot_of.update(zip(robot_ids, range(start, len(self.robot_ids))))
        if len(self.robot_ids) > len(self.cols["ts"]):
            self.cols = _grown(self.cols, max(64, len(self.cols["ts"]) * 5 // 4, len(self.robot_ids)))
        return start

    def _block_for(self, model: str, keys: frozenset[int]) -> int:
        """The block of a new robot of `model` whose events carry the signal key codes `keys`."""
        bid = self._new_blocks.get((model, keys))
        if bid is None:
            names = {*self.catalogues.get(model, ()), *(self.names.table[g] for k in keys for g in self.keys.gids[k])}
            bid = self._new_blocks[model, keys] = self._block_id(names)
        return bid

    def _block_id(self, names: Iterable[str]) -> int:
        key = tuple(sorted(set(names)))
        bid = self.block_of.get(key)
        if bid is None:
            bid = self.block_of[key] = len(self.blocks)
            self.blocks.append(_Block(key, tuple(self.names[n] for n in key)))
        return bid

    def _move(self, slot: int, names: Iterable[str]) -> None:
        """Move a robot's signals to the block of its own names plus `names` (a wider block)."""
        old, old_row = self.blocks[self.cols["block"][slot]], int(self.cols["row"][slot])
        bid = self._block_id((*old.names, *names))
        block = self.blocks[bid]
        row = block.alloc()
        where = [block.local[g] for g in old.gids]
        for name, column in block.c.items():
            column[row, where] = old.c[name][old_row]
        for j in np.flatnonzero(old.c["explicit"][old_row]).tolist():
            block.times[row, where[j]] = old.times.pop((old_row, j))
        old.free.append(old_row)
        self.cols["block"][slot], self.cols["row"][slot] = bid, row

    def colmap(self) -> Array:
        """Block id x global signal id -> column in the block, -1 where the block has none."""
        shape = (len(self.blocks), len(self.names.table))
        if self._colmap.shape != shape:
            cm = np.full(shape, -1, np.int32)
            for bid, block in enumerate(self.blocks):
                cm[bid, list(block.gids)] = np.arange(len(block.gids), dtype=np.int32)
            self._colmap = cm
        return self._colmap


def catalogues_of(fleet: Fleet) -> dict[str, tuple[str, ...]]:
    """Model -> signal names, from a `twin.fleet.Fleet`."""
    return {name: tuple(model.signals) for name, model in fleet.models.items()}


_FIELD = {name: i for i, name in enumerate(Event.__struct_fields__)}
_OBJECT_FIELDS = ("ai_model_version", "firmware", "codes", "location", "config")
"""Event fields a `_Batch` takes from each event object (an `Event`, or a row `twin.columns` decoded)."""


class _Batch:
    """A batch of events as columns (one entry per event, in log order), placed in the state:
    every robot has a slot and a block with a column for each signal it reports.

    Built either from `Event`s (`of_events`) or from decoded wire rows (`of_columns`); the fold
    itself only ever sees a `_Batch`, so both entry points share one code path."""

    n: int
    rid: Sequence[str]
    seq: Array
    """uint64."""
    ts: Array
    recv: Array
    mode: Array
    sector: Array
    site: Array
    model: Array
    """The labels as codes of `ReduceState.strings`."""

    def __init__(self, state: ReduceState, event_of: Callable[[int], Event]) -> None:
        self.state = state
        self.key_of: Callable[[int], int] = lambda i: int(self.key[i])
        """Event i's signal names as a `ReduceState.keys` code (only robots new to the state, or moving
        to a wider block, need it)."""
        self.event_of = event_of
        """Event i of the batch, for the rounds that go through `apply`."""

    @classmethod
    def of_events(cls, state: ReduceState, events: Sequence[Event], received_ts: Sequence[float] | Array) -> _Batch:
        batch = cls(state, events.__getitem__)
        n = batch.n = len(events)
        fields = list(zip(*map(astuple, events)))
        batch.rid = fields[_FIELD["robot_id"]]
        batch.recv = np.asarray(received_ts, dtype=np.float64)
        if batch.recv.shape != (n,):
            raise ValueError(f"{n} events but {batch.recv.shape} received_ts")
        batch.seq = np.fromiter(fields[_FIELD["seq"]], np.uint64, n)
        batch.ts = np.fromiter(fields[_FIELD["ts"]], np.float64, n)
        batch.mode = np.fromiter(map(_MODE_INDEX.__getitem__, fields[_FIELD["mode"]]), np.int8, n)
        strings = state.strings.__getitem__
        for name in ("sector", "site", "model"):
            setattr(batch, name, np.fromiter(map(strings, fields[_FIELD[name]]), np.int32, n))
        batch._signals(state, fields[_FIELD["signals"]])
        batch._finish(*(fields[_FIELD[name]] for name in _OBJECT_FIELDS))
        return batch

    @classmethod
    def of_columns(cls, state: ReduceState, columns: Columns) -> tuple[_Batch, list[int]]:
        """The accepted rows of `columns`, in row order; and their rows."""
        rows: list[int] = columns.row.tolist()
        return cls.of_rows(state, columns, columns.index, lambda i: columns.event(rows[i])), rows

    @classmethod
    def of_rows(cls, state: ReduceState, columns: Rows, index: Index, event_of: Callable[[int], Event]) -> _Batch:
        """`columns`' rows (decoded against `index`) in order; `event_of(i)`: the `Event` of row i."""
        batch = cls(state, event_of)
        batch.n = len(columns.row)
        strings = state.strings.__getitem__
        batch.rid, batch.recv, batch.ts, batch.mode = columns.robot_id, columns.received_ts, columns.ts, columns.mode
        batch.seq = columns.seq.astype(np.uint64)
        for name, names in (("sector", index.sectors), ("site", index.sites), ("model", index.models)):
            code = np.fromiter(map(strings, names), np.int32, len(names))
            setattr(batch, name, code[getattr(columns, name)])  # accepted rows hold known names only
        batch._signal_matrix(state, columns.signals, index.signals)
        batch._finish(*(tuple(map(operator.attrgetter(name), columns.events)) for name in _OBJECT_FIELDS))
        return batch

    def _finish(self, ai: Sequence[str], fw: Sequence[str], codes: Sequence[tuple[str, ...]],
                locations: Sequence[Location | Any | None], configs: Sequence[dict[str, str] | msgspec.UnsetType]) -> None:
        """The columns from the events' object fields, then each robot's slot and block (the signals are set)."""
        state, n = self.state, self.n
        self.ai = np.fromiter(map(state.strings.__getitem__, ai), np.int32, n)
        self.fw = np.fromiter(map(state.strings.__getitem__, fw), np.int32, n)
        self.codes = np.fromiter(map(state.codes.__getitem__, codes), np.int32, n)
        self._locations(locations)
        self.slot = np.zeros(n, np.int64)
        """The robot slot of each event."""
        self.first = np.zeros(n, np.bool_)
        """True for the first event of a robot new to the state."""
        self._place(state)
        self.local = self._local_columns(state)
        """Each flat signal entry's column in its robot's block."""
        self.config = _config_codes(state, configs, self.slot)

    def column(self, name: str) -> Array:
        if name == "latest_seq":
            return self.seq
        return getattr(self, name)  # type: ignore[no-any-return]  # the columns set in __init__

    def _locations(self, loc: Sequence[Location | Any | None]) -> None:
        n = self.n
        self.loc_kind = np.zeros(n, np.uint8)
        self.lat, self.lon = np.zeros(n), np.zeros(n)
        self.floor = np.zeros(n, np.int64)
        if loc.count(None) == n:
            return
        for i, where in enumerate(loc):
            if where is not None:
                self.lat[i], self.lon[i] = where.lat, where.lon
                self.loc_kind[i] = 1 if where.floor is None else 2
                self.floor[i] = 0 if where.floor is None else where.floor

    def _signals(self, state: ReduceState, sigs: Sequence[dict[str, float]]) -> None:
        """Every event's signals, flat: global name id and value, `off[i]`/`lens[i]` per event."""
        self.key = np.fromiter(map(state.keys.__getitem__, map(tuple, sigs)), np.int32, self.n)
        table = state.keys.table()
        self.lens = (table[self.key] >= 0).sum(axis=1)  # integer counts: exact
        self.off = np.cumsum(self.lens) - self.lens
        total = int(self.lens.sum())
        self.gid = table[np.repeat(self.key, self.lens), np.arange(total) - np.repeat(self.off, self.lens)]
        self.val = np.fromiter(chain.from_iterable(map(dict.values, sigs)), np.float64, total)

    def _signal_matrix(self, state: ReduceState, matrix: Array, names: tuple[str, ...]) -> None:
        """`_signals` from a decoded batch's signal matrix (NaN: the event has no such signal; a valid
        value is finite). Each event's signals come in the matrix's column order, not the sender's:
        the fold treats an event's signals independently, so only the set matters."""
        present = ~np.isnan(matrix)
        self.lens = present.sum(axis=1)  # integer counts: exact
        self.off = np.cumsum(self.lens) - self.lens
        at, col = np.nonzero(present)  # row-major: each event's entries together, in event order
        self.gid = np.fromiter(map(state.names.__getitem__, names), np.int32, len(names))[col]
        self.val = matrix[at, col]
        self.key_of = lambda i: state.keys[tuple(names[j] for j in np.flatnonzero(present[i]).tolist())]

    def _place(self, state: ReduceState) -> None:
        slots = list(map(state.slot_of.get, self.rid))
        if None in slots:
            _new_robots(state, self, slots)
        self.slot = np.array(slots, np.int64)

    def _local_columns(self, state: ReduceState) -> Array:
        local = _lookup(state, self)
        if (local < 0).any():  # a robot reports a signal its block lacks: move it (rare)
            ev_of = np.repeat(np.arange(self.n), self.lens)
            for i in np.unique(ev_of[local < 0]).tolist():
                slot = int(self.slot[i])
                have = state.blocks[state.cols["block"][slot]].local
                missing = [g for g in state.keys.gids[self.key_of(i)] if g not in have]
                if missing:
                    state._move(slot, [state.names.table[g] for g in missing])
            local = _lookup(state, self)
        return local


def _lookup(state: ReduceState, batch: _Batch) -> Array:
    blocks = state.cols["block"][batch.slot]
    return state.colmap()[np.repeat(blocks, batch.lens), batch.gid]  # type: ignore[no-any-return]


def _config_codes(state: ReduceState, configs: Sequence[dict[str, str] | msgspec.UnsetType], slot: Array) -> Array:
    """Each event's config code: the robot's current one where the config equals it, else interned."""
    codes = state.cols["config"][slot]
    refs = state.configs.refs
    same = np.fromiter(map(operator.eq, configs, map(refs.__getitem__, codes.tolist())), np.bool_, len(slot))
    for i in np.flatnonzero(~same).tolist():
        config = configs[i]
        codes[i] = state.configs[() if isinstance(config, msgspec.UnsetType) else tuple(config.items())]
    return codes


NARROW = 24
"""A round with fewer robots than this costs more vectorised (a fixed 150 us or so of numpy calls)
than through the scalar reducer (measured: the two break even at about 20 robots a round), so from
the first such round on, its robots go through `apply`."""


def reduce_batch(state: ReduceState, events: Sequence[Event], received_ts: Sequence[float] | Array, *,
                 narrow: int = NARROW, columns: tuple[Rows, Index] | None = None) -> tuple[ReduceState, list[Effects]]:
    """Apply `events` (log order; `received_ts[i]`: broker time of event i) as `twin.reduce.apply`
    would one by one; the Effects of each event, in input order. Updates `state` in place.

    Rounds of fewer than `narrow` robots (a batch of few robots' many events, as when replaying
    one robot) go through `apply` itself, robot by robot; `narrow=0` keeps every round vectorised.
    Either way the result is the same.

    `columns`: the decoder's rows of exactly these events (`twin.columns.decode_batch`, in this order,
    broker times equal to `received_ts`) and its index: the batch is built from them instead of from
    the events' fields, as `reduce_columns` builds it.
    """
    if not events:
        return state, []
    if columns is not None:
        return state, _fold(state, _Batch.of_rows(state, *columns, events.__getitem__), narrow)
    return state, _fold(state, _Batch.of_events(state, events, received_ts), narrow)


def reduce_columns(state: ReduceState, columns: Columns, *, narrow: int = NARROW) -> tuple[ReduceState,
                                                                                          list[Effects | None]]:
    """Fold a batch decoded by `twin.columns.decode_batch` as the scalar pipeline folds its messages
    one by one: `parse`, then `apply` for an event, `note_rejected` for a rejection keyed to an
    existing twin. Effects per row of the batch (None for a rejected row). Updates `state` in place.

    Wire rows reach the state without an `Event` each: the fold reads the columns and the decoded
    rows' fields. See `reduce_batch` for `narrow`.
    """
    size = len(columns.row) + len(columns.rejected)
    effects: list[Effects | None] = [None] * size
    keyed = _rejected_robots(columns)
    existed = {robot for robot in keyed.values() if robot in state.slot_of}
    rows: list[int] = []
    ids: Sequence[str] = ()
    if size > len(columns.rejected):
        batch, rows = _Batch.of_columns(state, columns)
        ids = batch.rid
        for row, effect in zip(rows, _fold(state, batch, narrow)):
            effects[row] = effect
    if keyed:
        _count_rejected(state, keyed, existed, rows, ids)
    return state, effects


def _rejected_robots(columns: Columns) -> dict[int, str]:
    """Row -> the robot id the key of a rejected row names, as `twin.pipeline._reject` reads it."""
    return {row: robot for row, key in columns.rejected_keys.items() if (robot := robot_of(key))}


def _count_rejected(state: ReduceState, keyed: dict[int, str], existed: set[str], rows: list[int],
                    ids: Sequence[str]) -> None:
    """`note_rejected` for each rejected row whose robot had a twin at that row: before the batch, or
    made by an earlier row of it. Counting a rejection commutes with `apply` (which never reads or
    resets `counts.rejected`), so only that existence depends on the order, and the counts can be
    added after the fold."""
    pending = set(keyed.values()) - existed
    first: dict[str, int] = {}
    if pending:
        for row, robot in zip(rows, ids):
            if robot in pending and robot not in first:
                first[robot] = row
    counts: Counter[int] = Counter()
    for row, robot in keyed.items():
        if robot in existed or first.get(robot, row) < row:
            counts[state.slot_of[robot]] += 1
    if counts:
        state.cols["rejected"][list(counts)] += list(counts.values())


def _fold(state: ReduceState, batch: _Batch, narrow: int) -> list[Effects]:
    """The one fold behind both entry points: the Effects of each event of `batch`, in its order."""
    outcome = np.zeros(batch.n, np.int8)
    changes: dict[int, list[Change]] = {}
    rounds = _rounds(batch.slot)
    wide = next((k for k, idx in enumerate(rounds) if len(idx) < narrow), len(rounds))
    with np.errstate(over="ignore", invalid="ignore"):  # inf and nan as Python's floats give them
        for idx in rounds[:wide]:
            _round(state, batch, idx, outcome, changes)
    if wide < len(rounds):
        _scalar(state, batch, np.sort(np.concatenate(rounds[wide:])).tolist(), outcome, changes)
    effects = [_PLAIN[o] for o in outcome.tolist()]
    for i, change in changes.items():
        effects[i] = Effects(OUTCOMES[outcome[i]], tuple(change))
    return effects


_OUTCOME_CODE = {outcome: code for code, outcome in enumerate(OUTCOMES)}


def _scalar(state: ReduceState, batch: _Batch, tail: list[int], outcome: Array,
            changes: dict[int, list[Change]]) -> None:
    """The events `tail` (log order) through `apply`: each robot's twin read once, folded, stored once."""
    by_robot: dict[int, list[int]] = {}
    for i, slot in zip(tail, batch.slot[tail].tolist()):
        by_robot.setdefault(slot, []).append(i)
    received = batch.recv.tolist()
    for slot, indices in by_robot.items():
        twin = None if batch.first[indices[0]] else to_twin(state, state.robot_ids[slot])
        for i in indices:
            twin, effects = apply(twin, batch.event_of(i), received_ts=received[i])
            outcome[i] = _OUTCOME_CODE[effects.outcome]
            if effects.changes:
                changes[i] = list(effects.changes)
        assert twin is not None  # at least one event
        _store(state, slot, twin)


def _new_robots(state: ReduceState, batch: _Batch, slots: list[int | None]) -> None:
    """Slots for robots the state has not seen, in order of first event; each gets a row in the
    block of its model's catalogue plus every signal its events in the batch carry."""
    new = [i for i, s in enumerate(slots) if s is None]
    keys = batch.key_of
    found: dict[str, tuple[int, str, set[int]]] = {}  # robot -> first event, model, signal key codes
    for i in new:
        seen = found.get(batch.rid[i])
        if seen is None:
            found[batch.rid[i]] = (i, state.strings.table[batch.model[i]], {keys(i)})
        else:
            seen[2].add(keys(i))
    batch.first[[first for first, _, _ in found.values()]] = True
    start = state._new_slots(list(found))
    slot_of = state.slot_of
    for i in new:
        slots[i] = slot_of[batch.rid[i]]
    by_block: dict[int, list[int]] = {}
    for slot, (_, model, codes) in enumerate(found.values(), start):
        by_block.setdefault(state._block_for(model, frozenset(codes)), []).append(slot)
    for bid, members in by_block.items():
        state.cols["block"][members] = bid
        state.cols["row"][members] = state.blocks[bid].alloc_many(len(members))


def _rounds(slot: Array) -> list[Array]:
    """Event indices per round: a robot's k-th event of the batch is in round k."""
    n = len(slot)
    order = np.argsort(slot, kind="stable")
    ordered = slot[order]
    start = np.ones(n, np.bool_)
    start[1:] = ordered[1:] != ordered[:-1]
    if start.all():
        return [np.arange(n)]
    first = np.maximum.accumulate(np.where(start, np.arange(n), 0))
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n) - first
    by_round = np.argsort(rank, kind="stable")
    return np.split(by_round, np.cumsum(np.bincount(rank))[:-1])


def _round(state: ReduceState, batch: _Batch, idx: Array, outcome: Array, changes: dict[int, list[Change]]) -> None:
    """One round: each robot at most once, so every step is elementwise over the round's robots."""
    c = state.cols
    new = batch.first[idx]
    created, cslots = idx[new], batch.slot[idx[new]]
    idx = idx[~new]
    slots = batch.slot[idx]
    seq, mark, window = batch.seq[idx], c["seq"][slots], c["window"][slots]
    below = seq < mark
    bit = mark - seq - _U1  # meaningful where below
    in_window = below & (bit < WINDOW)
    seen = in_window & ((window >> np.minimum(bit, np.uint64(WINDOW - 1))) & _U1).astype(np.bool_)
    duplicate, stale = (seq == mark) | seen, below & ~in_window
    outcome[idx[duplicate]] = _DUPLICATE
    c["duplicates"][slots[duplicate]] += 1
    outcome[idx[stale]] = _STALE
    c["stale"][slots[stale]] += 1
    accept = ~(duplicate | stale)
    _accept(state, batch, idx[accept], created, outcome, changes)
    _create(state, batch, created, cslots)


def _accept(state: ReduceState, batch: _Batch, idx: Array, created: Array, outcome: Array,
            changes: dict[int, list[Change]]) -> None:
    """`twin.reduce._accept` for the round's accepted events (and the signals of its new robots)."""
    c = state.cols
    slots = batch.slot[idx]
    seq, mark, window = batch.seq[idx], c["seq"][slots], c["window"][slots]
    ts, latest_ts, latest_seq = batch.ts[idx], c["ts"][slots], c["latest_seq"][slots]
    newest = (ts > latest_ts) | ((ts == latest_ts) & (seq > latest_seq))
    k = len(created)
    _signals(state, batch, np.concatenate([created, idx]), np.concatenate([np.ones(k, np.bool_), newest]),
             np.concatenate([np.zeros(k), latest_ts]), np.concatenate([np.zeros(k, np.uint64), latest_seq]))
    above = seq > mark
    shift = seq - mark  # meaningful where above
    shifted = (np.where(shift < WINDOW, window << np.minimum(shift, np.uint64(WINDOW - 1)), _U0)
               | np.where(shift <= WINDOW, _U1 << (np.minimum(shift, np.uint64(WINDOW)) - _U1), _U0))
    filled = window | (_U1 << np.minimum(mark - seq - _U1, np.uint64(WINDOW - 1)))
    c["window"][slots] = np.where(above, shifted, filled)
    c["seq"][slots] = np.where(above, seq, mark)
    c["first_seq"][slots] = np.minimum(c["first_seq"][slots], seq)
    received, last = batch.recv[idx], c["last_seen"][slots]
    c["last_seen"][slots] = np.where(received > last, received, last)  # max(last, received)
    c["events"][slots] += 1
    c["modes"][slots, batch.mode[idx]] += 1
    late = ~newest
    outcome[idx[late]] = _LATE
    c["late"][slots[late]] += 1
    gap = above & (shift > 1)
    for i, after in zip(idx[gap].tolist(), mark[gap].tolist()):
        changes[i] = [SeqGap(batch.rid[i], batch.ts[i].item(), after, batch.seq[i].item())]
    _become_latest(state, batch, idx[newest], slots[newest], changes)


def _become_latest(state: ReduceState, batch: _Batch, idx: Array, slots: Array,
                   changes: dict[int, list[Change]]) -> None:
    """`twin.reduce._become_latest`: changes found by comparing codes, built in Python where any."""
    c = state.cols
    mode = batch.mode[idx] != c["mode"][slots]
    versions = [batch.column(k)[idx] != c[k][slots] for k in ("ai", "fw", "model")]
    changed = mode | versions[0] | versions[1] | versions[2]
    if changed.any():
        _changes(state, batch, idx[changed], slots[changed], changes)
    ts = batch.ts[idx]
    for column, moved in (("mode_since", mode), ("ai_since", versions[0]), ("fw_since", versions[1])):
        c[column][slots[moved]] = ts[moved]
    c["version_changes"][slots] += versions[0].astype(np.int64) + versions[1] + versions[2]
    for name in _LATEST:
        c[name][slots] = batch.column(name)[idx]


_VERSION_COLUMNS = (("ai_model_version", "ai"), ("firmware", "fw"), ("model", "model"))


def _changes(state: ReduceState, batch: _Batch, idx: Array, slots: Array, changes: dict[int, list[Change]]) -> None:
    c, strings = state.cols, state.strings.table
    for i, slot in zip(idx.tolist(), slots.tolist()):
        rid, ts = batch.rid[i], batch.ts[i].item()
        found: list[Change] = []
        if batch.mode[i] != c["mode"][slot]:
            found.append(ModeChanged(rid, ts, MODES[c["mode"][slot]], MODES[batch.mode[i]]))
        for field, column in _VERSION_COLUMNS:
            before, now = c[column][slot], batch.column(column)[i]
            if before != now:
                found.append(VersionChanged(rid, ts, field, strings[before], strings[now]))  # type: ignore[arg-type]
        changes.setdefault(i, []).extend(found)


def _create(state: ReduceState, batch: _Batch, idx: Array, slots: Array) -> None:
    """`twin.reduce._create` (the signals were written by `_signals`); a new slot's columns are zero."""
    if not len(idx):
        return
    c = state.cols
    for name in _LATEST:
        c[name][slots] = batch.column(name)[idx]
    c["seq"][slots] = c["first_seq"][slots] = batch.seq[idx]
    c["first_seen"][slots] = c["last_seen"][slots] = batch.recv[idx]
    c["events"][slots] = 1
    c["modes"][slots, batch.mode[idx]] = 1
    for name in ("mode_since", "ai_since", "fw_since"):
        c[name][slots] = batch.ts[idx]


def _signals(state: ReduceState, batch: _Batch, idx: Array, newest: Array, latest_ts: Array,
             latest_seq: Array) -> None:
    """`twin.reduce._merge_signals` for accepted events, block by block (`latest_*`: the twin's before)."""
    blocks = state.cols["block"][batch.slot[idx]]
    for bid in np.unique(blocks).tolist():
        sel = blocks == bid
        _signals_of_block(state.blocks[bid], batch, idx[sel], state.cols["row"][batch.slot[idx[sel]]],
                          newest[sel], latest_ts[sel], latest_seq[sel])


def _signals_of_block(block: _Block, batch: _Batch, idx: Array, rows: Array, newest: Array,
                      latest_ts: Array, latest_seq: Array) -> None:
    m, lens = len(idx), batch.lens[idx]
    pos = np.repeat(batch.off[idx] - (np.cumsum(lens) - lens), lens) + np.arange(int(lens.sum()))
    at, col = np.repeat(np.arange(m), lens), batch.local[pos]
    value = np.zeros((m, len(block.names)))
    value[at, col] = batch.val[pos]
    carried = np.zeros(value.shape, np.bool_)
    carried[at, col] = True
    b = block.c
    present, explicit = b["present"][rows], b["explicit"][rows]
    update = carried & present
    fresh = carried & ~present
    _statistics(b, rows, value, update, fresh)
    b["count"][rows] += carried
    if fresh.any():
        b["present"][rows] = present | carried
    timed = explicit.any()
    if timed:  # some signals hold their own time: compare the event's with each
        ts, seq = batch.ts[idx][:, None], batch.seq[idx][:, None]
        own_ts, own_seq = _own_times(block, rows, explicit, latest_ts, latest_seq)
        take = fresh | (update & ((ts > own_ts) | ((ts == own_ts) & (seq > own_seq))))
    else:  # every signal's time is the twin's latest, so the event is newer for it iff newest
        take = carried if newest.all() else fresh | (update & newest[:, None])
    b["value"][rows] = value if take.all() else np.where(take, value, b["value"][rows])
    written_out = present & ~carried & newest[:, None] & ~explicit  # the latest moves on without it
    if timed or written_out.any() or not newest.all():
        _signal_times(block, rows, batch.ts[idx], batch.seq[idx], newest, latest_ts, latest_seq, take, written_out)


def _statistics(b: dict[str, Array], rows: Array, value: Array, update: Array, fresh: Array) -> None:
    """`_update_signal`'s mean and var, the same operations in the same order; a new signal's."""
    mean, var = b["mean"][rows], b["var"][rows]
    delta = value - mean
    new_mean = mean + ALPHA * delta
    new_var = _KEEP * (var + ALPHA * delta * delta)
    if not update.all():
        new_mean = np.where(update, new_mean, mean)
        new_var = np.where(update, new_var, var)
        if fresh.any():
            new_mean = np.where(fresh, value, new_mean)
            new_var = np.where(fresh, 0.0, new_var)
    b["mean"][rows], b["var"][rows] = new_mean, new_var


def _own_times(block: _Block, rows: Array, explicit: Array, latest_ts: Array, latest_seq: Array) -> tuple[Array, Array]:
    """Each signal's (ts, seq): the twin's latest, or its own where explicit (sparse)."""
    shape = explicit.shape
    own_ts = np.repeat(latest_ts[:, None], shape[1], axis=1)
    own_seq = np.repeat(latest_seq[:, None], shape[1], axis=1)
    rows_ = rows.tolist()
    for r, j in zip(*(a.tolist() for a in np.nonzero(explicit))):
        own_ts[r, j], own_seq[r, j] = block.times[rows_[r], j]
    return own_ts, own_seq


def _signal_times(block: _Block, rows: Array, ts: Array, seq: Array, newest: Array, latest_ts: Array,
                  latest_seq: Array, take: Array, written_out: Array) -> None:
    """Stored ts/seq: a value from an event that is not the newest keeps the event's own; a value
    the latest leaves behind gets the twin's latest (before this event) written out; a value from
    the newest event drops its own."""
    explicit, times, rows_ = block.c["explicit"][rows], block.times, rows.tolist()
    newest = newest[:, None]
    for r, j in zip(*(a.tolist() for a in np.nonzero(take & newest & explicit))):
        del times[rows_[r], j]
    for mask, when, at in ((take & ~newest, ts, seq), (written_out, latest_ts, latest_seq)):
        r_, j_ = np.nonzero(mask)
        for r, j, t, q in zip(r_.tolist(), j_.tolist(), when[r_].tolist(), at[r_].tolist()):
            times[rows_[r], j] = (t, q)
    block.c["explicit"][rows] = np.where(take, ~newest, explicit | written_out)


def to_twin(state: ReduceState, robot_id: str) -> Twin:
    """The Twin the scalar reducer would hold for `robot_id` (equal `encode_twin` bytes)."""
    return to_twins(state, (robot_id,))[0]


def to_twins(state: ReduceState, robot_ids: Sequence[str], signals: bool = True,
             watches: Sequence[Watch | None] | None = None) -> list[Twin]:
    """`to_twin` of each robot (KeyError for one without a twin): one numpy gather per column for all
    of them (then `tolist`), the Python objects built from plain lists. Without `signals`, each twin's
    `signals` is empty: what a pass over the fleet that reads none of them needs, at a fraction of the
    cost (building the signals is most of it). `watches`, one per robot, are put in place of the
    reducer's own (the fold's detector state, `batch_observe.watches_of`), so that no twin is built twice."""
    if not robot_ids:
        return []
    slots = [state.slot_of[r] for r in robot_ids]
    idx = _gather(slots)
    c = {name: column[idx].tolist() for name, column in state.cols.items()}
    states = _signals_of(state, c["block"], c["row"], c["events"]) if signals else [{} for _ in slots]
    strings, codes, config = state.strings.table, state.codes.table, state.configs.config
    if watches is None:
        watches = [state.watches.get(slot) for slot in slots]
    return [
        Twin(
            robot_id=robot_id, sector=strings[c["sector"][i]], site=strings[c["site"][i]],
            model=strings[c["model"][i]], mode=MODES[c["mode"][i]], ai_model_version=strings[c["ai"][i]],
            firmware=strings[c["fw"][i]], codes=codes[c["codes"][i]],
            location=_location(c["loc_kind"][i], c["lat"][i], c["lon"][i], c["floor"][i]),
            ts=c["ts"][i], latest_seq=c["latest_seq"][i], seq=c["seq"][i], first_seq=c["first_seq"][i],
            window=c["window"][i], first_seen=c["first_seen"][i], last_seen=c["last_seen"][i],
            signals=states[i],
            counts=Counts(c["events"][i], c["duplicates"][i], c["stale"][i], c["rejected"][i], tuple(c["modes"][i])),
            late=c["late"][i], mode_since=c["mode_since"][i], ai_model_since=c["ai_since"][i],
            firmware_since=c["fw_since"][i], version_changes=c["version_changes"][i], watch=watches[i],
            partition=c["partition"][i], offset=c["offset"][i], check_offset=c["check_offset"][i],
            config=config(c["config"][i]),
        )
        for i, robot_id in enumerate(robot_ids)
    ]


def labels_of(state: ReduceState, robot_ids: Sequence[str]) -> list[Labels]:
    """The labels `to_twins` would give each robot (KeyError for one without a twin), from three
    columns: what a listing needs, without building the twins."""
    if not robot_ids:
        return []
    idx = _gather([state.slot_of[r] for r in robot_ids])
    sector, site, mode = (state.cols[name][idx].tolist() for name in ("sector", "site", "mode"))
    strings = state.strings.table
    return [Labels(r, strings[sector[i]], strings[site[i]], MODES[mode[i]]) for i, r in enumerate(robot_ids)]


def priors_of(state: ReduceState, robot_ids: Sequence[str]) -> list[kpi.Prior]:
    """`kpi.prior_of` of the twin `to_twins` would give each robot (KeyError for one without a twin),
    from the five columns and one signal it reads: the safety KPIs' view of a batch's robots before
    the batch, without building their twins or keeping a third copy of those numbers per robot."""
    if not robot_ids:
        return []
    idx = _gather([state.slot_of[r] for r in robot_ids])
    mode, ts, seq, blocks, rows = (state.cols[name][idx].tolist()
                                   for name in ("mode", "ts", "latest_seq", "block", "row"))
    value: list[float | None] = [None] * len(robot_ids)
    at: list[tuple[float, int] | None] = [None] * len(robot_ids)
    for bid, members in _members(blocks).items():
        block = state.blocks[bid]
        j = block.column.get(kpi.INFERENCE)
        if j is None:
            continue
        mine = [rows[i] for i in members]
        present, explicit, values = (block.c[name][mine, j].tolist() for name in ("present", "explicit", "value"))
        for i, row, p, e, v in zip(members, mine, present, explicit, values):
            if p:  # the signal's time as `Twin.signal_time` gives it
                value[i], at[i] = v, block.times[row, j] if e else (ts[i], seq[i])
    return [kpi.Prior(MODES[mode[i]], ts[i], seq[i], value[i], at[i]) for i in range(len(robot_ids))]


def _gather(rows: list[int]) -> Array | slice:
    """An index of `rows` for one numpy gather per column; for a single row a slice (a view: a fancy
    index costs a one-robot call more than the rest of its work)."""
    return slice(rows[0], rows[0] + 1) if len(rows) == 1 else np.array(rows, np.int64)


def _members(blocks: list[int]) -> dict[int, list[int]]:
    """Block id -> the positions in `blocks` of the robots in it: one gather per block's columns."""
    out: dict[int, list[int]] = {}
    for i, bid in enumerate(blocks):
        out.setdefault(bid, []).append(i)
    return out


def _location(kind: int, lat: float, lon: float, floor: int) -> Location | None:
    if kind == 0:
        return None
    return Location(lat=lat, lon=lon, floor=floor if kind == 2 else None)


def _signals_of(state: ReduceState, blocks: list[int], rows: list[int], events: list[int]
                ) -> list[dict[str, SignalState]]:
    """Each robot's signals (its block, its row there, its accepted events): per block one gather per
    signal column."""
    out: list[dict[str, SignalState]] = [{}] * len(blocks)
    for bid, members in _members(blocks).items():
        block = state.blocks[bid]
        mine = [rows[i] for i in members]
        for i, states in zip(members, _signal_states(block, mine, [events[i] for i in members])):
            out[i] = states
    return out


def _signal_states(block: _Block, rows: list[int], events: list[int]) -> list[dict[str, SignalState]]:
    """The signals of block rows `rows` (their robots' accepted events `events`), in name order.

    Most rows are plain: every signal present, each value from the twin's latest event and counted
    on every event (ts, seq and n all None). Their structs are made by one `map` over the row's
    columns, with no Python step per signal; only the other rows are read signal by signal."""
    idx = _gather(rows)
    c = block.c
    present, explicit, count = c["present"][idx], c["explicit"][idx], c["count"][idx]
    plain = (present.all(axis=1) & ~explicit.any(axis=1)
             & (count == np.array(events, np.int64)[:, None]).all(axis=1)).tolist()
    value, mean, var = (c[name][idx].tolist() for name in ("value", "mean", "var"))
    names, times, none = block.names, block.times, repeat(None)
    out = []
    for k, (row, n) in enumerate(zip(rows, events)):
        v, m, s = value[k], mean[k], var[k]
        if plain[k]:
            out.append(dict(zip(names, map(SignalState, v, none, none, none, m, s))))
            continue
        p, e, cnt = present[k].tolist(), explicit[k].tolist(), count[k].tolist()
        states = {}
        for j, name in enumerate(names):  # sorted: the reducer's canonical order
            if p[j]:
                ts, seq = times[row, j] if e[j] else (None, None)
                states[name] = SignalState(v[j], ts, seq, None if cnt[j] == n else cnt[j], m[j], s[j])
        out.append(states)
    return out


def from_twins(twins: Iterable[Twin], catalogues: Mapping[str, Iterable[str]] | None = None) -> ReduceState:
    """The state holding `twins` (e.g. recovered from a snapshot or changelog), loaded column by column.

    Raises ValueError for a twin the scalar reducer could not have produced (unsorted signals or
    config, a signal with only one of ts/seq, a stored n equal to the accepted events), since
    `to_twin` could not give it back byte for byte; and for a robot given twice.
    """
    state = ReduceState(catalogues)
    twins = list(twins)
    if twins:
        _load(state, twins)
    return state


_SCALARS = (("ts", "ts", np.float64), ("latest_seq", "latest_seq", np.uint64), ("seq", "seq", np.uint64),
            ("first_seq", "first_seq", np.uint64), ("window", "window", np.uint64),
            ("first_seen", "first_seen", np.float64), ("last_seen", "last_seen", np.float64),
            ("late", "late", np.int64), ("mode_since", "mode_since", np.float64),
            ("ai_since", "ai_model_since", np.float64), ("fw_since", "firmware_since", np.float64),
            ("version_changes", "version_changes", np.int64))
_LABELS = (("sector", "sector"), ("site", "site"), ("model", "model"), ("ai", "ai_model_version"), ("fw", "firmware"))


def _load(state: ReduceState, twins: list[Twin]) -> None:
    n = len(twins)

    def field(name: str) -> tuple[Any, ...]:
        return tuple(map(operator.attrgetter(name), twins))  # one C-level pass per field

    ids = field("robot_id")
    if len(set(ids)) != n:
        raise ValueError(f"robot {next(r for r, k in Counter(ids).items() if k > 1)!r} twice")
    _check_configs(ids, field("config"))
    start = state._new_slots(list(ids))
    slots = np.arange(start, start + n)
    c = state.cols
    for column, name in _LABELS:
        c[column][slots] = np.fromiter(map(state.strings.__getitem__, field(name)), np.int32, n)
    c["mode"][slots] = np.fromiter(map(_MODE_INDEX.__getitem__, field("mode")), np.int8, n)
    c["codes"][slots] = np.fromiter(map(state.codes.__getitem__, field("codes")), np.int32, n)
    c["config"][slots] = np.fromiter(map(state.configs.__getitem__, map(tuple, map(dict.items, field("config")))),
                                     np.int32, n)
    for column, name, dtype in _SCALARS:
        c[column][slots] = np.fromiter(field(name), dtype, n)
    counts = field("counts")
    for column in ("events", "duplicates", "stale", "rejected"):
        c[column][slots] = np.fromiter(map(operator.attrgetter(column), counts), np.int64, n)
    c["modes"][slots] = np.array(list(map(operator.attrgetter("modes"), counts)), np.int64)
    for i, where in enumerate(field("location")):
        if where is not None:
            c["loc_kind"][start + i] = 1 if where.floor is None else 2
            c["lat"][start + i], c["lon"][start + i], c["floor"][start + i] = where.lat, where.lon, where.floor or 0
    for name in ("partition", "offset", "check_offset"):
        c[name][slots] = np.fromiter(field(name), np.int64, n)
    state.watches.update((start + i, w) for i, w in enumerate(field("watch")) if w is not None)
    _load_signals(state, slots, ids, field("model"), field("signals"), c["events"][slots])


def _check_configs(ids: tuple[str, ...], configs: tuple[dict[str, str], ...]) -> None:
    for robot, config in zip(ids, configs):
        if config and list(config) != sorted(config):
            raise ValueError(f"twin {robot!r} is not one the reducer makes: config not sorted by name")


def _load_signals(state: ReduceState, slots: Array, ids: tuple[str, ...], models: tuple[str, ...],
                  signals: tuple[dict[str, SignalState], ...], events: Array) -> None:
    keys = np.fromiter(map(state.keys.__getitem__, map(tuple, signals)), np.int32, len(slots))
    unsorted = [robot for robot, key in zip(ids, keys.tolist()) if not state.keys.ordered[key]]
    if unsorted:
        raise ValueError(f"twin {unsorted[0]!r} is not one the reducer makes: signals not sorted by name")
    _place_loaded(state, slots, models, keys)
    table = state.keys.table()
    lens = (table[keys] >= 0).sum(axis=1)
    total = int(lens.sum())
    if not total:
        return
    off = np.cumsum(lens) - lens
    gid = table[np.repeat(keys, lens), np.arange(total) - np.repeat(off, lens)]
    blocks, rows = np.repeat(state.cols["block"][slots], lens), np.repeat(state.cols["row"][slots], lens)
    local = state.colmap()[blocks, gid]
    owner = np.repeat(np.arange(len(slots)), lens)
    flat = list(chain.from_iterable(map(dict.values, signals)))
    value, ts, seq, n, mean, var = (tuple(map(operator.attrgetter(f), flat)) for f in SignalState.__struct_fields__)
    explicit = np.fromiter(map(operator.is_not, ts, repeat(None)), np.bool_, total)
    has_seq = np.fromiter(map(operator.is_not, seq, repeat(None)), np.bool_, total)
    if (explicit != has_seq).any():
        raise ValueError(f"twin {ids[owner[np.argmax(explicit != has_seq)]]!r} is not one the reducer makes: "
                         "a signal has only one of ts and seq")
    columns = {"present": np.ones(total, np.bool_), "explicit": explicit,
               "count": _counts(n, np.repeat(events, lens), ids, owner),
               "value": np.fromiter(value, np.float64, total), "mean": np.fromiter(mean, np.float64, total),
               "var": np.fromiter(var, np.float64, total)}
    for bid in np.unique(blocks).tolist():
        sel = blocks == bid
        b, r, j = state.blocks[bid].c, rows[sel], local[sel]
        for name, values in columns.items():
            b[name][r, j] = values[sel]
    for i in np.flatnonzero(explicit).tolist():
        state.blocks[blocks[i]].times[int(rows[i]), int(local[i])] = (ts[i], seq[i])


def _place_loaded(state: ReduceState, slots: Array, models: tuple[str, ...], keys: Array) -> None:
    """Rows for loaded twins, in the block of their model's catalogue plus their signals."""
    by_block: dict[int, list[int]] = {}
    for slot, model, key in zip(slots.tolist(), models, keys.tolist()):
        by_block.setdefault(state._block_for(model, frozenset((key,))), []).append(slot)
    for bid, members in by_block.items():
        state.cols["block"][members] = bid
        state.cols["row"][members] = state.blocks[bid].alloc_many(len(members))


def _counts(n: tuple[int | None, ...], events: Array, ids: tuple[str, ...], owner: Array) -> Array:
    """Each signal's count: its n, or the twin's events where n is None."""
    implicit = np.fromiter(map(operator.is_, n, repeat(None)), np.bool_, len(n))
    count = np.array(n, dtype=object)
    count[implicit] = events[implicit]
    count = count.astype(np.int64)
    wrong = ~implicit & (count == events)
    if wrong.any():
        raise ValueError(f"twin {ids[owner[np.argmax(wrong)]]!r} is not one the reducer makes: "
                         "a signal stores n equal to the accepted events")
    return count


def _store(state: ReduceState, slot: int, twin: Twin) -> None:
    """Overwrite a slot's columns with `twin` (one robot: plain item assignments)."""
    c = state.cols
    for column, name in _LABELS:
        c[column][slot] = state.strings[getattr(twin, name)]
    c["mode"][slot] = _MODE_INDEX[twin.mode]
    c["codes"][slot] = state.codes[twin.codes]
    c["config"][slot] = state.configs[tuple(twin.config.items())]
    where = twin.location
    c["loc_kind"][slot] = 0 if where is None else 1 if where.floor is None else 2
    if where is not None:
        c["lat"][slot], c["lon"][slot], c["floor"][slot] = where.lat, where.lon, where.floor or 0
    for column, name, _ in _SCALARS:
        c[column][slot] = getattr(twin, name)
    counts = twin.counts
    c["events"][slot], c["duplicates"][slot], c["stale"][slot] = counts.events, counts.duplicates, counts.stale
    c["rejected"][slot], c["modes"][slot] = counts.rejected, counts.modes
    c["partition"][slot], c["offset"][slot], c["check_offset"][slot] = twin.partition, twin.offset, twin.check_offset
    if twin.watch is not None:
        state.watches[slot] = twin.watch
    else:
        state.watches.pop(slot, None)
    _store_signals(state, slot, twin)


def _store_signals(state: ReduceState, slot: int, twin: Twin) -> None:
    block = state.blocks[state.cols["block"][slot]]
    missing = [name for name in twin.signals if name not in block.column]
    if missing:
        state._move(slot, missing)
        block = state.blocks[state.cols["block"][slot]]
    row, b = int(state.cols["row"][slot]), block.c
    for j in np.flatnonzero(b["explicit"][row]).tolist():
        del block.times[row, j]
    for column in b.values():
        column[row] = 0
    for name, sig in twin.signals.items():
        j = block.column[name]
        b["present"][row, j], b["count"][row, j] = True, twin.signal_count(sig)
        b["value"][row, j], b["mean"][row, j], b["var"][row, j] = sig.value, sig.mean, sig.var
        if sig.ts is not None and sig.seq is not None:
            b["explicit"][row, j] = True
            block.times[row, j] = (sig.ts, sig.seq)

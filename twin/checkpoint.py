"""Checkpoints of a partition's twin state: the changed robots' rows and the next input offset.

Item 5 of issue 15: instead of one changelog record per changed twin, the worker writes, every few
seconds per partition, a *checkpoint*: the rows of the robots changed since the previous one, and the
offset of the next input record not yet folded into them. This module is the pure part: what a
checkpoint holds, its bytes, and how a sequence of them becomes a `ReduceState` again.

What a checkpoint means
* `Checkpoint(partition, next_offset, ...)` says: every record of `partition` below `next_offset` is
  folded into these rows, and no record at or above it is. Rows are whole robots (every column of
  `twin.batch_reduce.ReduceState` for that robot), so the newest row of a robot is its whole state.
* Interned values travel as values: each chunk carries the tables its rows need (strings, code sets,
  configurations), indexed by chunk-local numbers; a process's intern codes never leave it.
* `merge(checkpoints)` rebuilds the state: the newest row of each robot wins (later in the sequence
  is newer), and the state is as of the newest checkpoint's `next_offset`. `to_twin` of every robot
  then gives the same `encode_twin` bytes as the state the checkpoints were taken from.

Recovery, and what the worker commits (the shell's side, stated here because it is the contract)
* The worker commits input offsets only up to the `next_offset` of a checkpoint whose chunks are all
  acknowledged by the broker. A crash between two checkpoints loses nothing: the records after the
  last checkpoint are re-read.
* The worker forgets which robots changed only when a checkpoint of them is acknowledged; a failed
  checkpoint write stops the worker (as a failed changelog write does). After a recovery, every
  robot the re-fold touches counts as changed.
* Recovery of a partition: read its checkpoint records from the latest `full` one (a checkpoint of
  every robot of the partition, written every so often) to the end, keep the `complete` ones (a
  checkpoint with chunks missing was never acknowledged, so its offset was never committed, and the
  checkpoints after it hold every robot it held: by the rule above), `merge` them, and fold the
  input log again from the merged `next_offset`. The twins then equal the fold of the log byte for
  byte, as the changelog gave before.
* A checkpoint is named by (partition, epoch, next_offset): `epoch` is the writer's generation (the
  consumer group generation that assigned it the partition), so a checkpoint written again after a
  restart, at the same offset, is not confused with the broken one before it. Chunk keys carry the
  name and the part; once a full checkpoint is complete, the records before it can be deleted
  (tombstones on a compacted topic).
* The trade-off: a checkpoint every T seconds writes each robot changed in those T seconds once,
  however many events it had, and a recovery re-folds up to T seconds of log. Halving T halves the
  re-read and, with robots reporting at 1 Hz (each changed in every interval), doubles the write.
  Measured by bench/checkpoint_size.py (chaos, 100k robots, one core, runs on a shared machine):
  snapshot + encode 6.6-7.7 µs per robot (about half of it zstd), decode + merge 4.8-6.4 µs, the
  reducer's re-fold 4-6 µs per event; so T = 5 s costs 13-15% of a core in checkpoints and at most
  2.5-3.8 CPU s of recovery, T = 30 s 2.2-2.6% and 13-19 s. Anomaly messages
  of re-folded records are published again and de-duplicated by id, as today.

Bytes: a checkpoint is encoded as chunks (`encode`), each under `limit` bytes (a Kafka record must stay
under about 1 MiB) and decodable alone (`decode`): its robots' rows, their signals and the tables they
use. A chunk is `MAGIC`, a CRC-32 of the rest, then a msgpack envelope (format version, partition,
epoch, next_offset, full, part, parts, and named *column groups*, each an Arrow IPC stream compressed with zstd;
the stream form, not the file form: a chunk is read whole, so the file form's footer, a second copy
of the schema, would only add about 2.5 KiB to every chunk):

* `robots`: one row per robot (labels, mode and codes as numbers into the tables; every scalar of the
  twin; per-mode counts as one column per mode name, so a new mode is a new column, not a shifted one);
* `signals`: one row per (robot, present signal): the robot's row number in the chunk, the name as a
  number into `strings`, value, mean, var, count, and ts/seq (null unless the signal holds its own);
* `strings`, `codes`, `configs`: the tables;
* `extras` (only for robots that have them): the fields the reducer does not touch (watch as msgpack,
  partition, offset, check_offset; `ReduceState`'s offset columns and `watches`): every robot of a
  `FoldState` that applied a record.

A checkpoint of a whole fold (`snapshot_fold` of a `twin.batch_fold.FoldState`; `restore` reads it back
into one, fresh or on top of an older state) adds the detector state, keyed like `signals` by the
robot's row in the chunk, and the fleet state:

* `watch`: one row per robot: the length of `Watch.signals` (`nlisted`), the robot-level numbers
  (interval, skew, delivery, codes) and the stall and cohort detectors' state (`stall.*`, `cohort.*`:
  `has` False is the scalar None);
* `cells`: one row per allocated signal cell (robot, name as a number into `strings`, whether it is in
  `Watch.signals`, out, same, hits and the drift numbers), so `ObserveState` comes back as it was, up to
  the numbering of cells;
* `open`: one row per robot with open anomalies, the list as msgpack (rare, variable: not worth columns);
* `fleet`: one row, in the first chunk only: msgpack of what the fold resumes from beyond the twins:
  the partition's `Cohorts` (sums as exact float lists; None while none is learned, as `on_record`
  keeps them), rollout versions, sites, the next tick and the desired rules. It does not grow with
  robots but with models (a cohort's sums are p x p floats: 19-28 KiB for the seeds' models), and
  the first chunk must hold it with at least one robot.

A reader refuses a group it does not know and a version newer than its own, so an old worker can
never load a checkpoint and silently drop state it cannot hold; an optional group that is absent
means its defaults (a robot whose newest rows have no `watch` row starts with `Watch()`). `merge`
(the reducer alone) leaves the detector and fleet groups unread.

Size (same bench): 143 bytes per robot after two reports each, 265 after twenty (settled means and
variances are full-precision floats: zstd finds little to take), against 849 for the msgpack twins.
With the detector and fleet groups (bench/fold_memory.py, chaos, 100k robots after five reports
each through `fold_batch`): 267 bytes per robot against 939 for the msgpack twins with their watch;
snapshot_fold + encode 14 µs per robot, decode + restore 33 µs.
A chunk also has a fixed cost of about 9 KiB (the groups' Arrow schemas; about 16 KiB with the
detector groups), which a checkpoint of a few robots pays whole.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
import polars as pl

from twin import batch_signals as bs
from twin.batch_fold import FoldState
from twin.batch_reduce import ReduceState
from twin.desired import DesiredRules
from twin.detect import incidents, rollout
from twin.detect.cohort import Cohorts
from twin.detect.multivariate import Baseline
from twin.detect.watch import Open, Watch
from twin.exceptions import FleetTwinError
from twin.fleet_fold import FleetState, Rules
from twin.schema import MODES

Array = npt.NDArray[Any]

MAGIC = b"FTWINCKP"
"""First bytes of every chunk."""
VERSION = 2
"""Format version; a reader refuses a newer one (2: the detector and fleet groups)."""
LIMIT = 512 * 1024
"""Default chunk size limit, bytes: well under Kafka's default record limit of about 1 MiB."""
_HEAD = struct.Struct(">8sI")  # MAGIC, CRC-32 of the envelope
_EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"
"""The end of every Arrow IPC stream (continuation marker, zero length)."""
_ENVELOPE_ROOM = 256
"""Bytes reserved for the envelope around the groups when sizing a chunk."""
_ROBOT_WEIGHT = 1
"""A robot's own row costs about as many bytes as one of its signal rows (measured on chaos: 13-17
bytes against 16-17; numbers of a few reports, so they compress little)."""


class CheckpointError(FleetTwinError):
    """Checkpoint bytes that cannot be decoded, or checkpoints that do not make one state; the
    message names the chunk's part, the group and the column at fault."""


class _Envelope(msgspec.Struct, frozen=True, array_like=True):
    version: int
    partition: int
    epoch: int
    next_offset: int
    full: bool
    part: int
    parts: int
    groups: dict[str, bytes]


_LABELS = ("sector", "site", "model", "ai", "fw")
"""Slot columns interned in `ReduceState.strings`; in a chunk, numbers into its `strings` table."""
_PLAIN = (("loc_kind", pl.UInt8), ("lat", pl.Float64), ("lon", pl.Float64), ("floor", pl.Int64),
          ("ts", pl.Float64), ("latest_seq", pl.UInt64), ("seq", pl.UInt64), ("first_seq", pl.UInt64),
          ("window", pl.UInt64), ("first_seen", pl.Float64), ("last_seen", pl.Float64),
          ("events", pl.Int64), ("duplicates", pl.Int64), ("stale", pl.Int64), ("rejected", pl.Int64),
          ("late", pl.Int64), ("mode_since", pl.Float64), ("ai_since", pl.Float64), ("fw_since", pl.Float64),
          ("version_changes", pl.Int64))
"""Slot columns copied as they are (same names as `ReduceState.cols`)."""
_MODE_COLUMNS = tuple(f"modes.{mode}" for mode in MODES)
_STALL = (("has", pl.Boolean), ("cycle", pl.Float64), ("since", pl.Float64), ("still", pl.Int64))
"""`batch_stall.Stalls`, in its field order."""
_COHORT = (("has", pl.Boolean), ("level", pl.Float64), ("ts", pl.Float64), ("alarm", pl.Boolean),
           ("since", pl.Float64))
"""`batch_cohort.States`, in its field order."""
_DRIFT = (("has", pl.Boolean), ("ref", pl.Float64), ("level", pl.Float64), ("spread", pl.Float64),
          ("up", pl.Float64), ("down", pl.Float64))
"""`batch_signals.Drifts`, in its field order."""
_ROBOT_NUMBERS = ("interval", "skew", "delivery", "codes")
"""`batch_robot.RobotWatches`, in its field order."""

_SCHEMAS: dict[str, dict[str, Any]] = {
    "robots": {"robot_id": pl.String, **{name: pl.UInt32 for name in (*_LABELS, "mode", "codes", "config")},
               **dict(_PLAIN), **{name: pl.Int64 for name in _MODE_COLUMNS}},
    "signals": {"robot": pl.UInt32, "name": pl.UInt32, "value": pl.Float64, "mean": pl.Float64,
                "var": pl.Float64, "count": pl.Int64, "ts": pl.Float64, "seq": pl.UInt64},
    "strings": {"value": pl.String},
    "codes": {"value": pl.List(pl.String)},
    "configs": {"name": pl.List(pl.String), "value": pl.List(pl.String)},
    "extras": {"robot": pl.UInt32, "watch": pl.Binary, "partition": pl.Int64, "offset": pl.Int64,
               "check_offset": pl.Int64},
    "watch": {"robot": pl.UInt32, "nlisted": pl.Int64, "interval": pl.Float64, "skew": pl.Int64,
              "delivery": pl.Int64, "codes": pl.Int64, **{f"stall.{k}": t for k, t in _STALL},
              **{f"cohort.{k}": t for k, t in _COHORT}},
    "cells": {"robot": pl.UInt32, "name": pl.UInt32, "listed": pl.Boolean, "out": pl.Int32, "same": pl.Int32,
              "hits": pl.Int16, **{f"drift.{k}": t for k, t in _DRIFT}},
    "open": {"robot": pl.UInt32, "anomalies": pl.Binary},
    "fleet": {"state": pl.Binary},
}
"""Every column group a chunk may hold, with its columns (names and types, exactly)."""
_OPTIONAL = frozenset({"extras", "watch", "cells", "open", "fleet"})
_KEYED = ("signals", "extras", "watch", "cells", "open")
"""Groups of rows keyed by `robot` (the robot's row in the chunk), ordered by it."""
_SIGNAL_TYPES: dict[Any, Any] = dict(_SCHEMAS["signals"])


@dataclass(frozen=True)
class Checkpoint:
    """The rows of some robots of one partition, as of `next_offset`, with the tables they need.

    `groups` holds the column groups described in the module doc, numbers local to this checkpoint.
    A decoded chunk is a checkpoint too, `part` of `parts`: `merge` needs every part of a checkpoint.
    """

    partition: int
    next_offset: int
    """The first input offset not folded into these rows: where a recovery re-reads from."""
    groups: Mapping[str, pl.DataFrame]
    full: bool = False
    """True when it holds every robot of the partition: recovery can start from it."""
    epoch: int = 0
    """The writer's generation: with `partition` and `next_offset` it names the checkpoint."""
    part: int = 0
    parts: int = 1

    @property
    def robot_ids(self) -> list[str]:
        ids: list[str] = self.groups["robots"]["robot_id"].to_list()
        return ids


# -- snapshot: rows out of a ReduceState -----------------------------------------------------------

def snapshot(state: ReduceState, robot_ids: Iterable[str], *, partition: int, next_offset: int,
             full: bool = False, epoch: int = 0) -> Checkpoint:
    """A checkpoint of the rows of `robot_ids` (the robots changed since the previous checkpoint, in
    any order, repeats ignored: every robot of a batch folded since, rejected rows' robots included,
    as `reduce_columns` counts them); `state` is read, never changed. Raises KeyError for a robot the
    state does not hold. Rows come grouped by signal block (the order of a checkpoint's robots means
    nothing), so each block's signal rows are already in robot order."""
    groups, _, tables = _reducer_rows(state, robot_ids)
    return Checkpoint(partition, next_offset, {**groups, **_tables(*tables)}, full, epoch)


def snapshot_fold(state: FoldState, robot_ids: Iterable[str], *, partition: int, next_offset: int,
                  full: bool = False, epoch: int = 0) -> Checkpoint:
    """`snapshot` of a whole `FoldState` of `partition`: the robots' reducer rows, their detector state
    (`watch`, `cells`, `open`) and the fleet state the fold resumes from (`fleet`: the partition's
    cohorts, rollout versions, sites, next tick, desired rules). The changed robots of a fold are those
    the keys of its records name (silence checks included) that have a twin. `state` is read, never
    changed (its detector arrays may be given room for robots the reducer holds, as `twin_of` does)."""
    groups, slots, tables = _reducer_rows(state.red, robot_ids)
    groups.update(_detector_rows(state, slots, tables[0]))
    groups["fleet"] = pl.DataFrame({"state": [_encode_fleet(state.fleet, partition)]}, schema=_SCHEMAS["fleet"])
    return Checkpoint(partition, next_offset, {**groups, **_tables(*tables)}, full, epoch)


_Tables = tuple[dict[Any, int], dict[Any, int], dict[Any, int]]
"""A checkpoint's strings, code sets and configurations being built: value -> number."""


def _reducer_rows(state: ReduceState, robot_ids: Iterable[str]) -> tuple[dict[str, pl.DataFrame], Array, _Tables]:
    """The `robots`, `signals` and `extras` groups of `robot_ids`, the robots' slots in row order, and
    the tables their numbers point into."""
    ids = list(dict.fromkeys(robot_ids))
    missing = [robot for robot in ids if robot not in state.slot_of]
    if missing:
        raise KeyError(f"robot {missing[0]!r} is not in the state ({len(missing)} unknown)")
    slots = np.fromiter(map(state.slot_of.__getitem__, ids), np.int64, len(ids))
    by_block = np.argsort(state.cols["block"][slots], kind="stable")
    slots = slots[by_block]
    c = state.cols
    strings: dict[Any, int] = {}
    code_sets: dict[Any, int] = {}
    configs: dict[Any, int] = {}
    robots: dict[str, Any] = {"robot_id": pl.Series(ids, dtype=pl.String)[by_block]}
    for name in _LABELS:
        robots[name] = _local(c[name][slots], state.strings.table, strings)
    robots["mode"] = _local(c["mode"][slots], MODES, strings)
    robots["codes"] = _local(c["codes"][slots], state.codes.table, code_sets)
    robots["config"] = _local(c["config"][slots], state.configs.canonical.table, configs)
    for name, _ in _PLAIN:
        robots[name] = c[name][slots]
    for i, name in enumerate(_MODE_COLUMNS):
        robots[name] = c["modes"][slots, i]
    groups = {"robots": pl.DataFrame(robots, schema=_SCHEMAS["robots"]),
              "signals": _signal_rows(state, slots, strings)}
    extras = _extras_rows(state, slots)
    if extras is not None:
        groups["extras"] = extras
    return groups, slots, (strings, code_sets, configs)


def _tables(strings: dict[Any, int], code_sets: dict[Any, int], configs: dict[Any, int]) -> dict[str, pl.DataFrame]:
    return {"strings": pl.DataFrame({"value": list(strings)}, schema=_SCHEMAS["strings"]),
            "codes": pl.DataFrame({"value": [list(v) for v in code_sets]}, schema=_SCHEMAS["codes"]),
            "configs": _config_frame(list(configs))}


def _local(codes: Array, values: Sequence[Any], table: dict[Any, int]) -> Array:
    """Process intern codes -> numbers in the checkpoint's `table` (value -> number), adding the values
    used, in order of first need: only the distinct codes go through Python."""
    used = np.zeros(len(values), np.bool_)
    used[codes] = True  # codes index `values`: a mark per code, no sort
    numbers = np.zeros(len(values), np.uint32)
    numbers[used] = [table.setdefault(values[k], len(table)) for k in np.flatnonzero(used).tolist()]
    return numbers[codes]


def _signal_rows(state: ReduceState, slots: Array, strings: dict[Any, int]) -> pl.DataFrame:
    """One row per present signal of the robots at `slots` (grouped by block), by robot then name."""
    c = state.cols
    blocks, rows = c["block"][slots], c["row"][slots]
    parts: list[dict[str, Array]] = []
    for bid in np.unique(blocks).tolist():  # ascending: the robots' order
        at = np.flatnonzero(blocks == bid)
        block = state.blocks[bid]
        r, j = np.nonzero(block.c["present"][rows[at]])  # row-major: by robot, then name (sorted)
        br = rows[at][r]
        ts = np.full(len(r), np.nan)
        seq = np.zeros(len(r), np.uint64)
        explicit = block.c["explicit"][br, j]
        for k in np.flatnonzero(explicit).tolist():
            ts[k], seq[k] = block.times[int(br[k]), int(j[k])]
        parts.append({"robot": at[r].astype(np.uint32), "name": np.asarray(block.gids, np.int64)[j],
                      **{name: block.c[name][br, j] for name in ("value", "mean", "var", "count")},
                      "ts": ts, "seq": seq, "explicit": explicit})
    if not parts:
        return pl.DataFrame(schema=_SCHEMAS["signals"])
    flat = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    explicit = pl.Series(flat.pop("explicit"))
    flat["name"] = _local(flat["name"], state.names.table, strings)
    frame = pl.DataFrame(flat)
    return frame.with_columns(pl.when(explicit).then(pl.col(name)).otherwise(None).alias(name)
                              for name in ("ts", "seq")).select(list(_SCHEMAS["signals"])).cast(_SIGNAL_TYPES)


def _config_frame(configs: list[tuple[tuple[str, str], ...]]) -> pl.DataFrame:
    return pl.DataFrame({"name": [[k for k, _ in items] for items in configs],
                         "value": [[v for _, v in items] for items in configs]}, schema=_SCHEMAS["configs"])


def _extras_rows(state: ReduceState, slots: Array) -> pl.DataFrame | None:
    """The robots whose twin fields outside the reducer (watch, partition, offset, check_offset) are not
    the defaults: none in a fold from nothing, every robot that applied a record in one from the log."""
    c = state.cols
    keyed = (c["partition"][slots] != -1) | (c["offset"][slots] != -1) | (c["check_offset"][slots] != -1)
    if state.watches:
        keyed |= np.fromiter((s in state.watches for s in slots.tolist()), bool, len(slots))
    at = np.flatnonzero(keyed)
    if not len(at):
        return None
    encode = msgspec.msgpack.encode
    watches = [state.watches.get(s) for s in slots[at].tolist()]
    return pl.DataFrame({"robot": at.astype(np.uint32), "watch": [None if w is None else encode(w) for w in watches],
                         **{name: c[name][slots[at]] for name in ("partition", "offset", "check_offset")}},
                        schema=_SCHEMAS["extras"])


def _detector_rows(state: FoldState, slots: Array, strings: dict[Any, int]) -> dict[str, pl.DataFrame]:
    """The `watch` (one row per robot), `cells` (one per signal in the robot's `Watch.signals`, by robot
    then signal id: any other cell is `SignalWatch()`) and `open` (robots with open anomalies) groups
    of `slots`."""
    red, obs = state.red, state.obs
    obs.grow(red.robots)
    n = len(slots)
    watch: dict[str, Any] = {"robot": np.arange(n, dtype=np.uint32), "nlisted": obs.nlisted[slots]}
    watch.update({name: column[slots] for name, column in zip(_ROBOT_NUMBERS, obs.robot)})
    watch.update({f"stall.{k}": column[slots] for (k, _), column in zip(_STALL, obs.stall)})
    watch.update({f"cohort.{k}": column[slots] for (k, _), column in zip(_COHORT, obs.cohort)})
    row, ids, gid = obs.listed_runs(red, slots)
    order = np.lexsort((gid, row))  # by robot, then signal id
    row, ids, gid = row[order], ids[order], gid[order]
    w = obs.cells.take(ids)
    cells: dict[str, Any] = {"robot": row.astype(np.uint32), "name": _local(gid, red.names.table, strings),
                             "listed": obs.listed[ids], "out": w.out, "same": w.same, "hits": w.hits}
    cells.update({f"drift.{k}": column for (k, _), column in zip(_DRIFT, w.drift)})
    opened = [(i, msgspec.msgpack.encode(obs.opened[slot])) for i, slot in enumerate(slots.tolist())
              if slot in obs.opened]
    return {"watch": pl.DataFrame(watch, schema=_SCHEMAS["watch"]),
            "cells": pl.DataFrame(cells, schema=_SCHEMAS["cells"]),
            "open": pl.DataFrame({"robot": [i for i, _ in opened], "anomalies": [raw for _, raw in opened]},
                                 schema=_SCHEMAS["open"])}


class _CohortsWire(msgspec.Struct, array_like=True):
    """`Cohorts` as msgpack: each model's sums as (count, s1, s2 row-major), floats exactly."""

    refit_s: float
    sums: dict[str, tuple[int, list[float], list[float]]]
    baselines: dict[str, Baseline]
    fitted_at: dict[str, float]
    rates: dict[str, dict[str, tuple[float, float, float]]]


class _FleetWire(msgspec.Struct, array_like=True):
    """What a partition's fold needs of the `FleetState`: its own cohorts (None: none learned yet,
    as `on_record` keeps them) and the rest whole."""

    cohorts: _CohortsWire | None
    versions: rollout.RolloutState
    sites: dict[str, incidents.SiteState]
    next_tick: float | None
    desired: DesiredRules


def _encode_fleet(fleet: FleetState, partition: int) -> bytes:
    c = fleet.cohorts.get(partition)
    wire = None if c is None else _CohortsWire(
        c.refit_s, {m: (int(n), s1.tolist(), s2.ravel().tolist()) for m, (n, s1, s2) in c.sums.items()},
        dict(c.baselines), dict(c.fitted_at), {m: dict(r) for m, r in c.rates.items()})
    return msgspec.msgpack.encode(_FleetWire(wire, fleet.versions, dict(fleet.sites), fleet.next_tick, fleet.desired))


def _decode_fleet(raw: bytes, partition: int, into: FleetState) -> FleetState:
    """The fleet state a checkpoint holds; other partitions' cohorts kept from `into`."""
    wire = msgspec.msgpack.decode(raw, type=_FleetWire)
    cohorts = dict(into.cohorts)
    cohorts.pop(partition, None)
    if wire.cohorts is not None:
        c = wire.cohorts
        sums = {m: (n, np.array(s1, np.float64), np.array(s2, np.float64).reshape(len(s1), len(s1)))
                for m, (n, s1, s2) in c.sums.items()}
        cohorts[partition] = Cohorts(c.refit_s, sums, dict(c.baselines), dict(c.fitted_at), dict(c.rates))
    return FleetState(cohorts, wire.versions, wire.sites, wire.next_tick, wire.desired)


# -- bytes -----------------------------------------------------------------------------------------

def encode(checkpoint: Checkpoint, *, limit: int = LIMIT) -> list[bytes]:
    """The checkpoint as chunks, each at most `limit` bytes and decodable alone (its robots' rows and
    the tables they use). Raises ValueError when one robot alone would not fit.

    A chunk's size is only known once encoded, so each is sized from the bytes per unit of *weight*
    of the chunks before it (weight: a robot's signal rows plus `_ROBOT_WEIGHT` for its own row;
    robots of different models differ fourfold in bytes per robot, in weight alike), aiming at 90% of the
    limit; a chunk over the limit is encoded again, smaller."""
    n = checkpoint.groups["robots"].height
    starts = {name: _starts(checkpoint.groups[name], n) for name in _KEYED if name in checkpoint.groups}
    rows = sum(np.diff(starts[name]) for name in ("signals", "cells") if name in starts)
    weight = np.concatenate([[0], np.cumsum(rows + _ROBOT_WEIGHT)])
    bodies: list[dict[str, bytes]] = []
    start, per_weight = 0, 30.0  # a first guess of bytes per unit of weight
    while start < n or not bodies:
        end = max(start + 1, int(np.searchsorted(weight, weight[start] + limit * 0.9 / per_weight, "right")) - 1)
        end = min(end, n)
        while True:
            groups = _chunk_groups(checkpoint, start, end, starts)
            used = sum(map(len, groups.values())) + _ENVELOPE_ROOM
            fleet = len(groups.get("fleet", b""))  # first chunk only: not a cost of its robots
            per_weight = (used - fleet) / max(1, weight[end] - weight[start])
            if used <= limit:
                break
            if end - start <= 1:
                robot = checkpoint.groups["robots"]["robot_id"][start]
                raise ValueError(f"robot {robot!r} alone encodes to {used} bytes"
                                 f"{f' with the fleet state ({fleet} bytes)' if fleet else ''}, over the limit of {limit}")
            goal = weight[start] + (weight[end] - weight[start]) * limit * 0.85 / used
            end = max(start + 1, min(end - 1, int(np.searchsorted(weight, goal, "right")) - 1))
        bodies.append(groups)
        start = end
    return [_wrap(checkpoint, k, len(bodies), groups) for k, groups in enumerate(bodies)]


def _starts(frame: pl.DataFrame, n: int) -> Array:
    """starts[i]: the first row of robot i in a group keyed by robot (ordered by robot)."""
    return np.searchsorted(frame["robot"].to_numpy(), np.arange(n + 1))


def _chunk_groups(checkpoint: Checkpoint, start: int, end: int, starts: Mapping[str, Array]) -> dict[str, bytes]:
    """The groups of robots [start, end), tables cut down to what they use, as IPC streams; the first
    chunk carries the fleet state. Optional groups without rows here are left out."""
    g = checkpoint.groups
    rows = {"robots": g["robots"].slice(start, end - start)}
    for name, at in starts.items():
        part = g[name].slice(int(at[start]), int(at[end] - at[start]))
        if part.height or name not in _OPTIONAL:
            rows[name] = part.with_columns(pl.col("robot") - start)
    uses = {"strings": [("robots", name) for name in (*_LABELS, "mode")] + [("signals", "name")]
            + ([("cells", "name")] if "cells" in rows else []),
            "codes": [("robots", "codes")], "configs": [("robots", "config")]}
    out: dict[str, pl.DataFrame] = {}
    renumbered: dict[str, list[pl.Series]] = {name: [] for name in rows}
    for table, columns in uses.items():
        values = [rows[group][name].to_numpy() for group, name in columns]
        used = np.zeros(g[table].height, np.bool_)
        for column in values:
            used[column] = True
        number = (np.cumsum(used) - 1).astype(np.uint32)  # position among the used entries
        out[table] = g[table].filter(pl.Series(used))
        for (group, name), column in zip(columns, values):
            renumbered[group].append(pl.Series(name, number[column]))
    out.update({name: frame.with_columns(renumbered[name]) for name, frame in rows.items()})
    if start == 0 and "fleet" in g:
        out["fleet"] = g["fleet"]
    return {name: _ipc(frame) for name, frame in out.items()}


def _ipc(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_ipc_stream(buffer, compression="zstd")
    return buffer.getvalue()


def _wrap(checkpoint: Checkpoint, part: int, parts: int, groups: dict[str, bytes]) -> bytes:
    body = msgspec.msgpack.encode(_Envelope(VERSION, checkpoint.partition, checkpoint.epoch,
                                            checkpoint.next_offset, checkpoint.full, part, parts, groups))
    return _HEAD.pack(MAGIC, zlib.crc32(body)) + body


_envelope = msgspec.msgpack.Decoder(_Envelope)


def decode(chunk: bytes) -> Checkpoint:
    """One chunk, alone: a `Checkpoint` that is `part` of `parts`. Raises CheckpointError naming what
    is wrong (not a chunk, truncated or corrupt bytes, a newer format, a group or column not as
    written, a number pointing outside its table)."""
    if len(chunk) < _HEAD.size or chunk[: len(MAGIC)] != MAGIC:
        raise CheckpointError(f"not a checkpoint chunk: {len(chunk)} bytes not starting with {MAGIC!r}")
    _, crc = _HEAD.unpack_from(chunk)
    body = chunk[_HEAD.size:]
    if zlib.crc32(body) != crc:
        raise CheckpointError(f"checkpoint chunk corrupt or truncated: CRC-32 of its {len(body)} bytes "
                              f"is {zlib.crc32(body):#010x}, the header says {crc:#010x}")
    try:
        env = _envelope.decode(body)
    except msgspec.DecodeError as exc:
        raise CheckpointError(f"checkpoint chunk envelope undecodable: {exc}") from exc
    where = (f"checkpoint of partition {env.partition} at offset {env.next_offset} (epoch {env.epoch}), "
             f"part {env.part} of {env.parts}")
    if env.version > VERSION:
        raise CheckpointError(f"{where}: format version {env.version}, this reader knows up to {VERSION}")
    if not 0 <= env.part < env.parts:
        raise CheckpointError(f"{where}: part number out of range")
    groups = {name: _read_group(where, name, raw) for name, raw in env.groups.items()}
    _check_refs(where, groups)
    return Checkpoint(env.partition, env.next_offset, groups, env.full, env.epoch, env.part, env.parts)


def _read_group(where: str, name: str, raw: bytes) -> pl.DataFrame:
    schema = _SCHEMAS.get(name)
    if schema is None:
        raise CheckpointError(f"{where}: unknown column group {name!r} (a newer writer?); "
                              f"this reader knows {sorted(_SCHEMAS)}")
    broken = f"{where}: group {name!r} is not a complete Arrow IPC stream"
    if not raw.endswith(_EOS):  # a stream cut between its batches would read as fewer rows
        raise CheckpointError(f"{broken}: no end-of-stream marker")
    try:
        frame = pl.read_ipc_stream(io.BytesIO(raw))
    except pl.exceptions.PolarsError as exc:
        raise CheckpointError(f"{broken}: {exc}") from exc
    got = dict(frame.schema)
    if got != schema:
        wrong = sorted(set(got.items()) ^ set(schema.items()), key=str)
        raise CheckpointError(f"{where}: group {name!r} columns differ from the format: {wrong}")
    return frame


def _check_refs(where: str, g: dict[str, pl.DataFrame]) -> None:
    """Every group a chunk needs is there, and every number points inside its table."""
    absent = sorted(set(_SCHEMAS) - _OPTIONAL - set(g))
    if absent:
        raise CheckpointError(f"{where}: column groups {absent} missing")
    n = g["robots"].height
    bounds = [("robots", name, g["strings"].height) for name in (*_LABELS, "mode")]
    bounds += [("robots", "codes", g["codes"].height), ("robots", "config", g["configs"].height),
               ("signals", "name", g["strings"].height), ("signals", "robot", n)]
    bounds += [(name, "robot", n) for name in _KEYED if name in g and name != "signals"]
    bounds += [("cells", "name", g["strings"].height)] if "cells" in g else []
    for group, column, size in bounds:
        values = g[group][column]
        top = values.max()
        if values.len() and (values.null_count() or not isinstance(top, int) or top >= size):
            raise CheckpointError(f"{where}: {group}.{column} points outside its table of {size}")
    _check_rows(where, g)


def _check_rows(where: str, g: dict[str, pl.DataFrame]) -> None:
    """The rows are ones `snapshot` writes: each robot once, known location kinds and modes, signals
    in robot order with ts and seq both set or both null."""
    robots, sig = g["robots"], g["signals"]
    if robots["robot_id"].is_duplicated().any():
        raise CheckpointError(f"{where}: robots.robot_id names a robot twice")
    if (robots["loc_kind"] > 2).any():
        raise CheckpointError(f"{where}: robots.loc_kind above 2 (0: no location, 1: no floor, 2: floor)")
    if not g["strings"]["value"].gather(robots["mode"]).is_in(list(MODES)).all():
        raise CheckpointError(f"{where}: robots.mode names an unknown mode")
    for name in _KEYED:
        if name in g and g[name].height and (g[name]["robot"].diff().drop_nulls() < 0).any():
            raise CheckpointError(f"{where}: {name} not ordered by robot")
    for name in ("extras", "watch", "open"):
        if name in g and g[name]["robot"].is_duplicated().any():
            raise CheckpointError(f"{where}: {name} has two rows of one robot")
    if "cells" in g and g["cells"].select("robot", "name").is_duplicated().any():
        raise CheckpointError(f"{where}: cells has two rows of one robot's signal")
    if "fleet" in g and g["fleet"].height != 1:
        raise CheckpointError(f"{where}: fleet holds {g['fleet'].height} rows, not one")
    if (sig["ts"].is_null() != sig["seq"].is_null()).any():
        raise CheckpointError(f"{where}: a signal has only one of ts and seq")


# -- merge: checkpoints back into a state ----------------------------------------------------------

def merge(checkpoints: Sequence[Checkpoint],
          catalogues: Mapping[str, Iterable[str]] | None = None) -> tuple[ReduceState, int]:
    """The reducer state the checkpoints describe, oldest first (the newest row of each robot wins),
    and the offset to re-fold the log from (the newest checkpoint's `next_offset`); detector and fleet
    groups are not read (`restore` reads them). Raises CheckpointError for checkpoints of several
    partitions, offsets going back, or a checkpoint with parts missing."""
    state = ReduceState(catalogues)
    _merge_into(state, checkpoints)
    return state, checkpoints[-1].next_offset


def restore(checkpoints: Sequence[Checkpoint], rules: Rules, into: FoldState | None = None) -> tuple[FoldState, int]:
    """The `FoldState` the checkpoints of `snapshot_fold` describe, oldest first (the newest rows of each
    robot win, the newest fleet state wins), and the offset to re-fold the log from. `into`: an older
    state of the partition (read, not changed) whose robots the checkpoints do not hold are kept, as
    are its other partitions' cohorts. A robot whose newest rows lack a detector group (a checkpoint of
    `snapshot`) starts that state afresh. With `into`, its every robot is snapshotted first (a cost of
    its size; recovery is rare). Raises CheckpointError as `merge` does."""
    if checkpoints and into is not None:
        base = snapshot_fold(into, into.red.robot_ids, partition=checkpoints[0].partition,
                             next_offset=checkpoints[0].next_offset, full=True, epoch=-1)
        checkpoints = [base, *checkpoints]
    fleet = into.fleet if into is not None else FleetState()
    state = FoldState(rules, fleet)
    slots, kept = _merge_into(state.red, checkpoints)
    _load_detectors(state, slots, kept)
    raw = [cp.groups["fleet"]["state"][0] for cp in checkpoints if "fleet" in cp.groups]
    if raw:
        state.fleet = _decode_fleet(raw[-1], checkpoints[-1].partition, fleet)
    return state, checkpoints[-1].next_offset


def _merge_into(state: ReduceState, checkpoints: Sequence[Checkpoint]) -> tuple[Array, dict[str, pl.DataFrame]]:
    """Load the newest rows of each robot into a fresh `state`; their slots (in row order) and their
    keyed groups (`robot`: the row among the loaded robots)."""
    if not checkpoints:
        raise CheckpointError("no checkpoint to merge")
    _check_sequence(checkpoints)
    frames = [_global(state, cp) for cp in checkpoints]
    robots = pl.concat([f["robots"] for f in frames])
    counts = np.cumsum([0] + [f["robots"].height for f in frames])
    keep = robots["robot_id"].is_last_distinct().to_numpy()
    kept: dict[str, pl.DataFrame] = {}
    for name in _KEYED:
        parts = [f[name].with_columns(pl.col("robot").cast(pl.Int64) + int(base))
                 for f, base in zip(frames, counts) if name in f]
        if parts:
            kept[name] = _kept(pl.concat(parts), keep)
    if not keep.any():
        return np.zeros(0, np.int64), kept
    return _load(state, robots.filter(pl.Series(keep)), kept["signals"], kept.get("extras")), kept


def _kept(frame: pl.DataFrame, keep: Array) -> pl.DataFrame:
    """The rows of `frame` whose robot (a row of the concatenated robots) is kept, renumbered."""
    robot = frame["robot"].to_numpy()
    new_row = np.cumsum(keep) - 1
    frame = frame.filter(pl.Series(keep[robot]))
    return frame.with_columns(pl.Series("robot", new_row[robot[keep[robot]]]))


def complete(checkpoints: Sequence[Checkpoint]) -> list[Checkpoint]:
    """The parts of the checkpoints that have every part (in their order); the others' are left out.
    Recovery calls it on what it read (see the module doc for why that is safe)."""
    have: dict[tuple[int, int, int, bool, int], set[int]] = {}
    for cp in checkpoints:
        have.setdefault(_name(cp), set()).add(cp.part)
    whole = {name for name, parts in have.items() if parts == set(range(name[-1]))}
    return [cp for cp in checkpoints if _name(cp) in whole]


def _name(cp: Checkpoint) -> tuple[int, int, int, bool, int]:
    return cp.partition, cp.epoch, cp.next_offset, cp.full, cp.parts


def _check_sequence(checkpoints: Sequence[Checkpoint]) -> None:
    partitions = {cp.partition for cp in checkpoints}
    if len(partitions) > 1:
        raise CheckpointError(f"checkpoints of several partitions: {sorted(partitions)}")
    parts: dict[tuple[int, int, int, bool, int], list[int]] = {}
    last = checkpoints[0].next_offset
    for cp in checkpoints:
        if cp.next_offset < last:
            raise CheckpointError(f"checkpoint at offset {cp.next_offset} after one at {last}: not oldest first")
        last = cp.next_offset
        parts.setdefault(_name(cp), []).append(cp.part)
    for (_, epoch, offset, _, count), seen in parts.items():
        if sorted(seen) != list(range(count)):
            raise CheckpointError(f"checkpoint at offset {offset} (epoch {epoch}): parts {sorted(seen)} of "
                                  f"{count}, not each part once (leave incomplete ones out with `complete`)")


def _global(state: ReduceState, cp: Checkpoint) -> dict[str, pl.DataFrame]:
    """A checkpoint's rows with its table numbers turned into `state`'s intern codes: `robots` and
    the keyed groups it has."""
    g = cp.groups
    strings = g["strings"]["value"].to_list()
    robots = g["robots"]
    label_of = _remap(strings, robots, _LABELS, state.strings)
    mode_index = {mode: i for i, mode in enumerate(MODES)}
    modes = np.array([mode_index.get(s, -1) for s in strings], np.int8)
    codes = np.array([state.codes[tuple(v)] for v in g["codes"]["value"].to_list()] + [0], np.int32)
    configs = np.array([state.configs[tuple(zip(k, v))] for k, v in
                        zip(g["configs"]["name"].to_list(), g["configs"]["value"].to_list())] + [0], np.int32)
    out = {name: g[name] for name in _KEYED if name in g}
    out["robots"] = robots.with_columns([pl.Series(name, label_of[robots[name].to_numpy()]) for name in _LABELS]
                                        + [pl.Series("mode", modes[robots["mode"].to_numpy()]),
                                           pl.Series("codes", codes[robots["codes"].to_numpy()]),
                                           pl.Series("config", configs[robots["config"].to_numpy()])])
    for name in ("signals", "cells"):
        if name in out:
            names = _remap(strings, out[name], ("name",), state.names)
            out[name] = out[name].with_columns(pl.Series("name", names[out[name]["name"].to_numpy()]))
    return out


def _remap(strings: list[str], frame: pl.DataFrame, columns: tuple[str, ...], intern: Any) -> Array:
    """Table number -> intern code, interning only the entries the columns use."""
    out = np.zeros(len(strings) + 1, np.int32)
    if not frame.height:
        return out
    for k in np.unique(np.concatenate([frame[name].to_numpy() for name in columns])).tolist():
        out[k] = intern[strings[k]]
    return out


def _load(state: ReduceState, robots: pl.DataFrame, signals: pl.DataFrame, extras: pl.DataFrame | None) -> Array:
    """Write the merged rows (intern codes already global) into a fresh state, column by column; the
    robots' slots."""
    n = robots.height
    ids = robots["robot_id"].to_list()
    start = state._new_slots(ids)
    slots = np.arange(start, start + n)
    c = state.cols
    for name in (*_LABELS, "mode", "codes", "config"):
        c[name][slots] = robots[name].to_numpy()
    for name, _ in _PLAIN:
        c[name][slots] = robots[name].to_numpy()
    for i, name in enumerate(_MODE_COLUMNS):
        c["modes"][slots, i] = robots[name].to_numpy()
    _place(state, slots, signals)
    _load_signals(state, slots, signals)
    if extras is not None:
        at = start + extras["robot"].to_numpy().astype(np.int64)
        for name in ("partition", "offset", "check_offset"):
            c[name][at] = extras[name].to_numpy()
        decode_watch = msgspec.msgpack.Decoder(Watch).decode
        for slot, raw in zip(at.tolist(), extras["watch"].to_list()):
            if raw is not None:
                state.watches[slot] = decode_watch(raw)
    return slots


def _place(state: ReduceState, slots: Array, signals: pl.DataFrame) -> None:
    """A block row for each robot: the block of its model's catalogue plus its signals (as `from_twins`).

    Robots are grouped by (model, set of signal names) without a Python step per robot: each robot's
    set is a bit mask over the state's name ids, 64 names to a word, and equal masks are found by
    `np.unique`; one robot of each group names its block."""
    n = len(slots)
    robot, gid = signals["robot"].to_numpy().astype(np.int64), signals["name"].to_numpy().astype(np.int64)
    starts = np.searchsorted(robot, np.arange(n + 1))  # signals are ordered by robot
    has = np.diff(starts) > 0
    group = np.unique(state.cols["model"][slots], return_inverse=True)[1].reshape(-1)  # 0..k-1, as below
    for word in range((len(state.names.table) + 63) // 64):
        bits = np.where(gid >> 6 == word, np.left_shift(np.uint64(1), (gid & 63).astype(np.uint64)), np.uint64(0))
        mask = np.zeros(n, np.uint64)
        if has.any():
            mask[has] = np.bitwise_or.reduceat(bits, starts[:-1][has])
        distinct, inverse = np.unique(mask, return_inverse=True)
        group = np.unique(group * len(distinct) + inverse.reshape(-1), return_inverse=True)[1].reshape(-1)
    members = np.argsort(group, kind="stable")
    bounds = np.searchsorted(group[members], np.arange(int(group.max(initial=-1)) + 2))
    blocks = np.zeros(n, np.int64)
    table, names = state.strings.table, state.names.table
    for k in range(len(bounds) - 1):
        at = members[bounds[k]:bounds[k + 1]]
        first = int(at[0])
        key = state.keys[tuple(sorted(names[g] for g in gid[starts[first]:starts[first + 1]].tolist()))]
        blocks[at] = state._block_for(table[state.cols["model"][slots[first]]], frozenset((key,)))
    for bid in np.unique(blocks).tolist():
        chosen = slots[blocks == bid]
        state.cols["block"][chosen] = bid
        state.cols["row"][chosen] = state.blocks[bid].alloc_many(len(chosen))


def _load_signals(state: ReduceState, slots: Array, signals: pl.DataFrame) -> None:
    if not signals.height:
        return
    owner = signals["robot"].to_numpy().astype(np.int64)
    blocks = state.cols["block"][slots][owner]
    rows = state.cols["row"][slots][owner]
    local = state.colmap()[blocks, signals["name"].to_numpy()]
    explicit = signals["ts"].is_not_null().to_numpy()
    columns = {"present": np.ones(len(owner), np.bool_), "explicit": explicit,
               **{name: signals[name].to_numpy() for name in ("value", "mean", "var", "count")}}
    for bid in np.unique(blocks).tolist():
        sel = blocks == bid
        b, r, j = state.blocks[bid].c, rows[sel], local[sel]
        for name, values in columns.items():
            b[name][r, j] = values[sel]
    at = np.flatnonzero(explicit)  # ts and seq are null in the same rows; to_numpy would make seq floats
    ts, seq = signals["ts"].drop_nulls().to_list(), signals["seq"].drop_nulls().to_list()
    for i, t, q in zip(at.tolist(), ts, seq):
        state.blocks[blocks[i]].times[int(rows[i]), int(local[i])] = (t, q)


def _load_detectors(state: FoldState, slots: Array, kept: Mapping[str, pl.DataFrame]) -> None:
    """Write the merged detector rows into the fresh state's `ObserveState` (robots without rows keep
    the state of `Watch()`); each robot's run of cells is laid anew as its block (`ObserveState.lay`)."""
    red, obs = state.red, state.obs
    obs.grow(red.robots)
    if "watch" in kept and kept["watch"].height:
        w = kept["watch"]
        at = slots[w["robot"].to_numpy()]
        obs.nlisted[at] = w["nlisted"].to_numpy()
        for name, column in zip(_ROBOT_NUMBERS, obs.robot):
            column[at] = w[name].to_numpy()
        for prefix, fields, columns in (("stall", _STALL, obs.stall), ("cohort", _COHORT, obs.cohort)):
            for (k, _), column in zip(fields, columns):
                column[at] = w[f"{prefix}.{k}"].to_numpy()
    if "cells" in kept and kept["cells"].height:
        c = kept["cells"].filter(pl.col("listed"))  # the unlisted cells of older checkpoints are SignalWatch()
        at = slots[c["robot"].to_numpy()]
        obs.lay(red, at)
        ids = obs.cells_at(red, at, c["name"].to_numpy().astype(np.int64))
        if (ids < 0).any():
            raise CheckpointError("cells names a signal its robot's twin lacks")
        drift = bs.Drifts(*(c[f"drift.{k}"].to_numpy() for k, _ in _DRIFT))
        obs.cells.put(ids, bs.Watches(c["out"].to_numpy(), c["same"].to_numpy(), c["hits"].to_numpy(), drift))
        obs.listed[ids] = True
    if "open" in kept:
        decode_open = msgspec.msgpack.Decoder(list[Open]).decode
        for robot, raw in zip(kept["open"]["robot"].to_list(), kept["open"]["anomalies"].to_list()):
            obs.opened[int(slots[robot])] = decode_open(raw)

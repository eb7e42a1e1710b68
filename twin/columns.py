"""Decode a micro-batch of telemetry into numpy columns, judging every row exactly as `parse` does.

`twin.validate.parse` stays the oracle. A batch takes a fast path, and every row the fast path
does not accept is handed to `parse` itself, so a rejection's reason and detail are `parse`'s by
construction. The fast path may only ever be *stricter* than `parse`, never more lenient:

- Each message is decoded on its own (measured faster than one call over a joined buffer, and
  no row can run into the next) into `_Lean`: `Event`'s fields, types and C-level constraints
  (lengths, ranges, literals, the robot_id pattern), unknown fields forbidden, and config keys
  taken from the fleet's names. Keeping the constraints in the decoder is what makes it exact:
  msgspec checks every occurrence of a duplicated key and keeps the last, so a batch check of
  the kept value would let `{"seq": -1, "seq": 5}` through. Forbidding unknown fields settles
  `parse`'s text checks (an unknown field, skipped unread, may hide invalid UTF-8 or deep
  nesting); messages with extra fields take the slow path. `Event` itself decodes chaos events
  at ~1.5x the cost: its config key pattern is a Python regex call per key.
- Messages over `max_bytes` or not pure ASCII go to `parse` without a try.
- `check`'s rules then run as batch checks over columns (key equals robot_id, sector, site of
  the sector, model, clock, signal catalogue, finite values within limits), with the same IEEE
  comparisons as `check`.

`Columns.event(i)` rebuilds the `Event` that `parse` returns for row `i` (equal under `==`, and
encoding to the same bytes), so a scalar fold can take any row from it.

Garbage collection: the issue measured Python's GC, scanning long-lived start-up objects (the
fleet, settings, twins), at a third of decode speed at 5,000-event batches. The caller should
`gc.freeze()` once after start-up; this module never touches the GC (its structs are `gc=False`).
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import attrgetter, itemgetter
from typing import Annotated, Any, Literal, cast, get_args

import msgspec
import numpy as np
import numpy.typing as npt

from twin.exceptions import InvalidEvent
from twin.fleet import Fleet
from twin.schema import MODES, SEQ_MAX, ConfigKey, ConfigValue, Event, Label, Location, Mode, RobotId, Version
from twin.validate import DEFAULT_POLICY, Policy, parse

Message = tuple[bytes | None, bytes, float]
"""(Kafka key, value, broker timestamp in seconds) of one telemetry record."""

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
I8 = npt.NDArray[np.int8]
Bools = npt.NDArray[np.bool_]


class _Place(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    lat: Annotated[float, msgspec.Meta(ge=-90, le=90)]
    lon: Annotated[float, msgspec.Meta(ge=-180, le=180)]
    floor: int | None = None


class _Lean(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, gc=False):
    """`Event` minus unknown fields. The decoder uses `_lean_type(fleet)`, which takes config keys
    from the fleet's names instead of `ConfigKey`'s pattern."""

    schema: Literal[1]
    robot_id: RobotId
    seq: Annotated[int, msgspec.Meta(ge=0, le=SEQ_MAX)]
    """`Event.seq`'s bound (no more lenient than `parse`): every accepted seq fits the int64 column."""
    ts: Annotated[float, msgspec.Meta(gt=0)]
    sector: Label
    site: Label
    model: Label
    mode: Mode
    signals: dict[str, float]
    ai_model_version: Version = ""
    firmware: Version = ""
    codes: Annotated[tuple[Label, ...], msgspec.Meta(max_length=32)] = ()
    location: _Place | None = None
    config: dict[str, str] | msgspec.UnsetType = msgspec.UNSET


def _lean_type(fleet: Fleet) -> type[_Lean]:
    """`_Lean` whose config keys are a Literal of the fleet's config names that are valid
    `ConfigKey`s. msgspec checks a Literal in C, where `ConfigKey`'s pattern is a Python regex
    call per key (measured: 2 us per event). A later batch check of the keys would not do: in
    `{"config": {"Bad": "1"}, "config": {}}` msgspec rejects the first, and only the last is kept.
    Other valid keys fail here and go to `parse`."""
    names = tuple(sorted({n for m in fleet.models.values() for n in m.control.config if _config_key(n)}))
    keys: Any = Literal.__getitem__(names) if names else str
    config: Any = Annotated[dict[keys, ConfigValue], msgspec.Meta(max_length=32 if names else 0)]

    def body(ns: dict[str, Any]) -> None:
        ns["__annotations__"] = {"config": config | msgspec.UnsetType}
        ns["config"] = msgspec.UNSET
        ns["__module__"] = __name__
    return cast(type[_Lean], types.new_class("_Lean", (_Lean,), {"kw_only": True, "forbid_unknown_fields": True,
                                                                 "gc": False}, body))


_KEY_META: msgspec.Meta = get_args(ConfigKey)[1]
_CONFIG_KEY = re.compile(_KEY_META.pattern or "")
"""`schema.ConfigKey`'s pattern, searched as msgspec does (so `$` also matches before a final newline)."""


def _config_key(key: str) -> bool:
    """Whether msgspec accepts `key` as a `schema.ConfigKey`."""
    size_ok = (_KEY_META.min_length or 0) <= len(key) <= (_KEY_META.max_length or len(key))
    return size_ok and _CONFIG_KEY.search(key) is not None


_MODE = {m: i for i, m in enumerate(MODES)}
_MIN_DEPTH = 2
"""Nesting of a message `_Lean` decodes (signals, config, codes, location): `parse`'s depth
check cannot reject it unless `max_depth` is below this."""


class Index:
    """Codes for sectors, sites, models and signal names of one fleet, and each model's limits
    per signal code; built once per fleet."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.sectors = tuple(fleet.sectors)
        self.sites = tuple(dict.fromkeys(s for sec in fleet.sectors.values() for s in sec.sites))
        self.models = tuple(fleet.models)
        self.signals = tuple(dict.fromkeys(n for m in fleet.models.values() for n in m.signals))
        self.sector_code = {n: i for i, n in enumerate(self.sectors)}
        self.site_code = {n: i for i, n in enumerate(self.sites)}
        self.model_code = {n: i for i, n in enumerate(self.models)}
        self.signal_code = {n: i for i, n in enumerate(self.signals)}
        # [sector, site] -> the site is one of the sector's; code -1 lands on the extra last row
        # or column, which is False.
        self.site_in = np.zeros((len(self.sectors) + 1, len(self.sites) + 1), dtype=np.bool_)
        for name, sector in fleet.sectors.items():
            for site in sector.sites:
                self.site_in[self.sector_code[name], self.site_code[site]] = True
        # [model, signal] -> limits, NaN where the model has no such signal. The extra last row
        # and column (NaN) are where code -1 (unknown model or name) lands, so it fails `lo <= v`.
        shape = (len(self.models) + 1, len(self.signals) + 1)
        self.lo, self.hi = np.full(shape, np.nan), np.full(shape, np.nan)
        for m, model in enumerate(fleet.models.values()):
            for name, spec in model.signals.items():
                self.lo[m, self.signal_code[name]], self.hi[m, self.signal_code[name]] = spec.limits
        self._cols: dict[tuple[str, ...], I64] = {}
        self.lean = msgspec.json.Decoder(_lean_type(fleet))

    def cols(self, signals: list[dict[str, float]]) -> I64:
        """Signal codes (-1: unknown) of every signal of every row, flat. Memoised per list of
        names, as a robot model sends few; bounded, as a hostile sender can vary them."""
        names = list(map(tuple, signals))
        try:
            found = list(map(self._cols.__getitem__, names))
        except KeyError:
            if len(self._cols) > 4096:
                self._cols.clear()
            for key in names:
                if key not in self._cols:
                    self._cols[key] = np.array([self.signal_code.get(n, -1) for n in key], dtype=np.int64)
            found = list(map(self._cols.__getitem__, names))
        return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)


_INDEXES: dict[int, Index] = {}


def index_of(fleet: Fleet) -> Index:
    """The fleet's `Index`, memoised by identity (the fleet is read-only once loaded)."""
    found = _INDEXES.get(id(fleet))
    if found is None or found.fleet is not fleet:
        if len(_INDEXES) >= 8:
            _INDEXES.clear()
        found = _INDEXES[id(fleet)] = Index(fleet)
    return found


@dataclass(frozen=True)
class Rows:
    """Some accepted rows of a batch as columns, in batch order."""

    row: I64
    """Row of each event in the batch, ascending."""
    robot_id: list[str]
    seq: I64
    ts: F64
    received_ts: F64
    mode: I8
    """Index into `twin.schema.MODES`."""
    sector: I32
    """Index into `Index.sectors`; `site`, `model` likewise."""
    site: I32
    model: I32
    signals: F64
    """(rows, len(Index.signals)); NaN where the event has no such signal."""
    events: list[_Lean | Event]
    """What each row was decoded into (an `Event` where `parse` judged it)."""

    def take(self, keep: Bools) -> Rows:
        if keep.all():
            return self
        picks = np.flatnonzero(keep).tolist()
        return Rows(self.row[keep], [self.robot_id[j] for j in picks], self.seq[keep], self.ts[keep],
                    self.received_ts[keep], self.mode[keep], self.sector[keep], self.site[keep],
                    self.model[keep], self.signals[keep], [self.events[j] for j in picks])

    def merge(self, other: Rows) -> Rows:
        """Both sets of rows, in batch order (the slow path's accepted rows are rare)."""
        order = np.argsort(np.concatenate([self.row, other.row]), kind="stable")
        picks = order.tolist()
        ids, events = self.robot_id + other.robot_id, self.events + other.events
        arrays = [np.concatenate([a, b])[order] for a, b in zip(self._arrays(), other._arrays())]
        row, seq, ts, received, mode, sector, site, model, signals = arrays
        return Rows(row, [ids[j] for j in picks], seq, ts, received, mode, sector, site, model, signals,
                    [events[j] for j in picks])

    def _arrays(self) -> list[npt.NDArray[np.generic]]:
        return [self.row, self.seq, self.ts, self.received_ts, self.mode, self.sector, self.site, self.model,
                self.signals]


@dataclass(frozen=True)
class Columns(Rows):
    """The accepted rows of one batch as columns, and exactly why `parse` rejects the others."""

    index: Index
    """Names behind the sector, site, model and signal codes."""
    rejected: dict[int, InvalidEvent]
    """Row -> exactly the error `parse` raises for it."""
    parsed: int
    """How many rows went through `parse` (the slow path)."""
    rejected_keys: dict[int, bytes | None] = field(default_factory=dict)
    """Row -> Kafka key of each rejected row: the scalar pipeline counts a rejection on the twin
    the key names (`twin.pipeline._reject`), and so must a batch fold."""

    def event(self, i: int) -> Event:
        """The `Event` that `parse` returns for row `i` of the batch; KeyError if it rejects it."""
        at = int(np.searchsorted(self.row, i))
        if at == len(self.row) or self.row[at] != i:
            raise KeyError(i)
        found = self.events[at]
        return found if isinstance(found, Event) else _event(found)


def _event(r: _Lean) -> Event:
    place = r.location
    return Event(
        schema=1, robot_id=r.robot_id, seq=r.seq, ts=r.ts, sector=r.sector, site=r.site, model=r.model,
        mode=r.mode, signals=r.signals, ai_model_version=r.ai_model_version, firmware=r.firmware,
        codes=r.codes, location=None if place is None else Location(lat=place.lat, lon=place.lon, floor=place.floor),
        config=r.config,
    )


def decode_batch(messages: Sequence[Message], fleet: Fleet, policy: Policy = DEFAULT_POLICY) -> Columns:
    """Decode and check `messages`; every row ends up accepted exactly as `parse` would accept it,
    or rejected with `parse`'s own error."""
    index = index_of(fleet)
    lean = _decode(messages, index.lean, policy)
    at = [i for i, r in enumerate(lean) if r is not None]
    ok, fast = _rows([r for r in lean if r is not None], at, messages, index, policy.max_future_s)
    slow = np.ones(len(messages), dtype=np.bool_)
    slow[fast.row[ok]] = False
    rejected: dict[int, InvalidEvent] = {}
    keys: dict[int, bytes | None] = {}
    kept: dict[int, Event] = {}
    for i in np.flatnonzero(slow).tolist():
        key, value, received = messages[i]
        try:
            kept[i] = parse(value, fleet, key=key, received_ts=received, policy=policy)
        except InvalidEvent as err:
            rejected[i], keys[i] = err, key
    rows = fast.take(ok)
    if kept:
        rows = rows.merge(_rows(list(kept.values()), list(kept), messages, index, policy.max_future_s)[1])
    return Columns(**vars(rows), index=index, rejected=rejected, parsed=int(slow.sum()), rejected_keys=keys)


def _decode(messages: Sequence[Message], lean: msgspec.json.Decoder[_Lean], policy: Policy) -> list[_Lean | None]:
    """Each message as `_Lean`, or None where only `parse` may judge it."""
    values = [m[1] for m in messages]
    if policy.max_depth < _MIN_DEPTH:
        return [None] * len(values)
    if max(map(len, values), default=0) > policy.max_bytes or not all(map(bytes.isascii, values)):
        values = [v if len(v) <= policy.max_bytes and v.isascii() else b"" for v in values]  # b"": fails
    out: list[_Lean | None] = []
    decode = lean.decode
    while len(out) < len(values):
        try:
            for value in values[len(out):]:  # a copy only after a failure: rare
                out.append(decode(value))
        except Exception:  # noqa: BLE001 - whatever it is, `parse` names it
            out.append(None)
    return out


def _rows(decoded: Sequence[_Lean | Event], at: list[int], messages: Sequence[Message], index: Index,
          max_future_s: float) -> tuple[Bools, Rows]:
    """Columns of the decoded rows `at` of the batch, and which of them pass every check of `parse`."""
    n = len(decoded)
    mine = messages if len(at) == len(messages) else [messages[i] for i in at]
    ids: list[str] = list(map(attrgetter("robot_id"), decoded))
    ts = np.fromiter(map(attrgetter("ts"), decoded), np.float64, n)
    received = np.fromiter(map(itemgetter(2), mine), np.float64, n)
    sector = _codes(index.sector_code, map(attrgetter("sector"), decoded), n)
    site = _codes(index.site_code, map(attrgetter("site"), decoded), n)
    model = _codes(index.model_code, map(attrgetter("model"), decoded), n)
    matrix, signals_ok = _signals(decoded, model, index)
    ok = (
        _keys_ok(list(map(itemgetter(0), mine)), ids)
        & np.isfinite(ts) & ~(ts > received + max_future_s)
        & index.site_in[sector, site] & (model >= 0)
        & signals_ok
    )
    seq = np.fromiter(map(attrgetter("seq"), decoded), np.int64, n)
    mode = np.fromiter(map(_MODE.__getitem__, map(attrgetter("mode"), decoded)), np.int8, n)
    return ok, Rows(np.array(at, dtype=np.int64), ids, seq, ts, received, mode, sector, site, model, matrix,
                    list(decoded))


def _codes(code: dict[str, int], names: Iterable[str], n: int) -> I32:
    return np.fromiter(map(code.get, names, repeat(-1)), np.int32, n)


def _keys_ok(keys: list[bytes | None], ids: list[str]) -> Bools:
    """key == robot_id.encode() per row. One comparison for the usual batch: the ids hold no NUL
    (their pattern), so equal NUL-joined strings split into equal parts."""
    if None not in keys and b"\0".join(keys) == "\0".join(ids).encode():  # type: ignore[arg-type]
        return np.ones(len(ids), dtype=np.bool_)
    return np.fromiter((k is not None and k == r.encode() for k, r in zip(keys, ids)), np.bool_, len(ids))


def _signals(decoded: Sequence[_Lean | Event], model: I32, index: Index) -> tuple[F64, Bools]:
    """The signal matrix, and per row whether every signal is in the model's catalogue, finite
    and within its limits (`lo <= v <= hi`, as `validate._check_signals` compares)."""
    n, width = len(decoded), len(index.signals)
    signals: list[dict[str, float]] = list(map(attrgetter("signals"), decoded))
    counts = np.fromiter(map(len, signals), np.int64, n)
    values = np.fromiter(chain.from_iterable(map(dict.values, signals)), np.float64, int(counts.sum()))
    cols = index.cols(signals)
    owner = np.repeat(np.arange(n), counts)
    limit = np.repeat(model.astype(np.int64) % (len(index.models) + 1) * (width + 1), counts) + cols % (width + 1)
    good = np.isfinite(values) & (index.lo.take(limit) <= values) & (values <= index.hi.take(limit))
    matrix = np.full((n, width), np.nan)
    if good.all():
        matrix[owner, cols] = values
        return matrix, np.ones(n, dtype=np.bool_)
    matrix[owner[good], cols[good]] = values[good]
    return matrix, np.bincount(owner[~good], minlength=n) == 0

"""`GET /twins/{robot_id}/history`: a robot's own signals over a time window, read from the log.

The twins table holds only each robot's latest state, and Prometheus has no
robot id (by design), so a robot's history comes from where it is kept: the
robot's Kafka partition for the window (the replay's source), or the Parquet
archive with `source=archive`. The request is bounded three ways: the window
(`MAX_WINDOW_S`), the points per signal (`MAX_POINTS`, thinned by
`twin.history`) and the telemetry records a request may read (`MAX_SCAN`:
the partition holds other robots too); an answer cut by the last says so
(`complete: false`, and `covered_from`/`covered_to` say what it covers).
Only `HISTORY_READERS` requests read at once.

Query parameters (all optional):

- `signal`: signals of the robot's model, separated by commas; default all of them;
- `from`, `to`: epoch seconds, ISO 8601, `now` or `-15m`/`-2h`/`-1d`; default the last hour;
- `max_points`: per signal, 1 to `MAX_POINTS` (default `DEFAULT_POINTS`);
- `source`: `kafka` (default) or `archive`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import faust
from faust.web import Request, Response, View
from pydantic import SecretStr

from streams.analysis.replay_window import parse_time, policy
from streams.analysis.sources import archive_source, kafka_source, partition_of
from streams.exceptions import is_retriable
from streams.settings import Settings
from streams.twin_view import iso
from streams.worker.routing import TwinRouter, routed, unavailable
from streams.worker.views import held_twin, private
from twin.exceptions import FleetTwinError, InvalidEvent
from twin.fleet import Fleet
from twin.gateway import is_batch, unpack
from twin.history import History, shape
from twin.record import Record
from twin.schema import Event
from twin.state import decode_twin
from twin.validate import Policy, parse

MAX_WINDOW_S = 24 * 3600.0
DEFAULT_WINDOW_S = 3600.0
MAX_POINTS, DEFAULT_POINTS = 5000, 1000
MAX_SCAN = 300_000
"""Telemetry records one request may read: about 6 s of reading (~50,000 records/s on a 2-core
machine), under a forwarded request's timeout; about 2 h of one partition of the demo fleet."""
HISTORY_READERS = 2
SOURCES = ("kafka", "archive")


class BadHistoryQuery(FleetTwinError):
    """The request's parameters cannot be answered (400); the message says which and why."""


@dataclass(frozen=True)
class HistoryQuery:
    start: float
    end: float
    signals: tuple[str, ...]
    max_points: int
    source: str


def parse_query(params: Mapping[str, str], known: Iterable[str], now: float) -> HistoryQuery:
    """The request's parameters, checked; `known` lists the robot's model's signals, in order."""
    catalogue = list(known)
    asked = [s.strip() for s in params.get("signal", "").split(",") if s.strip()]
    unknown = [s for s in asked if s not in catalogue]
    if unknown:
        raise BadHistoryQuery(f"unknown signal {unknown[0][:64]!r} for this robot's model; "
                              f"known: {', '.join(catalogue)}")
    end = _time(params, "to", "now", now)
    start = _time(params, "from", f"{end - DEFAULT_WINDOW_S!r}", now)
    if end <= start:
        raise BadHistoryQuery(f"'to' ({iso(end)}) must be after 'from' ({iso(start)})")
    if end - start > MAX_WINDOW_S:
        raise BadHistoryQuery(f"the window is {end - start:.0f} s; at most {MAX_WINDOW_S:.0f} s")
    source = params.get("source", "kafka")
    if source not in SOURCES:
        raise BadHistoryQuery(f"source must be one of {', '.join(SOURCES)}")
    return HistoryQuery(start, end, tuple(dict.fromkeys(asked)) or tuple(catalogue),
                        _max_points(params.get("max_points")), source)


def _time(params: Mapping[str, str], name: str, default: str, now: float) -> float:
    text = params.get(name, default)
    try:
        value = parse_time(text, now)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise BadHistoryQuery(f"{name!r} must be epoch seconds, ISO 8601, 'now' or like '-2h'; got {text[:64]!r}")
    return value


def _max_points(text: str | None) -> int:
    if text is None:
        return DEFAULT_POINTS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_POINTS:
        raise BadHistoryQuery(f"max_points must be an integer from 1 to {MAX_POINTS}; got {text[:32]!r}")
    return value


@dataclass(frozen=True)
class Read:
    """The robot's valid events among the telemetry records read, and what those records spanned."""

    events: list[tuple[float, Event]]
    scanned: int
    """Telemetry records read, every robot of the partition."""
    first: float
    last: float
    """Broker times of the first and last of them (nan if none)."""
    stopped: bool
    """The read stopped at `max_scan` before the source ended."""


def read_events(source: Iterator[Record], robot_id: str, fleet: Fleet, rules: Policy,
                max_scan: int = MAX_SCAN) -> Read:
    """The robot's events among `source`'s telemetry, judged as the worker judged them; stops after
    `max_scan` telemetry records, and closes the source (a Kafka source then stops its consumer)."""
    key, first, last, scanned = robot_id.encode(), math.nan, math.nan, 0
    found: list[tuple[float, Event]] = []
    try:
        for record in source:
            if record.kind != "telemetry":
                continue
            if scanned == max_scan:
                return Read(found, scanned, first, last, True)
            scanned += 1
            first, last = (record.timestamp if scanned == 1 else first), record.timestamp
            for row in unpack(record).rows if is_batch(record.value) else (record,):  # a site gateway's rows
                if row.key != key:
                    continue
                try:
                    found.append((row.timestamp, parse(row.value, fleet, key=row.key, received_ts=row.timestamp,
                                                       policy=rules)))
                except InvalidEvent:
                    continue  # rejected live too: not part of the robot's history
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()
    return Read(found, scanned, first, last, False)


def history(settings: Settings, fleet: Fleet, robot_id: str, query: HistoryQuery) -> tuple[History, bool]:
    """Read the window from its source and shape it; also whether it covers all the window asked.

    Blocking: run it off the event loop. From Kafka, the window's newest
    `MAX_SCAN` records of the partition are read (the present matters most);
    from the archive, the oldest (it reads forward). A cut answer covers less.
    """
    partition = {partition_of(robot_id, settings.partitions)}
    rules = policy(settings)
    start, end = query.start, query.end
    if query.source == "kafka":
        source = kafka_source(settings, start, end, partition, newest=MAX_SCAN)
        read = read_events(source, robot_id, fleet, rules, MAX_SCAN)
        cut = read.scanned >= MAX_SCAN
        start = read.first if cut else start
    else:
        read = read_events(archive_source(settings.archive_dir, start, end, partition), robot_id, fleet, rules)
        cut = read.stopped
        end = read.last if cut else end
    return shape(robot_id, read.events, query.signals, start, end, query.max_points), not cut


def to_json(found: History, complete: bool, query: HistoryQuery) -> dict[str, Any]:
    """The answer: the window asked and the one covered, counts, then one row per point;
    every time also as ISO 8601 (`_iso`)."""
    times = {"from": query.start, "to": query.end, "covered_from": found.start, "covered_to": found.end}
    return {
        "robot_id": found.robot_id, "source": query.source,
        **{k: v for name, t in times.items() for k, v in ((name, t), (f"{name}_iso", iso(t)))},
        "complete": complete, "signals": list(found.signals), "events": found.events, "thinned": found.thinned,
        "points": [{"ts": p.ts, "ts_iso": iso(p.ts), "signal": p.signal, "value": p.value, "n": p.n}
                   for p in found.points],
    }


def register_history(app: faust.App, twin_bytes: Callable[[str], bytes | None], router: TwinRouter, fleet: Fleet,
                     settings: Settings, token: SecretStr) -> None:
    """Add `/twins/{robot_id}/history` to `app`, for requests bearing `token`."""
    readers = asyncio.Semaphore(HISTORY_READERS)

    @app.page("/twins/{robot_id}/history")
    class TwinHistory(private(token)):  # type: ignore[misc]  # a class made at run time
        """One robot's signals over a window, from whichever worker owns its partition."""

        # Routed as GET /twins/{robot_id} is: to the worker holding the robot's telemetry partition.
        @routed(router)
        async def get(self: View, request: Request, robot_id: str) -> Response:
            raw = held_twin(self, app, twin_bytes, router, robot_id)
            if not isinstance(raw, bytes):
                return raw
            model = fleet.models.get(decode_twin(raw).model)
            try:
                query = parse_query(request.query, model.signals if model else (), time.time())
            except BadHistoryQuery as err:
                return self.error(400, str(err))
            async with readers:
                try:
                    found, complete = await asyncio.to_thread(history, settings, fleet, robot_id, query)
                except Exception as err:
                    if not is_retriable(err):
                        raise
                    # the broker is away or busy: a lookup that may work soon is a 503, never a 500
                    return unavailable(self, f"the log could not be read now: {type(err).__name__}")
            return self.json(to_json(found, complete, query))

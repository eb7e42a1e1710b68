"""The Parquet archive of the topics: its layout and its rows, without I/O.

A batch of log records (`twin.record.Record`) becomes files laid out hive style:

    {dataset}/date=YYYY-MM-DD/sector=S/part-{partition}-{first_offset}-{last_offset}.parquet

`date` is the UTC date of the record's Kafka timestamp; `sector` comes from
the value (`sector_of`). Both live in the path only: a column of the same name
in the file would clash with the hive column in DuckDB and Spark.

Every file of a dataset has the same columns: the Kafka ones (`KAFKA_SCHEMA`;
`value` is the raw bytes, which a replay parses exactly as the worker did) and
analytics columns decoded from the value, null where it does not decode. The
silence checks keep only the Kafka columns, under the sector `__checks__`; a site
gateway's record (many robots' reports, `twin.gateway`) too, under `__gateway__`:
its bytes are kept whole, and a replay unpacks them as the worker does. For
analysis, its reports also go one row each to `gateway_reports/` (`gateway_parts`):
the telemetry columns of the report as the worker folds it (`twin.gateway.unpack`:
`value` its JSON, `key` its robot), plus `gateway_row`, its place in the record.
No replay reads them: they stand for records the telemetry files already hold.

A file holds every record of one (date, sector, partition) in a contiguous run
of offsets, so the same name always means the same rows: rewriting a batch
after a crash replaces a file with identical bytes, or adds a file whose rows
the reader drops as duplicates of (partition, offset).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal

import msgspec
import polars as pl

from twin.detect.findings import Anomaly
from twin.exceptions import InvalidEvent
from twin.frames import ANOMALY_SCHEMA
from twin.gateway import is_batch, unpack
from twin.record import Kind, Record
from twin.validate import DEFAULT_POLICY, decode

Dataset = Literal["telemetry", "checks", "anomalies", "desired"]
DATASETS: tuple[Dataset, ...] = ("telemetry", "checks", "anomalies", "desired")
KINDS: dict[Dataset, Kind] = {"telemetry": "telemetry", "checks": "check", "anomalies": "anomaly",
                              "desired": "desired"}
"""The kind of the records each dataset holds."""

INVALID = "__invalid__"
"""Sector of telemetry or anomalies whose value does not decode."""
FLEET = "__fleet__"
"""Sector of anomalies about no sector (fleet-wide findings such as rollouts)."""
GATEWAY = "__gateway__"
"""Sector of a site gateway's records: one record holds many reports (no one row of event columns)."""
CHECKS = "__checks__"
"""Sector of every silence check: a check carries a robot id and a time, no place."""
DESIRED = "__desired__"
"""Sector of every desired-state change (`fleet.desired`): a selector may span sectors."""

KAFKA_SCHEMA: dict[str, pl.DataType] = {
    "partition": pl.Int32(), "offset": pl.Int64(), "timestamp": pl.Float64(),
    "key": pl.Binary(), "value": pl.Binary(),
}
"""Where and when the record sat in the log; `timestamp` in seconds, as Faust hands it to the worker."""

SIGNAL = pl.Struct({"name": pl.String(), "value": pl.Float64()})
TELEMETRY_SCHEMA: dict[str, pl.DataType] = KAFKA_SCHEMA | {
    "robot_id": pl.String(), "seq": pl.Int64(), "ts": pl.Float64(), "site": pl.String(),
    "model": pl.String(), "mode": pl.String(), "ai_model_version": pl.String(), "firmware": pl.String(),
    "codes": pl.List(pl.String()), "signals": pl.List(SIGNAL),
}
ANOMALIES_SCHEMA: dict[str, pl.DataType] = KAFKA_SCHEMA | {
    k: v for k, v in ANOMALY_SCHEMA.items() if k != "sector"
}
GATEWAY_REPORTS = "gateway_reports"
"""The folder of site gateways' reports, one row each (`gateway_parts`); not a dataset a replay reads."""
GATEWAY_SCHEMA: dict[str, pl.DataType] = TELEMETRY_SCHEMA | {"gateway_row": pl.Int32()}
"""A gateway report's row: (partition, offset, gateway_row) names it."""
SCHEMAS: dict[Dataset, dict[str, pl.DataType]] = {
    "telemetry": TELEMETRY_SCHEMA, "checks": KAFKA_SCHEMA, "anomalies": ANOMALIES_SCHEMA,
    "desired": KAFKA_SCHEMA,
}
"""The columns stored in each dataset's files (the hive `date` and `sector` come from the path)."""

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_anomaly = msgspec.json.Decoder(Anomaly)
_json = msgspec.json.Encoder()


def utc_date(timestamp: float) -> str:
    """The UTC date of a record's timestamp, as the `date=` directory spells it.

    Cut on Kafka's integer milliseconds, which `round(timestamp * 1000)` gives
    back exactly (`twin.record.Record.timestamp`): a record stamped a
    millisecond before midnight is filed under its own day.
    """
    return _day_name(round(timestamp * 1000) // 86_400_000)


@lru_cache(maxsize=64)
def _day_name(days: int) -> str:
    return (_EPOCH + timedelta(days=days)).date().isoformat()


def part_path(dataset: str, date: str, sector: str, partition: int, first: int, last: int) -> str:
    """Where a file goes, relative to the archive's root."""
    return f"{dataset}/date={date}/sector={sector}/part-{partition}-{first}-{last}.parquet"


def path_sector(sector: str) -> str:
    """A sector as a directory name; anything that is no plain id (`/`, `..`, spaces) counts as invalid."""
    return sector if _SAFE.match(sector) else INVALID


def to_parts(dataset: Dataset, records: Iterable[Record],
             max_bytes: int = DEFAULT_POLICY.max_bytes) -> dict[str, pl.DataFrame]:
    """A batch of one dataset's records as files: relative path -> rows in offset order.

    `records` must be in offset order within each partition (as consumed).
    """
    return _parts(dataset, to_frame(dataset, records, max_bytes))


def gateway_parts(records: Iterable[Record], max_bytes: int = DEFAULT_POLICY.max_bytes) -> dict[str, pl.DataFrame]:
    """The reports of the site gateways' records among a batch of telemetry (in offset order within
    each partition), one row each, as files named like `to_parts`' (by the gateway records' offsets).
    A report `unpack` refuses (a robot twice in one record, a row JSON cannot hold) has no row: the
    worker dead-letters it, and the record itself stays in the telemetry files."""
    rows: list[Record] = []
    places: list[int] = []
    for record in records:
        if record.kind == "telemetry" and is_batch(record.value):
            unpacked = unpack(record)
            rows += unpacked.rows
            places += unpacked.indices
    if not rows:
        return {}
    frame = to_frame("telemetry", rows, max_bytes).with_columns(gateway_row=pl.Series(places, dtype=pl.Int32()))
    return _parts(GATEWAY_REPORTS, frame.select("date", "sector", *GATEWAY_SCHEMA))


def _parts(dataset: str, frame: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """A frame of `to_frame`'s (the hive `date` and `sector` first) as files, by date, sector and partition."""
    parts: dict[str, pl.DataFrame] = {}
    for (date, sector, partition), part in frame.partition_by(
            ["date", "sector", "partition"], as_dict=True, maintain_order=True).items():
        offsets = part["offset"]
        path = part_path(dataset, date, sector, partition, int(offsets[0]), int(offsets[-1]))
        parts[path] = part.drop("date", "sector")
    return parts


def to_frame(dataset: Dataset, records: Iterable[Record], max_bytes: int = DEFAULT_POLICY.max_bytes) -> pl.DataFrame:
    """One row per record: the hive `date` and `sector`, then the dataset's columns."""
    rows: list[tuple[Any, ...]] = []
    signals = _Signals()
    for r in records:
        if dataset == "telemetry":
            sector, decoded = _telemetry(r.value, max_bytes, signals)
        elif dataset == "anomalies":
            sector, decoded = _anomaly_columns(r.value)
        else:
            sector, decoded = (CHECKS if dataset == "checks" else DESIRED), ()
        rows.append((utc_date(r.timestamp), sector, r.partition, r.offset, r.timestamp,
                     r.key, r.value, *decoded))
    schema = {"date": pl.String(), "sector": pl.String()} | SCHEMAS[dataset]
    if dataset != "telemetry":
        return pl.DataFrame(rows, schema=schema, orient="row")
    head = pl.DataFrame(rows, schema={k: v for k, v in schema.items() if k != "signals"}, orient="row")
    return head.with_columns(signals.column(head.height))


class _Signals:
    """Every event's signals, flat: `column` nests them into one list of structs per row.

    Far faster than a dict per signal: polars builds the lists in one group-by.
    """

    def __init__(self) -> None:
        self.names: list[str] = []
        self.values: list[float] = []
        self.rows: list[int] = []
        self.decoded: list[bool] = []

    def add(self, signals: dict[str, float] | None) -> None:
        if signals is not None:
            self.names.extend(signals)
            self.values.extend(signals.values())
            self.rows.extend([len(self.decoded)] * len(signals))
        self.decoded.append(signals is not None)

    def column(self, height: int) -> pl.Series:
        flat = pl.DataFrame({"row": pl.Series(self.rows, dtype=pl.Int64()),
                             "name": pl.Series(self.names, dtype=pl.String()),
                             "value": pl.Series(self.values, dtype=pl.Float64())})
        nested = flat.group_by("row").agg(pl.struct("name", "value").alias("signals"))
        every = pl.DataFrame({"row": pl.int_range(height, dtype=pl.Int64(), eager=True),
                              "decoded": pl.Series(self.decoded, dtype=pl.Boolean())})
        return every.join(nested, on="row", how="left", maintain_order="left").select(
            pl.when(pl.col("decoded")).then(pl.col("signals").fill_null(pl.lit([], dtype=pl.List(SIGNAL))))
            .alias("signals"))["signals"]


_NO_TELEMETRY = (None,) * (len(TELEMETRY_SCHEMA) - len(KAFKA_SCHEMA) - 1)
_NO_ANOMALY = (None,) * (len(ANOMALIES_SCHEMA) - len(KAFKA_SCHEMA))


def _telemetry(value: bytes, max_bytes: int, signals: _Signals) -> tuple[str, tuple[Any, ...]]:
    if is_batch(value):
        signals.add(None)
        return GATEWAY, _NO_TELEMETRY
    try:
        e = decode(value, max_bytes=max_bytes)
    except InvalidEvent:
        signals.add(None)
        return INVALID, _NO_TELEMETRY
    signals.add(e.signals)
    return path_sector(e.sector), (e.robot_id, e.seq, e.ts, e.site, e.model, e.mode, e.ai_model_version,
                                   e.firmware, list(e.codes))


def _anomaly_columns(value: bytes) -> tuple[str, tuple[Any, ...]]:
    try:
        a = _anomaly.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return INVALID, _NO_ANOMALY
    columns = tuple(_json.encode(a.evidence).decode() if k == "evidence" else getattr(a, k)
                    for k in ANOMALIES_SCHEMA if k not in KAFKA_SCHEMA)
    return (path_sector(a.sector) if a.sector else FLEET), columns

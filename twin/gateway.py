"""Site gateways' wire format: many robots' reports in one Kafka record, as an Arrow IPC stream.

A site gateway (the fleet controller of a warehouse, a hospital's robot hub) speaks for its robots.
Sending each report as its own Kafka record costs the broker and every consumer a record's overhead
per report; a gateway instead sends one record per flush holding one report per robot, in columns.
Robots that speak JSON stay first-class: both land on the same telemetry topic and the same fold.

The record (`encode` builds it, `twin.gateway` owns its meaning):

* key: the gateway's site (informational: partitions are chosen by robot, below);
* partition: the home partition of *every* robot in it (where the robot's JSON reports land: Kafka's
  default partitioner over its id). A gateway groups its robots by that partition, one record per
  group (`batches`). The fold does not check it, as it does not for JSON producers;
* value: an Arrow IPC stream whose columns are `Event`'s fields (`schema_of`): `signals` a struct
  with a float field per signal any row reports (null where a row has none: columns, not names
  repeated per row), `config` likewise with string fields, null for a row that carries none,
  `location` null for a fixed robot. Uncompressed: the producer's Kafka compression covers the wire.
  Recognised by its first four bytes (the IPC continuation marker, `0xFFFFFFFF`), which no JSON text
  starts with, so records need no header (the archive keeps none).

How a row is judged: `unpack` renders each row as the JSON report a robot would have sent, and the
fold judges that exactly as any other (`twin.validate.parse` is the one set of rules: no second
copy of them for columns). One offset holds every row of a record, and the fold marks a robot's
second record at an offset it has applied as a redelivery, so a robot twice in one record would
vanish: its later rows are dead-lettered (`repeated_robot`). A value that is no readable Arrow
stream, or would cost more to read than its bytes (`_table`), is dead-lettered whole (`undecodable`):
whatever the bytes, `unpack` returns.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import msgspec
import pyarrow as pa
import pyarrow.ipc as ipc

from twin.exceptions import InvalidEvent
from twin.record import Record
from twin.schema import Event

MAGIC = b"\xff\xff\xff\xff"
"""The first bytes of an Arrow IPC stream (its continuation marker)."""
END = MAGIC + b"\x00\x00\x00\x00"
"""The last bytes of a whole Arrow IPC stream (its end-of-stream marker)."""
MAX_ROWS = 100_000
"""Rows one record may hold: a gateway flushes its robots' reports (one each) many times a minute."""
REASONS = frozenset({"repeated_robot"})
"""Refusals only a gateway batch gives (`undecodable` too, which `parse` gives as well)."""

SPARSE = ("signals", "config")
"""Struct columns whose null fields are left out of a row's report (a signal or setting it lacks)."""


class Unpacked(NamedTuple):
    """A record as the fold takes it: its rows (the record itself unless it is a gateway batch), and
    what is dead-lettered before the fold."""

    rows: list[Record]
    rejected: list[tuple[Record, InvalidEvent]]
    indices: list[int]
    """Each of `rows`' position in the batch (0 for a plain record): for the dead-letter headers."""


def is_batch(value: bytes) -> bool:
    """Whether a telemetry value is a gateway batch rather than one robot's JSON report."""
    return value[:4] == MAGIC


def schema_of(events: Sequence[Event]) -> pa.Schema:
    """The Arrow schema of a record holding `events`: `Event`'s fields in order, the signal and setting
    fields those the events report. A reader renders whatever columns a record has, so a record with
    a column missing or extra is judged as the JSON report with that field missing or extra."""
    names = sorted({name for e in events for name in e.signals})
    keys = sorted({key for e in events if not isinstance(e.config, msgspec.UnsetType) for key in e.config})
    text, number = pa.string(), pa.float64()
    return pa.schema([
        ("schema", pa.int64()), ("robot_id", text), ("seq", pa.int64()), ("ts", number), ("sector", text),
        ("site", text), ("model", text), ("mode", text), ("signals", pa.struct([(n, number) for n in names])),
        ("ai_model_version", text), ("firmware", text), ("codes", pa.list_(text)),
        ("location", pa.struct([("lat", number), ("lon", number), ("floor", pa.int64())])),
        ("config", pa.struct([(k, text) for k in keys])),
    ])


def encode(events: Sequence[Event]) -> bytes:
    """One gateway record's value holding `events` (one per robot; the caller groups by partition)."""
    schema = schema_of(events)
    rows: dict[str, list[Any]] = {name: [] for name in schema.names}
    for e in events:
        for name in ("schema", "robot_id", "seq", "ts", "sector", "site", "model", "mode", "ai_model_version",
                     "firmware"):
            rows[name].append(getattr(e, name))
        rows["signals"].append(e.signals)
        rows["codes"].append(list(e.codes))
        place = e.location
        rows["location"].append(None if place is None else {"lat": place.lat, "lon": place.lon, "floor": place.floor})
        rows["config"].append(None if isinstance(e.config, msgspec.UnsetType) else e.config)
    out = pa.BufferOutputStream()
    with ipc.new_stream(out, schema) as writer:
        writer.write_table(pa.Table.from_pydict(rows, schema=schema))
    return bytes(out.getvalue().to_pybytes())


class Batch(NamedTuple):
    """What a gateway sends as one record: its reports for robots of one home partition."""

    partition: int
    site: str
    events: list[Event]


def batches(events: Sequence[Event], partition_of: Callable[[bytes], int]) -> list[Batch]:
    """`events` (in send order) as gateway records: grouped by site and by their robots' home partition
    (`partition_of(robot id)`: Kafka's partitioner, as for a JSON report), each group in order and cut
    before a robot's second report (one per robot per record), in order of each group's first event."""
    filling: dict[tuple[str, int], tuple[Batch, set[str]]] = {}
    out: list[Batch] = []
    for e in events:
        where = (e.site, partition_of(e.robot_id.encode()))
        batch, robots = filling.get(where) or (None, set())
        if batch is None or e.robot_id in robots:
            batch, robots = filling[where] = (Batch(where[1], e.site, []), set())
            out.append(batch)
        batch.events.append(e)
        robots.add(e.robot_id)
    return out


def unpack(record: Record) -> Unpacked:
    """A telemetry record's rows: a gateway batch's as one record each (key the robot id, value the
    row's JSON report, the batch's partition, offset and broker time); any other record as itself."""
    if record.kind != "telemetry" or not is_batch(record.value):
        return Unpacked([record], [], [0])
    try:
        return _rows(record, _reports(record.value))
    except Exception as exc:  # noqa: BLE001 - whatever the bytes, the batch is dead-lettered, not the worker
        return Unpacked([], [(record, InvalidEvent("undecodable", f"gateway batch: {exc}"[:500]))], [])


def _rows(record: Record, reports: list[dict[str, Any]]) -> Unpacked:
    """`unpack` of a readable batch: each report a record keyed by its robot, unless it repeats one."""
    rows: list[Record] = []
    rejected: list[tuple[Record, InvalidEvent]] = []
    indices: list[int] = []
    seen: set[bytes] = set()
    for i, report in enumerate(reports):
        robot = report.get("robot_id")
        key = robot.encode() if isinstance(robot, str) else None  # any other type: parse refuses the row
        try:
            value = _json(report)
        except Exception as exc:  # noqa: BLE001 - whatever a row holds that JSON cannot: this row only
            rejected.append((Record("telemetry", record.partition, record.offset, record.timestamp, key,
                                    repr(report).encode()[:65536]),
                             InvalidEvent("undecodable", f"gateway batch row {i}: {exc}"[:500])))
            continue
        row = Record("telemetry", record.partition, record.offset, record.timestamp, key, value)
        if key is not None and key in seen:
            rejected.append((row, InvalidEvent("repeated_robot", f"robot {robot!r} twice in one gateway batch "
                                                                 f"(row {i}): one report per robot per batch")))
            continue
        if key is not None:
            seen.add(key)
        rows.append(row)
        indices.append(i)
    return Unpacked(rows, rejected, indices)


def _reports(value: bytes) -> list[dict[str, Any]]:
    """The batch's rows as the JSON objects robots send (a sparse struct's null fields left out, a null
    config too)."""
    table = _table(value)
    columns = {name: _sparse(column) if name in SPARSE and pa.types.is_struct(column.type) else column.to_pylist()
               for name, column in zip(table.column_names, table.columns)}
    names = list(columns)
    reports = [dict(zip(names, row)) for row in zip(*columns.values())]
    if None in columns.get("config", ()):
        for report in reports:
            if report["config"] is None:
                del report["config"]
    return reports


def _table(value: bytes) -> pa.Table:
    """The stream's table, read by Arrow's own reader after checks that keep a hostile record from
    costing more than its bytes: a schema, then uncompressed record batches of at most `MAX_ROWS`
    rows in all, then the end-of-stream marker (without it, a stream cut after a record batch would
    read as fewer rows). polars' reader was not used: a flipped byte in a record made it abort the
    process (a failed allocation of 4 EB), where Arrow's validates and raises."""
    if not value.endswith(END):
        raise ValueError("no end-of-stream marker: the batch is cut short")
    schema: pa.Schema | None = None
    batches: list[pa.RecordBatch] = []
    for message in ipc.MessageReader.open_stream(pa.py_buffer(value)):
        if message.type == "schema" and schema is None:
            schema = ipc.read_schema(message)
        elif message.type == "record batch" and schema is not None:
            if _compressed(message.metadata.to_pybytes()):
                raise ValueError("compressed buffers: a gateway batch is sent uncompressed (Kafka compresses)")
            batches.append(ipc.read_record_batch(message, schema))
            if sum(b.num_rows for b in batches) > MAX_ROWS:
                raise ValueError(f"more than {MAX_ROWS:,} rows")
        else:
            raise ValueError(f"unexpected {message.type} message: a gateway batch is a schema and record batches")
    if schema is None:
        raise ValueError("no schema")
    table = pa.Table.from_batches(batches, schema)
    table.validate(full=True)
    return table


def _compressed(metadata: bytes) -> bool:
    """Whether a record batch message's metadata (an Arrow `Message` flatbuffer, already verified by
    Arrow's reader) names a body compression: its `RecordBatch` header's field 3 is set."""
    def at(fmt: str, pos: int) -> int:
        if not 0 <= pos <= len(metadata) - struct.calcsize(fmt):
            raise ValueError("record batch metadata out of bounds")
        return int(struct.unpack_from(fmt, metadata, pos)[0])

    def field(table: int, i: int) -> int:
        vtable = table - at("<i", table)
        return at("<H", vtable + 4 + 2 * i) if 4 + 2 * i < at("<H", vtable) else 0

    root = at("<I", 0)
    header = field(root, 2)  # Message: version, header_type, header, bodyLength, custom_metadata
    if not header:
        raise ValueError("record batch message without a header")
    batch = root + header + at("<I", root + header)
    return field(batch, 3) != 0  # RecordBatch: length, nodes, buffers, compression, variadicBufferCounts


def _sparse(column: pa.ChunkedArray) -> list[dict[str, Any] | None]:
    """A sparse struct column's values without their null fields (None for a null value), read field
    by field: a struct's own `to_pylist` costs more than these few lists and dicts."""
    array = column.combine_chunks()
    names = [array.type.field(i).name for i in range(array.type.num_fields)]
    nulls = array.is_null().to_pylist() if array.null_count else None
    if not names:  # no field: zip would give no row at all
        return [None if null else {} for null in nulls or [False] * len(array)]
    out: list[dict[str, Any] | None] = []
    for row in zip(*(field.to_pylist() for field in array.flatten())):
        out.append(dict(zip(names, row)) if None not in row else {k: v for k, v in zip(names, row) if v is not None})
    if nulls is not None:
        out = [None if null else fields for fields, null in zip(out, nulls)]
    return out


_json = msgspec.json.Encoder().encode

"""The archive's rows and layout (`streams.analysis.archive_layout`): no files, no broker."""

from __future__ import annotations

import json
from datetime import date, timedelta

import msgspec
import polars as pl
from hypothesis import given, settings, strategies as st

from streams.analysis.archive_layout import (
    CHECKS, FLEET, GATEWAY, GATEWAY_SCHEMA, INVALID, KAFKA_SCHEMA, SCHEMAS, TELEMETRY_SCHEMA, gateway_parts,
    path_sector, to_parts, utc_date,
)
from tests.support.cases import NOW, raw
from twin import gateway
from twin.detect.findings import Anomaly
from twin.record import Kind, Record
from twin.schema import Event

MS = int(NOW * 1000)


def rec(partition: int, offset: int, ms: int, key: bytes | None, value: bytes, kind: Kind = "telemetry") -> Record:
    """A record as the archiver makes one of a Kafka record: its milliseconds in seconds."""
    return Record(kind, partition, offset, ms / 1000.0, key, value)


def test_the_date_is_the_utc_day_of_the_kafka_timestamp() -> None:
    assert utc_date(0.0) == "1970-01-01"
    assert utc_date(86_399.999) == "1970-01-01" and utc_date(86_400.0) == "1970-01-02"
    assert utc_date(MS / 1000) == "2026-09-21"


@given(st.integers(0, 253_402_300_799_999))  # to the end of year 9999
def test_the_date_is_cut_on_the_kafka_milliseconds_the_seconds_came_from(ms: int) -> None:
    assert round(ms / 1000.0 * 1000) == ms
    assert utc_date(ms / 1000.0) == (date(1970, 1, 1) + timedelta(days=ms // 86_400_000)).isoformat()


def test_telemetry_rows_keep_the_bytes_and_decode_the_rest() -> None:
    good = raw("r-1", codes=["E-1"], signals={"speed_mps": 1.5, "battery_soc_pct": 70.0})
    parts = to_parts("telemetry", [rec(3, 10, MS + 7, b"r-1", good)])
    [(path, frame)] = parts.items()
    assert path == "telemetry/date=2026-09-21/sector=mining/part-3-10-10.parquet"
    assert frame.schema == pl.Schema(TELEMETRY_SCHEMA)
    row = frame.row(0, named=True)
    assert row["timestamp"] == (MS + 7) / 1000.0 and row["key"] == b"r-1" and row["value"] == good
    assert (row["robot_id"], row["seq"], row["ts"], row["site"], row["codes"]) == ("r-1", 1, NOW, "mining-pilbara-01", ["E-1"])
    assert row["signals"] == [{"name": "speed_mps", "value": 1.5}, {"name": "battery_soc_pct", "value": 70.0}]


def test_undecodable_telemetry_goes_to_invalid_with_null_columns_and_a_wrong_key_does_not() -> None:
    records = [rec(0, 1, MS, b"r-1", b"not json"), rec(0, 2, MS, b"other", raw("r-1")),
               rec(0, 3, MS, None, raw("r-1", signals={})), rec(0, 4, MS, b"r-1", raw("r-1", sector="../etc"))]
    parts = to_parts("telemetry", records)
    assert sorted(parts) == ["telemetry/date=2026-09-21/sector=__invalid__/part-0-1-4.parquet",
                             "telemetry/date=2026-09-21/sector=mining/part-0-2-3.parquet"]
    invalid = parts["telemetry/date=2026-09-21/sector=__invalid__/part-0-1-4.parquet"]
    assert invalid["offset"].to_list() == [1, 4]
    assert invalid.row(0, named=True)["robot_id"] is None and invalid.row(0, named=True)["signals"] is None
    assert invalid.row(1, named=True)["robot_id"] == "r-1"  # decodes, but its sector is no directory name
    mining = parts["telemetry/date=2026-09-21/sector=mining/part-0-2-3.parquet"]
    assert mining["key"].to_list() == [b"other", None] and mining["signals"].to_list() == [
        [{"name": "battery_soc_pct", "value": 80.0}, {"name": "speed_mps", "value": 1.2}], []]


def test_one_file_per_date_sector_and_partition_named_by_its_offsets() -> None:
    midnight = 1_790_035_200_000  # 2026-09-22T00:00:00Z
    records = [rec(1, 5, midnight - 1, b"r-1", raw("r-1")), rec(1, 6, midnight, b"r-1", raw("r-1")),
               rec(2, 5, midnight, b"r-2", raw("r-2", sector="retail", site="ret-x")),
               rec(1, 9, midnight + 1, b"r-1", raw("r-1"))]
    assert sorted(to_parts("telemetry", records)) == [
        "telemetry/date=2026-09-21/sector=mining/part-1-5-5.parquet",
        "telemetry/date=2026-09-22/sector=mining/part-1-6-9.parquet",
        "telemetry/date=2026-09-22/sector=retail/part-2-5-5.parquet",
    ]


def anomaly(**changes: object) -> bytes:
    base = Anomaly(id="a1", status="open", robot_id="r-1", sector="mining", site="mining-pilbara-01",
                   model="amr", detector="band", signal="speed_mps", severity="warning", score=2.0,
                   start_ts=NOW, ts=NOW, evidence={"value": 9.0})
    return msgspec.json.encode(msgspec.structs.replace(base, **changes))


def test_anomalies_keep_their_fields_but_the_sector_lives_in_the_path() -> None:
    parts = to_parts("anomalies", [rec(0, 0, MS, b"site", anomaly(), "anomaly"),
                                   rec(0, 1, MS, b"m", anomaly(sector="", robot_id=""), "anomaly"),
                                   rec(0, 2, MS, b"x", b"{}", "anomaly")])
    paths = sorted(parts)
    assert [p.split("/")[2] for p in paths] == [f"sector={s}" for s in (FLEET, INVALID, "mining")]
    frame = parts[paths[2]]
    assert frame.schema == pl.Schema(SCHEMAS["anomalies"]) and "sector" not in frame.columns
    row = frame.row(0, named=True)
    assert row["id"] == "a1" and row["end_ts"] is None and json.loads(row["evidence"]) == {"value": 9.0}
    assert parts[paths[1]].row(0, named=True)["id"] is None


def test_checks_are_kafka_columns_under_one_sector() -> None:
    [(path, frame)] = to_parts("checks", [rec(4, 0, MS, b"r-1", repr(NOW).encode(), "check")]).items()
    assert path == f"checks/date=2026-09-21/sector={CHECKS}/part-4-0-0.parquet"
    assert frame.schema == pl.Schema(KAFKA_SCHEMA)


def test_directory_names() -> None:
    assert path_sector("food_service") == "food_service"
    assert [path_sector(s) for s in ("a/b", "..", ".hidden", "__fleet__", "a b")] == [INVALID] * 5


records = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3 * 86_400_000), st.sampled_from(["mining", "retail", "?"])),
                   max_size=60)


@settings(max_examples=50, deadline=None)
@given(records)
def test_parts_hold_every_record_once_in_offset_order(specs: list[tuple[int, int, str]]) -> None:
    next_offset = [0, 0, 0, 0]
    batch = []
    for partition, ms, sector in specs:
        value = b"junk" if sector == "?" else raw("r", sector=sector)
        batch.append(rec(partition, next_offset[partition], ms, b"r", value))
        next_offset[partition] += 1
    parts = to_parts("telemetry", batch)
    seen = []
    for path, frame in parts.items():
        partition, first, last = map(int, path.rsplit("/", 1)[1].removesuffix(".parquet").split("-")[1:])
        offsets = frame["offset"].to_list()
        assert offsets == sorted(offsets) and (offsets[0], offsets[-1]) == (first, last)
        assert set(frame["partition"].to_list()) == {partition}
        seen += [(partition, o) for o in offsets]
    assert sorted(seen) == sorted((r.partition, r.offset) for r in batch)


def test_a_site_gateways_record_is_kept_whole_under_its_own_sector() -> None:
    reports = [msgspec.json.decode(raw(r), type=Event) for r in ("r-1", "r-2")]
    value = gateway.encode(reports)
    parts = to_parts("telemetry", [rec(2, 5, MS, b"mining-pilbara-01", value), rec(2, 6, MS, b"r-3", raw("r-3"))])
    assert sorted(parts) == [f"telemetry/date=2026-09-21/sector={GATEWAY}/part-2-5-5.parquet",
                             "telemetry/date=2026-09-21/sector=mining/part-2-6-6.parquet"]
    row = parts[f"telemetry/date=2026-09-21/sector={GATEWAY}/part-2-5-5.parquet"].row(0, named=True)
    assert row["value"] == value and row["robot_id"] is None and row["signals"] is None


def test_a_site_gateways_reports_get_a_row_each_with_the_telemetry_columns() -> None:
    reports = [msgspec.json.decode(raw(r), type=Event) for r in ("r-1", "r-2", "r-1", "r-4")]  # r-1 twice
    gateway_record = rec(2, 5, MS, b"mining-pilbara-01", gateway.encode(reports))
    parts = gateway_parts([gateway_record, rec(2, 6, MS, b"r-3", raw("r-3"))])
    assert sorted(parts) == ["gateway_reports/date=2026-09-21/sector=mining/part-2-5-5.parquet"]
    frame = parts["gateway_reports/date=2026-09-21/sector=mining/part-2-5-5.parquet"]
    assert frame.schema == pl.Schema(GATEWAY_SCHEMA)
    # the repeated robot's second report is refused (the worker dead-letters it): no row
    assert frame["robot_id"].to_list() == ["r-1", "r-2", "r-4"] and frame["gateway_row"].to_list() == [0, 1, 3]
    assert frame["partition"].to_list() == [2, 2, 2] and frame["offset"].to_list() == [5, 5, 5]
    rows = gateway.unpack(gateway_record).rows
    assert frame["value"].to_list() == [r.value for r in rows] and frame["key"].to_list() == [b"r-1", b"r-2", b"r-4"]
    assert msgspec.json.decode(frame["value"][1], type=Event) == reports[1]
    signals = {s["name"]: s["value"] for s in frame["signals"][1]}
    assert signals == reports[1].signals
    assert gateway_parts([rec(2, 6, MS, b"r-3", raw("r-3"))]) == {}

"""The archive's files on a real disk, without a broker: writing, dedup, windows, chunked reads."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from streams.analysis import archive as archive_module
from streams.analysis.archive import archive_anomalies, archive_records, write_parts
from streams.analysis.archive_layout import to_parts
from tests.support.cases import raw
from twin.detect.findings import Anomaly
from twin.record import Kind, Record

DAY = 86_400_000
T0 = 1_790_035_200_000 - 5_000  # five seconds before midnight UTC


def rec(partition: int, offset: int, ms: int, key: bytes, value: bytes, kind: Kind = "telemetry") -> Record:
    """A record as the archiver makes one of a Kafka record: its milliseconds in seconds."""
    return Record(kind, partition, offset, ms / 1000.0, key, value)


def telemetry(partition: int, offsets: range) -> list[Record]:
    """One record a second from T0; odd offsets in retail, every fifth undecodable."""
    return [rec(partition, o, T0 + 1000 * o, f"r-{o}".encode(),
                b"oops" if o % 5 == 0 else raw(f"r-{o}", sector="retail" if o % 2 else "mining"))
            for o in offsets]


def write(root: Path, dataset: str, records: list[Record]) -> None:
    write_parts(root, to_parts(dataset, records))  # type: ignore[arg-type]


def read(root: Path, start: float = 0.0, end: float = float("inf"), partitions: set[int] | None = None) -> list[list[Record]]:
    return [list(stream) for stream in archive_records(root, start, end, partitions)]


def test_a_crash_rewrite_reads_back_once_in_offset_order(tmp_path: Path) -> None:
    write(tmp_path, "telemetry", telemetry(0, range(0, 10)))
    write(tmp_path, "telemetry", telemetry(0, range(5, 15)))  # re-read after a crash before the commit
    write(tmp_path, "telemetry", telemetry(1, range(0, 3)))
    write(tmp_path, "checks", [rec(1, 0, T0, b"r-1", b"1790035195.0", "check")])
    streams = read(tmp_path)
    assert [[(r.kind, r.partition) for r in s][:1] for s in streams] == [[("telemetry", 0)], [("telemetry", 1)],
                                                                          [("check", 1)]]
    assert [r.offset for r in streams[0]] == list(range(15))
    first = streams[0][1]
    assert first == Record("telemetry", 0, 1, (T0 + 1000) / 1000.0, b"r-1", raw("r-1", sector="retail"))
    assert streams[2] == [Record("check", 1, 0, T0 / 1000.0, b"r-1", b"1790035195.0")]
    assert not list(tmp_path.rglob(".*.tmp"))
    assert {p.parent.parent.name for p in tmp_path.glob("telemetry/*/*/*.parquet")} == {"date=2026-09-21",
                                                                                      "date=2026-09-22"}


def test_windows_partitions_and_small_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "telemetry", telemetry(0, range(0, 40)))
    write(tmp_path, "telemetry", telemetry(2, range(0, 40)))
    everything = read(tmp_path)
    monkeypatch.setattr(archive_module, "_CHUNK", 3)
    assert read(tmp_path) == everything
    start, end = (T0 + 3000) / 1000.0, (T0 + 12_000) / 1000.0  # across midnight, both ends included
    [window] = read(tmp_path, start, end, partitions={2})
    assert [(r.partition, r.offset) for r in window] == [(2, o) for o in range(3, 13)]
    assert read(tmp_path, T0 / 1000.0 + DAY, float("inf")) == [] and read(tmp_path / "nothing") == []


def test_anomalies_read_back_with_their_sector(tmp_path: Path) -> None:
    def message(offset: int, sector: str) -> Record:
        a = Anomaly(id=f"a{offset}", status="open", robot_id="", sector=sector, site="", model="amr",
                    detector="rollout", signal="", severity="warning", score=1.5, start_ts=1.0, ts=1.0)
        return rec(0, offset, T0 + offset, b"amr", msgspec.json.encode(a), "anomaly")

    write(tmp_path, "anomalies", [message(0, ""), message(1, "mining"), rec(0, 2, T0, b"x", b"nope", "anomaly")])
    write(tmp_path, "anomalies", [message(1, "mining")])
    frame = archive_anomalies(tmp_path, 0.0, float("inf"))
    assert frame["offset"].to_list() == [0, 1, 2]
    assert frame["sector"].to_list() == ["", "mining", None] and frame["id"].to_list() == ["a0", "a1", None]
    assert frame.columns[-3:] == ["partition", "offset", "timestamp"]
    assert archive_anomalies(tmp_path / "nothing", 0.0, 1.0).schema == frame.schema


def test_desired_changes_are_read_from_before_the_window_up_to_its_end(tmp_path: Path) -> None:
    day = 86_400_000
    write(tmp_path, "telemetry", telemetry(1, range(0, 3)))
    write(tmp_path, "desired", [rec(0, 0, T0 - 2 * day, b"k1", b"{}", "desired"),
                                rec(0, 1, T0 + 1000, b"k2", b"{}", "desired"),
                                rec(0, 2, T0 + 9000, b"k3", b"{}", "desired")])
    assert {p.parent.name for p in tmp_path.glob("desired/*/*/*.parquet")} == {"sector=__desired__"}
    streams = read(tmp_path, start=(T0 + 500) / 1000.0, end=(T0 + 2000) / 1000.0, partitions={1})
    desired = [s for s in streams if s and s[0].kind == "desired"]
    assert [[r.offset for r in s] for s in desired] == [[0, 1]]  # the one before the window counts; after, not

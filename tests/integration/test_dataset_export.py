"""The data flywheel export end to end, offline: simulate faults, replay, write the set, read it back."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import msgspec
import polars as pl
import pytest

from streams.analysis.dataset_files import EventChunks, write_chunked_dataset, write_dataset
from streams.seeds import read_detectors, read_fleet, read_scenario
from twin.dataset import FORMAT_VERSION, WINDOW_SCHEMA
from twin.record import Record
from twin.replay import Result, replay
from twin.schema import SCHEMA_VERSION, encode
from twin.sim import FleetSim
from twin.frames import anomalies_to_frame, labels_to_frame, seen_to_frame

SEEDS = Path(__file__).resolve().parents[2] / "seeds"
META = {"source": "kafka://localhost:9092/fleet.telemetry", "from": 1767600000.0, "to": 1767600900.0,
        "command": "fleet-twin export-dataset --from ... --to ...", "operator": "ci"}


@pytest.fixture(scope="module")
def run() -> tuple[Result, FleetSim]:
    """Chaos shrunk to 60 robots for 15 minutes: every fault kind starts, the fold takes seconds."""
    scenario = msgspec.structs.replace(read_scenario(SEEDS, "chaos"), robots=60, duration_s=900)
    sim = FleetSim(read_fleet(SEEDS), scenario, seed=1)
    records: list[Record] = []
    for tick in range(sim.ticks):
        now = sim.start_ts + tick * sim.dt  # the broker's clock: true time, even for a robot with a skewed one
        records += [Record("telemetry", 0, len(records) + i, now, e.robot_id.encode(), encode(e))
                    for i, e in enumerate(sim.step())]
    return replay(records, read_fleet(SEEDS), read_detectors(SEEDS)), sim


def export(run: tuple[Result, FleetSim], out: Path, labelled: bool = True) -> dict[str, Any]:
    result, sim = run
    labels = labels_to_frame(sim.labels()) if labelled else None
    return write_dataset(out, seen_to_frame(result.events), anomalies_to_frame(result.anomalies), labels, META)


def test_the_manifest_counts_what_the_files_hold(run: tuple[Result, FleetSim], tmp_path: Path) -> None:
    manifest = export(run, tmp_path)
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    found, rows = pl.read_parquet(tmp_path / "windows.parquet"), pl.read_parquet(tmp_path / "samples.parquet")
    counts = manifest["counts"]
    assert found.schema == pl.Schema(WINDOW_SCHEMA)
    assert counts["windows"] == _counts(found, "kind") and counts["samples"] == rows.height
    anomalous = found.filter(pl.col("kind") == "anomaly")
    assert counts["detector"] == _counts(anomalous, "detector")
    assert counts["truth"]["anomaly"] == _counts(anomalous, "truth")
    assert counts["skipped_matches"] == anomalous.height - counts["windows"].get("normal", 0)
    for name, frame in (("windows.parquet", found), ("samples.parquet", rows)):
        assert manifest["files"][name] == {"rows": frame.height,
                                           "sha256": hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()}
    assert set(rows["window_id"]) == set(found["window_id"])  # every window has its reports
    assert {k: manifest[k] for k in ("source", "from", "to", "command")} == {k: META[k] for k in
                                                                              ("source", "from", "to", "command")}
    assert manifest["meta"] == {"operator": "ci"}
    assert (manifest["format_version"], manifest["event_schema_version"]) == (FORMAT_VERSION, SCHEMA_VERSION)


def test_anomaly_windows_carry_the_simulated_fault(run: tuple[Result, FleetSim], tmp_path: Path) -> None:
    manifest = export(run, tmp_path)
    found = pl.read_parquet(tmp_path / "windows.parquet")
    faults = {lab["fault"] for lab in run[1].labels()}
    truths = set(found.filter(pl.col("kind") == "anomaly")["truth"])
    assert len(truths & faults) >= 5, truths  # most of chaos' faults are caught and named
    assert set(found.filter(pl.col("kind") == "normal")["truth"]) == {"normal"}
    assert manifest["counts"]["windows"]["normal"] > 0 and manifest["ground_truth"] is True


def test_samples_read_back_with_the_event_columns(run: tuple[Result, FleetSim], tmp_path: Path) -> None:
    export(run, tmp_path)
    events = seen_to_frame(run[0].events)
    rows = pl.read_parquet(tmp_path / "samples.parquet")
    assert rows.columns == ["window_id", "kind", *events.columns]
    bounds = pl.read_parquet(tmp_path / "windows.parquet").select("window_id", "robot_id", "start_ts", "end_ts")
    joined = rows.join(bounds, on=["window_id", "robot_id"])
    assert joined.height == rows.height and joined.filter(~pl.col("ts").is_between("start_ts", "end_ts")).height == 0


def test_the_same_inputs_write_the_same_bytes_and_no_labels_leave_truth_empty(
        run: tuple[Result, FleetSim], tmp_path: Path) -> None:
    first, again = export(run, tmp_path / "a"), export(run, tmp_path / "b")
    assert first["files"] == again["files"]
    bare = export(run, tmp_path / "bare", labelled=False)
    assert bare["ground_truth"] is False and set(bare["counts"]["truth"]["anomaly"]) == {"unlabelled"}
    assert pl.read_parquet(tmp_path / "bare" / "windows.parquet")["truth"].null_count() == sum(
        bare["counts"]["windows"].values())


def _counts(frame: pl.DataFrame, column: str) -> dict[str, int]:
    return {str(k): n for k, n in frame.group_by(column).len().iter_rows()}


def export_in_chunks(run: tuple[Result, FleetSim], out: Path, rows: int, upto: int | None = None) -> dict[str, Any]:
    """As `export`, with the events written `rows` at a time as a long export writes them."""
    result, sim = run
    chunks = EventChunks(out / "events", rows=rows)
    for seen in result.events[:upto]:
        chunks.add(seen)
    return write_chunked_dataset(out, chunks, anomalies_to_frame(result.anomalies), labels_to_frame(sim.labels()),
                                 META, complete=upto is None)


def test_events_written_in_chunks_give_the_same_set(run: tuple[Result, FleetSim], tmp_path: Path) -> None:
    whole = export(run, tmp_path / "whole")
    chunked = export_in_chunks(run, tmp_path / "chunked", rows=7_000)
    parts = sorted((tmp_path / "chunked" / "events").glob("part-*.parquet"))
    assert len(parts) == -(-len(run[0].events) // 7_000) > 3
    for name in ("windows.parquet", "samples.parquet"):
        assert pl.read_parquet(tmp_path / "chunked" / name).equals(pl.read_parquet(tmp_path / "whole" / name)), name
        assert chunked["files"][name] == whole["files"][name]
    assert chunked["counts"] == whole["counts"] and chunked["complete"] is True
    assert sum(chunked["files"][f"events/{p.name}"]["rows"] for p in parts) == len(run[0].events)


def test_an_interrupted_export_keeps_a_partial_set_that_says_so(run: tuple[Result, FleetSim], tmp_path: Path) -> None:
    half = len(run[0].events) // 2
    manifest = export_in_chunks(run, tmp_path, rows=5_000, upto=half)
    assert manifest["complete"] is False
    events = pl.read_parquet(tmp_path / "events" / "*.parquet")
    assert events.height == half and pl.read_parquet(tmp_path / "samples.parquet")["ts"].max() <= events["ts"].max()

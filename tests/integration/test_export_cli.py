"""`fleet-twin export-dataset` over an archive on disk: events streamed to Parquet chunks as they are
read, the set cut from them, a readable summary, and a partial set kept when interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import polars as pl
import pytest
from typer.testing import CliRunner

from streams.analysis.archive import write_parts
from streams.analysis.archive_layout import to_parts
from streams.cli.main import app
from streams.seeds import read_fleet, read_scenario
from twin.record import Record
from twin.schema import encode
from twin.sim import FleetSim

SEEDS = Path(__file__).resolve().parents[2] / "seeds"


def archived_chaos(root: Path, robots: int, duration_s: float) -> tuple[float, float]:
    """A chaos run written as the archiver writes the log; its first and last record times."""
    scenario = msgspec.structs.replace(read_scenario(SEEDS, "chaos"), robots=robots, duration_s=duration_s)
    sim = FleetSim(read_fleet(SEEDS), scenario, seed=1)
    records: list[Record] = []
    for tick in range(sim.ticks):
        now = round(sim.start_ts + tick * sim.dt, 3)
        records += [Record("telemetry", 0, len(records) + i, now, e.robot_id.encode(), encode(e))
                    for i, e in enumerate(sim.step())]
    write_parts(root, to_parts("telemetry", records))
    return records[0].timestamp, records[-1].timestamp


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float, float]:
    """60 robots for 20 minutes: some 70,000 records, enough chunks to stop in the middle."""
    root = tmp_path_factory.mktemp("archive")
    return (root, *archived_chaos(root, robots=60, duration_s=1200))


def test_the_export_streams_events_in_chunks_and_says_what_it_wrote(
        archive: tuple[Path, float, float], tmp_path: Path) -> None:
    root, first, last = archive
    out = tmp_path / "set"
    result = CliRunner().invoke(app, [
        "export-dataset", "--source", str(root), "--from", str(first), "--to", str(last + 1), "--out", str(out),
        "--chunk-rows", "10000", "--no-progress"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    parts = sorted((out / "events").glob("part-*.parquet"))
    assert len(parts) > 3 and manifest["complete"] is True
    assert sum(manifest["files"][f"events/{p.name}"]["rows"] for p in parts) == pl.read_parquet(parts).height
    assert manifest["counts"]["samples"] == pl.read_parquet(out / "samples.parquet").height > 0
    assert "{" not in result.output and "windows" in result.output  # a summary, not a dict
    reproduce = [line for line in result.output.splitlines() if line.startswith("reproduce: ")]
    assert len(reproduce) == 1 and reproduce[0].endswith("--seed 0"), result.output  # one line at 80 columns


def test_ctrl_c_keeps_a_partial_set_cut_from_what_was_read(
        archive: tuple[Path, float, float], tmp_path: Path) -> None:
    root, first, last = archive
    out = tmp_path / "set"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams", "export-dataset", "--source", str(root), "--from", str(first),
         "--to", str(last + 1), "--out", str(out), "--chunk-rows", "2000", "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "200"})
    deadline = time.monotonic() + 120
    while not (out / "events" / "part-00001.parquet").exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "no second chunk within 2 minutes"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is False and "interrupted" in output and "Traceback" not in output
    events = pl.read_parquet(out / "events" / "*.parquet")
    assert manifest["to"] < last and events["received_ts"].max() <= manifest["to"]
    assert (out / "windows.parquet").exists() and (out / "samples.parquet").exists()

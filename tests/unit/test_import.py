"""`fleet-twin import`: a small format-(b) folder becomes valid events, labels, a readable archive,
learned bands for review, and scores of the worker's detectors; bad input is one line, exit 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from streams.analysis.sources import archive_source
from streams.analysis.eval.production import score_import
from streams.analysis.importing import (
    ImportProblem, bands_yaml, import_set, learn_bands, learn_stuck_reports, resolve_signals, robot_ids,
)
from streams.analysis.recordings import load_recordings
from streams.cli.main import app
from streams.seeds import read_detectors, read_fleet
from twin.fleet import load_fleet
from twin.validate import parse

SEEDS = Path(__file__).resolve().parents[2] / "seeds"
MODEL = "skab-pump"
T0 = 1_700_000_000.0


def _run(n: int, seed: int, episodes: tuple[tuple[int, int], ...] = ()) -> pl.DataFrame:
    """A healthy pump at 1 Hz; each episode pushes the motor current far out of its band."""
    rng = np.random.default_rng(seed)
    current = 2.0 + 0.05 * rng.standard_normal(n)
    anomaly = np.zeros(n, dtype=np.int8)
    for a, b in episodes:
        current[a:b] = 9.0
        anomaly[a:b] = 1
    return pl.DataFrame({
        "timestamp": T0 + seed * 10_000 + np.arange(n, dtype=np.float64),
        "Current": current,  # needs --map Current=current_a
        "pressure_bar": 0.1 + 0.01 * rng.standard_normal(n),
        "voltage_v": 230.0 + rng.standard_normal(n),
        "anomaly": anomaly,
    })


EPISODES = ((120, 140), (200, 215))


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "pumps"
    (root / "runs").mkdir(parents=True)
    _run(150, 1).write_csv(root / "runs" / "healthy.csv")
    _run(260, 2, EPISODES).write_csv(root / "runs" / "faulty.csv")
    (root / "manifest.yaml").write_text("normal: [runs/healthy.csv]\n")
    return root


def test_import_gives_valid_events_labels_and_the_workers_findings(folder: Path) -> None:
    fleet = read_fleet(SEEDS)
    imp = import_set(load_recordings(folder), fleet, read_detectors(SEEDS), MODEL, mapping={"Current": "current_a"})
    assert imp.robots == {"runs/faulty.csv": "faulty", "runs/healthy.csv": "healthy"}
    assert len(imp.telemetry) == 150 + 260 and imp.rejected == 0
    for record in imp.telemetry:
        event = parse(record.value, fleet, key=record.key, received_ts=record.timestamp)
        assert event.model == MODEL and set(event.signals) == {"current_a", "pressure_bar", "voltage_v"}
    faulty = imp.labels.filter(pl.col("robot_id") == "faulty")
    assert faulty.select("start_ts", "end_ts").rows() == [(T0 + 20_000 + a, T0 + 20_000 + b - 1) for a, b in EPISODES]
    assert imp.labels.height == 2
    table = score_import(imp)
    assert table["recall"].to_list() == [1.0]  # band fires within 3 reports of each onset
    assert table["false alarms"].to_list() == [0]


def test_the_archive_written_reads_back_as_the_same_log(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "log"
    result = CliRunner().invoke(app, ["import", str(folder), "--model", MODEL, "--map", "Current=current_a",
                                      "--out", str(out), "--learn-bands"])
    assert result.exit_code == 0, result.output
    assert "2 robot(s) of skab-pump, 410 events" in result.output
    records = list(archive_source(out, T0, T0 + 10**6))
    assert sum(r.kind == "telemetry" for r in records) == 410
    assert pl.read_parquet(out / "labels.parquet").height == 2
    assert yaml.safe_load((out / "import.yaml").read_text())["robots"]["runs/healthy.csv"] == "healthy"
    snippet = yaml.safe_load((out / f"model-{MODEL}.yaml").read_text())
    current = snippet["models"][MODEL]["signals"]["current_a"]["nominal"]
    healthy = _run(150, 1)["Current"].to_numpy()
    assert current == pytest.approx(np.quantile(healthy, [0.005, 0.995]), rel=1e-3)  # normal-only run only
    load_fleet({"sectors": {}}, snippet)  # the snippet is a valid models.yaml


def test_learned_bands_and_stuck_length_come_from_the_rows_given() -> None:
    frame = pl.DataFrame({"a": [1.0, 1.0, 1.0, 2.0, 3.0] * 20, "b": np.linspace(0, 1, 100)})
    bands = learn_bands([frame], {"a": "x", "b": "y"})
    assert bands["y"] == pytest.approx((0.005, 0.995))
    assert learn_stuck_reports([frame], ["a", "b"], default=3) == 4  # twice the two repeats in a row
    text = bands_yaml(read_fleet(SEEDS), MODEL, {"current_a": (1.0, 2.0)}, "here", stuck_reports=90)
    assert "nominal: [1.0, 2.0]" in text and "skab-pump: {stuck_reports: 90}" in text


def test_signals_map_by_name_or_as_told_and_never_to_nothing() -> None:
    spec = read_fleet(SEEDS).models[MODEL]
    assert resolve_signals(["Current A", "voltage_v"], MODEL, spec) == {"Current A": "current_a", "voltage_v": "voltage_v"}
    assert resolve_signals(["Current", "rpm"], MODEL, spec, {"Current": "current_a", "rpm": ""}) == {"Current": "current_a"}
    with pytest.raises(ImportProblem, match="signal 'rpm' maps to nothing in model 'skab-pump'"):
        resolve_signals(["rpm"], MODEL, spec)
    assert robot_ids(["valve1/1.csv", "valve2/1.csv"]) == {"valve1/1.csv": "valve1-1", "valve2/1.csv": "valve2-1"}
    assert robot_ids(["runs/a.csv"], "pump-7") == {"runs/a.csv": "pump-7"}


@pytest.mark.parametrize(("args", "message"), [
    (["--model", MODEL], "manifest.yaml: no manifest"),
    (["--model", "toaster"], "unknown robot model 'toaster'"),
    (["--model", MODEL, "--map", "Current=current_a", "--map", "nope"], "--map 'nope': expected COLUMN=SIGNAL"),
    (["--model", MODEL], "signal 'Current' maps to nothing in model 'skab-pump'"),
])
def test_bad_input_is_one_line_and_exit_2(folder: Path, args: list[str], message: str) -> None:
    if "no manifest" in message:
        (folder / "manifest.yaml").unlink()
    result = CliRunner().invoke(app, ["import", str(folder), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output.replace("\n", " ") and "Traceback" not in result.output


def test_eval_scores_the_workers_detectors_on_a_folder_imported_as_a_model(folder: Path) -> None:
    result = CliRunner().invoke(app, ["eval", "--data", str(folder), "--model", "toaster"])
    assert result.exit_code == 2 and "unknown robot model 'toaster'" in result.output
    (folder / "manifest.yaml").write_text("normal: [runs/healthy.csv]\nsignals: [pressure_bar, voltage_v, Current]\n")
    result = CliRunner().invoke(app, ["eval", "--data", str(folder), "--model", MODEL])
    assert result.exit_code == 2 and "signal 'Current' maps to nothing" in result.output.replace("\n", " ")

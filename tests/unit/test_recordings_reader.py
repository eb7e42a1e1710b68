"""The format-(b) reader on small generated folders: what it reads, and every refusal in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from streams.analysis.recordings import RecordingError, load_recordings


def run_frame(n: int = 20, *, start: float = 1.7e9, anomaly: list[int] | None = None, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame({
        "timestamp": start + np.arange(n, dtype=float),
        "a": rng.normal(size=n),
        "b": rng.integers(0, 10, size=n),
        "anomaly": anomaly if anomaly is not None else [0] * n,
    })


def folder(tmp_path: Path, manifest: str, runs: dict[str, pl.DataFrame], *, iso: bool = False) -> Path:
    (tmp_path / "manifest.yaml").write_text(manifest)
    for name, frame in runs.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if iso:
            frame = frame.with_columns(
                pl.from_epoch(pl.col("timestamp").cast(pl.Int64), time_unit="s")
                .dt.strftime("%Y-%m-%dT%H:%M:%S+00:00").alias("timestamp"))
        if name.endswith(".parquet"):
            frame.write_parquet(path)
        else:
            frame.write_csv(path)
    return tmp_path


def test_reads_csv_and_parquet_epoch_and_iso_sorted_with_types(tmp_path: Path) -> None:
    shuffled = run_frame(10, anomaly=[0] * 5 + [1] * 5).reverse()
    root = folder(tmp_path, "normal: [runs/ok.csv, runs/ok2.parquet]\n",
                  {"runs/ok.csv": run_frame(seed=1), "runs/ok2.parquet": run_frame(seed=2), "runs/bad.csv": shuffled})
    rec = load_recordings(root)
    assert [r.name for r in rec.runs] == ["runs/bad.csv", "runs/ok.csv", "runs/ok2.parquet"]
    assert [r.normal for r in rec.runs] == [False, True, True]
    assert rec.signals == ("a", "b") and rec.condition is None
    bad = rec.runs[0].frame
    assert bad.schema == pl.Schema({"timestamp": pl.Float64, "a": pl.Float64, "b": pl.Float64, "anomaly": pl.Int8})
    assert bad["timestamp"].is_sorted() and bad["anomaly"].to_list() == [0] * 5 + [1] * 5


def test_iso_text_with_offsets_and_naive_is_utc(tmp_path: Path) -> None:
    frame = pl.DataFrame({"timestamp": ["2024-01-01T00:00:01+01:00", "2024-01-01 00:00:00", "2024-01-01T00:00:02Z"],
                          "a": [1.0, 2.0, 3.0], "anomaly": [0, 0, 0]})
    frame.write_csv(tmp_path / "r.csv")
    (tmp_path / "manifest.yaml").write_text("normal: [r.csv]\n")
    ts = load_recordings(tmp_path).runs[0].frame["timestamp"].to_list()
    assert ts == [1704063601.0, 1704067200.0, 1704067202.0]


def test_iso_folder_and_condition_column(tmp_path: Path) -> None:
    frames = {f"r{i}.csv": run_frame(seed=i).with_columns(mode=pl.lit(["slow", "fast"][i % 2])) for i in range(3)}
    root = folder(tmp_path, "normal: [r0.csv, r1.csv]\ncondition: mode\nsignals: [a]\n", frames, iso=True)
    rec = load_recordings(root)
    assert rec.condition == "mode" and rec.signals == ("a",)
    assert rec.runs[0].frame.columns == ["timestamp", "a", "anomaly", "mode"]
    assert rec.runs[1].frame["mode"][0] == "fast"
    assert rec.runs[0].frame["timestamp"][0] == pytest.approx(1.7e9)


def test_semicolon_csv_is_read(tmp_path: Path) -> None:
    run_frame().write_csv(tmp_path / "r.csv", separator=";")
    (tmp_path / "manifest.yaml").write_text("normal: r.csv\n")
    assert load_recordings(tmp_path).signals == ("a", "b")


@pytest.mark.parametrize(("manifest", "runs", "problem"), [
    (None, {"r.csv": run_frame()}, "no manifest"),
    ("normal: [gone.csv]\n", {"r.csv": run_frame()}, "names a normal run 'gone.csv'"),
    ("normal: []\n", {"r.csv": run_frame()}, "no normal run"),
    ("condition: a\n", {"r.csv": run_frame()}, "no normal run"),
    ("normal: [r.csv]\nthreshold: 3\n", {"r.csv": run_frame()}, "unknown key(s) ['threshold']"),
    ("normal: [r.csv]\n", {"r.csv": run_frame().drop("timestamp")}, "missing column(s) ['timestamp']"),
    ("normal: [r.csv]\n", {"r.csv": run_frame().with_columns(timestamp=pl.lit("yesterday"))},
     "row 1 is 'yesterday', neither ISO 8601 nor epoch seconds"),
    ("normal: [r.csv]\n", {"r.csv": run_frame(3).with_columns(timestamp=pl.Series([1.0, None, 3.0]))},
     "`timestamp` cannot be sorted: row 2"),
    ("normal: [r.csv]\n", {"r.csv": run_frame(), "f.csv": run_frame(3, anomaly=[0, 2, 1])},
     "`anomaly` must be 0 or 1, found [2.0]"),
    ("normal: [r.csv]\n", {"r.csv": run_frame(), "f.csv": run_frame().drop("anomaly")}, "no `anomaly` column"),
    ("normal: [r.csv]\n", {"r.csv": run_frame(3, anomaly=[0, 1, 0])}, "named normal-only in the manifest but has 1"),
    ("normal: [r.csv]\n", {"r.csv": pl.DataFrame({"timestamp": [1.0], "anomaly": [0], "name": ["x"]})},
     "no numeric signal column"),
    ("normal: [r.csv]\nsignals: [a, zz]\n", {"r.csv": run_frame()}, "missing column(s) ['zz']"),
    ("normal: [r.csv]\n", {"r.csv": run_frame(), "f.csv": run_frame().drop("b")}, "missing column(s) ['b']"),
    ("normal: [r.csv]\ncondition: mode\n", {"r.csv": run_frame()}, "missing column(s) ['mode']"),
    ("normal: [r.csv\n", {"r.csv": run_frame()}, "not YAML"),
])
def test_refusals_name_the_file_and_the_problem(tmp_path: Path, manifest: str | None,
                                                runs: dict[str, pl.DataFrame], problem: str) -> None:
    for name, frame in runs.items():
        frame.write_csv(tmp_path / name)
    if manifest is not None:
        (tmp_path / "manifest.yaml").write_text(manifest)
    with pytest.raises(RecordingError) as err:
        load_recordings(tmp_path)
    message = str(err.value)
    assert problem in message and "\n" not in message
    assert message.startswith(str(tmp_path))
    assert isinstance(err.value, ValueError)


def test_parquet_datetime_timestamps_boolean_labels_and_hidden_files(tmp_path: Path) -> None:
    stamps = pl.Series([1_700_000_000_000_000, 1_700_000_001_000_000], dtype=pl.Datetime("us"))
    pl.DataFrame({"timestamp": stamps, "a": [1.0, 2.0], "anomaly": [False, False]}).write_parquet(tmp_path / "n.parquet")
    pl.DataFrame({"timestamp": stamps.dt.replace_time_zone("Europe/Paris"), "a": [1.0, 2.0],
                  "anomaly": [False, True]}).write_parquet(tmp_path / "f.parquet")
    (tmp_path / ".cache").mkdir()
    pl.DataFrame({"junk": ["x"]}).write_csv(tmp_path / ".cache" / "junk.csv")
    (tmp_path / "manifest.yaml").write_text("normal: [n.parquet]\n")
    rec = load_recordings(tmp_path)
    assert [r.name for r in rec.runs] == ["f.parquet", "n.parquet"]
    assert rec.runs[1].frame["timestamp"].to_list() == [1_700_000_000.0, 1_700_000_001.0]
    assert rec.runs[0].frame["timestamp"][0] == 1_700_000_000.0 - 3600  # 22:13 in Paris is 21:13 UTC
    assert rec.runs[0].frame["anomaly"].to_list() == [0, 1]


@pytest.mark.parametrize(("manifest", "problem"), [
    ("normal_head: 0\n", "`normal_head:` must be a number of rows"),
    ("normal_head: many\n", "`normal_head:` must be a number of rows"),
    ("normal_head: 20\n", "20 rows, none left to score after normal_head (20)"),
])
def test_normal_head_refusals(tmp_path: Path, manifest: str, problem: str) -> None:
    run_frame().write_csv(tmp_path / "r.csv")
    (tmp_path / "manifest.yaml").write_text(manifest)
    with pytest.raises(RecordingError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        load_recordings(tmp_path)


def test_normal_head_needs_no_normal_run_and_allows_labels_in_the_head(tmp_path: Path) -> None:
    run_frame(anomaly=[1] * 3 + [0] * 17).write_csv(tmp_path / "r.csv")
    (tmp_path / "manifest.yaml").write_text("normal_head: 5\n")
    rec = load_recordings(tmp_path)
    assert rec.normal_head == 5 and rec.signals == ("a", "b") and not rec.runs[0].normal

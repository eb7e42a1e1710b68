"""`fleet-twin eval --data FOLDER` scores a folder by what it holds: NAB's layout or labelled recordings.

The scorers are tested on their own (test_nab_folder, test_recordings_eval);
here the command line picks the right one for a user's folder, generated small.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import polars as pl
from typer.testing import CliRunner

from streams.cli.main import app
from twin.score import nab


def nab_folder(root: Path) -> Path:
    """Two 5-minute series, one planted level shift each inside its label window."""
    windows = {}
    for n, name in enumerate(("a/one.csv", "b/two.csv")):
        rng = random.Random(n)
        stamps = [f"2015-03-{2 + i // 288:02d} {i % 288 // 12:02d}:{i % 12 * 5:02d}:00" for i in range(1400)]
        values = [50.0 + rng.gauss(0.0, 1.0) + (12.0 if i >= 1100 else 0.0) for i in range(1400)]
        path = root / "data" / name
        path.parent.mkdir(parents=True)
        path.write_text("timestamp,value\n" + "".join(f"{t},{v!r}\n" for t, v in zip(stamps, values, strict=True)))
        windows[name] = [[stamps[1040] + ".000000", stamps[1160] + ".000000"]]
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    (root / "config").mkdir()
    (root / "config" / "profiles.json").write_text(json.dumps({
        name: {"CostMatrix": {"tpWeight": c.tp, "fpWeight": c.fp, "fnWeight": c.fn, "tnWeight": 1.0}}
        for name, c in nab.PROFILES.items()}))
    return root


def recordings_folder(root: Path) -> Path:
    """Two healthy runs and one with correlated signals pulled apart for a while."""
    root.mkdir()
    for n, name in enumerate(("healthy-1.csv", "healthy-2.csv", "fault.csv")):
        rng = np.random.default_rng(n)
        x = rng.multivariate_normal([2.0, 2.0], [[1.0, 0.9], [0.9, 1.0]], size=900)
        anomaly = np.zeros(900, dtype=np.int8)
        if name == "fault.csv":
            x[500:700] += [3.0, -3.0]
            anomaly[500:700] = 1
        pl.DataFrame({"timestamp": 1.7e9 + np.arange(900.0), "a": x[:, 0], "b": x[:, 1], "anomaly": anomaly}
                     ).write_csv(root / name)
    (root / "manifest.yaml").write_text("normal: [healthy-1.csv, healthy-2.csv]\n")
    return root


def test_a_nab_layout_folder_gets_nab_scores(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["eval", "--data", str(nab_folder(tmp_path / "nab"))], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "out-of-fold, leave one file out" in result.output, result.output
    assert all(p in result.output for p in ("standard", "reward_low_FP_rate", "reward_low_FN_rate")), result.output


def test_a_recordings_folder_gets_outlier_scores(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["eval", "--data", str(recordings_folder(tmp_path / "rec"))], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    header, *rows = [line for line in result.output.splitlines() if line.strip()][1:]
    assert "F1" in header and "FAR" in header and "runs detected" in header, result.output
    assert rows and all(" 1/1 " in row for row in rows), result.output  # the fault run is found by every row

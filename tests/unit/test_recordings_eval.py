"""`eval --data PATH` for labelled recordings (format b) on small generated folders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from streams.analysis.eval import recordings as ev
from streams.analysis.recordings import load_recordings
from twin.detect.multivariate import DEFAULT

COV = np.array([[1.0, 0.9, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 1.0]])
FAULT = np.array([3.0, -3.0, 0.0])  # each signal within 3 sd, against the correlation


def run(n: int, *, seed: int, fault: tuple[int, int] | None = None, speed: float | None = None,
        iso: bool = False) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    level = 2.0 * (speed if speed is not None else 1.0)
    x = rng.multivariate_normal([level, level, 0.0], COV, size=n)
    anomaly = np.zeros(n, dtype=np.int8)
    if fault:
        x[fault[0]:fault[1]] += FAULT
        anomaly[fault[0]:fault[1]] = 1
    ts = 1.7e9 + np.arange(n, dtype=float)
    frame = pl.DataFrame({"timestamp": ts, "a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "anomaly": anomaly})
    if iso:
        frame = frame.with_columns(pl.from_epoch(pl.col("timestamp").cast(pl.Int64), time_unit="s")
                                   .dt.strftime("%Y-%m-%dT%H:%M:%SZ").alias("timestamp"))
    if speed is not None:
        frame = frame.with_columns(speed=pl.lit(speed))
    return frame


def write(root: Path, manifest: str, runs: dict[str, pl.DataFrame]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.yaml").write_text(manifest)
    for name, frame in runs.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(root / name) if name.endswith(".parquet") else frame.write_csv(root / name)
    return root


def row(table: pl.DataFrame, prefix: str) -> dict[str, object]:
    return table.filter(pl.col("method").str.starts_with(prefix)).row(0, named=True)


def test_table_without_condition_csv_parquet_iso_and_epoch(tmp_path: Path) -> None:
    root = write(tmp_path, "normal: [runs/h1.csv, runs/h2.parquet, runs/h3.csv]\n", {
        "runs/h1.csv": run(400, seed=1, iso=True), "runs/h2.parquet": run(400, seed=2),
        "runs/h3.csv": run(400, seed=3),
        "runs/f1.csv": run(400, seed=4, fault=(200, 300), iso=True), "runs/f2.parquet": run(400, seed=5, fault=(100, 150)),
    })
    table = ev.recordings_table(root)
    assert table.columns == ev.COLUMNS and table.height == 2
    fixed = row(table, "committed defaults")
    assert fixed["runs"] == 5 and fixed["runs detected"] == "2/2" and str(fixed["false runs"]).endswith("/3")
    assert isinstance(fixed["F1"], float) and fixed["F1"] > 0.6 and fixed["recall"] == 1.0
    assert isinstance(fixed["FAR"], float) and fixed["FAR"] < 0.1
    assert isinstance(fixed["median delay s"], float) and 0 <= fixed["median delay s"] < 10
    assert fixed["unknown rows"] == 0
    searched = row(table, "threshold, averaging out-of-fold (5 folds")
    assert searched["runs detected"] == "2/2" and searched["false runs"] == "0/3"
    assert isinstance(searched["F1"], float) and searched["F1"] > 0.8


def test_condition_column_unseen_mode_is_unknown_not_an_alarm(tmp_path: Path) -> None:
    slow = {f"slow{i}.csv": run(300, seed=i, speed=1.0).with_columns(mode=pl.lit("slow")).drop("speed")
            for i in range(3)}
    # a healthy run in a mode the normal runs never show: its levels are far from theirs
    fast = run(300, seed=9, speed=4.0).with_columns(mode=pl.lit("fast")).drop("speed")
    broken = run(300, seed=10, speed=1.0, fault=(100, 200)).with_columns(mode=pl.lit("slow")).drop("speed")
    root = write(tmp_path, "normal: [slow0.csv, slow1.csv, slow2.csv]\ncondition: mode\n",
                 {**slow, "fast.csv": fast, "broken.csv": broken})
    fixed = row(ev.recordings_table(root), "committed defaults")
    assert fixed["unknown rows"] == 300
    assert fixed["false runs"] == "0/3" and fixed["runs detected"] == "1/1"  # the fast run is not scored
    # without the condition column the fast run is scored against the slow runs, and alarms
    plain = write(tmp_path / "plain", "normal: [slow0.csv, slow1.csv, slow2.csv]\n",
                  {k: v.drop("mode") for k, v in {**slow, "fast.csv": fast}.items()})
    assert row(ev.recordings_table(plain), "committed defaults")["false runs"] == "1/4"


def test_numeric_set_point_between_seen_ones_is_interpolated(tmp_path: Path) -> None:
    root = write(tmp_path, "normal: [s1a.csv, s1b.csv, s3a.csv, s3b.csv]\ncondition: speed\n", {
        "s1a.csv": run(300, seed=1, speed=1.0), "s1b.csv": run(300, seed=2, speed=1.0),
        "s3a.csv": run(300, seed=3, speed=3.0), "s3b.csv": run(300, seed=4, speed=3.0),
        "s2.csv": run(300, seed=5, speed=2.0), "s2-fault.csv": run(300, seed=6, speed=2.0, fault=(150, 250)),
    })
    source = ev.RecordingSource(load_recordings(root))
    base = ev.Choice(("a", "b", "c"))
    quiet = ev.run_scores(source, ["s2.csv"], base)[0]
    caught = ev.run_scores(source, ["s2-fault.csv"], base)[0]
    assert not quiet.alarmed and quiet.counts.tn == 300
    assert caught.alarmed and caught.counts.recall > 0.8


def test_each_normal_run_is_scored_by_a_baseline_fitted_without_it(tmp_path: Path) -> None:
    # h-odd differs from the other normal runs: scored out-of-fold it must look unusual
    odd = run(300, seed=7).with_columns(pl.col("c") + 6.0)
    root = write(tmp_path, "normal: [h1.csv, h2.csv, odd.csv]\n",
                 {"h1.csv": run(300, seed=1), "h2.csv": run(300, seed=2), "odd.csv": odd})
    source = ev.RecordingSource(load_recordings(root))
    odd_scored = source.scored("odd.csv", frozenset(), ev.Choice(("a", "b", "c")))
    assert np.nanmedian(odd_scored.raw) > 5.0  # in-sample it would be about 1
    assert ev.run_scores(source, ["odd.csv"], ev.Choice(("a", "b", "c")))[0].alarmed


def test_threshold_search_never_sees_the_runs_it_scores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write(tmp_path, "normal: [h1.csv, h2.csv, h3.csv]\n", {
        **{f"h{i}.csv": run(200, seed=i) for i in (1, 2, 3)},
        **{f"f{i}.csv": run(200, seed=10 + i, fault=(50, 120)) for i in (1, 2, 3)},
    })
    seen: list[tuple[set[str], set[str]]] = []
    real_search, real_scored = ev.search, ev.RecordingSource.scored
    used: set[str] = set()

    def spy_scored(self: ev.RecordingSource, name: str, excluded: frozenset[str], choice: ev.Choice) -> ev.Scored:
        used.add(name)
        used.update(r.name for r in self.recordings.normal if r.name not in excluded and r.name != name)
        return real_scored(self, name, excluded, choice)

    def spy_search(source: ev.Source, train: Sequence[str], grid: Sequence[ev.Choice], max_far: float) -> ev.Choice:
        used.clear()
        choice = real_search(source, train, grid, max_far)
        seen.append((set(train), set(used)))
        return choice

    monkeypatch.setattr(ev, "search", spy_search)
    monkeypatch.setattr(ev.RecordingSource, "scored", spy_scored)
    ev.recordings_table(root)
    assert len(seen) == 5  # five folds of six runs
    names = {f"{k}{i}.csv" for k in "hf" for i in (1, 2, 3)}
    for train, touched in seen:
        held_out = names - train
        assert held_out and not touched & held_out  # neither scored nor fitted on in the search


def test_committed_time_constants_are_in_readings_of_the_cadence(tmp_path: Path) -> None:
    assert ev.committed(1.0) == DEFAULT
    slow = ev.committed(600.0)
    assert (slow.rise_s, slow.fall_s) == (1800.0, 12000.0) and slow.threshold == DEFAULT.threshold
    frames = {f"r{i}.csv": run(50, seed=i).with_columns(pl.col("timestamp") * 1.0 + pl.int_range(50) * 599.0)
              for i in range(2)}
    rec = load_recordings(write(tmp_path, "normal: [r0.csv]\n", frames))
    assert ev.cadence(rec) == 600.0


def test_normal_head_scores_each_run_against_its_own_first_rows(tmp_path: Path) -> None:
    # runs at different levels (another day, another rig): a shared baseline would call them all anomalous
    runs = {f"day{i}.csv": run(300, seed=i, fault=(200, 260) if i % 2 else None)
            .with_columns(pl.col("a") + 10.0 * i, pl.col("b") + 10.0 * i) for i in range(4)}
    root = write(tmp_path, "normal_head: 100\n", runs)
    rec = load_recordings(root)
    assert rec.normal_head == 100 and not any(r.normal for r in rec.runs)
    fixed = row(ev.recordings_table(root), "committed defaults")
    assert fixed["runs"] == 4 and fixed["runs detected"] == "2/2" and fixed["unknown rows"] == 0
    assert fixed["false runs"] == "0/2"  # FAR comes only from the alarm's hysteresis after each fault
    assert isinstance(fixed["FAR"], float) and fixed["FAR"] < 0.2
    assert isinstance(fixed["recall"], float) and fixed["recall"] > 0.9
    source = ev.HeadSource(rec, 100)
    assert len(source.scored("day1.csv", frozenset(), ev.Choice(rec.signals)).ts) == 200  # the head is not scored

"""SKAB out-of-fold by folder: the real search never sees the folder it is scored on.

A small SKAB-shaped folder is generated (three experiment folders, `;`
separated, `datetime` column); the search of `streams.analysis.eval.recordings`
is wrapped by a spy that records every run it scores while choosing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from streams.analysis.eval import recordings as ev
from streams.analysis.eval import skab
from twin.score.folds import LeakError, leave_one_group_out, out_of_fold

SMALL_GRID = tuple(c for c in skab.GRID if c.params.smooth_s == 5.0 and c.params.shrinkage == 0.2
                   and c.channels == skab.CHANNELS and c.params.rise_s == 0.0)


def skab_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for k, name in enumerate(skab.FOLDERS):
        (root / "skab" / "data" / name).mkdir(parents=True)
        for i in range(2):
            n = 520
            x = rng.normal(size=(n, len(skab.ALL_CHANNELS))) * 0.1 + 1.0
            anomaly = np.zeros(n)
            anomaly[440 + 10 * k: 500] = 1.0
            x[anomaly > 0, 2] += 0.5 + 0.3 * k  # the current rises during the anomaly
            stamps = pl.datetime_range(pl.datetime(2020, 3, 9), pl.datetime(2020, 3, 9) + pl.duration(seconds=n - 1),
                                       "1s", eager=True)
            frame = pl.DataFrame({"datetime": stamps.dt.strftime("%Y-%m-%d %H:%M:%S"),
                                  **{c: x[:, j] for j, c in enumerate(skab.ALL_CHANNELS)},
                                  "anomaly": anomaly, "changepoint": np.zeros(n)})
            frame.write_csv(root / "skab" / "data" / name / f"{i}.csv", separator=";")
    return root


def test_search_sees_only_the_other_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = skab_folder(tmp_path)
    real_search, real_scored = ev.search, ev.HeadSource.scored
    searches: list[tuple[set[str], set[str]]] = []
    touched: set[str] = set()

    def spy_scored(self: ev.HeadSource, name: str, excluded: frozenset[str], choice: ev.Choice) -> ev.Scored:
        touched.add(name)
        return real_scored(self, name, excluded, choice)

    def spy_search(source: ev.Source, train: Sequence[str], grid: Sequence[ev.Choice], max_far: float) -> ev.Choice:
        touched.clear()
        choice = real_search(source, train, grid, max_far)
        searches.append((set(train), set(touched)))
        return choice

    monkeypatch.setattr(ev, "search", spy_search)
    monkeypatch.setattr(ev.HeadSource, "scored", spy_scored)
    table = skab.skab_table(data_dir, SMALL_GRID)
    assert len(searches) == 3
    for held_out, (train, seen) in zip(skab.FOLDERS, searches, strict=True):
        assert seen == train and {skab.folder(n) for n in seen} == set(skab.FOLDERS) - {held_out}
    methods = table["method"].to_list()
    assert methods[0] == "ours, out-of-fold by folder (pooled)"
    assert [m for m in methods if "held out" in m] == [f"ours, out-of-fold: {f} held out" for f in skab.FOLDERS]
    assert any(m.startswith("ours, in-sample") for m in methods)
    f1 = table.row(0, named=True)["F1"]
    assert isinstance(f1, float) and f1 > 0.5  # the rise in current is found


def test_a_search_that_could_see_its_folder_is_refused(tmp_path: Path) -> None:
    runs = skab.source(skab_folder(tmp_path))
    # folds by file, but a unit is its folder: the held-out file's folder is also in training
    with pytest.raises(LeakError):
        out_of_fold(leave_one_group_out(list(runs.names), lambda n: n), search=lambda t: SMALL_GRID[0],
                    score=lambda c, t: [], key=skab.folder)


def test_recordings_match_the_files(tmp_path: Path) -> None:
    rec = skab.skab_recordings(skab_folder(tmp_path))
    assert [r.name for r in rec.runs] == [f"{f}/{i}" for f in skab.FOLDERS for i in range(2)]
    frame = rec.runs[0].frame
    assert frame.columns == ["timestamp", *skab.ALL_CHANNELS, "anomaly"]
    assert frame["timestamp"][1] - frame["timestamp"][0] == 1.0 and frame["anomaly"].sum() == 60

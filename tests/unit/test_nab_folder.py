"""`nab_folder_table` on a NAB-layout folder generated here: the `eval --data PATH` path, and the out-of-fold guard.

The folder holds a few synthetic series (5-minute readings, noise, one planted
anomaly each inside its label window) in two categories, NAB's
`labels/combined_windows.json` and `config/profiles.json`; with and without a
`results/` folder of published scores.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from streams.analysis.eval import nab as ev
from twin.score import nab

START = datetime(2015, 3, 2, tzinfo=UTC)
ROWS = 1400
STEP = timedelta(minutes=5)
FILES = {"cat_a/spike.csv": 1, "cat_a/shift.csv": 2, "cat_b/spike2.csv": 3, "cat_b/calm.csv": 4}


def _stamp(i: int) -> str:
    return (START + i * STEP).strftime("%Y-%m-%d %H:%M:%S")


def make_folder(root: Path, with_results: bool = False) -> Path:
    windows: dict[str, list[list[str]]] = {}
    for name, seed in FILES.items():
        rng = random.Random(seed)
        values = [50.0 + rng.gauss(0.0, 1.0) for _ in range(ROWS)]
        at = 1000 + 20 * seed
        if "shift" in name:
            for i in range(at, ROWS):
                values[i] += 9.0
        elif "spike" in name:
            values[at] += 25.0
        path = root / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("timestamp,value\n" + "".join(f"{_stamp(i)},{v!r}\n" for i, v in enumerate(values)))
        windows[name] = [[_stamp(at - 60) + ".000000", _stamp(at + 60) + ".000000"]] if "calm" not in name else []
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    (root / "config").mkdir()
    profiles = {
        name: {"CostMatrix": {"tpWeight": c.tp, "fpWeight": c.fp, "fnWeight": c.fn, "tnWeight": 1.0}}
        for name, c in nab.PROFILES.items()
    }
    (root / "config" / "profiles.json").write_text(json.dumps(profiles))
    if with_results:
        for profile in ev.PROFILE_NAMES:
            folder = root / "results" / "ARTime"
            folder.mkdir(parents=True, exist_ok=True)
            lines = "".join(f"ARTime,{name},0.5,0.25,0,0,0,0,{ROWS}\n" for name in FILES)
            (folder / f"ARTime_{profile}_scores.csv").write_text("Detector,File,Threshold,Score,TP,TN,FP,FN,Total_Count\n" + lines)
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_folder(tmp_path_factory.mktemp("nab"))


def test_any_nab_folder_gets_every_profile_out_of_fold_first(folder: Path) -> None:
    assert ev.is_nab_folder(folder)
    table = ev.nab_folder_table(folder)
    assert set(table["profile"]) == set(ev.PROFILE_NAMES)
    assert set(table["source"]) == {"ours"}  # no results/: no published rows
    for profile in ev.PROFILE_NAMES:
        kinds = table.filter(table["profile"] == profile)["threshold_kind"].to_list()
        assert kinds == [ev.LOFO, ev.LOCO, ev.FIXED, ev.IN_SAMPLE]
    standard = {r["threshold_kind"]: r["score"] for r in table.filter(table["profile"] == "standard").iter_rows(named=True)}
    # the planted anomalies are plain: the committed parameters at the fixed threshold find them
    assert standard[ev.FIXED] > 50.0, standard
    assert standard[ev.LOFO] > 0.0, standard


def test_published_rows_only_with_results(tmp_path: Path) -> None:
    root = make_folder(tmp_path, with_results=True)
    table = ev.nab_folder_table(root)
    published = table.filter(table["source"] == "published")
    assert published.height == 3 and set(published["detector"]) == {"ARTime"}
    windows = 3  # calm.csv has none
    raw = 0.25 * len(FILES)
    assert published.filter(published["profile"] == "standard")["score"][0] == pytest.approx(
        round(nab.normalise(raw, windows, nab.PROFILES["standard"]), 2)
    )


def test_the_search_never_sees_the_file_it_scores(folder: Path) -> None:
    """A spy around the real search: for every fold, the scored files are not among those it was shown."""
    units = ev.score_grid(ev.load_folder(folder))
    shown: list[set[str]] = []

    def spy(train: object, costs: nab.Costs) -> ev.Choice:
        files = list(train)  # type: ignore[call-overload]
        shown.append({u.file.name for u in files})
        return ev.search(files, costs)

    for by_category in (False, True):
        shown.clear()
        res = ev.out_of_fold(units, nab.PROFILES["standard"], by_category=by_category, choose=spy)
        assert len(shown) == len(res.folds) == (2 if by_category else len(FILES))
        for seen, fold in zip(shown, res.folds, strict=True):
            assert set(fold.result) and not set(fold.result) & seen
            assert set(fold.result) | seen == set(FILES)


def test_one_file_gets_no_out_of_fold_row(tmp_path: Path) -> None:
    root = make_folder(tmp_path)
    windows = json.loads((root / "labels" / "combined_windows.json").read_text())
    (root / "labels" / "combined_windows.json").write_text(json.dumps({"cat_a/spike.csv": windows["cat_a/spike.csv"]}))
    table = ev.nab_folder_table(root)
    assert ev.LOFO not in set(table["threshold_kind"]) and ev.LOCO not in set(table["threshold_kind"])
    assert ev.FIXED in set(table["threshold_kind"])

"""CI guard: the multivariate detector on SKAB stays at the figures it reached.

Reached (frozen `multivariate.DEFAULT`, all 34 labelled files pooled):
F1 0.797, FAR 12.0 %, MAR 26.8 %. Floors: F1 0.02 under, FAR and MAR
2 points over. Published best: Conv-AE F1 0.78 at FAR 13.6 %, MAR 28.0 %.
Reads the shared data in place (no copy); runs in well under a second.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.analysis.eval.skab import (
    FOLDERS,
    TRAIN_ROWS,
    Run,
    read_runs,
    score_runs,
    skab_table,
)
from streams.settings import Settings


@pytest.fixture(scope="module")
def data_dir() -> Path:
    return Settings().data_dir


@pytest.fixture(scope="module")
def runs(data_dir: Path) -> list[Run]:
    return read_runs(data_dir)


def test_every_labelled_file_is_read(runs: list[Run]) -> None:
    assert len(runs) == 34
    test_rows = sum(len(r.anomaly) - TRAIN_ROWS for r in runs)
    anomalous = sum(int(r.anomaly[TRAIN_ROWS:].sum()) for r in runs)
    assert test_rows == 23_801
    assert anomalous / test_rows == pytest.approx(0.537, abs=0.001)


def test_pooled_figures_hold_their_floor(runs: list[Run]) -> None:
    counts = score_runs(runs)
    assert counts.tp + counts.fp + counts.fn + counts.tn == 23_801
    assert counts.f1 >= 0.777
    assert counts.far <= 0.140
    assert counts.mar <= 0.289


def test_table_puts_ours_beside_the_published(data_dir: Path) -> None:
    table = skab_table(data_dir)
    methods = table["method"].to_list()
    assert methods[0].startswith("ours")
    assert len([m for m in methods if m.startswith("ours: ") and "only" in m]) == len(FOLDERS)
    conv = table.filter(table["method"] == "Conv-AE (published)").row(0, named=True)
    assert (conv["F1"], conv["FAR"], conv["MAR"]) == (0.78, 0.136, 0.28)
    ours = table.row(0, named=True)
    assert ours["F1"] > conv["F1"] and ours["FAR"] < conv["FAR"]

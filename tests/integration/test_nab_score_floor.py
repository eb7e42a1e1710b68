"""CI guard: our detector's NAB subset score must not regress (docs/ANOMALY.md: 70.6 standard)."""

from __future__ import annotations

from streams.analysis.eval.nab import nab_table
from streams.settings import Settings


def test_nab_standard_score_stays_above_its_floor() -> None:
    table = nab_table(Settings().data_dir)
    ours = table.filter((table["source"] == "ours") & (table["profile"] == "standard"))
    assert ours.height == 2  # in-sample optimised threshold and the threshold fixed in advance
    assert ours["score"].min() >= 68.0, ours

"""CI guard: the univariate detector on the NAB 13-file dev subset, out-of-fold first.

Runs `twin.detect.univariate` over the 13 files (fresh state per file, rows
in file order, as NAB feeds them), scores with `twin.score.nab` (which
reproduces NAB's published per-file scores, tests/unit/test_nab_score.py) and
checks the figures docs/ANOMALY.md quotes against floors about two points
under what the committed code reached. The headline is out-of-fold (leave one
file out: the threshold and the quiet horizon are searched on the other 12
files only); the fixed-threshold figure uses the committed parameters, which
were chosen by hand while looking at these files.
"""

from __future__ import annotations

import math

import msgspec
import numpy as np
import polars as pl
import pytest
from numpy.typing import NDArray

from streams.analysis.eval import nab as ev
from streams.settings import Settings
from twin.detect import univariate
from twin.score import nab

REACHED = {"oof_standard": 62.20, "oof_low_fp": 57.58, "fixed_standard": 65.90}
"""What the committed code reached (bench/anomaly_nab.py prints it)."""

FLOORS = {kind: score - 2.0 for kind, score in REACHED.items()}

ARTIME = 65.4
"""Best published figure on this subset (ARTime, standard profile)."""


@pytest.fixture(scope="module")
def corpus() -> list[ev.NabFile]:
    data = Settings().data_dir
    assert ev.is_nab_folder(ev.nab_root(data)), f"NAB data not found under {data}"
    return ev.load_corpus(data)


@pytest.fixture(scope="module")
def table() -> pl.DataFrame:
    """The table docs/ANOMALY.md shows, through the function `fleet-twin eval --data` calls."""
    return ev.nab_table(Settings().data_dir)


@pytest.fixture(scope="module")
def committed(corpus: list[ev.NabFile]) -> list[NDArray[np.float64]]:
    return ev.run_corpus(corpus)


def _figure(table: pl.DataFrame, profile: str, kind: str, detector: str = ev.OURS) -> float:
    rows = table.filter((pl.col("profile") == profile) & (pl.col("threshold_kind") == kind) & (pl.col("detector") == detector))
    assert rows.height == 1, (profile, kind, detector)
    return float(rows["score"][0])


def test_out_of_fold_standard_and_low_fp(table: pl.DataFrame) -> None:
    """Leave one file out: every file scored at what was chosen on the 12 others; the table's first rows."""
    assert _figure(table, "standard", ev.LOFO) >= FLOORS["oof_standard"]
    assert _figure(table, "reward_low_FP_rate", ev.LOFO) >= FLOORS["oof_low_fp"]
    assert _figure(table, "standard", ev.LOFO) == pytest.approx(REACHED["oof_standard"], abs=0.005)
    for profile in ev.PROFILE_NAMES:
        assert table.filter(pl.col("profile") == profile)["threshold_kind"][0] == ev.LOFO


def test_the_search_never_sees_the_file_it_is_scored_on(corpus: list[ev.NabFile]) -> None:
    """A spy around the real search records the files each fold showed it; the scored file is never among them.

    On the 6 shortest files (real data, every parameter set of the grid), to keep the test fast.
    """
    units = ev.score_grid(sorted(corpus, key=lambda f: len(f.values))[:6])
    seen: list[set[str]] = []

    def spy(train: object, costs: nab.Costs) -> ev.Choice:
        files = list(train)  # type: ignore[call-overload]
        seen.append({u.file.name for u in files})
        return ev.search(files, costs)

    for by_category in (False, True):
        seen.clear()
        res = ev.out_of_fold(units, nab.PROFILES["standard"], by_category=by_category, choose=spy)
        assert len(seen) == len(res.folds) == (2 if by_category else 6)
        for train_names, fold in zip(seen, res.folds, strict=True):
            scored = set(fold.result)
            assert scored and not scored & train_names, fold.fold.name
            assert scored | train_names == {u.file.name for u in units}


def test_fixed_threshold_and_windows_found(corpus: list[ev.NabFile], committed: list[NDArray[np.float64]], table: pl.DataFrame) -> None:
    """`score >= UnivariateParams.alarm` (0.5) with the committed parameters: figure and windows found (19 of 25)."""
    res = ev.score_at(corpus, committed, univariate.DEFAULT.alarm, nab.PROFILES["standard"])
    assert res.score >= FLOORS["fixed_standard"], res.per_file
    assert _figure(table, "standard", ev.FIXED) == pytest.approx(res.score, abs=0.005)
    found = 0
    for f, s in zip(corpus, committed, strict=True):
        fired = s >= univariate.DEFAULT.alarm
        found += sum(bool(np.any(fired & (f.layout.window == k))) for k in range(f.layout.n_windows))
    assert found >= 17


def test_scores_are_in_unit_interval_and_deterministic(corpus: list[ev.NabFile], committed: list[NDArray[np.float64]]) -> None:
    for f, s in zip(corpus[:4], committed, strict=False):
        again = ev.run_detector(f.values, f.ts, univariate.DEFAULT)
        assert np.array_equal(s, again)
        assert np.all((s >= 0.0) & (s <= 1.0))


def test_only_event_time_enters(corpus: list[ev.NabFile]) -> None:
    """Shifting every timestamp by whole weeks changes nothing; by 6 hours it moves the daily bins."""
    f = next(c for c in corpus if c.name.endswith("art_daily_jumpsup.csv"))
    base = ev.run_detector(f.values, f.ts, univariate.DEFAULT)
    assert np.array_equal(base, ev.run_detector(f.values, f.ts + 3 * 604800.0, univariate.DEFAULT))
    assert not np.array_equal(base, ev.run_detector(f.values, f.ts + 6 * 3600.0, univariate.DEFAULT))


def test_state_size() -> None:
    """94 numbers at 24 bins; msgpack (array form) within 737 bytes with every field at its widest."""
    widths = {"quantile": univariate.VIEWS, "excess": univariate.VIEWS, "exceed": univariate.VIEWS}
    values: list[object] = []
    for f in msgspec.structs.fields(univariate.State):
        count = widths.get(f.name, univariate.DEFAULT.bins if f.name.startswith("bin_") else 0)
        one: object = 2**30 if f.name in ("n", "views_n", "exceed", "bin_n") else (True if f.type is bool else math.pi)
        values.append([one] * count if count else one)
    busy = msgspec.convert(values, univariate.State)
    assert len(msgspec.msgpack.encode(busy)) <= 737


def test_state_round_trips_through_msgpack(corpus: list[ev.NabFile]) -> None:
    """The state the twin would store decodes to the same state, and the next score is unchanged."""
    f = corpus[0]
    state = None
    for v, t in zip(f.values[:500], f.ts[:500], strict=True):
        state, _ = univariate.step(state, float(v), float(t))
    assert state is not None
    copy = msgspec.msgpack.decode(msgspec.msgpack.encode(state), type=univariate.State)
    assert copy == state
    assert univariate.step(copy, 12.0, float(f.ts[500])) == univariate.step(state, 12.0, float(f.ts[500]))


def test_published_rows_beside_ours(table: pl.DataFrame) -> None:
    assert table.height == 3 * (4 + len(ev.PUBLISHED))
    assert _figure(table, "standard", ev.PUBLISHED_KIND, "ARTime") == pytest.approx(ARTIME, abs=0.05)

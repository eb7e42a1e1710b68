"""CI guard: the univariate detector on the NAB 13-file subset must not regress.

Runs `twin.detect.univariate` with its frozen defaults over the 13 files
(fresh state per file, rows in file order, as NAB feeds them), scores with
`twin.score.nab` (which reproduces NAB's published per-file scores, see
tests/unit/test_nab_score.py) and checks the standard-profile figure against
floors set about two points under what the defaults reached when they were
frozen (see FLOORS). Figures are in-sample: the defaults were tuned on these
same files. Runs in a few seconds.
"""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest
from numpy.typing import NDArray

from streams.analysis.eval import nab as ev
from streams.settings import Settings
from twin.detect import univariate
from twin.score import nab

REACHED = {"fixed": 70.59, "optimised": 70.59}
"""Standard-profile scores of the frozen defaults (bench/anomaly_nab.py prints them)."""

FLOORS = {kind: score - 2.0 for kind, score in REACHED.items()}

ARTIME = 65.4
"""Best published figure on this subset (ARTime, standard profile)."""


@pytest.fixture(scope="module")
def corpus() -> list[ev.NabFile]:
    data = Settings().data_dir
    assert (ev.nab_root(data) / "labels" / "combined_windows.json").is_file(), f"NAB data not found under {data}"
    return ev.load_corpus(data)


@pytest.fixture(scope="module")
def scores(corpus: list[ev.NabFile]) -> list[NDArray[np.float64]]:
    return ev.run_corpus(corpus)


def test_standard_score_at_the_fixed_threshold(corpus: list[ev.NabFile], scores: list[NDArray[np.float64]]) -> None:
    """`score >= UnivariateParams.alarm` (0.5, fixed before any result was seen) as the alert rule."""
    res = ev.score_at(corpus, scores, univariate.DEFAULT.alarm, nab.PROFILES["standard"])
    assert res.score >= FLOORS["fixed"], res.per_file


def test_standard_score_at_the_optimised_threshold(corpus: list[ev.NabFile], scores: list[NDArray[np.float64]]) -> None:
    """NAB's procedure: the one threshold that maximises the subset's score."""
    res = ev.score_optimised(corpus, scores, nab.PROFILES["standard"])
    assert res.score >= FLOORS["optimised"], res.per_file


def test_most_windows_are_found(corpus: list[ev.NabFile], scores: list[NDArray[np.float64]]) -> None:
    """At the fixed threshold 22 of the 25 windows are found when frozen; fewer than 20 is a regression."""
    res = ev.score_at(corpus, scores, univariate.DEFAULT.alarm, nab.PROFILES["standard"])
    found = 0
    for f, s in zip(corpus, scores, strict=True):
        fired = s >= univariate.DEFAULT.alarm
        found += sum(bool(np.any(fired & (f.layout.window == k))) for k in range(f.layout.n_windows))
    assert found >= 20, {k: (v.tp, v.fp) for k, v in res.per_file.items()}


def test_scores_are_likelihoods_and_deterministic(corpus: list[ev.NabFile], scores: list[NDArray[np.float64]]) -> None:
    again = ev.run_corpus(corpus)
    for first, second in zip(scores, again, strict=True):
        assert np.array_equal(first, second)
        assert np.all((first >= 0.0) & (first <= 1.0))


def test_only_event_time_enters(corpus: list[ev.NabFile]) -> None:
    """Shifting every timestamp by whole weeks changes nothing: no wall clock, no absolute time."""
    f = next(c for c in corpus if c.name.endswith("nyc_taxi.csv"))
    base = ev.run_detector(f.values, f.ts, univariate.DEFAULT)
    shifted = ev.run_detector(f.values, f.ts + 3 * 604800.0, univariate.DEFAULT)
    assert np.array_equal(base, shifted)
    moved = ev.run_detector(f.values, f.ts + 6 * 3600.0, univariate.DEFAULT)
    assert not np.array_equal(base, moved)  # time of day does enter (daily seasonality)


def test_state_is_small() -> None:
    """At most 8 floats per signal; msgpack (array form) within 90 bytes even with every field set."""
    fields = msgspec.structs.fields(univariate.State)
    floats = [f.name for f in fields if f.type is float]
    assert len(floats) <= 8, floats
    busy = msgspec.convert([math.pi if f.type is float else 2**31 - 1 for f in fields], univariate.State)
    assert len(msgspec.msgpack.encode(busy)) <= 90


def test_state_round_trips_through_msgpack(corpus: list[ev.NabFile]) -> None:
    """The state the twin stores decodes to the same state, and the next score is unchanged."""
    f = corpus[0]
    state = None
    for v, t in zip(f.values[:500], f.ts[:500], strict=True):
        state, _ = univariate.step(state, float(v), float(t))
    assert state is not None
    copy = msgspec.msgpack.decode(msgspec.msgpack.encode(state), type=univariate.State)
    assert copy == state
    assert univariate.step(copy, 12.0, float(f.ts[500])) == univariate.step(state, 12.0, float(f.ts[500]))


def test_table_has_ours_beside_the_published(corpus: list[ev.NabFile], scores: list[NDArray[np.float64]]) -> None:
    """The table docs/ANOMALY.md shows: our figure (the one guarded above) beside the published ones."""
    table = ev.nab_table(Settings().data_dir)
    assert table.height == 3 * (4 + len(ev.PUBLISHED))
    standard = {
        (r["detector"], r["threshold_kind"]): r["score"] for r in table.filter(table["profile"] == "standard").iter_rows(named=True)
    }
    assert standard[("ARTime", ev.PUBLISHED_KIND)] == pytest.approx(ARTIME, abs=0.05)
    fixed = ev.score_at(corpus, scores, univariate.DEFAULT.alarm, nab.PROFILES["standard"])
    assert standard[(ev.OURS, ev.FIXED)] == pytest.approx(fixed.score, abs=0.005)  # rounded to 0.01

"""The UR3 out-of-fold protocol: the parameter search never sees the block it is scored on."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from streams.analysis.eval.ur3 import (
    DETECTORS, GRID, JOINT, EventScore, Recording, block_folds, oof, restrict,
)
from twin.detect.multivariate import MultivariateParams
from twin.score.folds import Fold, LeakError, out_of_fold


def _recording(n: int = 400, seed: int = 0) -> Recording:
    """A small arm: 25-s work cycles of noisy signals, a protective stop every ~40 rows."""
    rng = np.random.default_rng(seed)
    ts = 1_666_000_000.0 + np.arange(n, dtype=np.float64)
    phase = np.arange(n) % 25
    values = pl.DataFrame({c: np.sin(phase / 4.0 + i) + 0.1 * rng.standard_normal(n) for i, c in enumerate(JOINT)})
    stop = np.zeros(n, dtype=bool)
    stop[20::40] = True
    grip = np.zeros(n, dtype=bool)
    grip[35::80] = True
    return Recording(ts, values, stop, grip, phase.astype(np.int64), ~(stop | grip), ((0, n),),
                     (np.arange(n) // 25).astype(np.float64))


def test_the_search_only_sees_the_other_blocks() -> None:
    rec = _recording()
    seen_by_search: list[set[float]] = []

    def spy(seen: Recording, det: object, event: str, budget: float) -> list[tuple[float, float, MultivariateParams]]:
        seen_by_search.append(set(seen.ts.tolist()))
        return [(1.0, 0.0, GRID[0])]

    det = next(d for d in DETECTORS if d.per_phase)
    score, chosen = oof(rec, det, "stop", k=4, searcher=spy)
    folds = block_folds(rec, 4)
    assert len(seen_by_search) == len(folds) == len(chosen) == 4
    for fold, seen in zip(folds, seen_by_search):
        (lo, hi), = fold.test
        assert not seen & set(rec.ts[lo:hi].tolist()), f"{fold.name}: the search saw rows it is scored on"
        assert len(seen) == len(rec.ts) - (hi - lo)  # and everything else
    assert score.episodes == int(rec.stop.sum())  # every block scored once, pooled


def test_restrict_keeps_only_the_given_blocks_each_its_own() -> None:
    rec = _recording(100)
    cut = restrict(rec, ((0, 20), (60, 100)))
    assert len(cut.ts) == 60 and cut.blocks == ((0, 20), (20, 60))
    assert cut.ts[20] == rec.ts[60] and cut.values.height == 60 and cut.stop.sum() == rec.stop[:20].sum() + rec.stop[60:].sum()


def test_a_fold_that_scores_what_it_searched_is_refused() -> None:
    blocks = ((0, 100), (100, 200))
    leaky = [Fold("leaky", blocks, (blocks[1],))]
    with pytest.raises(LeakError):
        out_of_fold(leaky, lambda train: None, lambda p, test: EventScore(0, 0, 0, 1.0, (), 0.0), key=lambda b: b)

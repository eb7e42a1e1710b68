"""CI guard: UR3 CobotOps event figures stay at what the detectors reached.

Reached out-of-fold over 4 contiguous time blocks (each block scored with the
setting and baselines searched on the other three), by the multivariate
detector with one baseline per second of the work cycle: protective stops
recall 0.491 (chance 0.105) at 9.8 false alarms/h, median delay 1.0 s.
Floors: recall 3 episodes under, false alarms 2/h over. (Grip loss is not
detected above chance by any detector here, so it has no floor.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streams.analysis.eval.ur3 import (
    DETECTORS,
    Recording,
    true_runs,
    read,
    run,
    score_events,
    oof,
)
from streams.settings import Settings


@pytest.fixture(scope="module")
def data_dir() -> Path:
    return Settings().data_dir


@pytest.fixture(scope="module")
def rec(data_dir: Path) -> Recording:
    return read(data_dir)


def test_quirks_are_parsed(rec: Recording) -> None:
    assert len(rec.ts) == 7_409
    assert np.all(np.diff(rec.ts) > 0)  # quoted timestamps parsed, in order
    assert len(true_runs(rec.stop)) == 108 and len(true_runs(rec.grip)) == 77
    assert [b - a for a, b in rec.blocks] == [2_869, 4_540]
    blank = ~np.isfinite(rec.matrix(("Speed_J0",))[:, 0])
    assert blank.sum() == 54
    assert rec.clean[rec.stop].sum() == 0 and rec.clean[rec.grip].sum() == 0


def test_scorer_counts_hits_false_alarms_and_delays(rec: Recording) -> None:
    block = rec.blocks[1]
    onsets = np.array([rec.ts[a] for a, _ in true_runs(rec.stop) if block[0] <= a < block[1]])
    perfect = score_events(rec, onsets + 1.0, rec.stop, block)
    assert perfect.recall == 1.0 and perfect.false_alarms == 0
    assert perfect.median_delay == pytest.approx(1.0)
    silent = score_events(rec, np.array([]), rec.stop, block)
    assert silent.recall == 0.0 and silent.per_hour == 0.0
    assert 0.8 < silent.hours < 0.9


def test_phase_baselines_detect_stops_above_their_floor(rec: Recording) -> None:
    phase = next(d for d in DETECTORS if d.name == "joint, per cycle phase")
    s = score_events(rec, run(rec, phase, rec.blocks[1]), rec.stop, rec.blocks[1])
    assert s.episodes == 87
    assert s.recall >= 0.483
    assert s.recall - s.chance >= 0.25
    assert s.per_hour <= 12.9
    assert s.median_delay <= 3.0


def test_phase_baselines_out_of_fold_stay_above_their_floor(rec: Recording) -> None:
    phase = next(d for d in DETECTORS if d.name == "joint, per cycle phase")
    s, chosen = oof(rec, phase, "stop")
    assert s.episodes == 108 and len(chosen) == 4
    assert s.recall >= 0.463
    assert s.recall - s.chance >= 0.3
    assert s.per_hour <= 11.8


def test_the_production_path_imports_every_block_once_and_stays_quiet(data_dir: Path) -> None:
    """UR3 through `fleet-twin import` and the worker's detectors, out-of-fold by time blocks.

    It guards the import (every row once, every episode once, the quiet the learned
    stuck-sensor length and the end-of-run rule buy) and the stall detector, whose
    work-cycle profile each fold learns on its training blocks: about half the stops
    (docs/ANOMALY.md; 2 of 108 before it), far above chance."""
    from streams.analysis.eval.production import score_import
    from streams.analysis.eval.ur3_production import KINDS, production_oof

    imp = production_oof(data_dir, Settings().seeds_dir)
    assert len(imp.telemetry) == 7_409 and imp.rejected == 0
    assert sorted(imp.robots.values()) == ["ur3-block-1", "ur3-block-2a", "ur3-block-2b", "ur3-block-3", "ur3-block-4"]
    table = score_import(imp, KINDS)
    counts = dict(zip(table["episodes"].to_list(), table["count"].to_list()))
    assert counts["protective_stop"] == 108 and counts["grip_lost"] == 77
    assert table["false / robot-hour"][0] <= 2.0
    stops = table.row(0, named=True)
    assert stops["recall"] >= 0.4 and stops["recall"] >= 3 * stops["chance recall"]

"""CI guard: UR3 CobotOps event figures stay at what the detectors reached.

Reached on block 2 (the report block; block 1 fitted and tuned), by the
multivariate detector with one baseline per second of the work cycle:
protective stops recall 0.506 (chance 0.166) at 10.9 false alarms/h, median
delay 2.0 s. Floors: recall 2 episodes under, false alarms 2/h over. (Grip
loss is not detected above chance by any detector here, so it has no floor.)
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
    ur3_table,
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


def test_table_covers_every_detector_block_and_event_and_phases_pay(rec: Recording, data_dir: Path) -> None:
    table = ur3_table(data_dir)
    assert table.height == len(DETECTORS) * 2 * 2
    stops = table.filter((table["block"] == "2 (report)") & (table["event"] == "protective stop"))
    recall = dict(zip(stops["detector"].to_list(), stops["recall"].to_list()))
    assert recall["joint, per cycle phase"] - recall["joint, one baseline"] >= 0.3

"""twin.score.outliers: SKAB's point-wise figures and the run-level and time figures, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from twin.score.outliers import Counts, count, pool, row_seconds, score_run, segments


def flags(text: str) -> np.ndarray:
    return np.array([c == "1" for c in text])


def test_skab_formulas_on_known_counts() -> None:
    c = count(flags("11110000"), flags("01111100"))
    assert c == Counts(tp=3, fp=1, fn=2, tn=2)
    assert c.f1 == pytest.approx(3 / (3 + 1.5))
    assert c.far == pytest.approx(1 / 3) and c.mar == pytest.approx(2 / 5)
    assert c.precision == pytest.approx(0.75) and c.recall == pytest.approx(0.6)
    # F1 as SKAB writes it is the harmonic mean of precision and recall
    assert c.f1 == pytest.approx(2 * c.precision * c.recall / (c.precision + c.recall))
    assert c + c == Counts(6, 2, 4, 4)


def test_undefined_figures_are_nan_not_zero() -> None:
    c = count(flags("0000"), flags("0000"))
    assert math.isnan(c.mar) and math.isnan(c.recall) and c.far == 0.0
    with pytest.raises(ValueError):
        count(flags("01"), flags("011"))


def test_segments() -> None:
    assert segments(flags("0110111")) == [(1, 3), (4, 7)]
    assert segments(flags("")) == [] and segments(flags("000")) == []


def test_row_seconds_caps_a_pause() -> None:
    assert row_seconds(np.array([0.0, 1.0, 2.0, 1000.0, 1001.0])).tolist() == [1.0, 1.0, 10.0, 1.0, 1.0]
    assert row_seconds(np.array([5.0])).tolist() == [0.0]


def test_run_score_delays_false_episodes_and_normal_time() -> None:
    ts = np.arange(12, dtype=float) * 2.0  # rows every 2 s
    truth = flags("001111000110")
    alarm = flags("100011001000")
    s = score_run(alarm, truth, ts)
    # first segment (rows 2-5) alarmed from row 4: 4 s late; second (rows 9-10) missed
    assert s.delays == (4.0, None)
    # episodes open at rows 0 (normal: false), 4 (anomalous), 8 (normal: false)
    assert s.false_episodes == 2
    assert s.normal_s == pytest.approx(6 * 2.0)
    assert s.anomalous and s.alarmed


def test_alarm_open_at_onset_counts_zero_delay_and_no_false_episode() -> None:
    s = score_run(flags("0111"), flags("0011"), np.arange(4.0))
    assert s.delays == (0.0,) and s.false_episodes == 1


def test_pooling_counts_runs_and_rates() -> None:
    hour = np.arange(3601, dtype=float)
    quiet = score_run(np.zeros(3601, bool), np.zeros(3601, bool), hour)
    noisy = np.zeros(3601, bool)
    noisy[[10, 20, 30]] = True
    false_run = score_run(noisy, np.zeros(3601, bool), hour)
    truth = np.zeros(3601, bool)
    truth[100:200] = True
    caught = score_run(truth & (hour >= 130), truth, hour)
    missed = score_run(np.zeros(3601, bool), truth, hour)
    p = pool([quiet, false_run, caught, missed])
    assert (p.runs_normal, p.runs_false, p.runs_anomalous, p.runs_detected) == (2, 1, 2, 1)
    assert (p.segments, p.segments_detected, p.median_delay_s) == (2, 1, 30.0)
    # 3 false episodes over 2 hours of all-normal runs + 2 x 3501 s of normal rows in the others
    assert p.false_per_hour == pytest.approx(3 / ((2 * 3601 + 2 * 3501) / 3600))
    assert p.counts.tp == 70 and p.counts.fn == 130


def test_a_run_with_no_scored_row_is_neither_normal_nor_anomalous() -> None:
    empty = score_run(np.zeros(0, bool), np.zeros(0, bool), np.zeros(0))
    quiet = score_run(np.zeros(5, bool), np.zeros(5, bool), np.arange(5.0))
    assert empty.rows == 0 and quiet.rows == 5
    assert pool([empty, quiet]).runs_normal == 1

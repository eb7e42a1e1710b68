"""Point-wise and run-level scores of an alarm series against 0/1 labels.

The outlier task as SKAB defines it, over rows pooled across runs:
F1 = TP / (TP + (FP + FN) / 2), FAR = FP / (FP + TN), MAR = FN / (FN + TP),
with precision and recall beside them. Point-wise figures reward long
anomalies and say nothing about when a maintainer is told, so the run-level
and time figures go with them:

* run detection: a run with anomalous rows is detected if an alarm fires on
  any of its scored rows; a run without any is a false run if one fires (a
  run with no scored row is neither);
* false alarms per hour: alarm episodes (maximal stretches of alarmed rows)
  that open on a row not labelled anomalous, per hour of non-anomalous time;
* delay: for each anomaly segment (maximal stretch of anomalous rows), the
  event time from its first row to the first alarmed row inside it (0 if an
  alarm is already open there); a segment with no alarmed row is missed.

Time of a row is the gap to the next row, the last row taking the median gap,
and no gap counts for more than `MAX_GAP` times the median: a recording
paused overnight must not add a night of normal time. Pure: numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Flags = npt.NDArray[np.bool_]
Times = npt.NDArray[np.float64]

MAX_GAP = 10.0
"""A row counts for at most this many median cadences of its run."""


@dataclass(frozen=True)
class Counts:
    """Point-wise confusion counts; add them to pool runs."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        """SKAB's F1 (the harmonic mean of precision and recall, written with counts)."""
        return _ratio(self.tp, self.tp + (self.fp + self.fn) / 2)

    @property
    def far(self) -> float:
        """False alarm rate: alarmed share of the normal rows."""
        return _ratio(self.fp, self.fp + self.tn)

    @property
    def mar(self) -> float:
        """Missing alarm rate: unalarmed share of the anomalous rows."""
        return _ratio(self.fn, self.fn + self.tp)


def _ratio(num: float, den: float) -> float:
    """num / den, NaN for 0 / 0: an undefined figure is shown as such, not as 0 or 1."""
    return num / den if den else float("nan")


def count(alarm: Flags, truth: Flags) -> Counts:
    """Confusion counts of one run's alarm flags against its labels (same length)."""
    a, t = np.asarray(alarm, dtype=bool), np.asarray(truth, dtype=bool)
    if a.shape != t.shape:
        raise ValueError(f"alarm and truth differ in shape: {a.shape} vs {t.shape}")
    return Counts(tp=int((a & t).sum()), fp=int((a & ~t).sum()), fn=int((~a & t).sum()), tn=int((~a & ~t).sum()))


def segments(flags: Flags) -> list[tuple[int, int]]:
    """Maximal stretches of True as [start, stop) row ranges, in order."""
    f = np.concatenate([[False], np.asarray(flags, dtype=bool), [False]])
    edges = np.flatnonzero(f[1:] != f[:-1])
    return [(int(a), int(b)) for a, b in zip(edges[0::2], edges[1::2], strict=True)]


def row_seconds(ts: Times) -> Times:
    """How long each row stands for: the gap to the next row, capped at `MAX_GAP` median gaps."""
    t = np.asarray(ts, dtype=np.float64)
    if len(t) < 2:
        return np.zeros(len(t))
    gaps = np.diff(t)
    median = float(np.median(gaps))
    return np.asarray(np.minimum(np.append(gaps, median), MAX_GAP * median), dtype=np.float64)


@dataclass(frozen=True)
class RunScore:
    """What one run's alarms did, in the units the report pools."""

    counts: Counts
    anomalous: bool
    """The run has anomalous rows among those scored."""
    alarmed: bool
    """An alarm fired on a scored row."""
    false_episodes: int
    """Alarm episodes that opened on a normal row."""
    normal_s: float
    """Seconds of normal (non-anomalous) rows scored."""
    delays: tuple[float | None, ...]
    """Per anomaly segment: seconds from its onset to the first alarm in it, None if missed."""

    @property
    def rows(self) -> int:
        """Rows scored; a run with none counts as neither a normal nor an anomalous run."""
        c = self.counts
        return c.tp + c.fp + c.fn + c.tn


def score_run(alarm: Flags, truth: Flags, ts: Times) -> RunScore:
    """Every figure of one run from its alarm flags, labels and event times (seconds)."""
    a, t = np.asarray(alarm, dtype=bool), np.asarray(truth, dtype=bool)
    times = np.asarray(ts, dtype=np.float64)
    counts = count(a, t)
    delays: list[float | None] = []
    for start, stop in segments(t):
        hits = np.flatnonzero(a[start:stop])
        delays.append(float(times[start + hits[0]] - times[start]) if len(hits) else None)
    false_episodes = sum(1 for start, _ in segments(a) if not t[start])
    return RunScore(
        counts=counts,
        anomalous=bool(t.any()),
        alarmed=bool(a.any()),
        false_episodes=false_episodes,
        normal_s=float(row_seconds(times)[~t].sum()),
        delays=tuple(delays),
    )


@dataclass(frozen=True)
class Pooled:
    """The report's figures over many runs."""

    counts: Counts
    runs_anomalous: int
    runs_detected: int
    runs_normal: int
    runs_false: int
    false_per_hour: float
    median_delay_s: float
    """Median over detected segments; NaN if none was detected."""
    segments: int
    segments_detected: int


def pool(scores: list[RunScore]) -> Pooled:
    """Pool run scores: counts added, runs and segments counted, time figures over all normal time."""
    counts = sum((s.counts for s in scores), Counts())
    delays = [d for s in scores for d in s.delays if d is not None]
    normal_h = sum(s.normal_s for s in scores) / 3600.0
    return Pooled(
        counts=counts,
        runs_anomalous=sum(s.anomalous for s in scores),
        runs_detected=sum(s.anomalous and s.alarmed for s in scores),
        runs_normal=sum(not s.anomalous and s.rows > 0 for s in scores),
        runs_false=sum(not s.anomalous and s.alarmed for s in scores),
        false_per_hour=_ratio(sum(s.false_episodes for s in scores), normal_h),
        median_delay_s=float(np.median(delays)) if delays else float("nan"),
        segments=sum(len(s.delays) for s in scores),
        segments_detected=len(delays),
    )

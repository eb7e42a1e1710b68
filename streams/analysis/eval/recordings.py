"""Score the multivariate detector on labelled recordings: `fleet-twin eval --data PATH` (format b).

A folder of runs (`streams.analysis.recordings`): the baseline is fitted
only on the runs the manifest names normal-only, every other run is scored
against it, and each normal run is scored too, by a baseline fitted without
it (out-of-fold), so the false-alarm figures include the normal runs
themselves. With a condition column, one baseline per operating point; a
numeric point between two seen ones gets an interpolated baseline, one never
seen in normal data is "unknown": not scored, never an alarm, counted in the
`unknown rows` column (`twin.detect.multivariate.Operating`).

Two rows of figures:

* committed defaults: `multivariate.DEFAULT`, nothing searched, its smoothing
  time constants taken in readings of the folder's cadence (`committed`);
* threshold and input averaging chosen out-of-fold: runs are cut into at
  most `MAX_FOLDS` groups (`twin.score.folds.leave_one_group_out`); for each
  group they are searched on the other runs only (their baselines fitted
  without the held-out runs too) and the held-out runs are scored with the
  choice; pooled. The search keeps the best F1 whose FAR on the training
  runs is at most `MAX_FAR`.

Figures (`twin.score.outliers`): point-wise precision, recall, F1, FAR and
MAR as SKAB defines them, pooled over rows; runs detected (anomalous runs
with an alarm) and false runs (normal runs with one); false alarms per hour
of normal time; the median delay from an anomaly onset to the first alarm.

With `normal_head: N` in the manifest every run starts with N normal rows
and is scored against a baseline fitted on its own first N rows (`HeadSource`,
SKAB's protocol); those rows are not scored. The same machinery scores SKAB
itself (`streams.analysis.eval.skab`).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import msgspec
import numpy as np
import numpy.typing as npt
import polars as pl

from streams.analysis.recordings import ANOMALY, TIMESTAMP, Recording, RecordingSet, load_recordings
from twin.detect import multivariate as mv
from twin.score.folds import Fold, FoldResult, leave_one_group_out, out_of_fold
from twin.score.outliers import Pooled, RunScore, pool, score_run

MAX_FOLDS = 5
"""Out-of-fold groups of runs at most: each is one search over the other runs."""
MAX_FAR = 0.05
"""False alarm rate the threshold search allows itself on the training runs."""
THRESHOLDS = (1.5, 2.0, 2.5, 2.9, 3.5, 4.5, 6.0, 8.0, 12.0, 20.0)
"""Thresholds the format-(b) search tries, around the committed 2.9 and up to what a
noisy fleet needs (twin.detect.cohort uses 20)."""
AVERAGE_CADENCES = (0.0, 5.0)
"""Input averaging the search tries, in readings of the folder's own cadence: off, or 5
readings (at SKAB's 1 Hz every fold chose averaging, two of three over 5 s). A horizon in
seconds would mean nothing across a 1 Hz rig and a 10-minute log. Averaging hides a
change in the spread of a zero-mean signal (raw vibration), which is why it is searched,
not imposed."""

Flags = npt.NDArray[np.bool_]
Vector = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Choice:
    """What a search chooses: the signals used and the detector's parameters."""

    channels: tuple[str, ...]
    params: mv.MultivariateParams = mv.DEFAULT

    def shape(self) -> tuple[Hashable, ...]:
        """The part of the choice the distances depend on (the rest only follows them)."""
        p = self.params
        return self.channels, p.smooth_s, p.shrinkage, p.ridge, p.min_var, p.trim, p.min_weight


@dataclass(frozen=True)
class Scored:
    """One run's scored rows with their distances to the baseline in force."""

    name: str
    ts: Vector
    truth: Flags
    raw: Vector
    """d^2/p per row; NaN where a value is missing or no trained baseline holds."""
    known: Flags
    """False at an operating point never seen in normal data."""


class Source(Protocol):
    """Runs and how each gets its baseline; the scorer asks, never fits by itself."""

    names: tuple[str, ...]

    def scored(self, name: str, excluded: frozenset[str], choice: Choice) -> Scored:
        """Run `name` scored by a baseline fitted on none of the runs in `excluded`."""
        ...


@dataclass
class RecordingSource:
    """Format (b): the baseline of a run is fitted on the normal-only runs other than it."""

    recordings: RecordingSet
    names: tuple[str, ...] = field(init=False)
    _fits: dict[tuple[Hashable, ...], mv.Operating] = field(default_factory=dict, init=False)
    _scored: dict[tuple[Hashable, ...], Scored] = field(default_factory=dict, init=False)
    _inputs: dict[tuple[Hashable, ...], Vector] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.names = tuple(r.name for r in self.recordings.runs)
        self._runs = {r.name: r for r in self.recordings.runs}

    def scored(self, name: str, excluded: frozenset[str], choice: Choice) -> Scored:
        used = frozenset(r.name for r in self.recordings.normal) - excluded - {name}
        key = (name, used, choice.shape())
        if key not in self._scored:
            fitted = (used, choice.shape())
            if fitted not in self._fits:
                normal = [self._runs[n] for n in sorted(used)]
                rows = np.vstack([_matrix(r, choice, self._inputs) for r in normal]) if normal \
                    else np.empty((0, len(choice.channels)))
                points = [p for r in normal for p in _points(r, self.recordings.condition)]
                self._fits[fitted] = mv.fit_operating(rows, points, choice.params)
            self._scored[key] = _score_rows(self._runs[name], self._fits[fitted], self.recordings.condition,
                                            choice, slice(None), self._inputs)
        return self._scored[key]


@dataclass
class HeadSource:
    """SKAB's protocol: each run's first `head` rows fit its own baseline, the rest is scored."""

    recordings: RecordingSet
    head: int
    names: tuple[str, ...] = field(init=False)
    _scored: dict[tuple[Hashable, ...], Scored] = field(default_factory=dict, init=False)
    _inputs: dict[tuple[Hashable, ...], Vector] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.names = tuple(r.name for r in self.recordings.runs)
        self._runs = {r.name: r for r in self.recordings.runs}

    def scored(self, name: str, excluded: frozenset[str], choice: Choice) -> Scored:
        key = (name, choice.shape())
        if key not in self._scored:
            run = self._runs[name]
            fit_rows = _matrix(run, choice, self._inputs)[: self.head]
            fit_points = _points(run, self.recordings.condition)[: self.head]
            operating = mv.fit_operating(fit_rows, fit_points, choice.params)
            self._scored[key] = _score_rows(run, operating, self.recordings.condition, choice,
                                            slice(self.head, None), self._inputs)
        return self._scored[key]


def _matrix(run: Recording, choice: Choice, cache: dict[tuple[Hashable, ...], Vector]) -> Vector:
    """The run's chosen signals, averaged as the detector averages its inputs (`smooth_s`);
    kept in the source's `cache`, since a search fits on and scores a run many times and
    averaging is a loop over its rows."""
    key = (run.name, choice.channels, choice.params.smooth_s)
    if key not in cache:
        rows = run.frame.select(choice.channels).to_numpy().astype(np.float64)
        cache[key] = mv.smooth_rows(rows, run.frame[TIMESTAMP].to_numpy(), choice.params)
    return cache[key]


def _points(run: Recording, condition: str | None) -> list[float | str]:
    """The operating point of every row; one point ("") for a set without a condition column."""
    if condition is None:
        return [""] * run.frame.height
    return list(run.frame[condition].to_list())


def _score_rows(run: Recording, operating: mv.Operating, condition: str | None, choice: Choice,
                rows: slice, inputs: dict[tuple[Hashable, ...], Vector]) -> Scored:
    points = _points(run, condition)[rows]
    cache: dict[float | str, mv.Baseline | None] = {}
    baselines = [cache[p] if p in cache else cache.setdefault(p, operating.at(p, choice.params)) for p in points]
    raw, known = mv.distances_at(baselines, _matrix(run, choice, inputs)[rows], choice.params)
    return Scored(
        name=run.name,
        ts=run.frame[TIMESTAMP].to_numpy()[rows].astype(np.float64),
        truth=run.frame[ANOMALY].to_numpy()[rows] > 0,
        raw=raw,
        known=known,
    )


def alarms(scored: Scored, params: mv.MultivariateParams) -> Flags:
    """Alarm flag per scored row: the detector's own `follow` over the run's distances."""
    _, scores = mv.follow(scored.raw, scored.ts, params, scored.known)
    return np.nan_to_num(scores, nan=0.0) >= 1.0


def run_scores(source: Source, names: Iterable[str], choice: Choice,
               excluded: frozenset[str] = frozenset()) -> list[RunScore]:
    """Every figure of each named run under one choice, over its rows at known operating points."""
    out = []
    for name in names:
        s = source.scored(name, excluded, choice)
        known = s.known  # rows at an unknown operating point are not scored: neither TN nor normal time
        out.append(score_run(alarms(s, choice.params)[known], s.truth[known], s.ts[known]))
    return out


def search(source: Source, train: Sequence[str], grid: Sequence[Choice], max_far: float) -> Choice:
    """The choice with the best pooled F1 on `train` whose FAR there is at most `max_far`
    (the lowest FAR if none is); first in grid order on a tie.

    Baselines are fitted without any run outside `train`, so nothing of the
    runs a fold scores reaches the choice.
    """
    excluded = frozenset(source.names) - frozenset(train)
    best: tuple[bool, float, Choice] | None = None
    for choice in grid:
        c = pool(run_scores(source, train, choice, excluded)).counts
        f1, far = np.nan_to_num(c.f1), c.far
        rank = (far <= max_far, f1 if far <= max_far else -far)
        if best is None or rank > best[:2]:
            best = (*rank, choice)
    if best is None:
        raise ValueError("empty search grid")
    return best[2]


def out_of_fold_scores(source: Source, groups: dict[str, str], grid: Sequence[Choice],
                       max_far: float) -> list[FoldResult[str, Choice, list[RunScore]]]:
    """Leave one group out: search on the other groups' runs, score the held-out runs."""
    folds: list[Fold[str]] = leave_one_group_out(list(source.names), groups.__getitem__)
    return out_of_fold(
        folds,
        search=lambda train: search(source, train, grid, max_far),
        score=lambda choice, test: run_scores(source, test, choice),
        key=lambda name: name,
    )


def run_groups(names: Sequence[str], k: int = MAX_FOLDS) -> dict[str, str]:
    """Runs dealt round-robin into at most `k` groups (every run its own group when there are few)."""
    k = min(k, len(names))
    return {name: f"runs {i % k + 1}/{k}" for i, name in enumerate(sorted(names))}


COLUMNS = ["method", "runs", "precision", "recall", "F1", "FAR", "MAR", "runs detected", "false runs",
           "false alarms/h", "median delay s", "unknown rows"]


def figures(method: str, scores: list[RunScore], unknown: int) -> dict[str, object]:
    """One table row from pooled run scores."""
    p: Pooled = pool(scores)
    c = p.counts
    return {
        "method": method, "runs": len(scores),
        "precision": _r(c.precision), "recall": _r(c.recall), "F1": _r(c.f1), "FAR": _r(c.far), "MAR": _r(c.mar),
        "runs detected": f"{p.runs_detected}/{p.runs_anomalous}", "false runs": f"{p.runs_false}/{p.runs_normal}",
        "false alarms/h": _r(p.false_per_hour, 2), "median delay s": _r(p.median_delay_s, 1),
        "unknown rows": unknown,
    }


def _r(value: float, digits: int = 4) -> float | None:
    return None if np.isnan(value) else round(float(value), digits)


REFERENCE_CADENCE_S = 1.0
"""The reading interval the committed time constants were chosen at (SKAB, 1 Hz)."""


def committed(step: float) -> mv.MultivariateParams:
    """`multivariate.DEFAULT` with its smoothing time constants in readings, not seconds.

    `rise_s` 3 s and `fall_s` 20 s were chosen on SKAB at one reading a second:
    they mean "3 and 20 readings". On a 10-minute log, 3 s would not smooth at
    all (every lone outlier an alarm); on a 100 Hz one, 20 s would hold an
    alarm for 2,000 readings. So they are scaled by the folder's cadence.
    """
    scale = step / REFERENCE_CADENCE_S if step > 0 else 1.0
    return msgspec.structs.replace(mv.DEFAULT, rise_s=mv.DEFAULT.rise_s * scale, fall_s=mv.DEFAULT.fall_s * scale)


def cadence(recordings: RecordingSet) -> float:
    """The folder's reading interval (s): the median over runs of each run's median gap."""
    gaps = [float(np.median(np.diff(r.frame[TIMESTAMP].to_numpy()))) for r in recordings.runs if r.frame.height > 1]
    return float(np.median(gaps)) if gaps else 0.0


def recordings_table(root: Path) -> pl.DataFrame:
    """The report of `fleet-twin eval --data PATH` for a folder with a manifest.yaml."""
    recordings = load_recordings(root)
    source: RecordingSource | HeadSource = RecordingSource(recordings) if recordings.normal_head is None \
        else HeadSource(recordings, recordings.normal_head)
    step = cadence(recordings)
    base = Choice(recordings.signals, committed(step))
    fixed = run_scores(source, source.names, base)
    unknown = sum(int((~source.scored(n, frozenset(), base).known).sum()) for n in source.names)
    how = "out-of-fold baselines" if recordings.normal_head is None else f"each run's first {recordings.normal_head} rows"
    rows = [figures(f"committed defaults ({how})", fixed, unknown)]
    if len(source.names) >= 2:
        grid = [Choice(recordings.signals, msgspec.structs.replace(base.params, threshold=t, smooth_s=k * step))
                for k in AVERAGE_CADENCES for t in THRESHOLDS]
        folds = out_of_fold_scores(source, run_groups(source.names), grid, MAX_FAR)
        chosen = ", ".join(sorted({f"thr {f.params.params.threshold:g} avg {f.params.params.smooth_s:g}s"
                                   for f in folds}))
        rows.append(figures(f"threshold, averaging out-of-fold ({len(folds)} folds; chose {chosen})",
                            [s for f in folds for s in f.result], unknown))
    return pl.DataFrame(rows).select(COLUMNS)

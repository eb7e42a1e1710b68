"""NAB evaluation: read a NAB-layout folder, run our detector, score it the NAB way.

The I/O half of the NAB work: `twin.score.nab` is the pure scoring rule,
`twin.score.folds` the out-of-fold protocol and `twin.detect.univariate` the
pure detector; this module reads a folder in NAB's layout (`data/**.csv` with
`timestamp,value`, `labels/combined_windows.json`, `config/profiles.json`,
optionally `results/` with published per-file scores), feeds each series to
the detector strictly in time order, and builds the table. The shipped dev set
(`<data>/nab-dev/`, never copied into the repo) and any user's folder
(`fleet-twin eval --data PATH`) go through the same `nab_folder_table`.
Importing it reads nothing.

The headline is out-of-fold: every parameter a search chooses (the alert
threshold, and the detector parameters in `SEARCH_GRID`) is chosen on the
other files of the folder and scored on the held-out one, through
`twin.score.folds.out_of_fold`; the raw per-file scores of the held-out files
add up and are normalised over all windows, as NAB does for a corpus.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import numpy as np
import polars as pl
from numpy.typing import NDArray

from twin.detect import univariate
from twin.score import folds, nab

PROFILE_NAMES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")

PUBLISHED = {
    "ARTime": "ARTime",
    "numenta": "Numenta HTM",
    "contextOSE": "CAD OSE",
    "windowedGaussian": "Windowed Gaussian",
}
"""Published detectors shown beside ours (folder name -> scoreboard name)."""

OURS = "fleet-twin univariate"

SEARCH_GRID: tuple[univariate.UnivariateParams, ...] = (
    univariate.DEFAULT,
    msgspec.structs.replace(univariate.DEFAULT, quiet=univariate.DEFAULT.quiet / 2),
    msgspec.structs.replace(univariate.DEFAULT, quiet=univariate.DEFAULT.quiet * 2),
    msgspec.structs.replace(univariate.DEFAULT, bin_floor=0.1),
)
"""Detector parameter sets the out-of-fold search chooses among, with the threshold: the quiet
horizon (half, once and twice the committed one) and the seasonal bins' spread floor (0.3 or
0.1). The committed set comes first, so a tie keeps it."""

LOFO = "out-of-fold, leave one file out"
LOCO = "out-of-fold, leave one category out"
FIXED = "fixed in advance (UnivariateParams.alarm)"
IN_SAMPLE = "optimised on these files (in-sample)"
PUBLISHED_KIND = "NAB-optimised (published)"


def nab_root(data_dir: Path) -> Path:
    """The nab-dev subset inside a data folder."""
    return data_dir / "nab-dev"


def is_nab_folder(path: Path) -> bool:
    """Whether a folder is in NAB's layout (what `eval --data PATH` checks)."""
    return (path / "labels" / "combined_windows.json").is_file()


@dataclass(frozen=True)
class NabFile:
    """One NAB series with its label windows, timestamps as UTC epoch seconds."""

    name: str
    """Path relative to `data/`, e.g. `realKnownCause/nyc_taxi.csv` (NAB's key)."""
    ts: NDArray[np.float64]
    values: NDArray[np.float64]
    windows: tuple[tuple[float, float], ...]
    layout: nab.Layout

    @property
    def category(self) -> str:
        """NAB's category: the folder under `data/` (empty for a file directly in it)."""
        return self.name.rpartition("/")[0]


def parse_time(text: str) -> float:
    """NAB timestamps (`2014-04-10 07:15:00[.000000]`, UTC by convention) as epoch seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def read_series(path: Path) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """A NAB data file's `timestamp,value` columns as float arrays, in file order."""
    df = pl.read_csv(path, schema_overrides={"timestamp": pl.String, "value": pl.Float64})
    stamps = df["timestamp"].str.to_datetime(time_zone="UTC", time_unit="us")
    ts = (stamps.dt.epoch("us").cast(pl.Float64) / 1e6).to_numpy()
    return ts, df["value"].to_numpy()


def load_folder(root: Path) -> list[NabFile]:
    """Every labelled file of a NAB-layout folder, sorted by name, with NAB's row layout."""
    windows = json.loads((root / "labels" / "combined_windows.json").read_text())
    corpus = []
    for name in sorted(windows):
        ts, values = read_series(root / "data" / name)
        limits = tuple((parse_time(a), parse_time(b)) for a, b in windows[name])
        spans = nab.window_spans(ts, limits)
        corpus.append(NabFile(name, ts, values, limits, nab.layout(len(ts), spans)))
    return corpus


def load_corpus(data_dir: Path) -> list[NabFile]:
    """The shipped nab-dev subset (13 files)."""
    return load_folder(nab_root(data_dir))


def folder_profiles(root: Path) -> dict[str, nab.Costs]:
    """The cost weights of NAB's profiles, from a folder's config/profiles.json."""
    raw = json.loads((root / "config" / "profiles.json").read_text())
    return {
        name: nab.Costs(tp=float(m["tpWeight"]), fp=float(m["fpWeight"]), fn=float(m["fnWeight"]))
        for name, body in raw.items()
        for m in [body["CostMatrix"]]
    }


def read_profiles(data_dir: Path) -> dict[str, nab.Costs]:
    """nab-dev's profiles."""
    return folder_profiles(nab_root(data_dir))


def folder_published(root: Path, detector: str, profile: str) -> pl.DataFrame:
    """A published per-file results table: File, Threshold, Score, TP, TN, FP, FN, Total_Count."""
    path = root / "results" / detector / f"{detector}_{profile}_scores.csv"
    return pl.read_csv(path).sort("File")


def read_published(data_dir: Path, detector: str, profile: str) -> pl.DataFrame:
    """nab-dev's published per-file results of one detector and profile."""
    return folder_published(nab_root(data_dir), detector, profile)


def published_score(data_dir: Path, detector: str, profile: str, n_windows: int, costs: nab.Costs) -> float:
    """A published detector's normalised nab-dev score, from its per-file raw scores."""
    raw = float(read_published(data_dir, detector, profile)["Score"].sum())
    return nab.normalise(raw, n_windows, costs)


def run_detector(
    values: Sequence[float] | NDArray[np.float64], ts: Sequence[float] | NDArray[np.float64], params: univariate.UnivariateParams
) -> NDArray[np.float64]:
    """Our detector's score for every row, fed one reading at a time in time order."""
    out = np.empty(len(values))
    state: univariate.State | None = None
    for i, (v, t) in enumerate(zip(values, ts, strict=True)):
        state, out[i] = univariate.step(state, float(v), float(t), params)
    return out


def run_corpus(corpus: Sequence[NabFile], params: univariate.UnivariateParams = univariate.DEFAULT) -> list[NDArray[np.float64]]:
    """Our detector's per-row scores for each file (a fresh state per file)."""
    return [run_detector(f.values, f.ts, params) for f in corpus]


@dataclass(frozen=True)
class Result:
    """One detector/profile/threshold-kind figure on a corpus."""

    threshold: float
    raw: float
    score: float
    per_file: dict[str, nab.FileScore]


def score_at(corpus: Sequence[NabFile], scores: Sequence[NDArray[np.float64]], threshold: float, costs: nab.Costs) -> Result:
    """Normalised corpus score at a given threshold, with the per-file breakdown."""
    per_file = {f.name: nab.score_file(s, f.layout, threshold, costs) for f, s in zip(corpus, scores, strict=True)}
    raw = sum(fs.score for fs in per_file.values())
    return Result(threshold, raw, nab.normalise(raw, n_windows(corpus), costs), per_file)


def score_optimised(corpus: Sequence[NabFile], scores: Sequence[NDArray[np.float64]], costs: nab.Costs) -> Result:
    """NAB's in-sample figure: the best single threshold over the corpus."""
    threshold, _ = nab.best_threshold(nab.sweep(scores, [f.layout for f in corpus], costs))
    return score_at(corpus, scores, threshold, costs)


def n_windows(corpus: Sequence[NabFile]) -> int:
    """Label windows in the corpus (25 in nab-dev)."""
    return sum(f.layout.n_windows for f in corpus)


# --- out-of-fold ---------------------------------------------------------------


@dataclass(frozen=True)
class Scored:
    """One file with our detector's per-row scores under each parameter set of the grid: a fold's unit."""

    file: NabFile
    scores: tuple[NDArray[np.float64], ...]
    """`scores[k]`: the rows' scores with `grid[k]`."""


@dataclass(frozen=True)
class Choice:
    """What a search chose on its training files: a parameter set of the grid and an alert threshold."""

    grid_index: int
    threshold: float
    train_raw: float


Search = Callable[[Sequence[Scored], nab.Costs], Choice]


THRESHOLDS: tuple[float, ...] = tuple(round(0.30 + 0.02 * i, 2) for i in range(26))
"""Alert thresholds the out-of-fold search chooses among: 0.30 to 0.80 in steps of 0.02.

The score is a calibrated tail probability (`s / (s + 6)`, s = -ln p), so these
are false-alarm rates from about e^-2.6 to e^-24. A coarse grid, not every
distinct score as NAB's in-sample optimiser uses: a threshold that lands
between two training rows' scores fits those 12 files, not the next one.
"""


def search(train: Sequence[Scored], costs: nab.Costs) -> Choice:
    """The parameter set and threshold with the best summed raw score over `train`.

    Sees only the files it is given: `out_of_fold` hands it a fold's training
    files. Thresholds from `THRESHOLDS`; ties go to the earlier parameter set
    and (NAB's rule) the higher threshold.
    """
    best: Choice | None = None
    layouts = [u.file.layout for u in train]
    grid = np.array(THRESHOLDS[::-1])  # descending, as the sweep
    for k in range(len(train[0].scores)):
        sw = nab.sweep([u.scores[k] for u in train], layouts, costs)
        # rows >= t fire: the sweep entry of the smallest distinct score >= t (entry 0: nothing fires)
        at = np.searchsorted(-sw.thresholds, -grid, side="right") - 1
        raws = sw.scores[at]
        i = int(np.argmax(raws))
        if best is None or raws[i] > best.train_raw:
            best = Choice(k, float(grid[i]), float(raws[i]))
    assert best is not None
    return best


@dataclass(frozen=True)
class OutOfFold:
    """A corpus scored out-of-fold: each file at what the search chose without it."""

    score: float
    """Normalised over all windows of the corpus, from the held-out files' raw scores."""
    raw: float
    folds: list[folds.FoldResult[Scored, Choice, dict[str, nab.FileScore]]]


def out_of_fold(units: Sequence[Scored], costs: nab.Costs, by_category: bool = False, choose: Search = search) -> OutOfFold:
    """Leave one file (or one category) out: search on the rest, score the held-out files."""
    group: Callable[[Scored], str] = (lambda u: u.file.category) if by_category else (lambda u: u.file.name)

    def score(choice: Choice, test: Sequence[Scored]) -> dict[str, nab.FileScore]:
        return {u.file.name: nab.score_file(u.scores[choice.grid_index], u.file.layout, choice.threshold, costs) for u in test}

    results = folds.out_of_fold(
        folds.leave_one_group_out(units, group), lambda train: choose(train, costs), score, key=lambda u: u.file.name
    )
    raw = sum(fs.score for r in results for fs in r.result.values())
    return OutOfFold(nab.normalise(raw, n_windows([u.file for u in units]), costs), raw, results)


def score_grid(corpus: Sequence[NabFile], grid: Sequence[univariate.UnivariateParams] = SEARCH_GRID) -> list[Scored]:
    """Run every parameter set of the grid on every file (the search then only picks among these runs)."""
    runs = [run_corpus(corpus, p) for p in grid]
    return [Scored(f, tuple(r[i] for r in runs)) for i, f in enumerate(corpus)]


# --- the table -----------------------------------------------------------------


def nab_folder_table(root: Path, params: univariate.UnivariateParams = univariate.DEFAULT) -> pl.DataFrame:
    """Our detector on any NAB-layout folder, every profile; published detectors when `results/` is there.

    Rows, out-of-fold first: leave one file out (2 files at least) and leave
    one category out (2 categories at least), both with the threshold and the
    `SEARCH_GRID` choice searched on the other files only; the committed
    parameters at the threshold fixed in advance (`params.alarm`: nothing is
    tuned on the folder); the in-sample optimised threshold (NAB's own
    procedure, labelled so); then the published detectors, whose one
    threshold NAB optimised over its full 58-file corpus.
    """
    corpus = load_folder(root)
    profiles = folder_profiles(root)
    grid = SEARCH_GRID if params == univariate.DEFAULT else (params,)
    units = score_grid(corpus, grid)
    committed = run_corpus(corpus, params) if params not in grid else [u.scores[grid.index(params)] for u in units]
    names = {f.name for f in corpus}
    windows = n_windows(corpus)
    rows: list[dict[str, object]] = []
    for profile in PROFILE_NAMES:
        costs = profiles[profile]
        if len(corpus) >= 2:
            rows.append(_row(OURS, profile, LOFO, None, out_of_fold(units, costs).score, "ours"))
        if len({f.category for f in corpus}) >= 2:
            rows.append(_row(OURS, profile, LOCO, None, out_of_fold(units, costs, by_category=True).score, "ours"))
        fixed = score_at(corpus, committed, params.alarm, costs)
        rows.append(_row(OURS, profile, FIXED, fixed.threshold, fixed.score, "ours"))
        best = score_optimised(corpus, committed, costs)
        rows.append(_row(OURS, profile, IN_SAMPLE, best.threshold, best.score, "ours"))
        for folder, label in PUBLISHED.items():
            path = root / "results" / folder / f"{folder}_{profile}_scores.csv"
            if not path.is_file():
                continue
            table = folder_published(root, folder, profile).filter(pl.col("File").is_in(sorted(names)))
            if table.height != len(names):
                continue  # results for other files: not comparable
            score = nab.normalise(float(table["Score"].sum()), windows, costs)
            rows.append(_row(label, profile, PUBLISHED_KIND, float(table["Threshold"][0]), score, "published"))
    return pl.DataFrame(rows, schema=_SCHEMA)


def nab_table(data_dir: Path, params: univariate.UnivariateParams = univariate.DEFAULT) -> pl.DataFrame:
    """The shipped 13-file dev set (`<data_dir>/nab-dev`): `nab_folder_table` on it."""
    return nab_folder_table(nab_root(data_dir), params)


_SCHEMA = {
    "detector": pl.String,
    "profile": pl.String,
    "threshold_kind": pl.String,
    "threshold": pl.Float64,
    "score": pl.Float64,
    "source": pl.String,
}


def _row(detector: str, profile: str, kind: str, threshold: float | None, score: float, source: str) -> dict[str, object]:
    return {
        "detector": detector,
        "profile": profile,
        "threshold_kind": kind,
        "threshold": threshold,
        "score": round(score, 2),
        "source": source,
    }

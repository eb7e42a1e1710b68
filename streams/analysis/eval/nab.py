"""NAB evaluation: read the nab-dev corpus, run our detector, score it the NAB way.

The I/O half of the NAB work: `twin.score.nab` is the pure scoring rule and
`twin.detect.univariate` the pure detector; this module reads the files under
`<data>/nab-dev/` (never copied into the repo), feeds each series to the
detector strictly in time order, and builds the comparison with the published
scoreboard. Importing it reads nothing; every reader takes the data folder
(the CLI passes `Settings.data_dir`, FLEET_TWIN_DATA_DIR).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
from numpy.typing import NDArray

from twin.detect import univariate
from twin.score import nab

PROFILE_NAMES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")

PUBLISHED = {
    "ARTime": "ARTime",
    "numenta": "Numenta HTM",
    "contextOSE": "CAD OSE",
    "windowedGaussian": "Windowed Gaussian",
}
"""Published detectors shown beside ours (folder name -> scoreboard name)."""

OURS = "fleet-twin univariate"


def nab_root(data_dir: Path) -> Path:
    """The nab-dev subset inside a data folder."""
    return data_dir / "nab-dev"


@dataclass(frozen=True)
class NabFile:
    """One NAB series with its label windows, timestamps as UTC epoch seconds."""

    name: str
    """Path relative to `data/`, e.g. `realKnownCause/nyc_taxi.csv` (NAB's key)."""
    ts: NDArray[np.float64]
    values: NDArray[np.float64]
    windows: tuple[tuple[float, float], ...]
    layout: nab.Layout


def parse_time(text: str) -> float:
    """NAB timestamps (`2014-04-10 07:15:00[.000000]`, UTC by convention) as epoch seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def read_series(path: Path) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """A NAB data file's `timestamp,value` columns as float arrays, in file order."""
    df = pl.read_csv(path, schema_overrides={"timestamp": pl.String, "value": pl.Float64})
    stamps = df["timestamp"].str.to_datetime("%Y-%m-%d %H:%M:%S", time_zone="UTC", time_unit="us")
    ts = (stamps.dt.epoch("us").cast(pl.Float64) / 1e6).to_numpy()
    return ts, df["value"].to_numpy()


def load_corpus(data_dir: Path) -> list[NabFile]:
    """Every labelled file of the subset, sorted by name, with NAB's row layout."""
    root = nab_root(data_dir)
    windows = json.loads((root / "labels" / "combined_windows.json").read_text())
    corpus = []
    for name in sorted(windows):
        ts, values = read_series(root / "data" / name)
        limits = tuple((parse_time(a), parse_time(b)) for a, b in windows[name])
        spans = nab.window_spans(ts, limits)
        corpus.append(NabFile(name, ts, values, limits, nab.layout(len(ts), spans)))
    return corpus


def read_profiles(data_dir: Path) -> dict[str, nab.Costs]:
    """The cost weights of NAB's profiles, from config/profiles.json."""
    raw = json.loads((nab_root(data_dir) / "config" / "profiles.json").read_text())
    return {
        name: nab.Costs(tp=float(m["tpWeight"]), fp=float(m["fpWeight"]), fn=float(m["fnWeight"]))
        for name, body in raw.items()
        for m in [body["CostMatrix"]]
    }


def read_published(data_dir: Path, detector: str, profile: str) -> pl.DataFrame:
    """A published per-file results table: File, Threshold, Score, TP, TN, FP, FN, Total_Count."""
    path = nab_root(data_dir) / "results" / detector / f"{detector}_{profile}_scores.csv"
    return pl.read_csv(path).sort("File")


def published_score(data_dir: Path, detector: str, profile: str, n_windows: int, costs: nab.Costs) -> float:
    """A published detector's normalised subset score, from its per-file raw scores."""
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
    """One detector/profile/threshold-kind figure on the subset."""

    threshold: float
    raw: float
    score: float
    per_file: dict[str, nab.FileScore]


def score_at(corpus: Sequence[NabFile], scores: Sequence[NDArray[np.float64]], threshold: float, costs: nab.Costs) -> Result:
    """Normalised subset score at a given threshold, with the per-file breakdown."""
    per_file = {f.name: nab.score_file(s, f.layout, threshold, costs) for f, s in zip(corpus, scores, strict=True)}
    raw = sum(fs.score for fs in per_file.values())
    return Result(threshold, raw, nab.normalise(raw, n_windows(corpus), costs), per_file)


def score_optimised(corpus: Sequence[NabFile], scores: Sequence[NDArray[np.float64]], costs: nab.Costs) -> Result:
    """NAB's in-sample figure: the best single threshold over the subset."""
    threshold, _ = nab.best_threshold(nab.sweep(scores, [f.layout for f in corpus], costs))
    return score_at(corpus, scores, threshold, costs)


def n_windows(corpus: Sequence[NabFile]) -> int:
    """Label windows in the corpus (25 in nab-dev)."""
    return sum(f.layout.n_windows for f in corpus)


def nab_table(data_dir: Path, params: univariate.UnivariateParams = univariate.DEFAULT) -> pl.DataFrame:
    """Our detector beside the published ones, every profile, on the 13-file subset.

    Rows: detector, profile, threshold kind, threshold, score (normalised, 100 =
    perfect, 0 = never fires), source. Published detectors have one figure per
    profile, at the threshold NAB optimised on the full 58-file corpus; ours
    has two: the in-sample optimised threshold (NAB's procedure, on these 13
    files) and `params.alarm`, fixed before scoring.
    """
    corpus = load_corpus(data_dir)
    profiles = read_profiles(data_dir)
    scores = run_corpus(corpus, params)
    windows = n_windows(corpus)
    rows: list[dict[str, object]] = []
    for profile in PROFILE_NAMES:
        costs = profiles[profile]
        for kind, res in (
            ("optimised (in-sample)", score_optimised(corpus, scores, costs)),
            ("fixed (UnivariateParams.alarm)", score_at(corpus, scores, params.alarm, costs)),
        ):
            rows.append(_row(OURS, profile, kind, res.threshold, res.score, "ours"))
        for folder, label in PUBLISHED.items():
            table = read_published(data_dir, folder, profile)
            thr = float(table["Threshold"][0])
            score = published_score(data_dir, folder, profile, windows, costs)
            rows.append(_row(label, profile, "NAB-optimised (58 files)", thr, score, "published"))
    return pl.DataFrame(rows)


def _row(detector: str, profile: str, kind: str, threshold: float, score: float, source: str) -> dict[str, object]:
    return {
        "detector": detector,
        "profile": profile,
        "threshold_kind": kind,
        "threshold": threshold,
        "score": round(score, 2),
        "source": source,
    }

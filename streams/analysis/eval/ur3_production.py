"""UR3 CobotOps and SKAB through the production path: `fleet-twin import`, then the worker's detectors.

The benchmark detectors of `streams.analysis.eval.ur3` and `.skab` are
multivariate models fitted offline; here the same recordings are imported as
schema-v1 events of the robot models `ur3` and `skab-pump` (seeds/models.yaml)
and folded through `twin.pipeline` (band, spike, stuck, dropout, drift, silence,
cohort, ... with the parameters of seeds/detectors.yaml), as a worker would
run them, and scored by `streams.analysis.eval.production.score_import`.

UR3 is scored out-of-fold by contiguous time blocks: each block is one robot,
imported with nominal bands learned (`importing.learn_bands`) on the clean
work cycles of the other blocks only. SKAB's bands are learned on its
anomaly-free run, and only its labelled runs are scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from msgspec.structs import replace
import polars as pl

from streams.analysis.eval.production import (
    recording_set, score_import, skab_runs, write_folder, SKAB_SIGNALS,
)
from streams.analysis.eval.ur3 import JOINT, K, TEMPERATURES, SESSION_GAP_S, Recording, read
from streams.analysis.importing import (
    Imported, import_set, learn_bands, learn_stall_profile, learn_stuck_reports, with_bands, with_params,
)
from streams.analysis.recordings import ANOMALY, TIMESTAMP
from streams.seeds import read_detectors, read_fleet
from twin.score.folds import Fold, FoldResult, contiguous_blocks, out_of_fold

UR3_MODEL, SKAB_MODEL = "ur3", "skab-pump"
KINDS = ("protective_stop", "grip_lost")
"""The label columns of the UR3 runs (`anomaly` is either)."""


def ur3_signal(column: str) -> str:
    """The `ur3` model's name of a data set column: joints J0..J5 are the catalogue's joint1..joint6."""
    if column == "Tool_current":
        return "tool_current_a"
    kind, joint = column.split("_")
    unit = {"Current": "current_a", "Temperature": "temp_c", "Speed": "speed_rad_s"}[kind]
    return f"joint{int(joint[1]) + 1}_{unit}"


UR3_COLUMNS = JOINT + TEMPERATURES
MEASURED = tuple(ur3_signal(c) for c in UR3_COLUMNS)
"""The signals measured by the arm (bands and the stuck-sensor length are learned on these)."""
CYCLE = "work_cycle"
"""The `ur3` signal of the controller's work-cycle counter (`cycle `): the stall detector's phase."""
UR3_SIGNALS = (*MEASURED, CYCLE)


def ur3_frame(rec: Recording, rows: np.ndarray | slice = slice(None)) -> pl.DataFrame:
    """Rows of the recording in format (b), signals named as the `ur3` model's, with one 0/1
    column per kind of episode beside `anomaly`."""
    frame = rec.values.select(pl.col(c).alias(ur3_signal(c)) for c in UR3_COLUMNS).with_columns(
        pl.Series(CYCLE, rec.cycle), pl.Series(TIMESTAMP, rec.ts), pl.Series(ANOMALY, (rec.stop | rec.grip).astype(np.int8)),
        pl.Series("protective_stop", rec.stop.astype(np.int8)), pl.Series("grip_lost", rec.grip.astype(np.int8)))
    frame = frame.select(TIMESTAMP, *UR3_SIGNALS, ANOMALY, *KINDS)
    return frame[rows] if isinstance(rows, slice) else frame.filter(pl.Series(rows))


Block = tuple[int, int]
Learned = tuple[dict[str, tuple[float, float]], int, tuple[float, ...], tuple[int, int]]
"""What a fold learns on its training blocks: nominal bands, the stuck-sensor length, the
stall detector's work-cycle profile, and the (stall reports, close reports) it chose."""

STALL_GRID = tuple((reports, close) for reports in (2, 3, 4) for close in (5, 10, 30))
"""The stall detector's readings in a row and the lifecycle's normal readings before an alert
resolves, searched per fold on its training blocks: how many still readings make a stall
trades recall for false alarms, and a 30-reading hysteresis (the default) spans more than a
24 s work cycle, so a stop in the next cycle joins the open alert of the last one."""
BUDGET = 1.0
"""False alarms per robot-hour the search allows on the training blocks (the issue's goal)."""


def _runs(rec: Recording, block: Block, name: str) -> dict[str, pl.DataFrame]:
    """A block of rows as runs (one robot each), cut where the recording itself has a session gap."""
    lo, hi = block
    cuts = [lo, *(lo + 1 + np.flatnonzero(np.diff(rec.ts[lo:hi]) > SESSION_GAP_S)).tolist(), hi]
    parts = list(zip(cuts[:-1], cuts[1:]))
    return {f"runs/{name}{'abc'[i] if len(parts) > 1 else ''}.csv": ur3_frame(rec, slice(a, b))
            for i, (a, b) in enumerate(parts)}


def ur3_runs(rec: Recording, k: int = K) -> dict[str, pl.DataFrame]:
    """The recording as format-(b) runs, one per contiguous block (split at the session gap)."""
    return {n: f for i, b in enumerate(contiguous_blocks(len(rec.ts), k)) for n, f in _runs(rec, b, f"block-{i + 1}").items()}


def write_ur3(data_dir: Path, out: Path, k: int = K) -> Path:
    """UR3 CobotOps as a format-(b) folder: `runs/block-*.csv` (labelled) and, as the normal-only
    run, the clean work cycles of the first session (`normal/clean-cycles-session-1.csv`; the same
    rows are also in the block runs: UR3 has no stretch without episodes to spare)."""
    rec = read(data_dir)
    first = np.zeros(len(rec.ts), dtype=bool)
    first[slice(*rec.blocks[0])] = True
    runs = ur3_runs(rec, k) | {"normal/clean-cycles-session-1.csv": ur3_frame(rec, first & rec.clean).drop(KINDS)}
    return write_folder(out, runs, ["normal/clean-cycles-session-1.csv"], UR3_SIGNALS,
                        "UR3 CobotOps (UCI 963, Tyrovolas et al. 2024, CC BY 4.0), written by "
                        "streams.analysis.eval.ur3_production.write_ur3")


def production_oof(data_dir: Path, seeds_dir: Path, k: int = K,
                   grid: Sequence[tuple[int, int]] = ()) -> Imported:
    """Every block imported as a robot of `ur3` whose bands were learned on the clean cycles of
    the other blocks, folded through the worker's rules; the folds' imports merged."""
    return merge([r.result for r in production_folds(data_dir, seeds_dir, k, grid)])


def production_folds(data_dir: Path, seeds_dir: Path, k: int = K,
                     grid: Sequence[tuple[int, int]] = ()) -> list[FoldResult[Block, Learned, Imported]]:
    """Per held-out block: what its fold learned and chose on the other blocks, and its import.

    With an empty `grid`, the committed settings (seeds/detectors.yaml) are kept and only the
    bands, stuck length and stall profile are learned. With several settings (`STALL_GRID`),
    the stall setting is chosen on the training blocks, each imported with what was learned on
    those blocks: the most protective stops caught within `BUDGET` false alarms per robot-hour
    there, else the fewest false alarms."""
    rec = read(data_dir)
    fleet, config = read_fleet(seeds_dir), read_detectors(seeds_dir)
    blocks = contiguous_blocks(len(rec.ts), k)
    folds = [Fold(f"block-{i + 1}", tuple(b for b in blocks if b != held), (held,)) for i, held in enumerate(blocks)]
    identity = {s: s for s in MEASURED}
    stall = config.for_model(UR3_MODEL).stall

    def learn(train: Sequence[Block]) -> Learned:
        keep = np.zeros(len(rec.ts), dtype=bool)
        for lo, hi in train:
            keep[lo:hi] = True
        normal = ur3_frame(rec, keep & rec.clean)
        profile = learn_stall_profile([normal], {s: s for s in UR3_SIGNALS}, stall) if stall else ()
        learned = (learn_bands([normal], identity), learn_stuck_reports([normal], MEASURED), profile)
        if stall is None or len(grid) < 2:
            return (*learned, grid[0] if grid else (stall.reports if stall else 0, config.for_model(UR3_MODEL).close_reports))
        tried = []
        for setting in grid:
            table = score_import(merge([run_blocks((*learned, setting), [b]) for b in train]), KINDS)
            stops = table.filter(pl.col("episodes") == "protective_stop").row(0, named=True)
            within = stops["false / robot-hour"] <= BUDGET
            # ties: fewer false alarms, then the stricter setting (more readings, longer hysteresis)
            tried.append((within, stops["detected"] if within else 0, -stops["false alarms"], setting))
        return (*learned, max(tried)[-1])

    def run_blocks(learned: Learned, test: Sequence[Block]) -> Imported:
        (block,) = test
        bands, stuck, profile, (reports, close) = learned
        params: dict[str, object] = {"stuck_reports": stuck}
        if stall is not None:
            params |= {"stall": replace(stall, profile=profile, reports=reports), "close_reports": close}
        runs = _runs(rec, block, f"ur3-block-{blocks.index(block) + 1}")
        recs = recording_set(data_dir, runs, (), UR3_SIGNALS)
        return import_set(recs, with_bands(fleet, UR3_MODEL, bands), with_params(config, UR3_MODEL, **params),
                          UR3_MODEL, label_columns=KINDS)

    return out_of_fold(folds, learn, run_blocks, key=lambda b: b)


def merge(parts: Sequence[Imported]) -> Imported:
    """Imports of disjoint robots as one (for pooled scores)."""
    first = parts[0]
    return Imported(
        first.model, first.mapping, {k: v for p in parts for k, v in p.robots.items()},
        [r for p in parts for r in p.telemetry], [r for p in parts for r in p.checks],
        pl.concat([p.labels for p in parts]), [a for p in parts for a in p.anomalies],
        sum(p.rejected for p in parts), {k: v for p in parts for k, v in p.observed_s.items()},
        {k: v for p in parts for k, v in p.timestamps.items()})


def production_oof_table(data_dir: Path, seeds_dir: Path, k: int = K, search: bool = False) -> pl.DataFrame:
    """UR3 (out-of-fold over `k` blocks) and SKAB (bands from its anomaly-free run) through the
    worker's detectors; with `search`, also UR3 with the stall setting searched per fold (`STALL_GRID`)."""
    rows = [score_import(production_oof(data_dir, seeds_dir, k), KINDS).select(
        pl.lit(f"UR3, out-of-fold {k} blocks, committed settings").alias("data"), pl.all())]
    if search:
        folds = production_folds(data_dir, seeds_dir, k, STALL_GRID)
        chosen = " ".join(f"{r.params[3][0]}/{r.params[3][1]}" for r in folds)
        rows.append(score_import(merge([r.result for r in folds]), KINDS).select(
            pl.lit(f"UR3, out-of-fold {k} blocks, stall reports/close searched per fold ({chosen})").alias("data"), pl.all()))
    rows.append(score_import(skab_production(data_dir, seeds_dir)).select(
        pl.lit("SKAB, bands from anomaly-free").alias("data"), pl.all()))
    return pl.concat(rows, how="vertical_relaxed")


def skab_production(data_dir: Path, seeds_dir: Path) -> Imported:
    """SKAB's labelled runs as robots of `skab-pump` with bands learned on the anomaly-free run."""
    runs = skab_runs(data_dir)
    normal = "anomaly-free/anomaly-free.csv"
    signals = tuple(SKAB_SIGNALS.values())
    bands = learn_bands([runs[normal]], {s: s for s in signals})
    fleet = with_bands(read_fleet(seeds_dir), SKAB_MODEL, bands)
    config = with_params(read_detectors(seeds_dir), SKAB_MODEL, stuck_reports=learn_stuck_reports([runs[normal]], signals))
    recs = recording_set(data_dir / "skab", runs, (normal,), signals)
    return import_set(recs, fleet, config, SKAB_MODEL, robot_id="skab", runs=[n for n in runs if n != normal])

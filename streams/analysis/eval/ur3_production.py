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
from twin.score.folds import Fold, contiguous_blocks, out_of_fold

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
Learned = tuple[dict[str, tuple[float, float]], int, tuple[float, ...]]
"""What a fold learns on its training blocks: nominal bands, the stuck-sensor length, and the
stall detector's work-cycle profile."""


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


def production_oof(data_dir: Path, seeds_dir: Path, k: int = K) -> Imported:
    """Every block imported as a robot of `ur3` whose bands were learned on the clean cycles of
    the other blocks, folded through the worker's rules; the folds' imports merged."""
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
        return learn_bands([normal], identity), learn_stuck_reports([normal], MEASURED), profile

    def held_out(learned: Learned, test: Sequence[Block]) -> Imported:
        (block,) = test
        bands, stuck, profile = learned
        params = {"stuck_reports": stuck} | ({"stall": replace(stall, profile=profile)} if stall else {})
        runs = _runs(rec, block, f"ur3-block-{blocks.index(block) + 1}")
        recs = recording_set(data_dir, runs, (), UR3_SIGNALS)
        return import_set(recs, with_bands(fleet, UR3_MODEL, bands), with_params(config, UR3_MODEL, **params),
                          UR3_MODEL, label_columns=KINDS)

    return merge([r.result for r in out_of_fold(folds, learn, held_out, key=lambda b: b)])


def merge(parts: Sequence[Imported]) -> Imported:
    """Imports of disjoint robots as one (for pooled scores)."""
    first = parts[0]
    return Imported(
        first.model, first.mapping, {k: v for p in parts for k, v in p.robots.items()},
        [r for p in parts for r in p.telemetry], [r for p in parts for r in p.checks],
        pl.concat([p.labels for p in parts]), [a for p in parts for a in p.anomalies],
        sum(p.rejected for p in parts), {k: v for p in parts for k, v in p.observed_s.items()},
        {k: v for p in parts for k, v in p.timestamps.items()})


def production_oof_table(data_dir: Path, seeds_dir: Path, k: int = K) -> pl.DataFrame:
    """UR3 (out-of-fold over `k` blocks) and SKAB (bands from its anomaly-free run) through the worker's detectors."""
    ur3 = score_import(production_oof(data_dir, seeds_dir, k), KINDS)
    skab = score_import(skab_production(data_dir, seeds_dir))
    return pl.concat([
        ur3.select(pl.lit(f"UR3, out-of-fold {k} blocks").alias("data"), pl.all()),
        skab.select(pl.lit("SKAB, bands from anomaly-free").alias("data"), pl.all()),
    ], how="vertical_relaxed")


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

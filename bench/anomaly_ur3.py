"""UR3 CobotOps events: protective stops and grip losses, recall vs chance, out-of-fold.

The recording is cut into K contiguous time blocks; each block is scored with
the setting and the baselines searched on the other K-1 (the multivariate
benchmark detectors, `streams.analysis.eval.ur3`) and, with `--production`,
the worker's own detectors through `twin.pipeline` on the imported recording,
bands learned on the other blocks (`streams.analysis.eval.ur3_production`).
An episode is detected if an alert fires from 5 s before to 10 s after its
onset; false alarms are per hour outside every episode window; chance =
recall of the same alerts shifted in time. `--tune` shows the grid on the
first session alone (where the frozen JOINT/TOOL parameters came from). Data
from --data-dir, else the setting data_dir: $FLEET_TWIN_DATA_DIR or
<repo>/../shared/data. The benchmark table takes about a minute of CPU.

`--write DIR` writes UR3 CobotOps and SKAB as format-(b) folders (DIR/ur3,
DIR/skab) for `fleet-twin import` and `fleet-twin eval --data` (outside the
repository: the data sets stay in the shared folder).

    .venv/bin/python bench/anomaly_ur3.py [--markdown] [--tune] [--production [--search]] [--blocks K] [--data-dir DIR]
    .venv/bin/python bench/anomaly_ur3.py --write /tmp/recordings
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.analysis.eval.skab import markdown  # noqa: E402
from streams.analysis.eval.ur3 import JOINT, K, TOOL, tune, ur3_table  # noqa: E402
from streams.settings import Settings  # noqa: E402


def show_tuning(root: Path) -> None:
    for label, columns, event, per_phase in (
        ("joint, per cycle phase / stops", JOINT, "stop", True),
        ("joint, one baseline / stops", JOINT, "stop", False),
        ("tool current, per cycle phase / grip", TOOL, "grip", True),
    ):
        print(f"{label}: best settings within 20 false alarms/h on the first session (in-sample)")
        for recall, per_hour, p in tune(root, columns, event, per_phase=per_phase)[:3]:
            print(f"  recall {recall:.3f}  FA/h {per_hour:5.1f}  threshold {p.threshold} "
                  f"release {p.release} rise_s {p.rise_s} fall_s {p.fall_s}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", type=Path, default=None, help="shared data folder (holds ur3-cobotops/)")
    ap.add_argument("--markdown", action="store_true", help="print a pipe table for the docs")
    ap.add_argument("--tune", action="store_true", help="also show the grid on the first session alone")
    ap.add_argument("--production", action="store_true",
                    help="score the worker's detectors (import + twin.pipeline) instead of the benchmark ones")
    ap.add_argument("--search", action="store_true",
                    help="with --production: also search the stall setting per fold on its training blocks (~2 min)")
    ap.add_argument("--blocks", type=int, default=K, help="contiguous time blocks (folds)")
    ap.add_argument("--write", type=Path, default=None, help="write UR3 and SKAB as format-(b) folders here, then stop")
    args = ap.parse_args()
    settings = Settings()
    root = args.data_dir or settings.data_dir
    start = time.perf_counter()
    if args.write:
        from streams.analysis.eval.production import write_skab
        from streams.analysis.eval.ur3_production import write_ur3

        for written in (write_ur3(root, args.write / "ur3", args.blocks), write_skab(root, args.write / "skab")):
            print(f"{written}/ ({sum(1 for _ in written.rglob('*.csv'))} runs)")
        return
    if args.production:
        from streams.analysis.eval.ur3_production import production_oof_table

        table = production_oof_table(root, settings.seeds_dir, args.blocks, search=args.search)
    else:
        table = ur3_table(root, args.blocks)
    if args.markdown:
        print(markdown(table))
    else:
        with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=250, fmt_str_lengths=60):
            print(table)
    if args.tune:
        show_tuning(root)
    print(f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()

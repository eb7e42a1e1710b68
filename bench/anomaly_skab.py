"""SKAB outlier task, official protocol: ours beside the published leaderboard.

First 400 rows of each labelled file fit the baseline, the rest is streamed
through `twin.detect.multivariate.step`; point-wise F1, FAR and MAR over all
test rows pooled, one frozen parameter set (`multivariate.DEFAULT`).
Data from --data-dir, else the setting data_dir: $FLEET_TWIN_DATA_DIR or
<repo>/../shared/data (never copied).

`--crossfold` adds the honest check of that choice: parameters tuned on half
the files, scored on the other half (about 20 s).

    .venv/bin/python bench/anomaly_skab.py [--markdown] [--crossfold] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.analysis.eval.skab import crossfold, markdown, skab_table  # noqa: E402
from streams.settings import Settings  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", type=Path, default=None, help="shared data folder (holds skab/)")
    ap.add_argument("--markdown", action="store_true", help="print a pipe table for the docs")
    ap.add_argument("--crossfold", action="store_true", help="also tune on half, score the rest")
    args = ap.parse_args()
    root = args.data_dir or Settings().data_dir
    start = time.perf_counter()
    tables = [skab_table(root)] + ([crossfold(root)] if args.crossfold else [])
    for table in tables:
        if args.markdown:
            print(markdown(table) + "\n")
        else:
            with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=250, fmt_str_lengths=60):
                print(table)
    print(f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()

"""SKAB outlier task, official protocol: ours beside the published leaderboard.

First 400 rows of each labelled file fit the baseline, the rest is streamed
through `twin.detect.multivariate.step`; point-wise F1, FAR and MAR over all
test rows pooled, one frozen parameter set (`multivariate.DEFAULT`).
Data from $FLEET_TWIN_DATA_DIR or <repo>/../shared/data (never copied).

    .venv/bin/python bench/anomaly_skab.py [--markdown] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.eval.skab import data_dir, markdown, skab_table  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--markdown", action="store_true", help="print a pipe table for the docs")
    args = ap.parse_args()
    start = time.perf_counter()
    table = skab_table(args.data_dir or data_dir())
    if args.markdown:
        print(markdown(table))
    else:
        with pl.Config(tbl_rows=-1, tbl_width_chars=200, fmt_str_lengths=60):
            print(table)
    print(f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()

"""SKAB outlier task, official protocol, out-of-fold by experiment folder: ours beside the published leaderboard.

First 400 rows of each labelled file fit the baseline, the rest is scored
by the multivariate detector (`streams.analysis.eval.skab`, through the same
scorer as `fleet-twin eval --data PATH`); point-wise F1, FAR and MAR over all
test rows pooled. Headline: channels, input averaging, shrinkage, threshold
and smoothing chosen on two folders (valve1, valve2, other), scored on the
third, pooled (leave-one-folder-out, `twin.score.folds`). The committed
`multivariate.DEFAULT` is shown as well, labelled in-sample: it was chosen
on these same files. A few minutes on a loaded machine (384 choices x 3 folds).
Data from --data-dir, else the setting data_dir: $FLEET_TWIN_DATA_DIR or
<repo>/../shared/data (never copied).

    .venv/bin/python bench/anomaly_skab.py [--markdown] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.analysis.eval.skab import markdown, skab_table  # noqa: E402
from streams.settings import Settings  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", type=Path, default=None, help="shared data folder (holds skab/)")
    ap.add_argument("--markdown", action="store_true", help="print a pipe table for the docs")
    args = ap.parse_args()
    root = args.data_dir or Settings().data_dir
    start = time.perf_counter()
    table = skab_table(root)
    if args.markdown:
        print(markdown(table))
    else:
        with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=250, fmt_str_lengths=80):
            print(table)
    print(f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()

"""NAB: our univariate detector, out-of-fold first, beside NAB's published scoreboard.

Scores are NAB's normalised figures (100 = perfect, 0 = a detector that never
fires) computed by `twin.score.nab`, which reproduces NAB's published per-file
scores (tests/unit/test_nab_score.py). Rows, through
`streams.analysis.eval.nab.nab_folder_table` (the code `fleet-twin eval`
runs):

* out-of-fold, leave one file out (the headline) and leave one category out:
  the alert threshold, the quiet horizon and the bins' spread floor
  (`THRESHOLDS`, `SEARCH_GRID`) are searched on
  the other files only and the held-out file is scored at that choice; the
  held-out raw scores add up and are normalised over all windows;
* fixed in advance: the committed parameters at `UnivariateParams.alarm`;
* optimised on these files: NAB's own procedure, in-sample;
* published: NAB's per-file raw scores summed over the subset, at NAB's
  threshold (optimised on all 58 files).

The committed parameters were chosen by hand while looking at the 13 dev
files: only the searches named above are out-of-fold.

    .venv/bin/python bench/anomaly_nab.py [--data PATH] [--per-file]

PATH: a NAB-layout folder (default: nab-dev under FLEET_TWIN_DATA_DIR).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import msgspec
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.analysis.eval import nab as ev  # noqa: E402
from streams.settings import Settings  # noqa: E402
from twin.detect import univariate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="a NAB-layout folder; default: nab-dev under FLEET_TWIN_DATA_DIR (or ../shared/data)")
    parser.add_argument("--per-file", action="store_true", help="also print per-file raw scores (standard profile)")
    args = parser.parse_args()
    root = args.data if args.data is not None else ev.nab_root(Settings().data_dir)

    started = time.perf_counter()
    table = ev.nab_folder_table(root)
    elapsed = time.perf_counter() - started
    with pl.Config(tbl_rows=-1, tbl_width_chars=160, tbl_hide_dataframe_shape=True, fmt_str_lengths=50):
        print(table)
    print(f"\ndetector state: {_numbers()} numbers per signal, at most {len(_widest())} bytes as msgpack (array form); "
          f"{elapsed:.1f} s for the table")
    if args.per_file:
        _per_file(root)


def _per_file(root: Path) -> None:
    """Per-file raw scores, standard profile: out-of-fold (with each fold's choice) and fixed."""
    corpus = ev.load_folder(root)
    units = ev.score_grid(corpus)
    costs = ev.folder_profiles(root)["standard"]
    oof = ev.out_of_fold(units, costs)
    print(f"\nstandard, out-of-fold (leave one file out): {oof.score:.2f}")
    for r in oof.folds:
        for name, fs in r.result.items():
            chosen = ev.SEARCH_GRID[r.params.grid_index]
            print(f"  {name:60s} {fs.score:8.3f}  threshold {r.params.threshold:.2f} quiet {chosen.quiet:g} bin_floor {chosen.bin_floor:g}  "
                  f"rows fired: {fs.tp} in windows, {fs.fp} outside")
    fixed = ev.score_at(corpus, [u.scores[0] for u in units], univariate.DEFAULT.alarm, costs)
    print(f"\nstandard, fixed threshold {fixed.threshold:g}: {fixed.score:.2f}")
    for name, fs in fixed.per_file.items():
        print(f"  {name:60s} {fs.score:8.3f}  rows fired: {fs.tp} in windows, {fs.fp} outside")


def _numbers() -> int:
    """Numbers in one signal's state (tuple fields counted element by element)."""
    return sum(len(v) if isinstance(v, tuple) else 1 for v in msgspec.structs.astuple(univariate.start(0.0, 0.0)))


def _widest() -> bytes:
    """A state with every float non-trivial and every count large: msgpack's worst case for this struct."""
    def wide(v: object) -> object:
        if isinstance(v, tuple):
            return tuple(wide(x) for x in v)
        if isinstance(v, bool):
            return True
        return 1 << 30 if isinstance(v, int) else 0.123456789
    values = [wide(v) for v in msgspec.structs.astuple(univariate.start(0.0, 0.0))]
    return msgspec.msgpack.encode(msgspec.convert(values, univariate.State))


if __name__ == "__main__":
    main()

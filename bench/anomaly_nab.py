"""NAB 13-file subset: our univariate detector beside NAB's published scoreboard.

Scores are NAB's normalised figures (100 = perfect, 0 = a detector that never
fires) computed by `twin.score.nab`, which reproduces NAB's published per-file
scores (tests/unit/test_nab_score.py). Published rows: NAB's per-file raw
scores, summed over the subset, at NAB's threshold (optimised on all 58
files). Ours: the in-sample optimised threshold (NAB's procedure on these 13
files) and `UnivariateParams.alarm`, fixed in advance. The detector's parameters were
tuned on these same 13 files: both of our figures are in-sample.

    .venv/bin/python bench/anomaly_nab.py [--data-dir DIR] [--per-file]
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Settings().data_dir,
                        help="shared data folder (holds nab-dev/); default: FLEET_TWIN_DATA_DIR or ../shared/data")
    parser.add_argument("--per-file", action="store_true", help="also print our per-file raw scores (standard profile)")
    args = parser.parse_args()

    started = time.perf_counter()
    table = ev.nab_table(args.data_dir)
    elapsed = time.perf_counter() - started
    with pl.Config(tbl_rows=-1, tbl_width_chars=140, tbl_hide_dataframe_shape=True, fmt_str_lengths=40):
        print(table)
    fields = msgspec.structs.fields(univariate.State)
    floats = sum(1 for f in fields if f.type is float)
    print(
        f"\ndetector state: {floats} floats + {len(fields) - floats} ints, at most {len(_full())} bytes as msgpack "
        f"(array form); {elapsed:.1f} s for 13 files and 3 profiles"
    )
    if args.per_file:
        corpus = ev.load_corpus(args.data_dir)
        scores = ev.run_corpus(corpus)
        costs = ev.read_profiles(args.data_dir)["standard"]
        for kind, res in (
            ("optimised", ev.score_optimised(corpus, scores, costs)),
            ("fixed", ev.score_at(corpus, scores, univariate.DEFAULT.alarm, costs)),
        ):
            print(f"\nstandard, {kind} threshold {res.threshold:.6g}: {res.score:.2f}")
            for name, fs in res.per_file.items():
                print(f"  {name:60s} {fs.score:8.3f}  rows fired: {fs.tp} in windows, {fs.fp} outside")


def _full() -> bytes:
    """A state with every float non-trivial and every int large: msgpack's worst case for this struct."""
    values = [0.123456789 if f.type is float else 1 << 30 for f in msgspec.structs.fields(univariate.State)]
    return msgspec.msgpack.encode(msgspec.convert(values, univariate.State))


if __name__ == "__main__":
    main()

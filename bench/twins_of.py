"""How fast `twin.batch_fold.twins_of` materialises a batch's twins, against `twin_of` robot by robot.

What the worker does after each batch: the twin of every robot the batch touched, encoded for the
twins changelog. Log: bench/fold_batch.py's (`log`: the chaos scenario at `--robots` robots for
`--seconds` seconds, silence checks for `--checks` robots every 5 s), folded through
`batch_fold.fold_log` in batches of `--batch` records. After each batch of the second half of the
run, the robots the batch touched (in log order of first sight) are materialised and encoded twice:

* per robot: `[encode_twin(twin_of(state, r)) for r in ids]` (the baseline);
* batched: `[encode_twin(t) for t in twins_of(state, ids)]` (one numpy gather per column for all).

Process CPU time of each, in microseconds per robot, and their ratio; the two byte lists are checked
equal (the run stops with an error otherwise). The fold itself is not timed.

Measured (2 shared cores under load, 2,000 robots, 60 s, batch 2,000): see the commit message.

    .venv/bin/python bench/twins_of.py [--robots 2000] [--seconds 60] [--batch 2000] [--checks 20]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fold_batch  # noqa: E402
from streams.seeds import read_detectors, read_fleet  # noqa: E402
from twin import batch_fold as bf  # noqa: E402
from twin.fleet_fold import Rules  # noqa: E402
from twin.state import encode_twin  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--robots", type=int, default=2000)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--checks", type=int, default=20)
    a = ap.parse_args()
    rules = Rules(read_fleet(fold_batch.SEEDS), read_detectors(fold_batch.SEEDS))
    records = fold_batch.log(rules, a.robots, a.seconds, a.checks)
    state = bf.FoldState(rules)
    one = many = 0.0
    robots = batches = 0
    for at in range(0, len(records), a.batch):
        batch = records[at:at + a.batch]
        bf.fold_log(state, rules, batch)
        if at < len(records) // 2:
            continue
        ids = list(dict.fromkeys(r.key.decode() for r in batch if r.key))
        t0 = time.process_time()
        each = [encode_twin(bf.twin_of(state, r)) for r in ids]  # type: ignore[arg-type]
        t1 = time.process_time()
        batched = [encode_twin(t) for t in bf.twins_of(state, ids)]  # type: ignore[arg-type]
        t2 = time.process_time()
        if each != batched:
            raise SystemExit(f"MISMATCH after the batch at record {at}")
        one, many = one + t1 - t0, many + t2 - t1
        robots, batches = robots + len(ids), batches + 1
    print(f"{a.robots} robots, {a.seconds} s, {len(records)} records, batch {a.batch}; {robots} robot twins over"
          f" {batches} batches of the second half, bytes identical")
    print(f"twin_of per robot: {one / robots * 1e6:6.1f} us/robot (with encode_twin)")
    print(f"twins_of batched : {many / robots * 1e6:6.1f} us/robot (with encode_twin)")
    print(f"ratio: {one / many:.2f}x")


if __name__ == "__main__":
    main()

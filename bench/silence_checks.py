"""What the worker's silence timer costs per robot: from the fold's columns against decoding every twin.

Every `FLEET_TWIN_SILENCE_CHECK_S` (5 s) the worker asks which of its robots went quiet. Before,
it decoded every twin of its table and asked `fleet_fold.silence_check_due` of each (the baseline);
now it asks `twin.batch_silence.quiet_robots` of the fold's columns for the robots the fold holds.
Fold: bench/fold_batch.py's log (the chaos scenario at `--robots` robots for `--seconds` seconds,
silence checks for 2% of them every 5 s), folded through `batch_fold.fold_log`; the table is every
robot's `encode_twin` bytes. Each way is asked at `--instants` instants from the newest record on
(from nobody quiet to everyone); the robot lists are checked equal (the run stops with an error
otherwise). Process CPU time per robot and per ask, and their ratio. The fold itself is not timed.

    .venv/bin/python bench/silence_checks.py [--robots 10000] [--seconds 20] [--instants 10]
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
from twin.batch_silence import quiet_robots  # noqa: E402
from twin.fleet_fold import Rules, silence_check_due  # noqa: E402
from twin.state import decode_twin, encode_twin  # noqa: E402

BATCH = 4000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--robots", type=int, default=10_000)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--instants", type=int, default=10)
    a = ap.parse_args()
    rules = Rules(read_fleet(fold_batch.SEEDS), read_detectors(fold_batch.SEEDS))
    records = fold_batch.log(rules, a.robots, a.seconds, a.robots // 50)  # checks: some robots flagged silent
    state = bf.FoldState(rules)
    for at in range(0, len(records), BATCH):
        bf.fold_log(state, rules, records[at:at + BATCH])
    ids = state.red.robot_ids
    table = {r: encode_twin(t) for r, t in zip(ids, bf.twins_of(state, ids)) if t is not None}
    partitions = set(range(8))
    newest = max(r.timestamp for r in records)
    decoded = columns = 0.0
    picked = 0
    for k in range(a.instants):
        now = newest + 30.0 * k / max(a.instants - 1, 1)  # 0 to 30 s after the newest record
        t0 = time.process_time()
        twins = [decode_twin(raw) for raw in list(table.values())]
        want = [t.robot_id for t in twins if t.partition in partitions and silence_check_due(t, now, rules.config)]
        t1 = time.process_time()
        got = quiet_robots(state, now, rules.config, partitions)
        t2 = time.process_time()
        if sorted(got) != sorted(want):
            raise SystemExit(f"MISMATCH at now = newest + {now - newest:.1f} s")
        decoded, columns, picked = decoded + t1 - t0, columns + t2 - t1, picked + len(want)
    asks = a.instants * len(table)
    print(f"{len(table):,} robots, {len(records):,} records; {a.instants} asks from 0 to 30 s after the newest "
          f"record, {picked:,} quiet robots picked in all, the same both ways")
    print(f"decode every twin + silence_check_due: {decoded / asks * 1e6:7.3f} us/robot, "
          f"{decoded / a.instants * 1e3:8.1f} ms per ask (the baseline)")
    print(f"quiet_robots over the columns        : {columns / asks * 1e6:7.3f} us/robot, "
          f"{columns / a.instants * 1e3:8.1f} ms per ask")
    print(f"ratio: {decoded / columns:.1f}x")


if __name__ == "__main__":
    main()

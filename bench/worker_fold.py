"""What the worker's batch step costs beyond the fold: `ingest.fold` + `Batch.count` against `fold_log`.

The worker hands each micro-batch to `streams.worker.ingest.fold` (records built from the messages,
the fold, then per record the batch's bookkeeping: touched robots, outcomes, the safety KPIs and the
lag observations) and then `Batch.count` moves the metrics once. `fold_log` alone is the fold a
replay runs on the same records; the difference is the worker's own per-record work, measured here
without a broker (no fetch, no acks, no checkpoint).

Log: `bench/fold_batch.py`'s chaos log (`--robots` robots for `--seconds` seconds on partition 0,
silence checks for `--checks` robots every 5 s), cut in batches of `--batch`. Each side folds the
whole log from a fresh state, `--repeat` times alternately; process CPU seconds, the best of each.

    .venv/bin/python bench/worker_fold.py [--robots 2000] [--seconds 80] [--batch 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client import CollectorRegistry  # noqa: E402

import fold_batch as fb  # noqa: E402
from streams.seeds import read_detectors, read_fleet  # noqa: E402
from streams.worker.ingest import Held, LogMessage, fold  # noqa: E402
from streams.worker.metrics import PipelineMetrics  # noqa: E402
from twin.batch_fold import FoldState, fold_log  # noqa: E402
from twin.fleet_fold import Rules  # noqa: E402
from twin.record import Record  # noqa: E402

CHECKS = "checks"


def messages(records: list[Record]) -> list[LogMessage]:
    return [LogMessage(CHECKS if r.kind == "check" else "telemetry", r.partition, r.offset, r.timestamp, r.key,
                       r.value) for r in records]


def replay_side(rules: Rules, records: list[Record], size: int) -> float:
    """CPU seconds of `fold_log` over the log in batches of `size`."""
    state, spent = FoldState(rules), 0.0
    for at in range(0, len(records), size):
        t0 = time.process_time()
        fold_log(state, rules, records[at:at + size])
        spent += time.process_time() - t0
    return spent


def worker_side(rules: Rules, msgs: list[LogMessage], size: int) -> float:
    """CPU seconds of the worker's `fold` + `Batch.count` over the log in batches of `size`."""
    held, metrics, spent = Held(rules), PipelineMetrics(CollectorRegistry()), 0.0
    for at in range(0, len(msgs), size):
        t0 = time.process_time()
        fold(held, rules, {}, msgs[at:at + size], CHECKS).count(metrics)
        spent += time.process_time() - t0
    return spent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--robots", type=int, default=2000)
    ap.add_argument("--seconds", type=int, default=80)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--checks", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    rules = Rules(read_fleet(fb.SEEDS), read_detectors(fb.SEEDS))
    records = fb.log(rules, a.robots, a.seconds, a.checks)
    msgs = messages(records)
    gc.freeze()  # as the worker does after start-up: the log is not the fold's garbage
    replay, worker = [], []
    for _ in range(a.repeat):
        replay.append(replay_side(rules, records, a.batch))
        worker.append(worker_side(rules, msgs, a.batch))
    n, r, w = len(records), min(replay), min(worker)
    print(f"{a.robots} robots, {a.seconds} s, {n} records, batch {a.batch}; best of {a.repeat}")
    print(f"fold_log (replay)        : {n / r:9.0f} events/CPU-s  ({r / n * 1e6:5.1f} us/event)")
    print(f"ingest.fold + count      : {n / w:9.0f} events/CPU-s  ({w / n * 1e6:5.1f} us/event)")
    print(f"worker's own, per record : {(w - r) / n * 1e6:5.1f} us/event = {(w - r) / w:.0%} of its batch step;"
          f" ratio worker/replay {w / r:.2f}")


if __name__ == "__main__":
    main()

"""What a micro-batch's size costs the worker's fold, per event: why latency at low rates is no better.

The worker's own consumer hands `streams.worker.ingest.fold` what arrived within
FLEET_TWIN_BATCH_WITHIN_S (20 ms) or FLEET_TWIN_BATCH_MAX records. At 1,000 events/s that is ~20
records spread over 8 partitions. Until the ninth session each partition's records were folded
apart (two or three robots each: the scalar path, which loads each twin from the columns, feeds it
and stores it back); now one join spans the batch's partitions, and only a batch of fewer robots
than `batch_fold.NARROW_ROBOTS` takes the scalar path. Under a backlog the batch is full and the
columns pay.

The same events as `bench/pipeline_throughput.py` part (4) (`--robots` robots reporting once a
second, keyed by robot id over 8 partitions as the producer's partitioner puts them), one warm-up
tick folded whole, then `--ticks` ticks cut into batches of each size and passed through
`ingest.fold` (what the worker calls: decode, fold, KPIs), then `changelog_items` (the encoded twins) of
the batch's robots (the changelog's bytes), as a worker checkpointing after every batch
(FLEET_TWIN_CHECKPOINT_S=0) stores them. Process CPU time in microseconds per event, and each size's
ratio to batch 500 measured in the same run. No broker: the round trips each batch awaits (anomaly
and changelog acks, the offset commit) come on top, once per batch.

    .venv/bin/python bench/batch_size.py [--robots 1000] [--ticks 10] [--sizes 1,5,20,100,500,2000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec  # noqa: E402

import pipeline_throughput as pt  # noqa: E402
from streams.kafka_client import partitioner  # noqa: E402
from streams.seeds import read_detectors  # noqa: E402
from streams.worker.ingest import Held, LogMessage, changelog_items, fold  # noqa: E402
from twin.fleet_fold import Rules  # noqa: E402
from twin.schema import Event  # noqa: E402

PARTITIONS, TOPIC, CHECKS = 8, "telemetry", "checks"
BASELINE = 500


def messages(ticks: list[list[Event]]) -> list[LogMessage]:
    """The events as the worker reads them: per partition, offsets in send order."""
    partition_of, offsets = partitioner(PARTITIONS), [0] * PARTITIONS
    out = []
    for tick in ticks:
        for e in tick:
            key = e.robot_id.encode()
            p = partition_of(key)
            out.append(LogMessage(TOPIC, p, offsets[p], e.ts + 0.05, key, msgspec.json.encode(e)))
            offsets[p] += 1
    return out


def cost(rules: Rules, warm: list[LogMessage], log: list[LogMessage], size: int) -> float:
    """Microseconds of process CPU per event of `log`, folded in batches of `size`."""
    held = Held(rules)
    fold(held, rules, {}, warm, CHECKS)
    spent = 0.0
    for i in range(0, len(log), size):
        batch = sorted(log[i:i + size], key=lambda m: (m.partition, m.offset))
        started = time.process_time()
        done = fold(held, rules, {}, batch, CHECKS)
        changelog_items(held, done.touched)
        spent += time.process_time() - started
    return spent * 1e6 / len(log)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--robots", type=int, default=1000)
    ap.add_argument("--ticks", type=int, default=10)
    ap.add_argument("--sizes", default="1,5,20,100,500,2000")
    a = ap.parse_args()
    rules = Rules(pt.FLEET, read_detectors(pt.ROOT / "seeds"))
    sim = pt.simulate(a.robots, a.ticks + 1)
    every = messages([sim.step() for _ in range(a.ticks + 1)])
    warm, log = every[:a.robots], every[a.robots:]
    sizes = sorted({int(s) for s in a.sizes.split(",")} | {BASELINE})
    per = {size: cost(rules, warm, log, size) for size in sizes}
    print(f"{a.robots:,} robots, {len(log):,} events over {PARTITIONS} partitions, after one warm-up tick")
    print(f"{'batch':>8} {'us/event':>10} {'events/CPU-s':>13} {'vs ' + str(BASELINE):>8}")
    for size in sizes:
        print(f"{size:>8,} {per[size]:>10.0f} {1e6 / per[size]:>13,.0f} {per[size] / per[BASELINE]:>8.2f}")


if __name__ == "__main__":
    main()

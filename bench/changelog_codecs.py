"""What producer compression does to the twins changelog: bytes per twin and the worker's CPU per twin, by codec.

At a 2 s checkpoint and 1 Hz reports the worker writes one msgpack twin (~900 B) per two events to a
compacted changelog: about 0.7x the telemetry's bytes, times the replication factor (docs/SCALING.md).
Those batches are built by `streams.worker.table.ChangelogWriter` with aiokafka's `BatchBuilder`
(batches of up to `MAX_BATCH_BYTES` per partition); the broker stores them as they come
(`compression.type=producer`). This bench builds the same batches from the same twins with each
codec aiokafka offers and reports, against the uncompressed batch measured in the same run:

* bytes per twin of the built batches (what the broker receives, stores and replicates), and
* process CPU per twin to build and compress them (what the worker pays), and to read them back
  (`DefaultRecordBatch` iterated, what a recovery pays per record on the consumer).

Twins: bench/fold_batch.py's chaos log at `--robots` robots for `--seconds` seconds, folded with
`batch_fold.fold_log` in batches of `--batch` records; after each batch of the second half, the
twins of the robots it touched (`encoded_twins`, as a checkpoint takes them), keyed as the
changelog keys them, `--partitions` partitions by the project's key hash. Every codec's batches are
decoded and checked equal to the twins written (the run stops otherwise).

    .venv/bin/python bench/changelog_codecs.py [--robots 10000] [--seconds 20] [--batch 10000] [--partitions 8] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path
from typing import get_args

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka.producer.message_accumulator import BatchBuilder  # noqa: E402
from aiokafka.record.default_records import DefaultRecordBatch  # noqa: E402

import fold_batch  # noqa: E402
from streams.analysis.sources import partition_of  # noqa: E402
from streams.seeds import read_detectors, read_fleet  # noqa: E402
from streams.settings import ChangelogCodec  # noqa: E402
from streams.worker.table import MAX_BATCH_BYTES  # noqa: E402
from twin import batch_fold as bf  # noqa: E402
from twin.fleet_fold import Rules  # noqa: E402

CODECS = {name: getattr(DefaultRecordBatch, f"CODEC_{name.upper()}") for name in get_args(ChangelogCodec)}
"""Each codec `Settings.changelog_compression` may name -> the id aiokafka's producer gives a record batch."""

Checkpoint = dict[int, list[tuple[bytes, bytes]]]
"""Partition -> the (key, value) records one checkpoint writes to it."""


def checkpoints(a: argparse.Namespace) -> list[Checkpoint]:
    """The changelog records of one checkpoint per batch of the log's second half."""
    rules = Rules(read_fleet(fold_batch.SEEDS), read_detectors(fold_batch.SEEDS))
    records = fold_batch.log(rules, a.robots, a.seconds, 0)
    gc.freeze()
    state, out = bf.FoldState(rules), []
    for ids in fold_batch.checkpoints(state, rules, records, a.batch):
        by_partition: Checkpoint = {}
        for robot, value in zip(ids, bf.encoded_twins(state, ids)):
            assert value is not None
            key = f'"{robot}"'.encode()  # Faust's json key serializer for a str key
            by_partition.setdefault(partition_of(robot, a.partitions), []).append((key, value))
        out.append(by_partition)
    return out


def build(codec: int, cp: Checkpoint) -> list[bytes]:
    """`ChangelogWriter.write`'s batches: one per partition, a new one when full."""
    built = []
    for rows in cp.values():
        b = BatchBuilder(MAX_BATCH_BYTES, codec)
        for key, value in rows:
            if b.append(key=key, value=value, timestamp=None) is None:
                built.append(bytes(b._build()))
                b = BatchBuilder(MAX_BATCH_BYTES, codec)
                b.append(key=key, value=value, timestamp=None)
        built.append(bytes(b._build()))
    return built


def read(built: list[bytes]) -> list[tuple[bytes, bytes]]:
    """The records of the batches, as a consumer decodes them."""
    return [(r.key, r.value) for raw in built for r in DefaultRecordBatch(raw)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--robots", type=int, default=10000)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--batch", type=int, default=10000)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    cps = checkpoints(a)
    if not cps:
        raise SystemExit("no batch starts in the log's second half: lower --batch or raise --seconds")
    twins = sum(len(rows) for cp in cps for rows in cp.values())
    raw = sum(len(v) for cp in cps for rows in cp.values() for _, v in rows)
    print(f"{a.robots} robots, {len(cps)} checkpoints, {twins} twins ({raw / twins:.0f} B of msgpack each),"
          f" {a.partitions} partitions, batches up to {MAX_BATCH_BYTES // 1024} KiB; best of {a.repeat}")
    base: tuple[float, float, float] | None = None
    for name, codec in CODECS.items():
        size, write, back = 0, float("inf"), float("inf")
        for _ in range(a.repeat):
            t0 = time.process_time()
            built = [build(codec, cp) for cp in cps]
            t1 = time.process_time()
            got = [read(b) for b in built]
            t2 = time.process_time()
            write, back = min(write, t1 - t0), min(back, t2 - t1)
            size = sum(len(x) for b in built for x in b)
        if got != [[kv for rows in cp.values() for kv in rows] for cp in cps]:
            raise SystemExit(f"{name}: the batches do not read back as written")
        per = (size / twins, write / twins * 1e6, back / twins * 1e6)
        base = base or per
        print(f"{name:5}: {per[0]:6.0f} B/twin ({base[0] / per[0]:4.1f}x fewer)   build {per[1]:5.2f} us/twin"
              f" ({per[1] / base[1]:4.2f}x)   read {per[2]:5.2f} us/twin ({per[2] / base[2]:4.2f}x)")


if __name__ == "__main__":
    main()

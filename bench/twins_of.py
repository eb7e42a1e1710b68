"""How fast a checkpoint's twins are built and encoded: `encoded_twins` against `twins_of` at once and `twin_of`.

What the worker does at each checkpoint: the twin of every robot changed since the last one, encoded for
the twins changelog. Log: bench/fold_batch.py's (`log`: the chaos scenario at `--robots` robots for
`--seconds` seconds, silence checks for `--checks` robots every 5 s), folded through
`batch_fold.fold_log` in batches of `--batch` records. After each batch of the second half of the
run, the robots the batch touched (in log order of first sight) are materialised and encoded three ways:

* per robot: `[encode_twin(twin_of(state, r)) for r in ids]` (the first baseline);
* at once: `[encode_twin(t) for t in twins_of(state, ids)]` (one numpy gather per column for all; the
  checkpoint until the twelfth session: every twin alive until encoded);
* chunked: `encoded_twins(state, ids)` (`twins_of` a chunk of `ENCODE_CHUNK` robots at a time).

Then the changelog records of the chunked way's bytes, as `ChangelogWriter.write` makes them: the key
and value by Faust's `prepare_key`/`prepare_value` (the writer until the seventeenth session) against
`changelog_key` and the value as it is (checked equal), and for scale what aiokafka's batch builder
takes to append them and build the batches (zstd, `MAX_BATCH_BYTES` each).

Process CPU time of each, in microseconds per robot, with the part of it the cycle collector took
(`gc.callbacks`), and the ratios; the byte lists are checked equal (the run stops with an error
otherwise). The fold itself is not timed. With `--batch` about the robots' count, a batch is one
second of a fleet reporting at 1 Hz: about what a checkpoint stores.

Measured: see docs/BENCHMARKS.md.

    .venv/bin/python bench/twins_of.py [--robots 10000] [--seconds 30] [--batch 10000] [--checks 20]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import faust  # noqa: E402
import fold_batch  # noqa: E402
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder  # noqa: E402
from streams.seeds import read_detectors, read_fleet  # noqa: E402
from streams.worker.table import MAX_BATCH_BYTES, changelog_key  # noqa: E402
from twin import batch_fold as bf  # noqa: E402
from twin.fleet_fold import Rules  # noqa: E402
from twin.state import encode_twin  # noqa: E402


class Collector:
    """Seconds the cycle collector ran, summed (`gc.callbacks`)."""

    def __init__(self) -> None:
        self.spent = 0.0
        self._began = 0.0
        gc.callbacks.append(self)

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.spent += time.perf_counter() - self._began


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--robots", type=int, default=10000)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--batch", type=int, default=10000)
    ap.add_argument("--checks", type=int, default=20)
    a = ap.parse_args()
    rules = Rules(read_fleet(fold_batch.SEEDS), read_detectors(fold_batch.SEEDS))
    records = fold_batch.log(rules, a.robots, a.seconds, a.checks)
    gc.freeze()  # the log and the rules, as the worker freezes its start-up objects
    state = bf.FoldState(rules)
    ways = ("per robot", "at once", "chunked")
    cpu, collected = dict.fromkeys(ways, 0.0), dict.fromkeys(ways, 0.0)
    collector = Collector()
    robots = batches = 0
    stored: list[tuple[str, bytes]] = []
    for ids in fold_batch.checkpoints(state, rules, records, a.batch):
        made: dict[str, list[bytes | None]] = {}
        builds: list[Callable[[], list[bytes | None]]] = [
            lambda: [encode_twin(bf.twin_of(state, r)) for r in ids],  # type: ignore[arg-type]
            lambda: [encode_twin(t) for t in bf.twins_of(state, ids)],  # type: ignore[arg-type]
            lambda: bf.encoded_twins(state, ids)]
        for way, build in zip(ways, builds):
            spent, t0 = collector.spent, time.process_time()
            made[way] = build()
            cpu[way] += time.process_time() - t0
            collected[way] += collector.spent - spent
        if not made["per robot"] == made["at once"] == made["chunked"]:
            raise SystemExit(f"MISMATCH after checkpoint {batches} of the second half")
        robots, batches = robots + len(ids), batches + 1
        stored += [(r, raw) for r, raw in zip(ids, made["chunked"]) if raw is not None]
    print(f"{a.robots} robots, {a.seconds} s, {len(records)} records, batch {a.batch}; {robots} robot twins over"
          f" {batches} batches of the second half, bytes identical; chunk {bf.ENCODE_CHUNK}")
    for way in ways:
        print(f"{way:9}: {cpu[way] / robots * 1e6:6.1f} us/robot, of it the cycle collector"
              f" {collected[way] / robots * 1e6:5.1f}")
    print(f"ratio chunked to at once: {cpu['at once'] / cpu['chunked']:.2f}x;"
          f" to per robot: {cpu['per robot'] / cpu['chunked']:.2f}x")
    changelog_records(stored)


def zstd_batch() -> DefaultRecordBatchBuilder:
    """A record batch as the changelog writer's producer makes one (aiokafka's builder, zstd)."""
    return DefaultRecordBatchBuilder(magic=2, compression_type=DefaultRecordBatch.CODEC_ZSTD, is_transactional=False,
                                     producer_id=-1, producer_epoch=-1, base_sequence=-1, batch_size=MAX_BATCH_BYTES)


def changelog_records(items: list[tuple[str, bytes]]) -> None:
    """The changelog records of every checkpoint's twins, made both ways."""
    twins: Any = faust.App("bench", broker="kafka://127.0.0.1:1", store="memory://", autodiscover=False).Table(
        "twins", key_type=str, value_type=bytes, partitions=8)
    topic = twins.changelog_topic
    t0 = time.process_time()
    faust_made = [(topic.prepare_key(k, twins.key_serializer)[0], topic.prepare_value(v, twins.value_serializer)[0])
                  for k, v in items]
    t1 = time.process_time()
    own = [(changelog_key(k), v) for k, v in items]
    t2 = time.process_time()
    if own != faust_made:
        raise SystemExit("MISMATCH: changelog_key's records differ from Faust's")
    built, n, batch = 0, 0, zstd_batch()
    for key, value in own:
        if batch.append(n, timestamp=None, key=key, value=value, headers=[]) is None:
            built, n, batch = built + len(batch.build()), 0, zstd_batch()
            batch.append(n, timestamp=None, key=key, value=value, headers=[])
        n += 1
    built += len(batch.build())
    t3 = time.process_time()
    per = 1e6 / len(items)
    print(f"changelog records of {len(items)} twins: Faust's prepare_key + prepare_value {(t1 - t0) * per:5.2f} us/twin,"
          f" changelog_key {(t2 - t1) * per:5.2f} ({(t1 - t0) / (t2 - t1):.1f}x), records identical;"
          f" aiokafka append + build (zstd) {(t3 - t2) * per:5.2f} us/twin, {built / len(items):,.0f} B/twin")


if __name__ == "__main__":
    main()

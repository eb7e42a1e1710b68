"""How fast a replay runs: from Kafka, from the Parquet archive, and one robot-day.

Baselines measured in the same run:
  * scalar: the records of a simulated window already in memory folded record
    by record (`twin.replay.Fold`, the oracle), against `twin.replay.replay`
    (the batch engine, `twin.batch_replay.BatchFold`) on the same records;
    both must find the same anomalies. Needs no broker (`--fold-only` runs
    this part alone);
  * fold: the same records already in memory folded by `twin.replay.replay`
    (the core's own limit: parse, reduce, detect);
  * read: the Kafka source alone (seek by time, fetch, merge partitions),
    nothing folded.
The replays are end to end as `fleet-twin replay` runs them (without writing
files). Each figure is the median of --repeat runs. Needs a broker: uses the
one on FLEET_TWIN_KAFKA_PORT, or starts the project's own for the run.

    .venv/bin/python bench/replay_speed.py [--robots 360] [--ticks 300] [--repeat 3] [--fold-only]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.analysis import replay_window as replaying  # noqa: E402
from streams.kafka_client import partitioner  # noqa: E402
from streams.analysis.archive import archive  # noqa: E402
from streams.analysis.replay_window import Window  # noqa: E402
from streams.seeds import read_detectors, read_fleet  # noqa: E402
from streams.settings import Settings  # noqa: E402
from streams.local.simulator import KafkaSink  # noqa: E402
from streams.analysis.sources import kafka_source  # noqa: E402
from streams.local.stack import Stack  # noqa: E402
from streams.topics import ensure_topics  # noqa: E402
from twin.fleet_fold import Rules  # noqa: E402
from twin.record import Record  # noqa: E402
from twin.replay import Fold, Selection, in_log_order, replay  # noqa: E402
from twin.schema import Event, encode  # noqa: E402
from twin.sim import FleetSim, Scenario  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FLEET = read_fleet(ROOT / "seeds")
CONFIG = read_detectors(ROOT / "seeds")


async def publish(settings: Settings, robots: int, ticks: int) -> tuple[float, float, int]:
    """A scenario's events on the settings' topic; returns the window they span and their count."""
    await ensure_topics(settings)
    sim = FleetSim(FLEET, Scenario(name="bench", robots=robots, duration_s=ticks), seed=1, start_ts=time.time())
    start, sent = time.time() - 1, 0
    async with KafkaSink(settings) as sink:
        pending: list[Event] = []
        for tick in range(sim.ticks):
            pending += sim.step()
            if len(pending) >= 5000 or tick == sim.ticks - 1:
                await sink.send(pending)
                sent += len(pending)
                pending = []
    return start, time.time() + 1, sent


def median_time(run: Callable[[], int], repeat: int) -> tuple[float, int]:
    times, n = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        n = run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), n


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # a TextIOWrapper; typeshed says TextIO
    ap = argparse.ArgumentParser()
    ap.add_argument("--robots", type=int, default=360)
    ap.add_argument("--ticks", type=int, default=300)
    ap.add_argument("--day", type=int, default=86_400, help="reports in the one-robot day (1 Hz)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=8, help="of the in-memory window (scalar against batch)")
    ap.add_argument("--fold-only", action="store_true", help="only scalar against batch, in memory (no broker)")
    args = ap.parse_args()
    scalar_against_batch(args)
    if args.fold_only:
        return
    run = uuid.uuid4().hex[:8]
    settings = Settings(topic_prefix=f"bench-replay-{run}.", app_id=f"bench-replay-{run}")
    stack = Stack(settings)
    started_kafka = stack.start_kafka()
    try:
        fleet_figures(settings, args)
        robot_day(Settings(topic_prefix=f"bench-day-{run}.", app_id=f"bench-day-{run}"), args)
    finally:
        if started_kafka:
            stack.stop_kafka()


def window_records(robots: int, ticks: int, partitions: int) -> list[Record]:
    """A simulated window as the broker would hold it: keyed by robot, stamped at event time."""
    sim = FleetSim(FLEET, Scenario(name="bench", robots=robots, duration_s=ticks), seed=1, start_ts=1.7e9)
    part_of = partitioner(partitions)
    logs: list[list[Record]] = [[] for _ in range(partitions)]
    for _ in range(sim.ticks):
        for e in sim.step():
            key = e.robot_id.encode()
            p = part_of(key)
            logs[p].append(Record("telemetry", p, len(logs[p]), round(e.ts * 1000) / 1000.0, key, encode(e)))
    return list(in_log_order(logs))


def scalar_against_batch(args: argparse.Namespace) -> None:
    """`replay` (the batch engine) against `Fold` record by record, on the same records in memory,
    timed in turns (the machine's load drifts: each repeat times both)."""
    records = window_records(args.robots, args.ticks, args.partitions)
    folds: list[Fold] = []

    def by_record() -> int:
        fold = Fold(Rules(FLEET, CONFIG))
        for record in records:
            fold.feed(record)
        folds[:] = [fold]
        return fold.records
    turns = [(median_time(lambda: replay(iter(records), FLEET, CONFIG).records, 1)[0],
              median_time(by_record, 1)[0]) for _ in range(args.repeat)]
    batch_s, scalar_s = statistics.median(b for b, _ in turns), statistics.median(s for _, s in turns)
    assert replay(iter(records), FLEET, CONFIG).anomalies == folds[0].anomalies
    n = len(records)
    print(f"in memory: {args.robots} robots x {args.ticks} reports = {n:,} records on {args.partitions} partitions, "
          f"median of {args.repeat}")
    print(f"  Fold record by record (baseline) {n / scalar_s:>9,.0f} records/s")
    print(f"  replay (batch engine)            {n / batch_s:>9,.0f} records/s  ratio to Fold {scalar_s / batch_s:.2f}"
          f" (per turn: {', '.join(f'{s / b:.2f}' for b, s in turns)})")


def fleet_figures(settings: Settings, args: argparse.Namespace) -> None:
    start, end, sent = asyncio.run(publish(settings, args.robots, args.ticks))
    window = Window(start, end)
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(archive(settings, Path(tmp), once=True))
        records = list(kafka_source(settings, start, end))
        fold_s, _ = median_time(lambda: replay(iter(records), FLEET, CONFIG).records, args.repeat)
        read_s, n = median_time(lambda: sum(1 for _ in kafka_source(settings, start, end)), args.repeat)
        kafka_s, _ = median_time(lambda: replaying.run(settings, window, Selection(), at=[]).records, args.repeat)
        arch_s, n_arch = median_time(
            lambda: replaying.run(settings, Window(start, end, tmp), Selection(), at=[]).records, args.repeat)
    assert n == n_arch == sent, (n, n_arch, sent)
    print(f"fleet window: {args.robots} robots x {args.ticks} reports = {sent:,} records, median of {args.repeat}")
    print(f"  fold in memory (baseline) {sent / fold_s:>9,.0f} records/s")
    print(f"  read Kafka only           {sent / read_s:>9,.0f} records/s")
    print(f"  replay from Kafka         {sent / kafka_s:>9,.0f} records/s  ratio to fold {fold_s / kafka_s:.2f}")
    print(f"  replay from archive       {sent / arch_s:>9,.0f} records/s  ratio to fold {fold_s / arch_s:.2f}")
    print(f"  => one robot-day (86,400 reports) of fleet history replays in {86_400 * kafka_s / sent:.1f} s "
          "from Kafka")


def robot_day(settings: Settings, args: argparse.Namespace) -> None:
    start, end, sent = asyncio.run(publish(settings, 1, args.day))
    robot = next(iter(FleetSim(FLEET, Scenario(name="bench", robots=1, duration_s=1), seed=1).roster.robot_ids))
    took, n = median_time(
        lambda: replaying.run(settings, Window(start, end), Selection(robot=robot), at=[end]).records, args.repeat)
    print(f"one robot-day: {robot}, {sent:,} reports, `replay --robot` from Kafka in {took:.1f} s "
          f"({n / took:,.0f} records/s), median of {args.repeat}")


if __name__ == "__main__":
    main()

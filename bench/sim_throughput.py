"""How fast the simulator produces events: in memory, to files, to Kafka.

Baselines measured in the same run:
  * encode: msgspec JSON encoding of the same events alone (the cost any
    producer pays), for the in-memory and file figures;
  * bare producer: aiokafka sending the same messages, already encoded and
    partitioned, in per-partition batches: the Kafka client's own limit here.
Each figure is the median of --repeat runs. Needs a broker: uses the one on
FLEET_TWIN_KAFKA_PORT, or starts the project's own for the run.

    .venv/bin/python bench/sim_throughput.py [--robots 10000] [--ticks 10] [--repeat 3]
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
from typing import Any, TypeVar

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.seeds import read_fleet  # noqa: E402
from streams.settings import Settings  # noqa: E402
from streams.local.simulator import KafkaSink, to_file, to_kafka  # noqa: E402
from streams.local.stack import Stack  # noqa: E402
from streams.topics import ensure_topics  # noqa: E402
from twin.schema import Event  # noqa: E402
from twin.sim import FleetSim, Scenario  # noqa: E402

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
FLEET = read_fleet(ROOT / "seeds")


def sim(robots: int, ticks: int) -> FleetSim:
    return FleetSim(FLEET, Scenario(name="bench", robots=robots, duration_s=ticks), seed=1)


def rate(run: Callable[[Any], int], repeat: int, make: Callable[[], Any] = lambda: None) -> float:
    """Median events/s of `run(make())`; building the input (`make`) is not timed."""
    rates = []
    for _ in range(repeat):
        subject = make()
        start = time.perf_counter()
        n = run(subject)
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--robots", type=int, default=10_000)
    ap.add_argument("--ticks", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    r, t, k = args.robots, args.ticks, args.repeat
    events = [e for s in [sim(r, t)] for _ in range(t) for e in s.step()]
    encoder = msgspec.json.Encoder()

    def generate(s: FleetSim) -> int:
        return sum(len(s.step()) for _ in range(t))

    def fresh() -> FleetSim:
        return sim(r, t)

    tmp = Path(tempfile.mkdtemp())
    figures = {
        "encode only (baseline)": rate(lambda _: len([encoder.encode(e) for e in events]), k),
        "generate": rate(generate, k, fresh),
        "generate -> JSONL file": rate(lambda s: to_file(s, tmp / "b.jsonl", None), k, fresh),
        "generate -> Parquet file": rate(lambda s: to_file(s, tmp / "b.parquet", None), k, fresh),
    }
    figures.update(kafka_figures(r, t, k, events))
    base_enc = figures["encode only (baseline)"]
    base_kafka = figures["bare producer (baseline)"]
    print(f"simulator throughput, {r:,} robots x {t} ticks = {len(events):,} events, median of {k}")
    for name, value in figures.items():
        base = base_kafka if "Kafka" in name or "producer" in name else base_enc
        print(f"  {name:<28} {value:>12,.0f} events/s   ratio to baseline {value / base:5.2f}")


def kafka_figures(robots: int, ticks: int, repeat: int, events: list[Event]) -> dict[str, float]:
    settings = Settings(topic_prefix=f"bench-{uuid.uuid4().hex[:6]}.", state_dir=Path(tempfile.mkdtemp()))
    stack = Stack(settings)
    started = stack.start_kafka()
    try:
        asyncio.run(ensure_topics(settings))

        encoder = msgspec.json.Encoder()
        payloads = [(e.robot_id.encode(), encoder.encode(e)) for e in events]

        async def bare() -> int:
            # Pre-encoded, pre-partitioned: only the producer's own work is left.
            async with KafkaSink(settings) as sink:
                parts = [sink.partitioner(key, sink.partitions, sink.partitions) for key, _ in payloads]
                batches: dict[int, Any] = {}
                pending = []
                for (key, value), part in zip(payloads, parts):
                    batch = batches.setdefault(part, sink.producer.create_batch())
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        pending.append(await sink.producer.send_batch(batch, sink.topic, partition=part))
                        batches[part] = batch = sink.producer.create_batch()
                        batch.append(key=key, value=value, timestamp=None)
                for part, batch in batches.items():
                    pending.append(await sink.producer.send_batch(batch, sink.topic, partition=part))
                await asyncio.gather(*pending)
            return len(payloads)

        return {
            "bare producer (baseline)": rate(lambda _: asyncio.run(bare()), repeat),
            "generate -> Kafka": rate(
                lambda s: asyncio.run(to_kafka(settings, s, speed=1e9, on_tick=None)), repeat,
                lambda: sim(robots, ticks)),
        }
    finally:
        if started:
            stack.stop_kafka()


if __name__ == "__main__":
    main()

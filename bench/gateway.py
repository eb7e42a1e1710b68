"""What a site gateway's batches cost the worker against the same reports sent one record per robot.

The same events both ways: `--robots` robots reporting once a second for `--ticks` seconds
(bench/pipeline_throughput.py's simulator), each tick sent as the simulator's sink sends it
(`streams.local.simulator.wire`): one JSON record per event, keyed by robot, on the robot's home
partition of `--partitions`; or as site gateways send (`--gateway`: one Arrow record per site and
home partition, `twin.gateway`). The records are cut into the worker's batches (`--batch` records
of JSON, and gateway records holding about as many events) and handed to `ingest.fold` (what the
worker calls: unpack, decode, fold, KPIs) after one warm-up tick. Printed, per event: process CPU
of `twin.gateway.unpack` alone (rows rendered as the JSON reports `parse` judges) and of the whole
batch step, each way, with the ratio (JSON / gateway: above 1 the gateway is cheaper); Kafka
records and record value bytes per event. No broker: what a record costs the consumer and the
broker comes on top, per record (bench/pipeline_throughput.py's (3g) measures the worker draining
a real broker).

    .venv/bin/python bench/gateway.py [--robots 10000] [--ticks 6] [--partitions 1,8,64] [--batch 2000]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pipeline_throughput as pt  # noqa: E402
from streams.local.simulator import wire  # noqa: E402
from streams.seeds import read_detectors  # noqa: E402
from streams.worker.ingest import Held, LogMessage, fold  # noqa: E402
from twin import gateway  # noqa: E402
from twin.fleet_fold import Rules  # noqa: E402
from twin.record import Record  # noqa: E402
from twin.schema import Event  # noqa: E402

TOPIC, CHECKS = "telemetry", "checks"


def messages(ticks: list[list[Event]], partitions: int, as_gateway: bool) -> list[tuple[int, LogMessage]]:
    """(events held, the message) of each record, each partition's at consecutive offsets."""
    offsets = [0] * partitions
    out = []
    for tick in ticks:
        received = max(e.ts for e in tick) + 0.05
        for part, key, value, _ in wire(tick, list(range(partitions)), gateway=as_gateway):
            held = len(gateway.unpack(Record("telemetry", part, 0, received, key, value)).rows) if as_gateway else 1
            out.append((held, LogMessage(TOPIC, part, offsets[part], received, key, value)))
            offsets[part] += 1
    return out


def batches(log: list[tuple[int, LogMessage]], events_per_batch: int) -> list[list[LogMessage]]:
    """The log cut into batches of about `events_per_batch` events, each sorted as the worker reads it."""
    out: list[list[LogMessage]] = [[]]
    held = 0
    for n, m in log:
        if held >= events_per_batch:
            out.append([])
            held = 0
        out[-1].append(m)
        held += n
    return [sorted(b, key=lambda m: (m.partition, m.offset)) for b in out if b]


def step_cost(rules: Rules, warm: list[list[LogMessage]], work: list[list[LogMessage]], events: int) -> float:
    """Microseconds of process CPU per event of `ingest.fold` over `work`, after `warm`."""
    held = Held(rules)
    for b in warm:
        fold(held, rules, {}, b, CHECKS)
    spent = 0.0
    for b in work:
        started = time.process_time()
        fold(held, rules, {}, b, CHECKS)
        spent += time.process_time() - started
    return spent * 1e6 / events


def unpack_cost(work: list[list[LogMessage]], events: int) -> float:
    """Microseconds of process CPU per event of `twin.gateway.unpack` alone over `work`."""
    started = time.process_time()
    for b in work:
        for m in b:
            gateway.unpack(Record("telemetry", m.partition, m.offset, m.timestamp, m.key, m.value))
    return (time.process_time() - started) * 1e6 / events


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--robots", type=int, default=10000)
    ap.add_argument("--ticks", type=int, default=6)
    ap.add_argument("--partitions", default="1,8,64")
    ap.add_argument("--batch", type=int, default=2000, help="events per worker batch")
    a = ap.parse_args()
    rules = Rules(pt.FLEET, read_detectors(pt.ROOT / "seeds"))
    sim = pt.simulate(a.robots, a.ticks + 1)
    ticks = [sim.step() for _ in range(a.ticks + 1)]
    events = sum(map(len, ticks[1:]))
    gc.freeze()
    print(f"{a.robots:,} robots x {a.ticks} ticks after one warm-up tick: {events:,} events, batches of ~{a.batch:,}")
    print(f"{'partitions':>10} {'rows/rec':>9} {'B/event json':>13} {'gateway':>8} {'unpack us':>10} "
          f"{'step json us':>13} {'gateway us':>11} {'json/gateway':>13}")
    for partitions in [int(p) for p in a.partitions.split(",")]:
        sides = {}
        for as_gateway in (False, True):
            log = messages(ticks, partitions, as_gateway)
            first = sum(1 for _ in wire(ticks[0], list(range(partitions)), gateway=as_gateway))
            warm, work = batches(log[:first], a.batch), batches(log[first:], a.batch)
            sides[as_gateway] = (len(log) - first, sum(len(m.value) for b in work for m in b) / events,
                                 step_cost(rules, warm, work, events), unpack_cost(work, events) if as_gateway else 0.0)
        (records_j, bytes_j, step_j, _), (records_g, bytes_g, step_g, unpack_g) = sides[False], sides[True]
        print(f"{partitions:>10} {events / records_g:>9.1f} {bytes_j:>13,.0f} {bytes_g:>8,.0f} {unpack_g:>10.2f} "
              f"{step_j:>13.1f} {step_g:>11.1f} {step_j / step_g:>13.2f}")


if __name__ == "__main__":
    main()

"""How fast a micro-batch of JSON telemetry becomes checked columns (`twin.columns.decode_batch`).

Baseline measured in the same run: `twin.validate.parse` per message, what the ingest path does
today. Both run over the same chaos-scenario events (every fault type), as the worker receives
them (keyed by robot, broker time 20 ms after event time), with and without `gc.freeze()` of
everything built before the loop (the fleet, the simulator, the messages). Each figure is the
median of --repeat rounds, in events per CPU second of
this process; the ratio is the median of the per-round ratios. Before timing, every row's outcome is checked against `parse`.

    .venv/bin/python bench/decode_batch.py [--events 100000] [--batch 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.seeds import read_fleet, read_scenario  # noqa: E402
from twin.columns import Message, decode_batch  # noqa: E402
from twin.exceptions import InvalidEvent  # noqa: E402
from twin.fleet import Fleet  # noqa: E402
from twin.schema import encode  # noqa: E402
from twin.sim import FleetSim  # noqa: E402
from twin.validate import parse  # noqa: E402

SEEDS = Path(__file__).resolve().parent.parent / "seeds"


def messages(fleet: Fleet, n: int, seed: int) -> list[Message]:
    """The first `n` chaos events on the wire: (key, value, broker time in whole ms)."""
    sim = FleetSim(fleet, read_scenario(SEEDS, "chaos"), seed=seed)
    out: list[Message] = []
    while len(out) < n:
        out.extend((e.robot_id.encode(), encode(e), round((e.ts + 0.02) * 1000) / 1000) for e in sim.step())
    return out[:n]


def per_message(fleet: Fleet, batch: Sequence[Message]) -> int:
    """The baseline: `parse` each message; returns how many it accepted."""
    accepted = 0
    for key, value, received in batch:
        try:
            parse(value, fleet, key=key, received_ts=received)
        except InvalidEvent:
            continue
        accepted += 1
    return accepted


def columnar(fleet: Fleet, batch: Sequence[Message]) -> int:
    return len(decode_batch(batch, fleet).row)


def rates(fleet: Fleet, batches: list[list[Message]], repeat: int) -> tuple[float, float, float]:
    """Median events per CPU second of the baseline and of `decode_batch`, and the median of
    their ratio per round. CPU time of this process, and the two interleaved in each round, so
    that other work on a shared machine moves both alike."""
    n = sum(map(len, batches))
    base: list[float] = []
    fast: list[float] = []
    for _ in range(repeat):
        for run, out in ((per_message, base), (columnar, fast)):
            start = time.process_time()
            for batch in batches:
                run(fleet, batch)
            out.append(n / (time.process_time() - start))
    return statistics.median(base), statistics.median(fast), statistics.median(f / b for f, b in zip(fast, base))


def same_outcomes(fleet: Fleet, batches: list[list[Message]]) -> tuple[int, int]:
    """(accepted, rows that took parse's slow path); exits if any row differs from `parse`."""
    accepted = slow = 0
    for batch in batches:
        columns = decode_batch(batch, fleet)
        if len(columns.row) != per_message(fleet, batch):
            sys.exit("decode_batch and parse disagree on this batch: a bug")
        accepted += len(columns.row)
        slow += columns.parsed
    return accepted, slow


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=2_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    fleet = read_fleet(SEEDS)
    wire = messages(fleet, args.events, args.seed)
    batches = [wire[i:i + args.batch] for i in range(0, len(wire), args.batch)]
    accepted, slow = same_outcomes(fleet, batches)
    print(f"decode + check, {len(wire):,} chaos events in batches of {args.batch:,}, median of {args.repeat},"
          " events per CPU second")
    print(f"  accepted {accepted:,}; rows through parse's slow path: {slow:,}")
    for frozen in (False, True):
        gc.collect()
        if frozen:
            gc.freeze()
        base, fast, ratio = rates(fleet, batches, args.repeat)
        gc.unfreeze()
        label = "gc.freeze()" if frozen else "no freeze  "
        print(f"  {label}  parse per message (baseline) {base:>10,.0f} events/s")
        print(f"  {label}  decode_batch                 {fast:>10,.0f} events/s   ratio to baseline {ratio:5.2f}")


if __name__ == "__main__":
    main()

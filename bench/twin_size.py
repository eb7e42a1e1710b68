"""Bytes per robot of the stored twin, detector state included, per robot model.

Baseline in the same run: the same twins as the named JSON of the HTTP API.
The stored form (msgpack, structs as arrays) is what the Faust table holds in
memory and writes to the changelog. Target: at most 2 KiB for a 30-signal model.

    .venv/bin/python bench/twin_size.py [--robots 400] [--ticks 600]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.seeds import read_detectors, read_fleet  # noqa: E402
from twin.detect.cohort import Cohorts  # noqa: E402
from twin.pipeline import ingest  # noqa: E402
from twin.sim import FleetSim, Scenario  # noqa: E402
from streams.twin_view import to_view  # noqa: E402
from twin.state import Twin, encode_twin  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def twins_after(robots: int, ticks: int) -> dict[str, Twin]:
    fleet, config = read_fleet(ROOT / "seeds"), read_detectors(ROOT / "seeds")
    sim = FleetSim(fleet, Scenario(name="size", robots=robots, duration_s=ticks), seed=1)
    twins: dict[str, Twin] = {}
    cohorts = Cohorts()
    for tick in range(ticks):
        for event in sim.step():
            twins[event.robot_id], _, _, cohorts = ingest(twins.get(event.robot_id), event,
                                                          sim.start_ts + tick + 0.05, fleet, config, cohorts)
    return twins


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--robots", type=int, default=400)
    ap.add_argument("--ticks", type=int, default=600)
    args = ap.parse_args()
    by_model: dict[str, list[Twin]] = defaultdict(list)
    for twin in twins_after(args.robots, args.ticks).values():
        by_model[twin.model].append(twin)
    print(f"{'model':<20} {'signals':>7} {'stored B max':>12} {'mean':>6} {'JSON view B':>11} {'ratio':>6}")
    for model, twins in sorted(by_model.items(), key=lambda m: len(m[1][0].signals)):
        stored = [len(encode_twin(t)) for t in twins]
        view = max(len(msgspec.json.encode(to_view(t))) for t in twins)
        print(f"{model:<20} {len(twins[0].signals):>7} {max(stored):>12} {sum(stored) / len(stored):>6.0f} "
              f"{view:>11} {max(stored) / view:>6.2f}")


if __name__ == "__main__":
    main()

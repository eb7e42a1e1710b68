"""Bytes per robot of the stored twin, per robot model.

Baseline in the same run: the same twin as the named JSON of the HTTP API.
The stored form (msgpack, structs as arrays) is what the Faust table holds in
memory and writes to the changelog. Target: at most 2 KiB for a 30-signal model.

    .venv/bin/python bench/twin_size.py [--events 200]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.seeds import read_fleet  # noqa: E402
from twin.reduce import apply  # noqa: E402
from twin.sim import Simulator, make_roster  # noqa: E402
from twin.state import Twin, encode_twin, to_view  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def twin_after(model: str, events: int) -> Twin:
    fleet = read_fleet(ROOT / "seeds")
    robot = next(r for r in make_roster(fleet, 2000, 1) if r.model == model)
    sim = Simulator(fleet, [robot], seed=1)
    twin = None
    for i in range(events):
        (event,) = sim.step(ts=1_790_000_000.0 + i)
        twin, _ = apply(twin, event, received_ts=event.ts + 0.05)
    assert twin is not None
    return twin


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200)
    args = parser.parse_args()
    fleet = read_fleet(ROOT / "seeds")
    print(f"{'model':<20} {'signals':>7} {'stored B':>9} {'JSON view B':>11} {'ratio':>6}")
    for model, spec in sorted(fleet.models.items(), key=lambda m: len(m[1].signals)):
        twin = twin_after(model, args.events)
        stored, view = len(encode_twin(twin)), len(msgspec.json.encode(to_view(twin)))
        print(f"{model:<20} {len(spec.signals):>7} {stored:>9} {view:>11} {stored / view:>6.2f}")


if __name__ == "__main__":
    main()

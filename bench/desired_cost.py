"""What desired state costs the fold: the same simulated records folded with 0, 10 and 100
desired-state changes in force (every applied report resolves its robot's desire and judges drift).

Baseline measured in the same run: the fold of the same records with no change at all. The
changes are selectors by sector and share (the shape of rollout waves), stamped before the
first record, and each run's figure is the median of --repeat folds.

    .venv/bin/python bench/desired_cost.py [--robots 360] [--ticks 120] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.seeds import read_detectors, read_fleet  # noqa: E402
from twin.desired import DesiredChange, Selector, change_key, encode_change  # noqa: E402
from twin.record import Record  # noqa: E402
from twin.replay import replay  # noqa: E402
from twin.schema import encode  # noqa: E402
from twin.sim import FleetSim, Scenario  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FLEET = read_fleet(ROOT / "seeds")
CONFIG = read_detectors(ROOT / "seeds")
START = 1_780_000_000.0


def telemetry(robots: int, ticks: int) -> list[Record]:
    """A steady fleet's reports as log records, one partition, broker time = event time."""
    sim = FleetSim(FLEET, Scenario(name="bench", robots=robots, duration_s=ticks), seed=1, start_ts=START)
    out: list[Record] = []
    for _ in range(sim.ticks):
        for event in sim.step():
            out.append(Record("telemetry", 0, len(out), event.ts, event.robot_id.encode(), encode(event)))
    return out


def changes(n: int) -> list[Record]:
    """`n` ai_model changes for AMRs by sector and share, stamped before the fleet's first report."""
    sectors = sorted(s for s, sector in FLEET.sectors.items() if "amr" in sector.models)
    out = []
    for i in range(n):
        change = DesiredChange(change_id=f"{i:032x}", ts=START - 100 + i * 0.01, principal="bench",
                               reason="cost", selector=Selector(model="amr", sector=sectors[i % len(sectors)],
                                                                 share=(i % 20 + 1) / 20),
                               field="ai_model", value="policy-2.5.0")
        out.append(Record("desired", 0, i, change.ts, change_key(change), encode_change(change)))
    return out


def fold_s(runs: dict[int, list[Record]], repeat: int) -> dict[int, float]:
    """Median fold time per variant; the variants take turns, so a busy machine slows them alike."""
    times: dict[int, list[float]] = {n: [] for n in runs}
    for _ in range(repeat):
        for n, records in runs.items():
            started = time.perf_counter()
            replay(iter(records), FLEET, CONFIG)
            times[n].append(time.perf_counter() - started)
    return {n: statistics.median(t) for n, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--robots", type=int, default=360)
    ap.add_argument("--ticks", type=int, default=120)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    records = telemetry(args.robots, args.ticks)
    took = fold_s({n: changes(n) + records for n in (0, 10, 100)}, args.repeat)
    print(f"{len(records)} reports, {args.robots} robots; median of {args.repeat} folds, taking turns")
    print(f"{'changes':>8} {'µs/report':>10} {'ratio to none':>14}")
    for n, seconds in took.items():
        print(f"{n:>8} {1e6 * seconds / len(records):>10.1f} {seconds / took[0]:>14.3f}")


if __name__ == "__main__":
    main()

"""Checkpoint bytes and time per robot (twin.checkpoint) against the twins' msgpack, in the same run.

For each fleet size: the chaos scenario's first `--ticks` reports of every robot are folded by
`reduce_batch` into a `ReduceState`; then a *full* checkpoint of every robot is taken and timed:
`snapshot` + `encode` (chunks of at most 512 KiB) and `decode` of every chunk + `merge` into a new
state. Baseline: the same robots' twins (`to_twin`, outside the timing) as the changelog stores them,
`encode_twin` each, and back: `decode_twin` each + `from_twins` (the changelog's recovery into the
same state). Figures are CPU seconds of this process (`time.process_time`: the machine is shared;
polars runs on one thread unless POLARS_MAX_THREADS says otherwise),
the best of --repeat runs (the changelog decode, seconds long, once), per robot; ratios are baseline / checkpoint (above 1: the checkpoint is
smaller or faster). The merged state is checked (outside the timing) to give every sampled robot's
twin back byte for byte. Last, the interval trade-off from these figures: the share of a core that
writing checkpoints every T seconds costs, against the worst recovery (load, then re-fold T seconds).

    .venv/bin/python bench/checkpoint_size.py [--robots 10000,100000] [--ticks 2] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import msgspec

os.environ.setdefault("POLARS_MAX_THREADS", "1")  # CPU of one core, as a worker has; before polars loads
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.seeds import read_fleet, read_scenario  # noqa: E402
from twin.batch_reduce import ReduceState, catalogues_of, from_twins, reduce_batch, to_twin  # noqa: E402
from twin.checkpoint import decode, encode, merge, snapshot  # noqa: E402
from twin.fleet import Fleet  # noqa: E402
from twin.sim import FleetSim  # noqa: E402
from twin.sim.scenario import load_scenario  # noqa: E402
from twin.state import decode_twin, encode_twin  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def best(repeat: int, run: Callable[[], T]) -> tuple[float, T]:
    """The least CPU seconds of `repeat` runs, and the last run's result."""
    times = []
    for _ in range(repeat):
        start = time.process_time()
        out = run()
        times.append(time.process_time() - start)
    return min(times), out


def chaos_state(fleet: Fleet, robots: int, ticks: int) -> tuple[ReduceState, float, int]:
    """The chaos scenario's first `ticks` steps for `robots` robots, folded in batches of 5,000; the
    CPU seconds of the folds after the first step (robots known, as a recovery's re-read finds them)
    and their events."""
    doc = msgspec.to_builtins(read_scenario(ROOT / "seeds", "chaos"))
    sim = FleetSim(fleet, load_scenario({**doc, "robots": robots, "duration_s": ticks + 1}, "chaos"), seed=1)
    state = ReduceState(catalogues_of(fleet))
    folding, count = 0.0, 0
    for tick in range(ticks):
        events = sim.step()
        count += len(events) if tick else 0
        for s in range(0, len(events), 5000):
            batch = events[s:s + 5000]
            received = [e.ts + 0.1 for e in batch]
            start = time.process_time()
            reduce_batch(state, batch, received)
            folding += time.process_time() - start if tick else 0.0  # robots known: as a re-fold finds them
    return state, folding, count


def trade_off(robots: int, enc_us: float, dec_us: float, fold_us: float) -> None:
    """Checkpoint interval T against recovery, robots reporting at 1 Hz (each changed once per T, so a
    checkpoint holds every robot): the CPU share of writing checkpoints, and the worst recovery (load
    the checkpoints, re-fold T seconds of log). The fold figure is the reducer alone; the detectors
    will add to it."""
    for interval in (1, 5, 30):
        write = robots * enc_us / interval / 1e6
        recover = (robots * dec_us + interval * robots * fold_us) / 1e6
        print(f"  T={interval:>2} s: checkpoints {write:6.1%} of a core; recovery <= {recover:6.2f} CPU s "
              f"(load {robots * dec_us / 1e6:.2f} + re-fold {interval * robots} events)")


def measure(fleet: Fleet, robots: int, ticks: int, repeat: int) -> None:
    setup = time.process_time()
    state, folding, events = chaos_state(fleet, robots, ticks)
    setup = time.process_time() - setup
    ids = state.robot_ids
    n = len(ids)
    to_twins, twins = best(1, lambda: [to_twin(state, robot) for robot in ids])
    base_enc, blobs = best(repeat, lambda: [encode_twin(t) for t in twins])
    base_dec, _ = best(1, lambda: from_twins([decode_twin(b) for b in blobs], catalogues_of(fleet)))
    enc, chunks = best(repeat, lambda: encode(snapshot(state, ids, partition=0, next_offset=n, full=True)))
    dec, (merged, offset) = best(repeat, lambda: merge([decode(c) for c in chunks], catalogues_of(fleet)))
    sample = random.Random(1).sample(ids, min(n, 3000))
    assert offset == n and merged.robots == n
    assert all(encode_twin(to_twin(merged, r)) == encode_twin(to_twin(state, r)) for r in sample)
    twin_bytes, ckpt_bytes = sum(map(len, blobs)), sum(map(len, chunks))
    us = 1e6 / n
    print(f"{n:>7} robots, {len(chunks)} chunks (max {max(map(len, chunks))} B), signals/robot "
          f"{sum(len(t.signals) for t in twins) / n:.1f} (simulated and folded in {setup:.1f} CPU s)")
    print(f"  bytes/robot   checkpoint {ckpt_bytes / n:7.1f}   twins msgpack {twin_bytes / n:7.1f}   "
          f"ratio {twin_bytes / ckpt_bytes:5.2f}")
    print(f"  encode us/robot  snapshot+encode {enc * us:6.2f}   encode_twin {base_enc * us:6.2f}   "
          f"ratio {base_enc / enc:5.2f}")
    print(f"  (the changelog from these columns would add to_twin first: {to_twins * us:.2f} us/robot; "
          f"ratio to snapshot+encode with it {(base_enc + to_twins) / enc:.2f})")
    print(f"  decode us/robot  decode+merge {dec * us:6.2f}   decode_twin+from_twins {base_dec * us:6.2f}   "
          f"ratio {base_dec / dec:5.2f}")
    print(f"  reduce_batch (the re-fold, reducer only) us/event {folding * 1e6 / events:6.2f}")
    trade_off(n, enc * us, dec * us, folding * 1e6 / events)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--robots", default="10000,100000")
    parser.add_argument("--ticks", type=int, default=2, help="reports per robot folded first (at least 2)")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    fleet = read_fleet(ROOT / "seeds")
    for robots in map(int, args.robots.split(",")):
        measure(fleet, robots, args.ticks, args.repeat)


if __name__ == "__main__":
    main()

"""How fast the batch reducer folds chaos events, against the scalar reducer in the same run.

Baseline: `twin.reduce.apply`, one event at a time into a dict of twins (the scalar core's
reduce step alone). Then `twin.batch_reduce.reduce_batch` on the same events at each batch
size, from an empty state. Every run's twins (encode_twin bytes) and Effects are checked equal
to the baseline's, outside the timing. Each figure is the median of --repeat runs. The input
events are moved out of the garbage collector's sight (`gc.freeze()`, as the worker does with its
start-up objects) unless --no-freeze: otherwise every full collection walks them. Also prints
the bytes per robot of the batch state's arrays (allocated capacity included), and how fast
`from_twins` loads the final twins (recovery) and `to_twin` reads each back.

    .venv/bin/python bench/reduce_batch.py [--events 200000] [--robots 2000] [--sizes 500,2000,5000]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.seeds import read_fleet, read_scenario  # noqa: E402
from twin.batch_reduce import NARROW, ReduceState, catalogues_of, from_twins, reduce_batch, to_twin  # noqa: E402
from twin.effects import Effects  # noqa: E402
from twin.fleet import Fleet  # noqa: E402
from twin.reduce import apply  # noqa: E402
from twin.schema import Event  # noqa: E402
from twin.sim import FleetSim  # noqa: E402
from twin.sim.scenario import load_scenario  # noqa: E402
from twin.state import Twin, encode_twin  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def chaos_events(fleet: Fleet, robots: int, count: int) -> list[Event]:
    """The first `count` events of the chaos scenario scaled to `robots` robots."""
    doc = msgspec.to_builtins(read_scenario(ROOT / "seeds", "chaos"))
    scenario = load_scenario({**doc, "robots": robots, "duration_s": -(-count // robots) + 1}, "chaos")
    sim = FleetSim(fleet, scenario, seed=1)
    events: list[Event] = []
    while len(events) < count:
        events.extend(sim.step())
    return events[:count]


def scalar(events: list[Event], received: list[float]) -> tuple[dict[str, Twin], list[Effects]]:
    twins: dict[str, Twin] = {}
    effects = []
    for event, when in zip(events, received):
        twins[event.robot_id], effect = apply(twins.get(event.robot_id), event, received_ts=when)
        effects.append(effect)
    return twins, effects


def batched(fleet: Fleet, events: list[Event], received: list[float], size: int,
            narrow: int = NARROW) -> tuple[ReduceState, list[Effects]]:
    state = ReduceState(catalogues_of(fleet))
    effects: list[Effects] = []
    for start in range(0, len(events), size):
        effects.extend(reduce_batch(state, events[start:start + size], received[start:start + size], narrow=narrow)[1])
    return state, effects


def timed(run: Callable[[], T], repeat: int) -> tuple[float, T]:
    """Median seconds of `run()` over `repeat` runs, and the last result."""
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def check(state: ReduceState, effects: list[Effects], twins: dict[str, Twin], expected: list[Effects]) -> bool:
    return effects == expected and all(encode_twin(to_twin(state, r)) == encode_twin(t) for r, t in twins.items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--robots", type=int, default=2_000)
    ap.add_argument("--sizes", default="500,2000,5000", help="batch sizes, comma-separated")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-freeze", action="store_true", help="leave the input events to the garbage collector")
    args = ap.parse_args()
    fleet = read_fleet(ROOT / "seeds")
    events = chaos_events(fleet, args.robots, args.events)
    rnd = random.Random(1)
    received = [e.ts + 0.05 + rnd.random() for e in events]
    if not args.no_freeze:
        gc.freeze()  # the input list (millions of objects) is not the fold's cost: keep full GC passes off it
    n = len(events)
    base_s, base = timed(lambda: scalar(events, received), args.repeat)
    twins, expected = base
    outcomes = {o: sum(e.outcome == o for e in expected) for o in ("applied", "late", "duplicate", "stale")}
    print(f"reduce, chaos scenario: {n:,} events, {len(twins):,} robots, median of {args.repeat}; outcomes {outcomes}")
    print(f"  {'scalar apply (baseline)':<28} {n / base_s:>10,.0f} events/s   ratio 1.00")
    for size in (int(s) for s in args.sizes.split(",")):
        seconds, result = timed(lambda: batched(fleet, events, received, size), args.repeat)
        state, effects = result
        same = "identical" if check(state, effects, twins, expected) else "DIFFERENT"
        print(f"  {f'reduce_batch, batch {size:,}':<28} {n / seconds:>10,.0f} events/s   ratio {base_s / seconds:4.2f}"
              f"   twins and effects {same}")
    print_few(fleet, events, received, args.repeat)
    print_memory(state, twins)
    if not args.no_freeze:
        gc.freeze()  # the twins are the input of the load figure
    print_load(fleet, twins, args.repeat)


def print_few(fleet: Fleet, events: list[Event], received: list[float], repeat: int) -> None:
    """A batch of few robots' many events (replaying one robot): rounds too narrow to vectorise."""
    robots = {e.robot_id for e in events[:10]}
    few = [(e, r) for e, r in zip(events, received) if e.robot_id in robots]
    evs, rec = [e for e, _ in few], [r for _, r in few]
    base_s, (twins, expected) = timed(lambda: scalar(evs, rec), repeat)
    for narrow in (NARROW, 0):
        seconds, (state, effects) = timed(lambda: batched(fleet, evs, rec, len(evs), narrow), repeat)
        same = "identical" if check(state, effects, twins, expected) else "DIFFERENT"
        how = "narrow rounds through apply" if narrow else "every round vectorised"
        print(f"  {len(robots)} robots' {len(evs):,} events in one batch, {how}: {len(evs) / seconds:,.0f} events/s,"
              f" ratio {base_s / seconds:4.2f} to apply on them   {same}")


def print_load(fleet: Fleet, twins: dict[str, Twin], repeat: int) -> None:
    """Loading the twins into a state (recovery) and reading each back (the twin view)."""
    load_s, state = timed(lambda: from_twins(twins.values(), catalogues_of(fleet)), repeat)
    read_s, back = timed(lambda: [to_twin(state, robot) for robot in twins], repeat)
    same = all(encode_twin(a) == encode_twin(b) for a, b in zip(back, twins.values()))
    print(f"  from_twins: {len(twins) / load_s:,.0f} twins/s; to_twin: {len(twins) / read_s:,.0f} twins/s; "
          f"round trip {'identical' if same else 'DIFFERENT'}")


def print_memory(state: ReduceState, twins: dict[str, Twin]) -> None:
    robots = state.robots
    slots = sum(a.nbytes for a in state.cols.values())
    blocks = sum(a.nbytes for b in state.blocks for a in b.c.values())
    used = sum(len(state.blocks[b].names) for b in state.cols["block"][:robots].tolist())
    per_signal = sum(a.itemsize for a in state.blocks[0].c.values())
    stored = sum(len(encode_twin(t)) for t in twins.values())
    print(f"  ReduceState arrays: {state.nbytes() / robots:,.0f} bytes/robot (allocated: per-robot columns "
          f"{slots / robots:,.0f}, signal blocks {blocks / robots:,.0f}; {used / robots:.1f} signal columns/robot "
          f"x {per_signal} bytes = {used * per_signal / robots:,.0f} used), in {len(state.blocks)} blocks;")
    print(f"  plus {state.sparse_times():,} signals holding their own (ts, seq) in sparse dicts "
          f"({state.sparse_times() / robots:.2f}/robot)")
    print(f"  for comparison, encode_twin (msgpack) bytes/robot: {stored / robots:,.0f}")


if __name__ == "__main__":
    main()

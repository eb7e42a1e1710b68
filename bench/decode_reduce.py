"""From wire bytes to twin state: the batch path against the scalar one, in the same run.

Baseline: per message `twin.validate.parse` then `twin.reduce.apply` into a dict of twins (the
scalar core's parse and reduce steps). Then, per batch: `twin.columns.decode_batch` alone (for
scale); `decode_batch` + `twin.batch_reduce.reduce_columns` (no Event objects); and, for
comparison, `decode_batch` + an `Event` per row (`Columns.event`) + `reduce_batch`. Then each
fold alone on batches prepared outside the timing: `reduce_columns` on decoded columns against
`reduce_batch` on Event objects (which builds its columns from them). Input: chaos
events on the wire (JSON, keyed by robot). The batch runs' twins (encode_twin bytes) and Effects
are checked equal to the baseline's, outside the timing. Figures are events per CPU second of
this process (`time.process_time`: the machine is shared, and wall time would count other
processes' turns), medians of --repeat runs;
the input is frozen out of the GC's sight first (`gc.freeze()`, as the worker does).

    .venv/bin/python bench/decode_reduce.py [--events 60000] [--robots 2000] [--sizes 2000]
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
import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.seeds import read_fleet, read_scenario  # noqa: E402
from twin.batch_reduce import ReduceState, catalogues_of, reduce_batch, reduce_columns, to_twin  # noqa: E402
from twin.columns import Columns, Message, decode_batch  # noqa: E402
from twin.effects import Effects  # noqa: E402
from twin.fleet import Fleet  # noqa: E402
from twin.reduce import apply  # noqa: E402
from twin.schema import Event, encode  # noqa: E402
from twin.sim import FleetSim  # noqa: E402
from twin.sim.scenario import load_scenario  # noqa: E402
from twin.state import Twin, encode_twin  # noqa: E402
from twin.validate import parse  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
Result = tuple[ReduceState, list[Effects | None]]
Array = npt.NDArray[np.float64]


def chaos_events(fleet: Fleet, robots: int, count: int) -> list[Event]:
    """The first `count` events of the chaos scenario scaled to `robots` robots (as bench/reduce_batch.py)."""
    doc = msgspec.to_builtins(read_scenario(ROOT / "seeds", "chaos"))
    scenario = load_scenario({**doc, "robots": robots, "duration_s": -(-count // robots) + 1}, "chaos")
    sim = FleetSim(fleet, scenario, seed=1)
    events: list[Event] = []
    while len(events) < count:
        events.extend(sim.step())
    return events[:count]


def scalar(messages: list[Message], fleet: Fleet) -> tuple[dict[str, Twin], list[Effects]]:
    """Per message: parse, apply (every message is valid here)."""
    twins: dict[str, Twin] = {}
    effects = []
    for key, value, received in messages:
        event = parse(value, fleet, key=key, received_ts=received)
        twins[event.robot_id], effect = apply(twins.get(event.robot_id), event, received_ts=received)
        effects.append(effect)
    return twins, effects


def decode_only(messages: list[Message], fleet: Fleet, size: int) -> int:
    return sum(len(decode_batch(messages[s:s + size], fleet).row) for s in range(0, len(messages), size))


def columns_path(messages: list[Message], fleet: Fleet, size: int) -> Result:
    """decode_batch + reduce_columns: wire bytes to state without an Event per row."""
    state = ReduceState(catalogues_of(fleet))
    effects: list[Effects | None] = []
    for start in range(0, len(messages), size):
        effects.extend(reduce_columns(state, decode_batch(messages[start:start + size], fleet))[1])
    return state, effects


def events_path(messages: list[Message], fleet: Fleet, size: int) -> Result:
    """decode_batch, an Event per accepted row, reduce_batch: what joining through Events costs."""
    state = ReduceState(catalogues_of(fleet))
    effects: list[Effects | None] = []
    for start in range(0, len(messages), size):
        columns = decode_batch(messages[start:start + size], fleet)
        rows = columns.row.tolist()
        effects.extend(reduce_batch(state, [columns.event(i) for i in rows], columns.received_ts)[1])
    return state, effects


def fold_only(batches: list[Columns], fleet: Fleet) -> Result:
    """reduce_columns alone, on batches decoded beforehand."""
    state = ReduceState(catalogues_of(fleet))
    effects: list[Effects | None] = []
    for columns in batches:
        effects.extend(reduce_columns(state, columns)[1])
    return state, effects


def events_only(batches: list[tuple[list[Event], Array]], fleet: Fleet) -> Result:
    """reduce_batch alone, on Event objects built beforehand (its column building included)."""
    state = ReduceState(catalogues_of(fleet))
    effects: list[Effects | None] = []
    for events, received in batches:
        effects.extend(reduce_batch(state, events, received)[1])
    return state, effects


def timed(run: Callable[[], T], repeat: int) -> tuple[float, T]:
    """Median CPU seconds of `run()` over `repeat` runs, and the last result."""
    seconds = []
    for _ in range(repeat):
        start = time.process_time()
        result = run()
        seconds.append(time.process_time() - start)
    return statistics.median(seconds), result


def same(result: Result, twins: dict[str, Twin], expected: list[Effects]) -> str:
    state, effects = result
    ok = effects == expected and state.robots == len(twins) and all(
        encode_twin(to_twin(state, r)) == encode_twin(t) for r, t in twins.items())
    return "identical" if ok else "DIFFERENT"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--events", type=int, default=60_000)
    ap.add_argument("--robots", type=int, default=2_000)
    ap.add_argument("--sizes", default="2000", help="batch sizes, comma-separated")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    fleet = read_fleet(ROOT / "seeds")
    rnd = random.Random(1)
    messages: list[Message] = [(e.robot_id.encode(), encode(e), round((e.ts + 0.05 + rnd.random()) * 1000) / 1000)
                for e in chaos_events(fleet, args.robots, args.events)]
    gc.freeze()  # the input (and the fleet) are not the fold's cost
    n = len(messages)
    base_s, (twins, expected) = timed(lambda: scalar(messages, fleet), args.repeat)
    print(f"wire bytes -> twin state, chaos scenario: {n:,} JSON messages, {len(twins):,} robots, "
          f"median of {args.repeat}")
    print(f"  {'parse + apply per message (baseline)':<58} {n / base_s:>9,.0f} events/CPU-s   ratio 1.00")
    for size in (int(s) for s in args.sizes.split(",")):
        seconds, _ = timed(lambda: decode_only(messages, fleet, size), args.repeat)
        print(f"  {f'decode_batch alone, batch {size:,}':<58} {n / seconds:>9,.0f} events/CPU-s   "
              f"ratio {base_s / seconds:4.2f}")
        for label, path in (("decode_batch + reduce_columns", columns_path),
                            ("decode_batch + Event per row + reduce_batch", events_path)):
            seconds, result = timed(lambda: path(messages, fleet, size), args.repeat)
            print(f"  {f'{label}, batch {size:,}':<58} {n / seconds:>9,.0f} events/CPU-s   "
                  f"ratio {base_s / seconds:4.2f}   twins and effects {same(result, twins, expected)}")
        decoded = [decode_batch(messages[s:s + size], fleet) for s in range(0, n, size)]
        built = [([c.event(i) for i in c.row.tolist()], c.received_ts) for c in decoded]
        gc.freeze()
        print(f"  the fold alone, on batches of {size:,} prepared outside the timing:")
        for label, run in (("reduce_columns on decoded columns", lambda: fold_only(decoded, fleet)),
                           ("reduce_batch on Event objects", lambda: events_only(built, fleet))):
            seconds, result = timed(run, args.repeat)
            print(f"    {label:<56} {n / seconds:>9,.0f} events/CPU-s   twins and effects {same(result, twins, expected)}")


if __name__ == "__main__":
    main()

"""Memory per robot of a partition's whole fold state (`twin.batch_fold.FoldState`), against the
msgpack twins (`encode_twin`) of the same robots, in the same run; and its checkpoint's bytes.

Log: the simulator's chaos scenario at `--robots` robots for `--ticks` seconds (one report per robot
per second, each a telemetry record of partition 0 as bench/fold_batch.py writes them, no silence
checks), folded by `fold_batch` in batches of `--batch` records, one second of log at a time (the
records are not kept). Then, outside any timing:

* *live state*: the bytes the FoldState holds, by a walk of its object graph (`deep_size`): numpy
  arrays by `nbytes` (allocated length, spare capacity included; a view counts its base once), every
  Python object by `sys.getsizeof` (dicts, lists, tuples, strings, ints, msgspec structs, dataclasses),
  each object once however often it is referenced (robot ids shared by `slot_of` and `robot_ids`,
  interned tables). Printed per part: the reducer's arrays and its Python parts, the detector
  arrays, the open anomalies, the fleet state.
* *restored state*: `tracemalloc`'s count of the bytes still allocated after `restore` of the full
  checkpoint into a fresh FoldState (numpy reports its buffers to tracemalloc), a second measure of
  the same state, compact (no spare capacity from growth by a quarter).
* baseline: every robot's twin as the scalar core holds it (`twin_of`), `encode_twin`: the bytes the
  Faust table holds per robot (the msgpack values alone; the table's own dict and keys not counted).
* checkpoint: `snapshot_fold` of every robot + `encode` (chunks of 512 KiB), bytes per robot, with
  the detector and fleet groups; a sample of 2,000 robots is checked to restore byte for byte
  (`encode_twin(twin_of(...))`).

The issue's goal: at most 1.5 KiB per robot at 100,000 robots. Not met. Measured (100,000 robots x
5 s, 499,993 records, one run on 2 shared cores; fold 38 CPU s): live 2,604 B/robot (248 MiB), restored
2,710, encode_twin 939 (ratio 2.77); the parts: reducer slot columns 291, signal blocks 566, its
offsets as a dict of tuples (`ReduceState.extras`) 180, slot map and ids 120; detector `cell_of`
(slot x name, int64) 344, cell counters 383 and drift numbers 629 (13.6 cells per robot, 12.5% spare),
per-robot detector arrays 91. No anomaly was open at 5 s; at 2,000 robots x 20 s (41 openings) the
open-anomalies dict added 5.7 B/robot (total 2,694). Checkpoint: 267 B/robot (58 chunks; ratio 0.28
to encode_twin); snapshot_fold + encode 1.4 CPU s, decode 0.5 + restore 2.8 CPU s. With `cell_of` as
int32 (next run, same command): live 2,432 B/robot (cell_of 172), restored 2,495; ratio 2.59. With the
offsets as slot columns instead of a dict of tuples: live 2,309, restored 2,330; ratio 2.46.
Eighteenth session (20,000 robots x 90 s, `--robots 20000 --ticks 90`): a cell's counters as int32
and int16 (`batch_signals.COUNTS`, `HITS`): live 2,005 -> 1,767 B/robot (the cells 494 -> 256),
restored 1,937 -> 1,698. Twentieth session (`--robots 100000 --ticks 10 --batch 10000`): each robot's cells
as one run laid out as its reducer block instead of the slot x name `cell_of` table (232 B/robot): live
1,587 -> 1,363 B/robot, restored 1,461 -> 1,256.

    .venv/bin/python bench/fold_memory.py [--robots 100000] [--ticks 5] [--batch 10000]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

os.environ.setdefault("POLARS_MAX_THREADS", "1")  # one core, as a worker has; before polars loads
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.seeds import read_detectors, read_fleet, read_scenario  # noqa: E402
from twin import batch_fold as bf  # noqa: E402
from twin.checkpoint import decode, encode, restore, snapshot_fold  # noqa: E402
from twin.fleet_fold import Rules  # noqa: E402
from twin.record import Record  # noqa: E402
from twin.sim import FleetSim  # noqa: E402
from twin.sim.scenario import load_scenario  # noqa: E402
from twin.state import encode_twin  # noqa: E402

SEEDS = Path(__file__).resolve().parent.parent / "seeds"
_ATOMS = (str, bytes, int, float, bool, type(None))


def seconds_of_log(rules: Rules, robots: int, ticks: int) -> Iterator[list[Record]]:
    """The chaos log, one second (every robot's report) at a time, offsets running on."""
    doc = msgspec.to_builtins(read_scenario(SEEDS, "chaos"))
    sim = FleetSim(rules.fleet, load_scenario({**doc, "robots": robots, "duration_s": ticks}, "chaos"), seed=1)
    offset = 0
    for _ in range(sim.ticks):
        out = [Record("telemetry", 0, offset + i, round((e.ts + 0.2) * 1000) / 1000, e.robot_id.encode(),
                      msgspec.json.encode(e)) for i, e in enumerate(sim.step())]
        offset += len(out)
        yield out


def deep_size(root: Any, seen: set[int]) -> int:
    """Bytes of `root` and everything it references not in `seen` (ids, updated): see the module doc."""
    total = 0
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type):
            continue
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            base = obj
            while isinstance(base.base, np.ndarray):
                base = base.base
            if id(base) not in seen or base is obj:
                seen.add(id(base))
                total += base.nbytes
            continue
        total += sys.getsizeof(obj)
        if isinstance(obj, _ATOMS):
            continue
        if isinstance(obj, dict):
            stack += [*obj.keys(), *obj.values()]
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack += list(obj)
        elif isinstance(obj, msgspec.Struct):
            stack += [getattr(obj, f) for f in obj.__struct_fields__]
        elif dataclasses.is_dataclass(obj):
            stack += [getattr(obj, f.name) for f in dataclasses.fields(obj)]
        else:
            stack += list(getattr(obj, "__dict__", {}).values())
            stack += [getattr(obj, s) for s in getattr(type(obj), "__slots__", ()) if hasattr(obj, s)]
    return total


def arrays_of(obj: Any) -> list[np.ndarray]:
    """The numpy arrays an object holds directly or in NamedTuples, lists and dicts (one level of objects)."""
    out: list[np.ndarray] = []
    stack = [obj]
    while stack:
        x = stack.pop()
        if isinstance(x, np.ndarray):
            out.append(x)
        elif isinstance(x, (list, tuple)):
            stack += list(x)
        elif isinstance(x, dict):
            stack += list(x.values())
        elif hasattr(x, "__dict__") and x is obj:
            stack += list(vars(x).values())
        elif hasattr(x, "c") and hasattr(x, "times"):  # a reducer block: its columns
            stack.append(x.c)
    return out


def parts(state: bf.FoldState) -> dict[str, int]:
    """The live state's bytes, by part (each object counted in the first part that reaches it)."""
    seen: set[int] = set()
    red, obs = state.red, state.obs
    used = f"{obs.ncells} used of {len(obs.listed)}"
    out = {"reducer slot columns (arrays, offsets included)": sum(deep_size(a, seen) for a in red.cols.values()),
           "reducer signal blocks (arrays)": sum(deep_size(a, seen) for b in red.blocks for a in b.c.values()),
           "reducer other arrays": sum(deep_size(a, seen) for a in arrays_of(red)),
           "detector cell runs (base and block per slot)": deep_size(obs.base, seen) + deep_size(obs.laid, seen),
           f"detector cells: counters and drift rows ({used})":
               sum(deep_size(a, seen) for a in (obs.cells.out, obs.cells.same, obs.cells.hits, obs.cells.dslot,
                                                 obs.listed)),
           f"detector cells: drift numbers ({obs.cells.ndrift} rows used of {len(obs.cells.drift.has)})":
               sum(deep_size(a, seen) for a in obs.cells.drift),
           "detector per-robot arrays (robot, stall, cohort)": sum(deep_size(a, seen) for a in arrays_of(obs)),
           "detector open anomalies (dict)": deep_size(obs.opened, seen),
           "reducer watches of loaded twins (dict)": deep_size(red.watches, seen),
           "reducer slot map and robot ids": deep_size(red.slot_of, seen) + deep_size(red.robot_ids, seen),
           "reducer block times (dicts)": sum(deep_size(b.times, seen) for b in red.blocks)}
    out["reducer other Python (interns, block maps)"] = deep_size(red, seen)
    out["detector other Python"] = deep_size(obs, seen)
    out["fleet state (cohorts, rollouts, ticks)"] = deep_size(state.fleet, seen)
    return out


def stored(state: bf.FoldState, robot_id: str) -> bytes:
    """The robot's twin as the changelog stores it (the baseline)."""
    twin = bf.twin_of(state, robot_id)
    assert twin is not None
    return encode_twin(twin)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--robots", type=int, default=100_000)
    ap.add_argument("--ticks", type=int, default=5, help="seconds of log: reports per robot")
    ap.add_argument("--batch", type=int, default=10_000)
    a = ap.parse_args()
    rules = Rules(read_fleet(SEEDS), read_detectors(SEEDS))
    state = bf.FoldState(rules)
    t0, records, opened = time.process_time(), 0, 0
    for second in seconds_of_log(rules, a.robots, a.ticks):
        for at in range(0, len(second), a.batch):
            out = bf.fold_batch(state, rules, second[at:at + a.batch])[1]
            opened += sum(m.status == "open" for o in out for m in o.publish)
        records += len(second)
    fold_s = time.process_time() - t0
    ids = sorted(bf.robot_ids(state))
    n = len(ids)
    live = parts(state)
    total = sum(live.values())
    t0 = time.process_time()
    twin_bytes = sum(len(stored(state, rid)) for rid in ids)
    twin_s = time.process_time() - t0
    t0 = time.process_time()
    chunks = encode(snapshot_fold(state, ids, partition=0, next_offset=records, full=True))
    enc_s = time.process_time() - t0
    ckpt = sum(map(len, chunks))
    t0 = time.process_time()
    decoded = [decode(c) for c in chunks]
    decode_s = time.process_time() - t0
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    t0 = time.process_time()
    restored, _ = restore(decoded, rules)
    dec_s = time.process_time() - t0
    restored_bytes = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    sample = random.Random(1).sample(ids, min(n, 2000))
    same = all(stored(restored, r) == stored(state, r) for r in sample)
    signals = state.red.cols["block"][:n]
    per_robot = sum(len(state.red.blocks[b].names) for b in signals.tolist()) / n
    print(f"{n} robots x {a.ticks} s of chaos, {records} records folded by fold_batch (batches of {a.batch}) "
          f"in {fold_s:.1f} CPU s; {opened} anomaly openings; {per_robot:.1f} block columns/robot; "
          f"{state.obs.ncells / n:.1f} signal cells/robot")
    print(f"  live FoldState        {total / n:8.1f} B/robot  ({total / 2**20:.1f} MiB; walk of the object graph)")
    for name, size in live.items():
        print(f"    {name:<58} {size / n:8.1f} B/robot")
    print(f"  restored FoldState    {restored_bytes / n:8.1f} B/robot  (tracemalloc over restore from the full "
          f"checkpoint; decode {decode_s:.1f} + restore {dec_s:.1f} CPU s)")
    print(f"  baseline encode_twin  {twin_bytes / n:8.1f} B/robot  (msgpack twins with watch; {twin_s:.1f} CPU s)")
    print(f"  ratio live/baseline {total / twin_bytes:.2f}, restored/baseline {restored_bytes / twin_bytes:.2f}; "
          f"fold state {'within' if total / n <= 1536 else 'over'} 1536 B/robot (the goal is the whole worker's "
          f"RSS at 100,000 robots: bench/pipeline_throughput.py (5))")
    print(f"  checkpoint (full, detector + fleet groups) {ckpt / n:8.1f} B/robot in {len(chunks)} chunks "
          f"(snapshot_fold+encode {enc_s:.1f} CPU s); ratio to baseline {ckpt / twin_bytes:.2f}; "
          f"sample of {len(sample)} restored byte for byte: {same}")
    if not same:
        raise SystemExit("MISMATCH: a restored twin differs")


if __name__ == "__main__":
    main()

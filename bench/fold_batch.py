"""How fast `twin.batch_fold.fold_batch` folds wire records, against `on_record` record by record.

Log: the simulator's chaos scenario at `--robots` robots for `--seconds` seconds, each report a
telemetry record of partition 0 (key = robot id, value = the JSON event, broker time = event time
+ 0.2 s in whole milliseconds); every 5 s of it, silence checks for `--checks` robots drawn at
random (as the worker's timer would send for quiet robots). Desired-state changes: none, or with
`--desired site` one change (`config.max_speed_mps` = 0.5, which no robot reports, stamped `--age`
seconds before the run) selecting the first robot's site, with `--desired share` one selecting 5% of
the robots (`Selector(share=0.05)`). Younger than the drift grace (600 s) within the run, their
robots only get commands (they join, `batch_fold._commands`); older, their drift opens at once and
they take the scalar path (`batch_fold._desiring`), and mixed models with them.

* Scalar: `on_record` per record over a dict of twins, from the wire bytes (it parses each).
* Batch: `fold_batch` on slices of `--batch` records, from the same bytes (it decodes them).
* With `--desired`, also "all scalar": `fold_batch` with every robot of each batch on the scalar path
  (`_desiring` patched to name them all), which is what the fold did with any desired change before
  desired state was judged sparsely.

Process CPU time of each whole fold; events/CPU-second over all records and over the records after
`--settled` seconds of the run: robots are then warm and settled at work (`settle_s` is 60 s), so
most reports teach the cohorts (scalar `learn`/`learn_rates` per row on both sides) and fitted
baselines score them. Afterwards every
record's output and every twin (`encode_twin`, with its watch) are checked equal; the run stops with
an error otherwise.

Also printed: how many `fold_batch` calls had a *mixed* model (rows on the scalar path while its
cohort could change, see twin/batch_fold.py), how many of those were cut in pieces around their
checks, and how many robot-calls took the scalar path.

Measured (2 shared cores under load, 2,000 robots, 80 s, 160,188 records, batch 2,000; the join on
`batch_observe.ingest_batch`): on_record 5,400-6,300 events/CPU-s, fold_batch 12,700-14,900 (four runs):
2.25-2.46x overall; after 65 s 3.95-4.48x (before it, with live models on the scalar path: 2.1-2.2x
and 1.5-1.8x). 5 of 81 batches had a mixed model (those with silence checks); all 5 were cut in
pieces (14), none folded whole on the scalar path.

With one desired change (one run each, same machine, 2,000 robots, 80 s, batch 2,000; "all scalar" is
every robot through `feed`, what the fold did with any change before): `--desired site` (4,692 of
167,784 robot-calls got commands after the join, none judged on the scalar path): 3.27x overall,
4.79x after 65 s (all scalar: 0.35x, 0.44x; without changes in another run: 2.26x, 4.80x);
`--desired share`: 2.61x, 3.43x (all scalar 0.33x, 0.35x), `_desiring` 10% of the fold's CPU (a
share selector hashes each robot id); `--desired share --age 700` (5% of robots drifting, so judged
by `feed`, and as they are in every model, every learning model mixed): 0.70x, 0.33x (all scalar
0.30x, 0.31x).

    .venv/bin/python bench/fold_batch.py [--robots 2000] [--seconds 80] [--batch 2000] [--checks 20] [--settled 65]
                                         [--desired none|site|share] [--age 1]
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.seeds import read_detectors, read_fleet, read_scenario  # noqa: E402
from twin import batch_fold as bf  # noqa: E402
from twin.desired import DesiredChange, DesiredRules, Selector, add_change  # noqa: E402
from twin.fleet_fold import FleetState, RecordOut, Rules, on_record  # noqa: E402
from twin.record import Record  # noqa: E402
from twin.sim import FleetSim  # noqa: E402
from twin.sim.scenario import load_scenario  # noqa: E402
from twin.state import Twin, encode_twin  # noqa: E402

SEEDS = Path(__file__).resolve().parent.parent / "seeds"
encode = msgspec.msgpack.encode


def log(rules: Rules, robots: int, seconds: int, checks: int) -> list[Record]:
    doc = msgspec.to_builtins(read_scenario(SEEDS, "chaos"))
    sim = FleetSim(rules.fleet, load_scenario({**doc, "robots": robots, "duration_s": seconds}, "chaos"), seed=1)
    rng = random.Random(1)
    out: list[Record] = []
    ids: list[str] = []
    for tick in range(sim.ticks):
        events = sim.step()
        for e in events:
            out.append(Record("telemetry", 0, len(out), round((e.ts + 0.2) * 1000) / 1000, e.robot_id.encode(),
                              msgspec.json.encode(e)))
        ids = ids or [e.robot_id for e in events]
        if tick % 5 == 4 and events:
            now = out[-1].timestamp
            for rid in rng.sample(ids, min(checks, len(ids))):
                out.append(Record("check", 0, len(out), now, rid.encode(), repr(now).encode()))
    return out


def checkpoints(state: bf.FoldState, rules: Rules, records: list[Record], size: int) -> Iterator[list[str]]:
    """Fold `records` into `state` in batches of `size`; after each batch of the log's second half (a
    settled fleet), the robots it touched in order of first sight: what a checkpoint after it stores."""
    for at in range(0, len(records), size):
        batch = records[at:at + size]
        bf.fold_log(state, rules, batch)
        if at >= len(records) // 2:
            yield list(dict.fromkeys(r.key.decode() for r in batch if r.key))


def desired(kind: str, records: list[Record], age: float) -> FleetState:
    """The fleet state the folds start from: no desired change, or one for a site or for 5% of robots,
    stamped `age` seconds before the first record."""
    if kind == "none":
        return FleetState()
    first = msgspec.json.decode(records[0].value)
    selector = Selector(site=first["site"]) if kind == "site" else Selector(share=0.05)
    change = DesiredChange(change_id="bench", ts=records[0].timestamp - age, principal="bench", reason="bench",
                           selector=selector, field="config.max_speed_mps", value="0.5")
    return FleetState(desired=add_change(DesiredRules(), change))


def scalar(rules: Rules, records: list[Record], start: FleetState) -> tuple[list[float], list[RecordOut],
                                                                            dict[str, Twin]]:
    twins: dict[str, Twin] = {}
    state = start
    outs: list[RecordOut] = []
    times = []
    for record in records:
        t0 = time.process_time()
        state, out = on_record(state, twins.get, record, rules)
        if out.step.twin is not None:
            twins[out.step.twin.robot_id] = out.step.twin
        times.append(time.process_time() - t0)
        outs.append(out)
    return times, outs, twins


ROUTED: list[tuple[int, int, int]] = []
"""Per batch: robots on the scalar path for their own records, then with mixed models' robots, of all."""


def routed(events: Any, keys: Any, scalar: set[str], learning: set[Any]) -> set[str]:
    """`bf._mixed`, recorded in ROUTED (a few microseconds per batch)."""
    out = _MIXED(events, keys, scalar, learning)
    ROUTED.append((len(scalar), len(out), len({e.robot_id for e in events.values()})))
    return out


_MIXED, _PIECES, _DESIRING = bf._mixed, bf._pieces, bf._desiring
SPLIT: dict[int, int] = {}
"""Per ROUTED entry whose call went to `bf._pieces`: how many pieces (1: folded whole after all)."""


def pieces(records: Any, events: Any) -> list[tuple[int, int]]:
    """`bf._pieces`, recorded in SPLIT."""
    out = _PIECES(records, events)
    SPLIT[len(ROUTED) - 1] = len(out)
    return out


bf._mixed, bf._pieces = routed, pieces
DESIRING: list[tuple[int, int]] = []
"""Per `fold_twins` call: the robots `_desiring` sent to the scalar path, and those left to the join
with a possible command."""


SPENT = {"_desiring": 0.0, "_commands": 0.0}
"""CPU seconds in `bf._desiring` and `bf._commands` (the sparse desired-state judgement's own cost)."""
_COMMANDS = bf._commands


def desiring(state: bf.FoldState, events: Any, scalar: set[str]) -> tuple[set[str], set[str]]:
    """`bf._desiring`, recorded in DESIRING and SPENT."""
    t0 = time.process_time()
    judged, commanded = _DESIRING(state, events, scalar)
    SPENT["_desiring"] += time.process_time() - t0
    DESIRING.append((len(judged), len(commanded)))
    return judged, commanded


def commands(state: bf.FoldState, events: Any, before: dict[str, Twin | None], steps: list[Any]) -> None:
    """`bf._commands`, timed in SPENT."""
    t0 = time.process_time()
    _COMMANDS(state, events, before, steps)
    SPENT["_commands"] += time.process_time() - t0


def every_robot(state: bf.FoldState, events: Any, scalar: set[str]) -> tuple[set[str], set[str]]:
    """All of the batch's robots on the scalar path (the fold before desired state was judged sparsely)."""
    return {e.robot_id for e in events.values()}, set()


def batched(rules: Rules, records: list[Record], size: int, start: FleetState
            ) -> tuple[list[tuple[int, float]], list[RecordOut], bf.FoldState]:
    state = bf.FoldState(rules, start)
    outs: list[RecordOut] = []
    times = []
    for at in range(0, len(records), size):
        t0 = time.process_time()
        state, out = bf.fold_batch(state, rules, records[at:at + size])
        times.append((at, time.process_time() - t0))
        outs += out
    return times, outs, state


def view(out: RecordOut) -> bytes:
    s = out.step
    return encode((s.event, s.effects, list(s.found), None if s.error is None else str(s.error), s.redelivered,
                   list(s.commands), out.publish))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--robots", type=int, default=2000)
    ap.add_argument("--seconds", type=int, default=80)
    ap.add_argument("--settled", type=float, default=65.0)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--checks", type=int, default=20)
    ap.add_argument("--desired", choices=["none", "site", "share"], default="none")
    ap.add_argument("--age", type=float, default=1.0, help="seconds the desired change is older than the run")
    a = ap.parse_args()
    rules = Rules(read_fleet(SEEDS), read_detectors(SEEDS))
    records = log(rules, a.robots, a.seconds, a.checks)
    fleet = desired(a.desired, records, a.age)
    start = records[0].timestamp + a.settled
    half = next((i for i, r in enumerate(records) if r.timestamp >= start and i % a.batch == 0), len(records))
    s_times, s_outs, twins = scalar(rules, records, fleet)
    if a.desired != "none":
        bf._desiring = every_robot
        o_times, o_outs, o_state = batched(rules, records, a.batch, fleet)
        check(s_outs, o_outs, twins, o_state)
        del o_outs, o_state  # not live while the next fold is timed (the garbage collector scans what is)
        gc.collect()
        ROUTED.clear()
        SPLIT.clear()
    bf._desiring, bf._commands = desiring, commands
    b_times, b_outs, state = batched(rules, records, a.batch, fleet)
    check(s_outs, b_outs, twins, state)
    s_all, s_late = sum(s_times), sum(s_times[half:])
    b_all = sum(t for _, t in b_times)
    b_late = sum(t for at, t in b_times if at >= half)
    late_n = len(records) - min((at for at, _ in b_times if at >= half), default=len(records))
    print(f"{a.robots} robots, {a.seconds} s, {len(records)} records ({sum(r.kind == 'check' for r in records)} checks),"
          f" batch {a.batch}; outputs and twins identical")
    print(f"on_record : {len(records) / s_all:10.0f} events/CPU-s  ({s_all / len(records) * 1e6:.1f} us/event);"
          f" after {a.settled:g} s {(len(records) - half) / s_late:.0f}")
    print(f"fold_batch: {len(records) / b_all:10.0f} events/CPU-s  ({b_all / len(records) * 1e6:.1f} us/event);"
          f" after {a.settled:g} s {late_n / b_late:.0f}")
    forced = [(n, m, k) for n, m, k in ROUTED if m > n]
    cut = [k for k in SPLIT.values() if k > 1]
    used = sum(m for j, (_, m, _) in enumerate(ROUTED) if SPLIT.get(j, 1) == 1)
    print(f"mixed models: {len(forced)} of {len(ROUTED)} fold_batch calls (batches and pieces) would send more"
          f" robots to the scalar path; {len(cut)} of them cut in {sum(cut)} pieces, {len(forced) - len(cut)}"
          f" folded whole so; {used}"
          f" robot-calls of {sum(k for _, _, k in ROUTED)} on the scalar path")
    print(f"ratio: {s_all / b_all:.2f} overall, {(s_late / (len(records) - half)) / (b_late / late_n):.2f} after {a.settled:g} s")
    if a.desired != "none":
        o_all, o_late = sum(t for _, t in o_times), sum(t for at, t in o_times if at >= half)
        print(f"desired ({a.desired}, {a.age:g} s old): {sum(j for j, _ in DESIRING)} robot-calls of {sum(k for _, _, k in ROUTED)}"
              f" judged by `desire` on the scalar path, {sum(c for _, c in DESIRING)} joined with their commands"
              f" computed after; all scalar (before): ratio {s_all / o_all:.2f} overall,"
              f" {(s_late / (len(records) - half)) / (o_late / late_n):.2f} after {a.settled:g} s")
    print(f"of fold_batch's CPU: _desiring {SPENT['_desiring'] / b_all:.1%}, _commands {SPENT['_commands'] / b_all:.1%}")


def check(s_outs: list[RecordOut], b_outs: list[RecordOut], twins: dict[str, Twin], state: bf.FoldState) -> None:
    """Stop with an error unless every record's output and every twin are `on_record`'s."""
    bad = [i for i, (x, y) in enumerate(zip(s_outs, b_outs)) if view(x) != view(y)]
    bad_twins = [r for r, t in twins.items() if encode_twin(bf.twin_of(state, r)) != encode_twin(t)]  # type: ignore[arg-type]
    if bad or bad_twins or len(s_outs) != len(b_outs):
        raise SystemExit(f"MISMATCH: records {bad[:5]} twins {bad_twins[:5]}")


if __name__ == "__main__":
    main()

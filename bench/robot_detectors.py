"""How fast the robot-level detectors judge rounds of reports over arrays, against the scalar calls.

Baseline: per event, what `twin.detect.robot.observe` does for the robot-level numbers: the
stamp time `at`, then `_delivery` alone (a duplicate, stale or late report) or `_robot`
(report interval, clock skew, delivery and fault-code counts, seq gap). Then
`twin.batch_robot.robot_round` on the same reports, a round at a time (gather the round's
state from the store, judge, build the findings of the masked rows by the scalar functions,
scatter back).

Reports: `--robots` robots, `--rounds` reports each, a second apart, broker delays of 10 ms
to 1.6 s (so broker time sometimes goes back), two parameter sets (two robot models) mixed in
every round, and a few robots with a fault each so every detector fires: a clock 120 s slow,
duplicated and late deliveries, a burst of fault codes and e-stops, a run of lost reports.
Inputs (the round's columns and the scalar objects) are built outside the timing; times are
CPU seconds of this process (the machine is shared). After the timing every robot's final
numbers and every round's findings (msgpack bytes) and stamp times are checked equal.

    .venv/bin/python bench/robot_detectors.py [--robots 2000] [--rounds 100]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import numpy as np
import numpy.typing as npt
from msgspec.structs import replace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twin import batch_robot as br  # noqa: E402
from twin.detect.findings import Finding  # noqa: E402
from twin.detect.params import RobotDetectorParams  # noqa: E402
from twin.detect.robot import _delivery, _robot  # noqa: E402
from twin.detect.watch import Watch  # noqa: E402
from twin.effects import Effects, Outcome, SeqGap  # noqa: E402
from twin.reduce import apply  # noqa: E402
from twin.schema import Event, Mode  # noqa: E402
from twin.state import Twin  # noqa: E402

Array = npt.NDArray[Any]
T0 = 1.7e9
Item = tuple[Twin | None, Event, Effects, float]


class Round(NamedTuple):
    """One round's reports: the scalar objects and the same as columns."""

    items: list[Item]
    rows: br.Rows


def _event(robot: str, ts: float, codes: tuple[str, ...], mode: Mode) -> Event:
    return Event(schema=1, robot_id=robot, seq=1, ts=ts, sector="s", site="s", model="m", mode=mode, signals={},
                 codes=codes)


_BASE = apply(None, _event("base", T0, (), "working"), received_ts=T0)[0]
"""A twin to stand in for `before` (only its `last_seen` is read) and for `twin` (not read)."""


def reports(robots: int, rounds: int, seed: int) -> list[Round]:
    """Every robot's reports, round by round, with the faults of the module's doc."""
    rng = np.random.default_rng(seed)
    names = [f"r{i:05d}" for i in range(robots)]
    last_seen = np.full(robots, np.nan)
    out = []
    for k in range(rounds):
        t = T0 + k
        received = np.round(t + rng.choice([0.01, 0.05, 0.2, 0.5, 1.6], robots), 3)
        items: list[Item] = []
        for i in range(robots):
            ts = t - 120.0 if i % 97 == 5 and k >= rounds // 4 else t
            redelivered = i % 53 == 7 and rng.random() < 0.3
            outcome: Outcome = ("duplicate" if rng.random() < 0.5 else "late") if redelivered else "applied"
            burst = i % 71 == 3 and rounds // 2 <= k < rounds // 2 + 10
            codes = ("F-OVERCURRENT-J3",) if burst and rng.random() < 0.6 else ()
            mode: Mode = "estop" if burst and rng.random() < 0.2 else "working"
            missing = 15 if i % 89 == 11 and k == rounds // 3 else (1 if rng.random() < 0.01 else 0)
            changes = (SeqGap(names[i], ts, k, k + missing + 1),) if missing else ()
            before = None if k == 0 else replace(_BASE, last_seen=float(last_seen[i]))
            items.append((before, _event(names[i], ts, codes, mode), Effects(outcome, changes), float(received[i])))
        last_seen = np.where(np.isnan(last_seen) | (received > last_seen), received, last_seen)
        out.append(Round(items, br.rows_of(items, [i % 2 for i in range(robots)])))
    return out


def _scalar_round(ws: list[Watch], items: list[Item], ps: list[RobotDetectorParams],
                  ats: list[float]) -> dict[int, list[Finding]]:
    out: dict[int, list[Finding]] = {}
    for i, (before, event, effects, received) in enumerate(items):
        p = ps[i % 2]
        ats.append(event.ts if abs(event.ts - received) <= p.skew_s else received)
        watch = ws[i]
        if effects.outcome in ("duplicate", "stale", "late"):
            delivery, f = _delivery(watch.delivery + 100, p)
            ws[i] = replace(watch, delivery=delivery)
        else:
            ws[i], f = _robot(watch, before, before or _BASE, event, effects, received, p)
        if f:
            out[i] = f
    return out


def scalar(inputs: list[Round], robots: int, ps: list[RobotDetectorParams]) -> tuple[float, list[Watch], list[bytes]]:
    """The baseline: `observe`'s robot-level calls. Seconds, final state, findings and stamp times per round."""
    ws = [Watch()] * robots
    found: list[bytes] = []
    seconds = 0.0
    for rnd in inputs:
        ats: list[float] = []
        t0 = time.process_time()
        out = _scalar_round(ws, rnd.items, ps, ats)
        seconds += time.process_time() - t0
        found.append(msgspec.msgpack.encode((out, ats)))
    return seconds, ws, found


def batched(inputs: list[Round], robots: int,
            table: br.ParamTable) -> tuple[tuple[float, float], br.RobotWatches, list[bytes]]:
    """`robot_round` per round on a store of every robot (every robot reports every round here).
    Seconds in all, and of them building the findings; final state; findings and stamp times per round."""
    store = br.empty(robots)
    idx = np.arange(robots)
    found: list[bytes] = []
    seconds = building = 0.0
    for rnd in inputs:
        items = rnd.items
        t0 = time.process_time()
        old = br.take(store, idx)
        res = br.robot_round(old, rnd.rows, table)
        t1 = time.process_time()
        out = br.robot_findings(old, res, rnd.rows, table, lambda j: (items[j][0], items[j][0] or _BASE, *items[j][1:3]))
        building += time.process_time() - t1
        br.put(store, idx, res.state)
        seconds += time.process_time() - t0
        if res.scalar.any():
            raise SystemExit("a count left int64: not in this benchmark")
        found.append(msgspec.msgpack.encode((out, res.at.tolist())))
    return (seconds, building), store, found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--robots", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    ps = [RobotDetectorParams(), RobotDetectorParams(skew_s=10.0, skew_reports=3, delivery_hits=2.0, codes_hits=2.5)]
    inputs = reports(args.robots, args.rounds, args.seed)
    base_s, ws, base_found = scalar(inputs, args.robots, ps)
    (batch_s, build_s), store, batch_found = batched(inputs, args.robots, br.ParamTable(ps))
    same = all(struct_numbers(w) == struct_numbers(br.with_numbers(None, store, i)) for i, w in enumerate(ws))
    if not same or batch_found != base_found:
        raise SystemExit("batch robot detectors differ from the scalar ones")
    events = args.robots * args.rounds
    fired = Counter(f["detector"] for b in base_found for fs in msgspec.msgpack.decode(b)[0].values() for f in fs)
    print(f"robot detectors: {args.robots:,} robots x {args.rounds} rounds = {events:,} events, 2 parameter sets; "
          f"findings {dict(fired)}; identical state, findings and stamp times")
    print(f"  {'scalar calls (baseline)':<26} {base_s / events * 1e6:8.3f} µs/event   ratio 1.00")
    print(f"  {'robot_round':<26} {batch_s / events * 1e6:8.3f} µs/event   ratio {base_s / batch_s:5.1f}")
    print(f"    of which the {sum(fired.values()):,} findings, built by the scalar functions: "
          f"{build_s / events * 1e6:.3f} µs/event; the rest (gather, round, scatter) "
          f"{(batch_s - build_s) / events * 1e6:.3f} µs/event, ratio {base_s / (batch_s - build_s):.1f}")


def struct_numbers(w: Watch) -> bytes:
    """A watch's four numbers as bytes (the interval's bits included)."""
    return msgspec.msgpack.encode((w.interval, w.skew, w.delivery, w.codes))


if __name__ == "__main__":
    main()

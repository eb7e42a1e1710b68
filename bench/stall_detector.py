"""How fast the work-cycle stall detector steps rounds of readings over arrays, against the scalar calls.

Baseline: per event, what `twin.detect.robot.observe` does for a model with `stall` set:
`twin.detect.stall.step(state, event.signals, event.ts, working, p.stall)` on the event's
whole signal dict (the UR3's 20 signals). Then `twin.batch_stall.stall_round` on the same
readings, a round at a time: gather the round's state from the store, pick the counter and
speed columns out of the round's signal matrix (`Plan.inputs`), step, build the findings of
the masked rows with `stall.step`, scatter back.

Readings: `--robots` UR3 arms with the seeded stall parameters (seeds/detectors.yaml), one
report a second for `--rounds` seconds. Each arm's work-cycle counter steps every 22-26 s
(26 s overruns the 25 s profile); joints move where the profile says normal cycles move
and jitter below `still` elsewhere; every 50th arm stands still for 30 s (a stall); 5% of
the reports are not `working`. Inputs (dicts and matrices) are built outside the timing.
Times are CPU seconds of this process (the machine is shared). After the timing, every
robot's final state and every round's judged flags and findings (msgpack bytes) are
checked equal.

    .venv/bin/python bench/stall_detector.py [--robots 2000] [--rounds 200]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.seeds import read_detectors, read_fleet  # noqa: E402
from twin import batch_stall as bst  # noqa: E402
from twin.detect import stall  # noqa: E402
from twin.detect.stall import StallParams, State  # noqa: E402

Array = npt.NDArray[Any]
SEEDS = Path(__file__).resolve().parent.parent / "seeds"


class Inputs(msgspec.Struct):
    """Per round (one second): the signal matrix (robots x catalogue), ts and working flags."""

    matrix: list[Array]
    ts: list[Array]
    working: list[Array]


def readings(names: list[str], p: StallParams, robots: int, rounds: int, seed: int) -> Inputs:
    """Work cycles per robot, joints moving as the profile says, a few stalls (see the module doc)."""
    rng = np.random.default_rng(seed)
    length = 22 + np.arange(robots) % 5
    offset = rng.uniform(0, 25, robots)
    moving = np.array([share >= 0.5 for share in p.profile] + [False] * 5)
    speed = np.array([n.endswith("_speed_rad_s") for n in names])
    cycle = names.index(p.cycle)
    out = Inputs([], [], [])
    for r in range(rounds):
        at = r + offset
        phase = (at % length).astype(np.int64)
        m = rng.uniform(-1.0, 1.0, (robots, len(names)))
        scale = np.where(moving[phase], 1.0, 0.02)[:, None]
        m = np.where(speed, m * scale, m)
        stalled = (np.arange(robots) % 50 == 0) & (100 <= r) & (r < 130)
        m[stalled[:, None] & speed] = 0.0
        m[:, cycle] = at // length
        out.matrix.append(np.round(m, 3))
        out.ts.append(np.full(robots, 1.7e9 + r))
        out.working.append(rng.random(robots) >= 0.05)
    return out


def scalar(inputs: Inputs, names: list[str], p: StallParams) -> tuple[float, list[State | None], list[bytes]]:
    """The baseline: `stall.step` per event. CPU seconds, final states, (judged, findings) per round."""
    robots = len(inputs.ts[0])
    states: list[State | None] = [None] * robots
    out: list[bytes] = []
    seconds = 0.0
    for matrix, ts, working in zip(inputs.matrix, inputs.ts, inputs.working):
        events = [dict(zip(names, row)) for row in matrix.tolist()]
        tss, works = ts.tolist(), working.tolist()
        judged: list[bool] = []
        found: dict[int, list[Any]] = {}
        t0 = time.process_time()
        for i in range(robots):
            states[i], f, j = stall.step(states[i], events[i], tss[i], works[i], p)
            judged.append(j)
            if f:
                found[i] = f
        seconds += time.process_time() - t0
        out.append(msgspec.msgpack.encode((judged, found)))
    return seconds, states, out


def batched(inputs: Inputs, plan: bst.Plan) -> tuple[float, bst.Stalls, list[bytes]]:
    """`stall_round` per round on a store of every robot (every robot reports every round here)."""
    robots = len(inputs.ts[0])
    store = bst.empty(robots)
    idx = np.arange(robots)
    out: list[bytes] = []
    seconds = 0.0
    for matrix, ts, working in zip(inputs.matrix, inputs.ts, inputs.working):
        t0 = time.process_time()
        old = bst.take(store, idx)
        counter, speeds = plan.inputs(matrix)
        new, judged, mask = bst.stall_round(old, counter, speeds, ts, working, plan)
        found = bst.stall_findings(old, new, np.flatnonzero(mask), counter, speeds, ts, working, plan)
        bst.put(store, idx, new)
        seconds += time.process_time() - t0
        out.append(msgspec.msgpack.encode((judged.tolist(), found)))
    return seconds, store, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--robots", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    names = list(read_fleet(SEEDS).models["ur3"].signals)
    p = read_detectors(SEEDS).for_model("ur3").stall
    if p is None:
        raise SystemExit("seeds/detectors.yaml sets no stall detector for ur3")
    inputs = readings(names, p, args.robots, args.rounds, args.seed)
    base_s, states, base_out = scalar(inputs, names, p)
    batch_s, store, batch_out = batched(inputs, bst.Plan(names, p))
    same = msgspec.msgpack.encode(bst.to_states(store)) == msgspec.msgpack.encode(states)
    if not same or batch_out != base_out:
        raise SystemExit("the batch stall detector differs from stall.step")
    events = args.robots * args.rounds
    judged = sum(sum(msgspec.msgpack.decode(b)[0]) for b in base_out)
    fired = sum(len(msgspec.msgpack.decode(b)[1]) for b in base_out)
    print(f"stall detector, ur3: {args.robots:,} robots x {args.rounds} rounds = {events:,} events "
          f"({len(names)} signals, {len(p.speeds)} speed pattern(s)); judged {judged:,}, findings {fired:,}; "
          f"identical state, judged flags and findings")
    print(f"  {'stall.step (baseline)':<24} {1e6 * base_s / events:8.3f} us/event   ratio 1.00")
    print(f"  {'stall_round':<24} {1e6 * batch_s / events:8.3f} us/event   ratio {base_s / batch_s:5.1f}")


if __name__ == "__main__":
    main()

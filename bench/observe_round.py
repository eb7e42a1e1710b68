"""How fast the round join (`twin.batch_observe`) runs `observe` on many robots, against the scalar `observe`.

Events: the simulator's chaos scenario at `--robots` robots for `--seconds` seconds (one report a
robot a second, every fault of the scenario scaled to the run). Both sides are fed the same
events with broker time = event time + 0.2 s, and the detector parameters of seeds/detectors.yaml
with a 40 s drift reference (so that drift is judged, not only learned, within a short run: the
default 90 s judges it for the last 50).

* Scalar: `twin.reduce.apply` then `twin.detect.robot.observe` (no cohort baseline, no cohort
  rates) event by event; only the `observe` calls are timed (process CPU time per call).
* Join: batches of `--batch` events in log order, each split into rounds; per round
  `batch_observe.snapshot` (the twins before) and `observe_round` are timed, the reducer
  (`reduce_batch`) is not (it is measured by bench/reduce_batch.py).

After the timing every message (msgpack bytes, per event) and every robot's final `Watch` are
checked equal; the run stops with an error otherwise. CPU seconds, so a shared machine skews the
figures less than wall time would.

With `--ingest`, the whole of `twin.pipeline.ingest` instead (reduce, observe against the
partition's cohorts, learn; cohorts start empty and reach `min_weight` within the run) against
`batch_observe.ingest_batch` per batch, both timed whole (reducer included); messages, Watches
and the final Cohorts are checked equal.

    .venv/bin/python bench/observe_round.py [--robots 2000] [--seconds 90] [--batch 2000] [--ingest]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.seeds import read_detectors, read_fleet, read_scenario  # noqa: E402
from twin import batch_observe as bo  # noqa: E402
from twin.batch_reduce import ReduceState, catalogues_of, reduce_batch  # noqa: E402
from twin.detect.cohort import Cohorts  # noqa: E402
from twin.detect.params import DetectorConfig, RobotDetectorParams  # noqa: E402
from twin.detect.robot import observe  # noqa: E402
from twin.fleet import Fleet  # noqa: E402
from twin.pipeline import ingest  # noqa: E402
from twin.reduce import apply  # noqa: E402
from twin.schema import Event  # noqa: E402
from twin.sim import FleetSim  # noqa: E402
from twin.sim.scenario import load_scenario  # noqa: E402
from twin.state import Twin  # noqa: E402

SEEDS = Path(__file__).resolve().parent.parent / "seeds"
encode = msgspec.msgpack.encode


def chaos(fleet: Fleet, robots: int, seconds: int) -> list[Event]:
    scenario = read_scenario(SEEDS, "chaos")
    sim = FleetSim(fleet, load_scenario({**msgspec.to_builtins(scenario), "robots": robots, "duration_s": seconds},
                                        "chaos"), seed=1)
    return [e for _ in range(sim.ticks) for e in sim.step()]


def scalar(events: list[Event], fleet: Fleet, ps: dict[str, RobotDetectorParams]) -> tuple[float, list[bytes], dict[str, bytes]]:
    """CPU seconds in `observe`, each event's messages, each robot's final Watch (encoded)."""
    twins: dict[str, Twin] = {}
    out: list[bytes] = []
    spent = 0
    clock = time.process_time_ns
    for e in events:
        r = e.ts + 0.2
        before = twins.get(e.robot_id)
        twin, effects = apply(before, e, received_ts=r)
        model, p = fleet.models[e.model], ps[e.model]
        t0 = clock()
        twin, messages = observe(before, twin, e, effects, r, model, p)
        spent += clock() - t0
        twins[e.robot_id] = twin
        out.append(encode(messages))
    return spent / 1e9, out, {robot: encode(t.watch) for robot, t in twins.items()}


def joined(events: list[Event], fleet: Fleet, ps: dict[str, RobotDetectorParams],
           batch: int) -> tuple[float, float, list[bytes], dict[str, bytes]]:
    """CPU seconds in the join (snapshot + observe_round) and in the reducer; messages; watches."""
    red, obs = ReduceState(catalogues_of(fleet)), bo.ObserveState()
    out: list[bytes] = []
    spent = reducing = 0
    clock = time.process_time_ns
    for lo in range(0, len(events), batch):
        part = events[lo:lo + batch]
        got: list[bytes] = [b""] * len(part)
        for idx in bo.rounds_of([e.robot_id for e in part]):
            evs = [part[i] for i in idx]
            recv = np.array([e.ts + 0.2 for e in evs])
            t0 = clock()
            before = bo.snapshot(red, [e.robot_id for e in evs])
            t1 = clock()
            _, effects = reduce_batch(red, evs, recv)
            t2 = clock()
            messages = bo.observe_round(obs, red, bo.Round(evs, recv, effects, before), fleet.models, ps)
            t3 = clock()
            spent += (t1 - t0) + (t3 - t2)
            reducing += t2 - t1
            for i, m in zip(idx, messages):
                got[i] = encode(m)
        out.extend(got)
    return spent / 1e9, reducing / 1e9, out, {robot: encode(bo.watch_of(obs, red, robot)) for robot in red.slot_of}


SEAMS = ("_robot_rows", "_stall_rows", "_cohort_rows")
seam_ns = [0]


def timed_seams() -> None:
    """Wrap the join's robot-level, stall and cohort parts to count their CPU time (robot-level and
    stall vectorised, cohort per row; no cohort baseline here, so it does not run)."""
    for name in SEAMS:
        def wrapper(*args: Any, _f: Callable[..., Any] = getattr(bo, name)) -> Any:
            t0 = time.process_time_ns()
            try:
                return _f(*args)
            finally:
                seam_ns[0] += time.process_time_ns() - t0
        setattr(bo, name, wrapper)


def cohort_bytes(c: Cohorts) -> bytes:
    """Every number of a Cohorts, keys in their order (floats as their 8 bytes)."""
    return encode({"refit_s": c.refit_s, "sums": {m: (n, s1.tobytes(), s2.tobytes()) for m, (n, s1, s2) in c.sums.items()},
                   "baselines": dict(c.baselines), "fitted_at": dict(c.fitted_at),
                   "rates": {m: dict(r) for m, r in c.rates.items()}})


def ingested(events: list[Event], fleet: Fleet, config: DetectorConfig, batch: int) -> None:
    """`pipeline.ingest` event by event against `ingest_batch` per batch: CPU time, checked identical."""
    clock = time.process_time
    twins: dict[str, Twin] = {}
    cohorts, msgs = Cohorts(), []
    t0 = clock()
    for e in events:
        twin, _, found, cohorts = ingest(twins.get(e.robot_id), e, e.ts + 0.2, fleet, config, cohorts)
        twins[e.robot_id] = twin
        msgs.append(found)
    s_sec = clock() - t0
    ps = {m: config.for_model(m) for m in fleet.models}
    red, obs, got, batched = ReduceState(catalogues_of(fleet)), bo.ObserveState(), [], Cohorts()
    t0 = clock()
    for lo in range(0, len(events), batch):
        part = events[lo:lo + batch]
        _, found_b, batched = bo.ingest_batch(obs, red, part, [e.ts + 0.2 for e in part], fleet.models, ps, batched)
        got.extend(found_b)
    b_sec = clock() - t0
    same = encode(got) == encode(msgs) and all(encode(bo.watch_of(obs, red, r)) == encode(t.watch) for r, t in twins.items())
    if not same or cohort_bytes(batched) != cohort_bytes(cohorts):
        raise SystemExit("ingest_batch differs from pipeline.ingest")
    n = len(events)
    statuses = Counter(f"{m.detector}:{m.status}" for ms in msgs for m in ms if m.detector in ("cohort", "drift"))
    print(f"{n} events, batches of {batch}; cohort/drift messages {dict(statuses)}; identical")
    print(f"pipeline.ingest: {s_sec / n * 1e6:7.2f} us/event; ingest_batch: {b_sec / n * 1e6:7.2f} us/event; "
          f"ratio {s_sec / b_sec:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--robots", type=int, default=2000)
    ap.add_argument("--seconds", type=int, default=90)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--ingest", action="store_true")
    args = ap.parse_args()
    fleet = read_fleet(SEEDS)
    config = read_detectors(SEEDS)
    if args.ingest:
        ingested(chaos(fleet, args.robots, args.seconds), fleet, config, args.batch)
        return
    ps = {m: msgspec.structs.replace(config.for_model(m), drift_reference_s=40.0) for m in fleet.models}
    events = chaos(fleet, args.robots, args.seconds)
    n = len(events)
    s_sec, s_msgs, s_watch = scalar(events, fleet, ps)
    timed_seams()
    j_sec, r_sec, j_msgs, j_watch = joined(events, fleet, ps, args.batch)
    if s_msgs != j_msgs or s_watch != j_watch:
        bad = next(i for i, (a, b) in enumerate(zip(s_msgs, j_msgs)) if a != b) if s_msgs != j_msgs else -1
        raise SystemExit(f"the join differs from the scalar observe (first message at event {bad})")
    statuses = Counter(m["status"] for b in s_msgs for m in msgspec.msgpack.decode(b))
    print(f"{n} events, {args.robots} robots, batches of {args.batch}; messages {dict(statuses)}; identical")
    print(f"scalar observe:           {s_sec / n * 1e6:7.2f} us/event  ({n / s_sec:9.0f} events/CPU s)")
    print(f"join (snapshot+observe):  {j_sec / n * 1e6:7.2f} us/event  ({n / j_sec:9.0f} events/CPU s)")
    seams = seam_ns[0] / 1e9
    print(f"  of which robot+stall:   {seams / n * 1e6:7.2f} us/event  (batch_robot, batch_stall, batch_cohort)")
    print(f"  the rest (signals etc): {(j_sec - seams) / n * 1e6:7.2f} us/event")
    print(f"  (reducer, not counted:  {r_sec / n * 1e6:7.2f} us/event)")
    print(f"ratio scalar/join: {s_sec / j_sec:.2f}")


if __name__ == "__main__":
    main()

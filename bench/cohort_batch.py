"""How fast the cohort detector runs over micro-batches (twin.batch_cohort), against the scalar chain.

Baseline, per event, what `twin.pipeline.ingest` does for the cohort of a settled working
report: `robot._cohort` (features, `multivariate.step`, the finding), the trend reference's
check `robot._against_cohort` against the model's rate moments, and, when the row opened
nothing, `cohort.learn` (sums, a refit every `--refit-s`) and `cohort.learn_rates`.
Here "opened nothing" stands for "no open anomaly": no cohort alarm and no trend finding
on the row, which depends on the row's own outcome as the real mask does.

Batch: `--robots` robots of one model report once a second; a batch is `--batch` events
in log order (robot by robot, so with one report per robot and second, one round). Per
batch, `batch_cohort.settle` plans the learning with the guess "the robots not alarmed
before learn", scores the round against the plan (`distances`, `advance_round`,
`against_round`) and plans again until the mask holds; the findings of the masked rows
are then built (`cohort_findings`, `against_findings`). Inputs (Events for the scalar
side, the signal matrix and trend rates for the batch side) are built outside the timing.
After the timing, every robot's state, every finding (msgpack bytes) and the Cohorts
(sums, baselines, refit times and rate moments as bytes) are checked equal.

    .venv/bin/python bench/cohort_batch.py [--robots 2000] [--rounds 30] [--model cobot-arm]
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
from twin import batch_cohort as bc  # noqa: E402
from twin.detect import multivariate as mv  # noqa: E402
from twin.detect.cohort import PARAMS, Cohorts, features, learn, learn_rates  # noqa: E402
from twin.detect.findings import Finding  # noqa: E402
from twin.detect.params import RobotDetectorParams  # noqa: E402
from twin.detect.robot import _against_cohort, _cohort  # noqa: E402
from twin.detect.signals import TREND_UNIT  # noqa: E402
from twin.detect.watch import Drift, Watch  # noqa: E402
from twin.fleet import RobotModel  # noqa: E402
from twin.schema import Event  # noqa: E402

Array = npt.NDArray[Any]
SEEDS = Path(__file__).resolve().parent.parent / "seeds"
TREND = "battery_soc_pct"
T0 = 1_767_600_000.0


class Inputs(msgspec.Struct):
    """Per round: the Events (scalar side), the signal matrix and the trend rates (batch side)."""

    events: list[list[Event]]
    values: list[Array]
    rates: list[Array]
    drifts: list[Drift]
    """Each robot's trend reference (learned long ago; one robot in 50 drains fast)."""


def readings(model_name: str, model: RobotModel, robots: int, rounds: int, seed: int) -> Inputs:
    """Noisy in-band reports, 3 decimals; a few robots go far out from a third of the run on."""
    rng = np.random.default_rng(seed)
    names = list(model.signals)
    lo = np.array([s.nominal[0] for s in model.signals.values()])
    width = np.array([s.nominal[1] - s.nominal[0] for s in model.signals.values()])
    base = lo + width * rng.uniform(0.4, 0.6, (robots, len(names)))
    rate = np.where(np.arange(robots) % 50 == 0, -2.5e-4, -2.5e-5) + rng.normal(0, 5e-6, robots)
    drifts = [Drift(1800, round(r / TREND_UNIT)) for r in rate.tolist()]
    out = Inputs([], [], [], drifts)
    for k in range(rounds):
        v = np.round(base + width * 0.05 * rng.standard_normal(base.shape), 3)
        if k > rounds // 3:
            v[7::97] += 2 * width  # faulty robots: the cohort alarms on them
        out.values.append(v)
        out.rates.append((rate + rng.normal(0, 2e-5, robots))[:, None])
        out.events.append([Event(schema=1, robot_id=f"r{i}", seq=k + 1, ts=T0 + k + i / robots, sector="s", site="s",
                                 model=model_name, mode="working", signals=dict(zip(names, v[i].tolist())))
                           for i in range(robots)])
    return out


def seeded(model_name: str, model: RobotModel, inputs: Inputs, refit_s: float) -> Cohorts:
    """Cohorts that judge from the start: 5,000 reports' worth of sums and rate moments."""
    x = np.array([features(e, model) for e in inputs.events[0]])
    n, mean = 5000, x.mean(axis=0)
    cov = np.cov(x.T, bias=True).reshape(len(mean), len(mean))
    base = mv.from_moments(mean, cov, float(n), PARAMS)
    return Cohorts(refit_s, {model_name: (n, n * mean, n * (cov + np.outer(mean, mean)))}, {model_name: base},
                   {model_name: T0}, {model_name: {TREND: (5000.0, 5000 * -2.5e-5, 5000 * (3e-5 ** 2 + 2.5e-5 ** 2))}})


def scalar(inputs: Inputs, name: str, model: RobotModel, p: RobotDetectorParams,
           cohorts: Cohorts) -> tuple[float, Cohorts, list[mv.State | None], list[bytes]]:
    """The scalar chain, event by event: seconds, cohorts, states, findings per round."""
    watches = [Watch()] * len(inputs.drifts)
    found: list[bytes] = []
    seconds = 0.0
    for events, rates in zip(inputs.events, inputs.rates):
        r = rates[:, 0].tolist()
        t = time.process_time()
        out: dict[int, list[Finding]] = {}
        for i, e in enumerate(events):
            base = cohorts.baselines.get(name)
            f: list[Finding] = []
            if base is not None:
                watches[i], f = _cohort(watches[i], base, e, model)
            f = f + _against_cohort(TREND, inputs.drifts[i], cohorts.rates.get(name, {}).get(TREND), p)
            if f:
                out[i] = f
            else:
                x = features(e, model)
                if x is not None:
                    cohorts = learn(cohorts, name, x, e.ts)
                cohorts = learn_rates(cohorts, name, {TREND: r[i]})
        seconds += time.process_time() - t
        found.append(msgspec.msgpack.encode(out))
    return seconds, cohorts, [w.cohort for w in watches], found


def batched(inputs: Inputs, name: str, model: RobotModel, p: RobotDetectorParams, cohorts: Cohorts,
            batch: int) -> tuple[float, Cohorts, bc.States, list[bytes], tuple[int, int]]:
    """Batches of `batch` events through `settle` and the round functions (one robot once a batch:
    `batch` must divide the robots)."""
    robots = len(inputs.drifts)
    states = bc.states_of([None] * robots)
    learned = np.ones(robots, dtype=bool)  # each robot's last learn flag: the next batch's guess
    level = np.array([float(d.level) for d in inputs.drifts])
    ref = np.array([float(d.ref) for d in inputs.drifts])
    found: list[bytes] = []
    seconds, passes, refits = 0.0, 0, 0
    for values, rates, events in zip(inputs.values, inputs.rates, inputs.events):
        ts = np.array([e.ts for e in events])
        out: dict[int, list[Finding]] = {}
        t = time.process_time()
        x, has_x = bc.features(values, model)
        for lo in range(0, robots, batch):
            s = slice(lo, lo + batch)
            cohorts, n = _batch(cohorts, name, states, learned, s, x[s], has_x[s], ts[s], rates[s], level[s], ref[s], p, out)
            passes, refits = passes + n % 1000, refits + n // 1000
        seconds += time.process_time() - t
        found.append(msgspec.msgpack.encode(dict(sorted(out.items()))))
    return seconds, cohorts, states, found, (passes, refits)


def _batch(cohorts: Cohorts, name: str, states: bc.States, learned: Array, s: slice, x: Array, has_x: Array,
           ts: Array, rates: Array, level: Array, ref: Array, p: RobotDetectorParams,
           out: dict[int, list[Finding]]) -> tuple[Cohorts, int]:
    """One batch (each robot once): settle, findings, the states and learn flags stored back.
    Returns the cohorts and passes + 1000 x refits."""
    old = bc.States(*(col[s] for col in states))
    rep = bc.Reports(ts, x, has_x, rates, np.ones(rates.shape, dtype=bool), (TREND,))
    last: list[Any] = []

    def outcome(made: bc.Plan) -> Array:
        scored = has_x & bc.in_force(made)
        raw, adv = bc.distances(made, x, scored)
        new, score, alarm = bc.advance_round(old, raw, adv, ts)
        new = bc.States(*(np.where(scored, a, b) for a, b in zip(new, old)))
        alarm &= scored
        trend = bc.against_round(level, ref, made.rates[TREND], p)
        last[:] = [made, new, score, alarm, trend, adv]
        return np.asarray(~(alarm | trend), dtype=bool)

    made, mask, passes = bc.settle(cohorts, name, rep, learned[s], outcome)
    made, new, score, alarm, trend, adv = last
    base = {i: made.baselines[made.epoch[i]] for i in np.flatnonzero(alarm).tolist()}
    found = bc.cohort_findings(old, new, score, np.flatnonzero(alarm), base, x, adv, ts)
    for i, f in bc.against_findings(TREND, level, ref, made.rates[TREND], np.flatnonzero(trend), p).items():
        found.setdefault(i, []).extend(f)
    out.update({s.start + i: f for i, f in found.items()})
    for col, part in zip(states, new):
        col[s] = part
    learned[s] = mask
    return made.cohorts, passes + 1000 * len(made.refits)


def cohort_bytes(c: Cohorts) -> bytes:
    return msgspec.msgpack.encode({
        "sums": {m: (n, s1.tobytes(), s2.tobytes()) for m, (n, s1, s2) in c.sums.items()},
        "baselines": dict(c.baselines), "fitted_at": dict(c.fitted_at), "rates": {m: dict(r) for m, r in c.rates.items()}})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--robots", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--batch", type=int, default=2000, help="events per batch (divides --robots)")
    ap.add_argument("--model", default="cobot-arm")
    ap.add_argument("--refit-s", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    model = read_fleet(SEEDS).models[args.model]
    p = read_detectors(SEEDS).for_model(args.model)
    inputs = readings(args.model, model, args.robots, args.rounds, args.seed)
    start = seeded(args.model, model, inputs, args.refit_s)
    base_s, base_c, base_states, base_found = scalar(inputs, args.model, model, p, start)
    batch_s, batch_c, states, batch_found, (passes, refits) = batched(inputs, args.model, model, p, start, args.batch)
    mine = [bc.state_at(states, i) for i in range(args.robots)]
    if mine != base_states or batch_found != base_found or cohort_bytes(batch_c) != cohort_bytes(base_c):
        raise SystemExit("batch cohort differs from the scalar chain")
    events = args.robots * args.rounds
    fired = sum(len(msgspec.msgpack.decode(b)) for b in base_found)
    learned = base_c.sums[args.model][0] - 5000
    print(f"cohort, {args.model} ({len(model.signals)} signals): {args.robots:,} robots x {args.rounds} rounds = "
          f"{events:,} events, batches of {args.batch:,}; {fired:,} rows with findings, {learned:,} reports learned, "
          f"{refits} refits (every {args.refit_s:g} s); {passes / (events / args.batch):.2f} passes per batch; "
          f"identical states, findings and cohorts")
    print(f"  {'scalar chain (baseline)':<24} {1e6 * base_s / events:8.2f} us/event   ratio 1.00")
    print(f"  {'batch_cohort':<24} {1e6 * batch_s / events:8.2f} us/event   ratio {base_s / batch_s:5.1f}")


if __name__ == "__main__":
    main()

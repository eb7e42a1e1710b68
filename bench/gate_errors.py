"""How often the rollout gate errs on the simulator's rollout-gate fleets: false halts and missed harm.

The gate (`twin.gate`) promises a false-halt chance of at most ~alpha per gated wave and a
chance of advancing a `harm_ratio`-times-worse version of at most ~beta. This measures both on
the fleets the end-to-end test and the demo run, with the plan they use, many times over:

* the simulator (`twin.sim.FleetSim`) runs the scenario in event time, `--speed` reports per
  robot per second as `fleet-twin simulate --speed` does, robots taking a command after
  `--apply-delay-s` (jittered) as there;
* each wave commands the robots its change selects (`twin.desired.matches` of each robot's
  latest report), through `FleetSim.command`;
* every report is credited through `twin.kpi` (exposure and safety events, as the worker's
  counters), per stratum and version; every `look_s` the gate looks at the cumulative tallies
  (`twin.gate.pairs`, `start`, `look`), and `twin.plan.on_decision` says what follows, as in
  `fleet-twin rollout run`.

Not simulated: Kafka, Prometheus's scrape timing, the worker. Each run is one seed; the share of
runs that halted (harmless scenario) or advanced to the end (harmful one) is printed with a 95%
interval (Wilson), beside the bound the plan's alpha or beta gives for its gated waves.

    .venv/bin/python bench/gate_errors.py [--runs 400] [--jobs 2] [--alpha A]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import NamedTuple

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.seeds import read_fleet, read_scenario  # noqa: E402
from twin import gate, kpi  # noqa: E402
from twin.desired import DesiredChange, matches  # noqa: E402
from twin.fleet import Fleet  # noqa: E402
from twin.plan import Plan, begin, gated, load_plan, on_decision  # noqa: E402
from twin.sim import FleetSim  # noqa: E402
from twin.reduce import apply  # noqa: E402
from twin.schema import Event  # noqa: E402
from twin.sim.commands import Obedience  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
START_TS = 1_700_000_000.0
WARM_S = 10.0
"""Event-time seconds the fleet runs before the first wave (the test waits for the fleet to be counted)."""


class Setup(NamedTuple):
    scenario: str
    plan: Plan
    speed: float
    apply_delay_s: float
    max_s: float


class Result(NamedTuple):
    status: str
    """done, halted, or running (undecided at `max_s`)."""
    wave: int
    looks: int
    seconds: float
    """Event-time seconds from the first wave's command to the end."""


def run(setup: Setup, seed: int) -> Result:
    """One rollout of `setup.plan` over one seed of the scenario."""
    fleet = read_fleet(SEEDS)
    plan = setup.plan
    sim = FleetSim(fleet, read_scenario(SEEDS, setup.scenario), seed=seed, start_ts=START_TS,
                   time_scale=1.0 / setup.speed, fleet_id=f"gate{seed}",
                   obedience=Obedience(apply_delay_s=setup.apply_delay_s))
    ticks_per_look = max(1, round(plan.look_s * setup.speed))
    credit = Credit(plan, fleet)
    credit.run(sim, round(WARM_S * setup.speed))
    started = sim.now
    outcome = begin(plan, started, "wave")
    looks = 0
    while True:
        for change in outcome.changes:
            for robot_id in credit.selected(change):
                sim.command(robot_id, {change.field: change.value or ""}, sim.now)
            wave = plan.waves[outcome.wave]
            state = gate.start(plan.gate, credit.counts(), wave.min_hours, wave.max_hours)
        if outcome.status != "running" or sim.now - started >= setup.max_s:
            return Result(outcome.status, outcome.wave, looks, sim.now - started)
        credit.run(sim, ticks_per_look)
        state, decision = gate.look(state, credit.counts())
        looks += 1
        outcome = on_decision(plan, outcome.wave, decision, sim.now, "wave")


class Credit:
    """What the worker would hold: per (stratum, version) the cumulative working seconds and safety
    events its counters show, and each robot's latest report."""

    def __init__(self, plan: Plan, fleet: Fleet) -> None:
        self.plan = plan
        self.fleet = fleet
        self.kinds = set(plan.gate.kinds)
        self.priors: dict[str, kpi.Prior | None] = {}
        self.latest: dict[str, Event] = {}
        self.tallies: defaultdict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])

    def run(self, sim: FleetSim, ticks: int) -> None:
        for _ in range(ticks):
            for event in sim.step():
                model = self.fleet.models[event.model]
                before = self.priors.get(event.robot_id)
                tally = self.tallies[(gate.stratum(event.model, event.sector), event.ai_model_version)]
                tally[0] += kpi.exposure(before, event, model)
                tally[1] += sum(kind in self.kinds for kind in kpi.safety_events(before, event, model, 0))
                self.priors[event.robot_id] = kpi.advance(before, event, "applied")
                self.latest[event.robot_id] = event

    def selected(self, change: DesiredChange) -> list[str]:
        """The robots `change` selects as they last reported (`twin.desired.matches`, the worker's rule)."""
        twins = (apply(None, event, received_ts=event.ts)[0] for event in self.latest.values())
        return [t.robot_id for t in twins if matches(change, t)]

    def counts(self) -> dict[str, gate.Pair]:
        """The gate's counts, as the controller pairs them (`twin.gate.pairs`)."""
        grown = {key: gate.Tally(exposure_s=seconds, events=events) for key, (seconds, events) in self.tallies.items()}
        return gate.pairs(gate.Readings(grown=grown), self.plan.to)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% interval of a share k/n (Wilson score)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, mid - half), min(1.0, mid + half)


def report(name: str, results: list[Result], wrong: str, bound: float, what: str) -> None:
    n = len(results)
    k = sum(r.status == wrong for r in results)
    lo, hi = wilson(k, n)
    by: defaultdict[tuple[str, int], int] = defaultdict(int)
    for r in results:
        by[(r.status, r.wave)] += 1
    ends = ", ".join(f"{s} at wave {w + 1}: {c}" for (s, w), c in sorted(by.items()))
    secs = sorted(r.seconds for r in results)
    print(f"{name}: {n} runs; {ends}")
    print(f"  {what}: {k}/{n} = {k / n:.2%} (95% CI {lo:.2%}-{hi:.2%}); the plan's bound ~{bound:.2%}")
    p90, p99 = (secs[min(n - 1, int(q * n))] for q in (0.9, 0.99))
    print(f"  event-time seconds to the end: median {statistics.median(secs):.0f}, p90 {p90:.0f}, p99 {p99:.0f}, "
          f"max {secs[-1]:.0f}; undecided at --max-s: {sum(r.status == 'running' for r in results)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", type=Path, default=SEEDS / "plans" / "rollout-gate.yaml")
    ap.add_argument("--harmless", default="rollout-gate-harmless")
    ap.add_argument("--harmful", default="rollout-gate")
    ap.add_argument("--runs", type=int, default=400)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--speed", type=float, default=2.0)
    ap.add_argument("--apply-delay-s", type=float, default=5.0)
    ap.add_argument("--max-s", type=float, default=600.0, help="event-time bound of a run (the test's --max-s)")
    ap.add_argument("--alpha", type=float, help="override the plan's gate.alpha")
    ap.add_argument("--first-seed", type=int, default=1)
    args = ap.parse_args()
    doc = yaml.safe_load(args.plan.read_text())
    if args.alpha is not None:
        doc["gate"]["alpha"] = args.alpha
    plan = load_plan(doc)
    gated_waves = sum(gated(w) for w in plan.waves)
    print(f"plan {plan.id}: waves {[w.share for w in plan.waves]}, alpha {plan.gate.alpha}, beta {plan.gate.beta}, "
          f"harm_ratio {plan.gate.harm_ratio}, look every {plan.look_s} s; speed {args.speed}, "
          f"apply delay {args.apply_delay_s} s; {args.runs} seeds from {args.first_seed}, {args.jobs} jobs")
    seeds = range(args.first_seed, args.first_seed + args.runs)
    for name, wrong, bound, what in (
            (args.harmless, "halted", 1 - (1 - plan.gate.alpha) ** gated_waves, "false halts"),
            (args.harmful, "done", plan.gate.beta, "harm advanced to the end")):
        setup = Setup(name, plan, args.speed, args.apply_delay_s, args.max_s)
        began = time.perf_counter()
        with ProcessPoolExecutor(args.jobs) as pool:
            results = list(pool.map(run, [setup] * len(seeds), seeds, chunksize=8))
        report(name, results, wrong, bound, what)
        print(f"  ({time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()

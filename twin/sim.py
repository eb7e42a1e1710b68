"""A minimal, deterministic fleet simulator: the same seed gives the same events.

Robots are spread round-robin over the sectors (so any fleet of 18 or more
robots covers every sector), then over each sector's sites and models. Each
robot gets its own operating point inside every signal's nominal band and
reports it with noise; modes follow a small Markov chain. Time is an input:
the caller says which instant to report for, the simulator never reads a clock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from twin.fleet import Fleet
from twin.schema import Event

# Probability of moving from one mode to another per report (rows sum to <= 1;
# the rest is staying put). Rare transitions keep the fleet mostly working.
_MODE_STEPS: dict[str, tuple[tuple[str, float], ...]] = {
    "working": (("idle", 0.01), ("charging", 0.005), ("fault", 0.0005)),
    "idle": (("working", 0.05), ("charging", 0.01), ("maintenance", 0.001)),
    "charging": (("idle", 0.02),),
    "fault": (("maintenance", 0.05), ("idle", 0.02)),
    "estop": (("idle", 0.1),),
    "maintenance": (("idle", 0.02),),
}


@dataclass(frozen=True)
class SimRobot:
    """One simulated robot: where it is, what it is, and its own operating point."""

    robot_id: str
    sector: str
    site: str
    model: str
    baseline: dict[str, float]
    ai_model_version: str
    firmware: str


def make_roster(fleet: Fleet, robots: int, seed: int) -> list[SimRobot]:
    """Place `robots` robots over the fleet model, deterministically for a seed."""
    rng = random.Random(seed)
    sectors = sorted(fleet.sectors)
    roster = []
    for i in range(robots):
        name = sectors[i % len(sectors)]
        sector = fleet.sectors[name]
        rank = i // len(sectors)
        site = sector.sites[rank % len(sector.sites)]
        model = sector.models[(rank // len(sector.sites)) % len(sector.models)]
        baseline = {
            sig: lo + (hi - lo) * rng.uniform(0.3, 0.7)
            for sig, (lo, hi) in ((s, spec.nominal) for s, spec in fleet.models[model].signals.items())
        }
        roster.append(
            SimRobot(
                robot_id=f"{site}-{i:07d}",
                sector=name,
                site=site,
                model=model,
                baseline=baseline,
                ai_model_version=f"policy-{rng.choice(('2.3.1', '2.4.0'))}",
                firmware="fw-1.8.2",
            )
        )
    return roster


@dataclass
class Simulator:
    """The running fleet: per-robot sequence numbers and modes, and one seeded RNG."""

    fleet: Fleet
    roster: list[SimRobot]
    seed: int = 0
    seqs: list[int] = field(init=False)
    modes: list[str] = field(init=False)
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.seqs = [0] * len(self.roster)
        self.modes = ["working"] * len(self.roster)
        self.rng = random.Random(self.seed)

    def step(self, ts: float) -> list[Event]:
        """One report from every robot, measured at event time `ts`."""
        return [self._report(i, robot, ts) for i, robot in enumerate(self.roster)]

    def _report(self, i: int, robot: SimRobot, ts: float) -> Event:
        self.seqs[i] += 1
        self.modes[i] = self._next_mode(self.modes[i])
        return Event(
            schema=1,
            robot_id=robot.robot_id,
            seq=self.seqs[i],
            ts=ts,
            sector=robot.sector,
            site=robot.site,
            model=robot.model,
            mode=self.modes[i],  # type: ignore[arg-type]  # drawn from _MODE_STEPS keys
            signals=self._signals(robot, self.modes[i]),
            ai_model_version=robot.ai_model_version,
            firmware=robot.firmware,
        )

    def _next_mode(self, mode: str) -> str:
        draw = self.rng.random()
        for target, p in _MODE_STEPS[mode]:
            if draw < p:
                return target
            draw -= p
        return mode

    def _signals(self, robot: SimRobot, mode: str) -> dict[str, float]:
        catalogue = self.fleet.models[robot.model].signals
        load = 1.0 if mode == "working" else 0.4
        out = {}
        for name, base in robot.baseline.items():
            spec = catalogue[name]
            lo, hi = spec.nominal
            value = base * (load if name.endswith("current_a") else 1.0)
            value += self.rng.gauss(0.0, 0.02 * (hi - lo))
            out[name] = round(min(max(value, spec.limits[0]), spec.limits[1]), 3)
        return out

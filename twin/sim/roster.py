"""Where each simulated robot is, what it is, and what makes it unlike its peers."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from twin.exceptions import InvalidSeed
from twin.fleet import Fleet

FLEET_ID = re.compile(r"^[A-Za-z0-9._:]{1,32}$")
"""What a fleet id may hold: robot-id characters without '-', which separates it from the site."""


@dataclass(frozen=True)
class Roster:
    """The fleet as parallel arrays, one row per robot (row i is robot i)."""

    robot_ids: list[str]
    sectors: list[str]
    sites: list[str]
    models: list[str]
    site_index: np.ndarray
    """Index into `site_names`, for site-level effects."""
    site_names: list[str]
    traits: dict[str, np.ndarray]
    """Per-robot multipliers and offsets: no two robots are identical."""

    def __len__(self) -> int:
        return len(self.robot_ids)

    def rows(self, model: str) -> np.ndarray:
        return np.flatnonzero(np.asarray(self.models) == model)


def place(fleet: Fleet, robots: int, seed: int, sectors: list[str] | None = None,
          fleet_id: str = "", models: list[str] | None = None) -> Roster:
    """Spread robots round-robin over sectors, then over each sector's sites and models.

    Round-robin rather than random, so that any 18 robots cover all 18 sectors
    and a scenario's fleet is the same whatever the seed; the seed only sets
    each robot's traits. A `fleet_id` prefixes every robot id (`<fleet_id>-<site>-<n>`):
    two simulators with different ones never report for the same robot. `models`
    keeps only those robot models, in the sectors that have any of them.
    """
    if fleet_id and not FLEET_ID.match(fleet_id):
        raise InvalidSeed(f"fleet id {fleet_id!r}: 1 to 32 of A-Z a-z 0-9 . _ : (no '-')")
    prefix = f"{fleet_id}-" if fleet_id else ""
    names = sorted(sectors or fleet.sectors)
    kinds = {n: _models(fleet, n, models) for n in names}
    names = [n for n in names if kinds[n]]
    if not names:
        raise InvalidSeed(f"no sector of {sorted(sectors or fleet.sectors)} has any robot model of {models}")
    ids, sec, site, model = [], [], [], []
    for i in range(robots):
        sector = fleet.sectors[names[i % len(names)]]
        rank = i // len(names)
        s = sector.sites[rank % len(sector.sites)]
        choice = kinds[names[i % len(names)]]
        m = choice[(rank // len(sector.sites)) % len(choice)]
        ids.append(f"{prefix}{s}-{i:07d}")
        sec.append(names[i % len(names)])
        site.append(s)
        model.append(m)
    site_names = sorted(set(site))
    lookup = {s: k for k, s in enumerate(site_names)}
    return Roster(
        robot_ids=ids, sectors=sec, sites=site, models=model,
        site_index=np.array([lookup[s] for s in site], dtype=np.int64),
        site_names=site_names,
        traits=_traits(np.random.default_rng([seed, 1]), robots),
    )


def _models(fleet: Fleet, sector: str, models: list[str] | None) -> list[str]:
    if sector not in fleet.sectors:
        raise InvalidSeed(f"unknown sector {sector!r}; known: {', '.join(sorted(fleet.sectors))}")
    if models and (unknown := sorted(set(models) - set(fleet.models))):
        raise InvalidSeed(f"unknown robot model(s) {unknown}; known: {', '.join(sorted(fleet.models))}")
    return [m for m in fleet.sectors[sector].models if not models or m in models]


def _traits(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {
        "load": rng.uniform(0.85, 1.15, n),
        "heat": rng.normal(0.0, 0.03, n),
        "latency": rng.uniform(0.8, 1.2, n),
        "cycle": rng.uniform(0.3, 0.7, n),
        "drain": rng.uniform(0.8, 1.25, n),
        "speed": rng.uniform(0.4, 0.8, n),
        "phase": rng.uniform(0.0, 1.0, n),
        "joint": rng.uniform(0.9, 1.1, (n, 16)),
        "version": rng.integers(0, 2, n),
    }

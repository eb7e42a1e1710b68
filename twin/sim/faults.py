"""Injected faults: who gets which, when, and exactly what each changes.

Every fault is an overlay on what the robot reports (its signals, mode, codes,
version) or on how its reports travel (lost, duplicated, reordered, skewed
clock). It never touches the physics state, and each draws only from its own
random stream. So removing a fault from a scenario leaves every other number
identical, and each fault changes only the signals its label names, only
inside its window: the ground truth is exact.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twin.sim.physics import ESTOP, FAULT, WORKING, ModelPhysics
from twin.sim.roster import Roster
from twin.sim.scenario import (
    BatteryFade, CodeBurst, Fault, Overcurrent, PowerDip, Rollout, Scenario, SensorDropout,
    SensorSpikes, StuckSensor, ThermalRunaway, VersionEffect, Wear, Where,
)

CODES = ("W-COLLISION-NEAR", "W-PATH-BLOCKED", "F-JOINT-LIMIT", "F-GRIPPER", "W-LOCALISATION")
DELIVERY = ("comm_loss", "clock_skew", "duplicate_delivery", "out_of_order")
EFFECT_GROUPS = 1000
"""Version effects draw from streams numbered from here: apart from any fault entry's."""


@dataclass
class Injection:
    """One fault on one robot, with its ground truth."""

    kind: str
    robot: int
    start: float
    end: float
    signals: tuple[str, ...]
    spec: Fault | VersionEffect
    group: int
    """Index of the scenario fault entry it came from (a site dip hits many robots)."""
    rng: np.random.Generator
    memo: dict[str, Any] = field(default_factory=dict)
    labelled: bool = True

    def active(self, ts: float) -> bool:
        return self.start <= ts < self.end

    def label(self, roster: Roster) -> dict[str, Any]:
        return {
            "robot_id": roster.robot_ids[self.robot], "fault": self.kind,
            "start_ts": self.start, "end_ts": self.end, "signals": list(self.signals),
            "sector": roster.sectors[self.robot], "site": roster.sites[self.robot],
            "model": roster.models[self.robot],
            "scope": "site" if self.kind == "site_power_dip" else "robot", "group": self.group,
        }


def inject(scenario: Scenario, roster: Roster, physics: dict[str, ModelPhysics], seed: int,
           start_ts: float, time_scale: float = 1.0, cycle: int = 0) -> list[Injection]:
    """Resolve the scenario's fault entries to concrete robots and windows (in event time).

    `start_ts` is the start of this pass of the scenario; a repeating scenario's
    later passes (`cycle` > 0) draw from streams of their own, so each cycle hits
    other robots while the first stays what a single pass gives.
    """
    out: list[Injection] = []
    for group, spec in enumerate(scenario.faults):
        rng = _rng(seed, group, cycle)
        start = start_ts + scenario.at(spec.start) * time_scale
        end = min(start + scenario.at(spec.duration) * time_scale,
                  start_ts + scenario.duration_s * time_scale)
        for robot in _targets(spec, roster, physics, rng, scenario):
            signals = _claims(spec, physics[roster.models[robot]], rng)
            if signals is None:
                continue
            spread = scenario.at(spec.spread) * time_scale if isinstance(spec, Rollout) else 0.0
            begin = start + (rng.uniform(0, spread) if spread else 0.0)
            out.append(Injection(
                kind=_kind(spec), robot=int(robot), start=begin, end=end, signals=signals, spec=spec,
                group=group, rng=_rng(seed, group, cycle, int(robot)),
                labelled=not (isinstance(spec, Rollout) and spec.latency_factor == 1.0),
            ))
    return out + _effects(scenario, roster, physics, seed, start_ts, time_scale, cycle)


def _effects(scenario: Scenario, roster: Roster, physics: dict[str, ModelPhysics], seed: int,
             start_ts: float, time_scale: float, cycle: int) -> list[Injection]:
    """Every matching robot carries each version effect for the whole pass; `runs` says when it shows."""
    out: list[Injection] = []
    end = start_ts + scenario.duration_s * time_scale
    for k, effect in enumerate(scenario.version_effects):
        group = EFFECT_GROUPS + k
        for robot in _matching(effect.where, roster, set(physics)):
            names = physics[roster.models[robot]].names
            signals = ("inference_ms",) if effect.latency_factor != 1.0 and "inference_ms" in names else ()
            out.append(Injection(kind="version_effect", robot=robot, start=start_ts, end=end, signals=signals,
                                 spec=effect, group=group, rng=_rng(seed, group, cycle, robot), labelled=False))
    return out


def _rng(seed: int, group: int, cycle: int, robot: int | None = None) -> np.random.Generator:
    """The stream of one fault entry (or of one robot under it) in one cycle.

    Cycle 0 keeps the streams a scenario has always had; later cycles are
    spawned children (a spawn key never ends in 0, so no two of them coincide).
    """
    if cycle == 0:
        return np.random.default_rng([seed, 100 + group] + ([] if robot is None else [robot]))
    key = (cycle,) if robot is None else (cycle, robot + 1)
    return np.random.default_rng(np.random.SeedSequence([seed, 100 + group], spawn_key=key))


def _kind(spec: Fault) -> str:
    if isinstance(spec, Rollout):
        return "latency_regression" if spec.latency_factor != 1.0 else "rollout"
    return str(spec.__struct_config__.tag)


def _targets(spec: Fault, roster: Roster, physics: dict[str, ModelPhysics],
             rng: np.random.Generator, scenario: Scenario) -> list[int]:
    possible = {m for m, phys in physics.items() if _claims(spec, phys, None) is not None}
    ok = _matching(spec.where, roster, possible)
    if not ok:
        return []
    if isinstance(spec, PowerDip):
        site = roster.sites[ok[int(rng.integers(len(ok)))]]
        return [i for i in ok if roster.sites[i] == site]
    if isinstance(spec, Rollout):
        return sorted(rng.choice(ok, size=max(1, round(spec.share * len(ok))), replace=False).tolist())
    return sorted(rng.choice(ok, size=min(spec.robots, len(ok)), replace=False).tolist())


def _matching(where: Where, roster: Roster, models: set[str]) -> list[int]:
    """The robots (rows) of these models that `where` picks."""
    return [
        i for i, (sector, site, model) in enumerate(zip(roster.sectors, roster.sites, roster.models))
        if model in models
        and (where.sector is None or sector == where.sector)
        and (where.site is None or site == where.site)
        and (where.model is None or model == where.model)
    ]


def _claims(spec: Fault, phys: ModelPhysics, rng: np.random.Generator | None) -> tuple[str, ...] | None:
    """The signals a fault changes on a robot of this model; None if it cannot happen there."""
    names = phys.names
    if isinstance(spec, (Wear, Overcurrent)):
        joints = sorted({int(m.group(1)) for n in names if (m := re.match(r"joint(\d+)_current_a", n))})
        if not joints:
            return None
        j = joints[int(rng.integers(len(joints)))] if rng is not None else joints[0]
        if isinstance(spec, Overcurrent):
            return (f"joint{j}_current_a",)
        extra = ("position_error_mm",) if "position_error_mm" in names else ()
        return tuple(n for n in (f"joint{j}_temp_c", f"joint{j}_current_a") if n in names) + extra
    if isinstance(spec, (StuckSensor, SensorDropout, SensorSpikes)):
        if spec.signal is not None:
            return (spec.signal,) if spec.signal in names else None
        return (names[int(rng.integers(len(names)))],) if rng is not None else (names[0],)
    if isinstance(spec, BatteryFade):
        return ("battery_soc_pct", "battery_temp_c") if "battery_soc_pct" in names else None
    if isinstance(spec, ThermalRunaway):
        compute = [n for n in ("gpu_temp_c", "cpu_temp_c") if n in names]
        return (compute[0],) if compute else None
    if isinstance(spec, PowerDip):
        return tuple(n for n in names if n.endswith("current_a"))
    if isinstance(spec, Rollout):
        return ("inference_ms",) if "inference_ms" in names else None
    return ()  # delivery faults and code bursts change no signal


def overlay_signals(inj: Injection, phys: ModelPhysics, row: int, values: np.ndarray,
                    present: np.ndarray, ts: float) -> None:
    """Apply a signal fault to one robot's row of values (engineering units), in place."""
    spec, p = inj.spec, (ts - inj.start) / max(inj.end - inj.start, 1e-9)
    for name in inj.signals:
        col = phys.column(name)
        width, lo, hi = phys.width[col], phys.limits[0][col], phys.limits[1][col]
        v = values[row, col]
        if isinstance(spec, Wear):
            v += spec.severity * p * width * (1.0 if name == "position_error_mm" else 0.35)
        elif isinstance(spec, Overcurrent):
            v *= spec.factor
        elif isinstance(spec, StuckSensor):
            v = inj.memo.setdefault(name, v)
        elif isinstance(spec, SensorDropout):
            present[row, col] = False
        elif isinstance(spec, SensorSpikes):
            if inj.rng.random() < spec.rate:
                v += inj.rng.uniform(3.0, 6.0) * width * (1 if inj.rng.random() < 0.5 else -1)
        elif isinstance(spec, BatteryFade):
            v = v - spec.severity * 25.0 * p if name == "battery_soc_pct" else v + spec.severity * 0.4 * p * width
        elif isinstance(spec, ThermalRunaway):
            v += 2.5 * width * (math.exp(3 * p) - 1) / (math.e**3 - 1)
        elif isinstance(spec, PowerDip):
            v *= 0.05
        elif isinstance(spec, (Rollout, VersionEffect)):
            v *= spec.latency_factor
        values[row, col] = round(min(max(v, lo), hi), 3)


def overlay_report(inj: Injection, mode: np.ndarray, codes: dict[int, list[str]]) -> None:
    """Apply a fault's effect on reported mode and codes (never on the physical mode)."""
    spec, r = inj.spec, inj.robot
    if isinstance(spec, PowerDip):
        mode[r] = FAULT
        codes.setdefault(r, []).append("F-POWER-DIP")
    elif isinstance(spec, CodeBurst):
        if inj.rng.random() < spec.rate:
            codes.setdefault(r, []).append(CODES[int(inj.rng.integers(len(CODES)))])
        if inj.rng.random() < spec.estop_rate:
            mode[r] = ESTOP
            codes.setdefault(r, []).append("E-STOP")
    elif isinstance(spec, VersionEffect) and spec.estop_rate and mode[r] == WORKING:
        if inj.rng.random() < spec.estop_rate:
            mode[r] = ESTOP
            codes.setdefault(r, []).append("E-STOP")


def runs(inj: Injection, versions: list[str]) -> bool:
    """Whether a fault is in effect given the version each robot runs (only a version effect asks)."""
    spec = inj.spec
    return not isinstance(spec, VersionEffect) or not spec.version or versions[inj.robot] == spec.version

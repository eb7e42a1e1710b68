"""Normal behaviour of every robot, vectorised over the fleet with numpy.

Signals are computed in *band units*: 0 is the bottom of the signal's nominal
band and 1 its top (seeds/models.yaml), then mapped to engineering units. So
one set of physics serves every robot model, and a healthy robot stays mostly
inside its nominal bands. What correlates:

* motor current follows load (duty cycle within a task, idle, stopped);
* joint, battery and compute temperatures follow their heat source with a
  first-order thermal lag, on top of the site's ambient temperature, which
  follows the time of day;
* battery charge drains under load and recovers on the charger, which robots
  seek when low;
* inference latency is log-normal with a long tail.

Modes follow timers: work shifts, idle pauses, charging until full, rare
maintenance. Everything random comes from the generator passed in.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from twin.fleet import RobotModel
from twin.schema import MODES

WORKING, IDLE, CHARGING, FAULT, ESTOP, MAINTENANCE = (MODES.index(m) for m in (
    "working", "idle", "charging", "fault", "estop", "maintenance"))

_JOINT = re.compile(r"joint(\d+)_(temp_c|current_a)$")
_LAGS = {"temp": 600.0, "battery_temp_c": 900.0, "cpu_temp_c": 120.0, "gpu_temp_c": 120.0}


@dataclass
class ModelPhysics:
    """State and signal layout of one robot model's robots (rows of the roster)."""

    model: RobotModel
    rows: np.ndarray
    names: list[str] = field(init=False)
    lo: np.ndarray = field(init=False)
    width: np.ndarray = field(init=False)
    limits: tuple[np.ndarray, np.ndarray] = field(init=False)
    heat: np.ndarray = field(init=False)
    """Thermal state in band units, one column per signal (used by temperature columns)."""

    def __post_init__(self) -> None:
        self.names = list(self.model.signals)
        specs = [self.model.signals[n] for n in self.names]
        self.lo = np.array([s.nominal[0] for s in specs])
        self.width = np.array([s.nominal[1] - s.nominal[0] for s in specs])
        self.limits = (np.array([s.limits[0] for s in specs]), np.array([s.limits[1] for s in specs]))
        self.heat = np.full((len(self.rows), len(self.names)), 0.3)

    @property
    def has_battery(self) -> bool:
        return "battery_soc_pct" in self.model.signals

    def column(self, name: str) -> int:
        return self.names.index(name)

    def to_units(self, x: np.ndarray) -> np.ndarray:
        values = self.lo + x * self.width
        clipped: np.ndarray = np.clip(values, *self.limits)
        return clipped


def ambient_c(site_base: np.ndarray, ts: float) -> np.ndarray:
    """Ambient temperature per robot: the site's base plus a day cycle peaking at 15:00 UTC."""
    hour = (ts % 86400.0) / 3600.0
    return site_base + 6.0 * math.sin(2 * math.pi * (hour - 9.0) / 24.0)


def load_of(mode: np.ndarray, ts: float, traits: dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
    """How hard each robot works, 0..1: a task cycle while working, little otherwise."""
    cycle_s = 20.0 + 40.0 * traits["cycle"][rows]
    task = 0.5 + 0.5 * np.sin(2 * np.pi * (ts / cycle_s + traits["phase"][rows]))
    working = (0.55 + 0.35 * task) * traits["load"][rows]
    m = mode[rows]
    return np.select([m == WORKING, m == IDLE, m == CHARGING], [working, 0.08, 0.02], 0.0)


def step_signals(
    phys: ModelPhysics, mode: np.ndarray, soc: np.ndarray, ts: float, dt: float,
    ambient: np.ndarray, traits: dict[str, np.ndarray], rng: np.random.Generator,
) -> np.ndarray:
    """One report per robot of this model, in engineering units (rows x signals)."""
    rows = phys.rows
    load = load_of(mode, ts, traits, rows)
    working = mode[rows] == WORKING
    x = np.empty((len(rows), len(phys.names)))
    for col, name in enumerate(phys.names):
        x[:, col] = _signal(phys, col, name, load, working, mode[rows], soc[rows], ambient[rows],
                            traits, rows, dt)
    x += rng.normal(0.0, 0.01, x.shape)
    values = phys.to_units(x)
    if phys.has_battery:
        values[:, phys.column("battery_soc_pct")] = soc[rows]
    if "inference_ms" in phys.names:
        col = phys.column("inference_ms")
        latency = _latency(phys, col, traits["latency"][rows], rng)
        values[:, col] = np.clip(latency, phys.limits[0][col], phys.limits[1][col])
    return np.round(values, 3)


def _signal(
    phys: ModelPhysics, col: int, name: str, load: np.ndarray, working: np.ndarray,
    mode: np.ndarray, soc: np.ndarray, ambient: np.ndarray, traits: dict[str, np.ndarray],
    rows: np.ndarray, dt: float,
) -> np.ndarray:
    joint = _JOINT.match(name)
    warm = (ambient - 20.0) / max(float(phys.width[col]), 1e-9)
    if joint and joint.group(2) == "current_a":
        return np.asarray(0.05 + 0.85 * load * traits["joint"][rows, int(joint.group(1)) % 16], dtype=float)
    if joint:
        current = load * traits["joint"][rows, int(joint.group(1)) % 16]
        return _lag(phys, col, 0.25 + 0.55 * current**2 + warm + traits["heat"][rows], _LAGS["temp"], dt)
    if name in ("cpu_temp_c", "gpu_temp_c"):
        compute = np.where(working, 1.0, np.where(mode == IDLE, 0.4, 0.2))
        return _lag(phys, col, 0.25 + 0.45 * compute + warm + traits["heat"][rows], _LAGS[name], dt)
    if name == "battery_temp_c":
        charging = (mode == CHARGING).astype(float)
        return _lag(phys, col, 0.25 + 0.35 * load + 0.3 * charging + warm, _LAGS[name], dt)
    if name == "speed_mps":
        return np.where(working & (load > 0.6), traits["speed"][rows], 0.0)
    if name == "altitude_m":
        return np.where(working, 0.3 + 0.4 * traits["cycle"][rows], 0.04)  # on the pad
    if name == "cycle_time_s":
        return np.asarray(traits["cycle"][rows], dtype=float)
    if name == "position_error_mm":
        return np.full(len(rows), 0.25)
    if name == "control_jitter_ms":
        return 0.2 + 0.2 * load
    if name == "tool_current_a":
        return 0.1 + 0.6 * load
    return np.full(len(rows), 0.5)


def _lag(phys: ModelPhysics, col: int, target: np.ndarray, tau_s: float, dt: float) -> np.ndarray:
    """First-order lag towards `target`: heat takes minutes to build and to go."""
    phys.heat[:, col] += (target - phys.heat[:, col]) * (1.0 - math.exp(-dt / tau_s))
    return phys.heat[:, col]


def _latency(phys: ModelPhysics, col: int, factor: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    median = phys.lo[col] + 0.35 * phys.width[col] * factor
    tail = np.where(rng.random(len(factor)) < 0.02, rng.uniform(1.5, 3.0, len(factor)), 1.0)
    latency: np.ndarray = median * rng.lognormal(0.0, 0.15, len(factor)) * tail
    return latency


@dataclass
class Modes:
    """What every robot is doing, for how much longer, and its battery charge."""

    mode: np.ndarray
    timer: np.ndarray
    """Seconds left in the current mode (charging ends on a full battery instead)."""
    soc: np.ndarray
    has_battery: np.ndarray

    @classmethod
    def start(cls, has_battery: np.ndarray, rng: np.random.Generator) -> Modes:
        n = len(has_battery)
        mode = np.where(rng.random(n) < 0.8, WORKING, IDLE)
        return cls(mode, rng.exponential(900.0, n), rng.uniform(40.0, 100.0, n), has_battery)

    def step(self, dt: float, drain: np.ndarray, rng: np.random.Generator) -> None:
        """Advance every robot by `dt` seconds: battery first, then mode changes."""
        m = self.mode
        rate = np.select([m == WORKING, m == CHARGING], [-0.6 * drain, 2.0], -0.05) / 60.0
        self.soc = np.where(self.has_battery, np.clip(self.soc + rate * dt, 0.0, 100.0), 100.0)
        self.timer -= dt
        low = self.has_battery & (self.soc < 20.0) & (m != CHARGING)
        full = (m == CHARGING) & (self.soc >= 95.0)
        due = (self.timer <= 0) & (m != CHARGING)
        service = rng.random(len(m)) < dt / (14 * 86400.0)
        new = m.copy()
        new[due & (m == WORKING)] = IDLE
        new[due & (m != WORKING)] = WORKING
        new[full] = IDLE
        new[low] = CHARGING
        new[service & ~low] = MAINTENANCE
        changed = new != m
        means = np.select([new == WORKING, new == IDLE, new == MAINTENANCE], [1800.0, 180.0, 1800.0], 600.0)
        self.timer = np.where(changed, rng.exponential(1.0, len(m)) * means, self.timer)
        self.mode = new

"""The running simulated fleet: one `step()` is one report from every robot.

Pure and seeded: the same fleet model, scenario, seed and start time give the
same events, byte for byte. Time is an input (`start_ts` plus ticks of
1/rate_hz); the simulator never reads a clock. The order of work per tick:
modes and batteries, physics per robot model, signal and report overlays of
active faults, events, then the delivery faults (lost, skewed, duplicated,
reordered).

Robots obey commands (`command`): each change of AI model, firmware or
configuration shows in the robot's reports after a delay, or fails, or is
rolled back (`twin.sim.commands`), and a `version_effect` in the scenario
changes how robots behave on the version they run. Neither draws from the
streams above, so a run without commands is the run it always was.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from typing import Any

import msgspec
import numpy as np

from twin.fleet import ConfigParam, Fleet, RobotModel
from twin.schema import MODES, Event
from twin.sim.commands import Inbox, Installed, Obedience
from twin.sim.faults import DELIVERY, Injection, inject, overlay_report, overlay_signals, runs
from twin.sim.physics import ModelPhysics, Modes, ambient_c, step_signals
from twin.sim.roster import Roster, place
from twin.sim.scenario import ClockSkew, Duplicates, OutOfOrder, Rollout, Scenario

VERSIONS = ("policy-2.3.1", "policy-2.4.0")
FIRMWARE = "fw-1.8.2"


ENDLESS = sys.maxsize
"""`FleetSim.ticks` of a repeating scenario run without an end."""


class FleetSim:
    """A scenario in motion."""

    def __init__(self, fleet: Fleet, scenario: Scenario, seed: int, start_ts: float | None = None,
                 robots: int | None = None, time_scale: float = 1.0, fleet_id: str = "",
                 run_s: float | None = None, obedience: Obedience | None = None) -> None:
        """`time_scale` < 1 fast-forwards: event time advances `time_scale` seconds per simulated second.

        `fleet_id` prefixes the robot ids (`twin.sim.roster.place`). `run_s`: scenario
        seconds to run; by default one pass of the scenario; `math.inf` for no end (a
        repeating scenario loops for as long as it runs). `obedience`: how robots
        take commands (`twin.sim.commands.Obedience`; its defaults when None).
        """
        self.scenario = scenario
        self.start_ts = scenario.start_ts if start_ts is None else start_ts
        self.dt = 1.0 / scenario.rate_hz
        self.time_scale = time_scale
        self.seed = seed
        self.run_s = run_s
        self.roster: Roster = place(fleet, robots or scenario.robots, seed, scenario.sectors or None, fleet_id,
                                    scenario.models or None)
        self.physics = {m: ModelPhysics(fleet.models[m], self.roster.rows(m))
                        for m in sorted(set(self.roster.models))}
        self.rng = np.random.default_rng([seed, 0])
        battery = np.zeros(len(self.roster), dtype=bool)
        for phys in self.physics.values():
            battery[phys.rows] = phys.has_battery
        self.modes = Modes.start(battery, self.rng)
        site_base = np.random.default_rng([seed, 2]).uniform(16.0, 26.0, len(self.roster.site_names))
        self.site_base = site_base[self.roster.site_index]
        self.seq = np.zeros(len(self.roster), dtype=np.int64)
        self.versions = ([VERSIONS[v] for v in self.roster.traits["version"]] if scenario.start_version is None
                         else [scenario.start_version] * len(self.roster))
        self.installed = Installed(self.versions, [FIRMWARE] * len(self.roster),
                                   [start_config(fleet.models[m]) for m in self.roster.models])
        """What each robot runs and reports; commands change it (`command`)."""
        self.inbox = Inbox(obedience or Obedience(), seed)
        self._index: tuple[list[str], dict[str, int]] = ([], {})
        self.cycle = 0
        """Which pass of the scenario the next tick belongs to (always 0 unless it repeats)."""
        self.injections = self._draw(0)
        self.held: dict[int, Event] = {}
        self.tick = 0

    @property
    def index(self) -> dict[str, int]:
        """Robot id -> row; rebuilt when the roster's ids are replaced (a run's own prefix, say)."""
        ids = self.roster.robot_ids
        if self._index[0] is not ids:
            self._index = (ids, {r: k for k, r in enumerate(ids)})
        return self._index[1]

    @property
    def cycle_ticks(self) -> int:
        """Reports per robot in one pass of the scenario."""
        return max(1, int(round(self.scenario.duration_s * self.scenario.rate_hz)))

    @property
    def ticks(self) -> int:
        """Reports per robot over the run (`ENDLESS` for a run without an end)."""
        if self.run_s is None:
            return self.cycle_ticks
        return ENDLESS if math.isinf(self.run_s) else int(round(self.run_s * self.scenario.rate_hz))

    def cycle_start(self, cycle: int) -> float:
        """Event time at which a pass of the scenario begins."""
        return self.start_ts + cycle * self.cycle_ticks * self.dt * self.time_scale

    def labels(self, cycle: int | None = None) -> list[dict[str, Any]]:
        """Ground truth: one row per injected fault per robot, of one cycle or of every cycle so far.

        Past cycles are drawn again rather than kept: an endless run holds one cycle.
        """
        cycles = range(self.cycle + 1) if cycle is None else (cycle,)
        return [i.label(self.roster) for k in cycles
                for i in (self.injections if k == self.cycle else self._draw(k)) if i.labelled]

    def _draw(self, cycle: int) -> list[Injection]:
        drawn = inject(self.scenario, self.roster, self.physics, self.seed, self.cycle_start(cycle),
                       self.time_scale, cycle)
        if not self.scenario.repeat or self.ticks == ENDLESS:
            return drawn
        # A run that stops inside a cycle stops its faults too: the labels claim only what happened.
        end = self.start_ts + self.ticks * self.dt * self.time_scale
        for inj in drawn:
            inj.end = min(inj.end, end)
        return [i for i in drawn if i.start < i.end]

    @property
    def now(self) -> float:
        """Event time of the next tick's reports."""
        return round(self.start_ts + self.tick * self.dt * self.time_scale, 3)

    def command(self, robot_id: str, fields: Mapping[str, str], at_ts: float) -> str:
        """Tell a robot to run these values (`twin.desired.Command.fields`) from event time `at_ts`.

        Returns what became of it: "scheduled" (each field shows after a delay,
        or fails, or is rolled back later: `twin.sim.commands`); "offline" when the
        robot is silent at `at_ts` (a comm_loss in the scenario) or not running yet:
        it never hears the command, and the worker sends it again when the robot
        is back; "elsewhere" for a robot id of another fleet. Raises `BadCommand`
        for a field the robot does not have or a value it cannot report.
        """
        robot = self.index.get(robot_id)
        if robot is None:
            return "elsewhere"
        self.installed.check(robot, dict(fields))
        if at_ts < self.start_ts or any(i.kind == "comm_loss" and i.robot == robot and i.active(at_ts)
                                        for i in self.injections):
            return "offline"
        self.inbox.receive(robot, dict(fields), at_ts, self.installed)
        return "scheduled"

    def step(self) -> list[Event]:
        """Every robot's report for the next tick, as delivered (after delivery faults)."""
        if self.scenario.repeat and self.tick and self.tick % self.cycle_ticks == 0:
            self.cycle += 1
            self.injections = self._draw(self.cycle)
        sim_ts = self.start_ts + self.tick * self.dt
        ts = round(self.start_ts + self.tick * self.dt * self.time_scale, 3)
        self.tick += 1
        self.modes.step(self.dt, self.roster.traits["drain"], self.rng)
        self.seq += 1
        if self.inbox.pending:
            self.inbox.due(ts, self.installed)
        active = [i for i in self.injections if i.active(ts)]
        versions = self._versions(active)
        active = [i for i in active if runs(i, versions)]
        mode = self.modes.mode.copy()
        codes: dict[int, list[str]] = {}
        for inj in active:
            overlay_report(inj, mode, codes)
        events: list[Event | None] = [None] * len(self.roster)
        ambient = ambient_c(self.site_base, sim_ts)
        for model, phys in self.physics.items():
            values = step_signals(phys, self.modes.mode, self.modes.soc, sim_ts, self.dt, ambient,
                                  self.roster.traits, self.rng)
            present = np.ones(values.shape, dtype=bool)
            by_row = {int(r): k for k, r in enumerate(phys.rows)}
            for inj in active:
                if inj.robot in by_row and inj.signals and inj.kind not in ("rollout",):
                    overlay_signals(inj, phys, by_row[inj.robot], values, present, ts)
            self._events(phys, values, present, ts, mode, codes, versions, events)
        return self._deliver([e for e in events if e is not None], active, ts)

    def sign_off(self) -> list[Event]:
        """A last report from every robot, in maintenance and without codes: the end of a run.

        Silence is not judged in maintenance, so the twins of a run that has
        finished do not take its fleet for lost (offline anomalies, site
        incidents) long after it stopped. Not part of the scenario's ground truth.
        """
        return [msgspec.structs.replace(e, mode="maintenance", codes=()) for e in self.step()]

    def _versions(self, active: list[Injection]) -> list[str]:
        # A rollout changes the version from each robot's update time on, for good.
        versions = self.versions
        for inj in active:
            if isinstance(inj.spec, Rollout):
                versions = versions if versions is not self.versions else list(versions)
                versions[inj.robot] = inj.spec.version
        return versions

    def _events(self, phys: ModelPhysics, values: np.ndarray, present: np.ndarray, ts: float,
                mode: np.ndarray, codes: dict[int, list[str]], versions: list[str],
                out: list[Event | None]) -> None:
        r = self.roster
        names = phys.names
        rows = values.tolist()
        partial = set(np.flatnonzero(~present.all(axis=1)).tolist())
        for k, robot in enumerate(phys.rows.tolist()):
            signals = dict(zip(names, rows[k]))
            if k in partial:
                signals = {n: v for n, v, keep in zip(names, rows[k], present[k]) if keep}
            config = self.installed.config[robot]
            out[robot] = Event(
                schema=1, robot_id=r.robot_ids[robot], seq=int(self.seq[robot]), ts=ts,
                sector=r.sectors[robot], site=r.sites[robot], model=r.models[robot],
                mode=MODES[mode[robot]], signals=signals,
                ai_model_version=versions[robot], firmware=self.installed.firmware[robot],
                codes=tuple(codes.get(robot, ())), config=config if config else msgspec.UNSET,
            )

    def _deliver(self, events: list[Event], active: list[Injection], ts: float) -> list[Event]:
        faults: dict[int, list[Injection]] = {}
        for inj in active:
            if inj.kind in DELIVERY:
                faults.setdefault(inj.robot, []).append(inj)
        out: list[Event] = []
        for event in events:
            robot = self.index[event.robot_id]
            out.extend(self._travel(event, faults.get(robot, ()), robot))
        for robot in [r for r in self.held if not any(i.kind == "out_of_order" for i in faults.get(r, ()))]:
            out.append(self.held.pop(robot))  # window over: release what was held back
        return out

    def _travel(self, event: Event, faults: Any, robot: int) -> list[Event]:
        sent = [event]
        for inj in faults:
            spec = inj.spec
            if inj.kind == "comm_loss":
                return []
            if isinstance(spec, ClockSkew):
                sent = [_skew(e, spec.offset_s) for e in sent]
            elif isinstance(spec, Duplicates) and inj.rng.random() < spec.rate:
                sent = sent + sent
            elif isinstance(spec, OutOfOrder):
                earlier = self.held.pop(robot, None)
                if earlier is None and inj.rng.random() < spec.rate:
                    self.held[robot] = sent[0]
                    sent = sent[1:]
                elif earlier is not None:
                    sent = sent + [earlier]
        return sent


def start_config(model: RobotModel) -> dict[str, str]:
    """The configuration a robot of this model starts with and reports (seeds: `control.config`).

    A parameter's `default` when the seed gives one; otherwise an enum's first value and
    the middle of a number's range, so every robot reports every parameter from its first event.
    """
    return {name: _start_value(param) for name, param in sorted(model.control.config.items())}


def _start_value(param: ConfigParam) -> str:
    default = getattr(param, "default", None)
    if default is not None:
        return str(default)
    if param.type == "enum":
        return param.values[0]
    low, high = param.min or 0.0, param.max if param.max is not None else (param.min or 0.0)
    middle = (low + high) / 2.0
    return str(int(middle)) if param.type == "int" else str(round(middle, 2))


def _skew(event: Event, offset: float) -> Event:
    return msgspec.structs.replace(event, ts=round(event.ts + offset, 3))

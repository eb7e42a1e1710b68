"""Scenarios: how big a fleet, for how long, and which faults when and where.

Parsed from `seeds/scenarios/*.yaml` by the shell and converted here (pure).
Each fault type is its own struct, tagged by `type`, so a typo in a scenario
fails with the file, the path and the reason. Times are seconds from the start,
or a percentage of the duration ("30%").
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from twin.exceptions import InvalidSeed

Time = float | str
"""Seconds from the scenario start, or a share of its duration such as "30%"."""
Positive = Annotated[float, msgspec.Meta(gt=0)]


class Where(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Which robots a fault may hit; empty means any."""

    sector: str | None = None
    site: str | None = None
    model: str | None = None


class _Fault(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type"):
    robots: Annotated[int, msgspec.Meta(ge=1)] = 1
    """How many robots (drawn with the scenario's seed among those matching `where`)."""
    where: Where = Where()
    start: Time = "10%"
    duration: Time = "50%"


class Wear(_Fault, tag="wear", frozen=True):
    """Bearing or gear wear on one joint: temperature and current creep up, accuracy drops."""

    severity: Positive = 1.0


class Overcurrent(_Fault, tag="overcurrent", frozen=True):
    """A joint motor suddenly draws several times its current (jam, short, collision)."""

    factor: Positive = 2.5
    duration: Time = 60


class StuckSensor(_Fault, tag="stuck_sensor", frozen=True):
    """One signal freezes at the value it had when the fault began."""

    signal: str | None = None


class SensorDropout(_Fault, tag="sensor_dropout", frozen=True):
    """One signal is missing from the reports."""

    signal: str | None = None


class SensorSpikes(_Fault, tag="sensor_spikes", frozen=True):
    """One signal shows brief, large spikes."""

    signal: str | None = None
    rate: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.1


class BatteryFade(_Fault, tag="battery_fade", frozen=True):
    """Capacity fade: state of charge falls faster and the pack runs warmer."""

    severity: Positive = 1.0
    duration: Time = "100%"


class ThermalRunaway(_Fault, tag="thermal_runaway", frozen=True):
    """The compute module's temperature climbs away (failed fan, clogged heat sink)."""

    duration: Time = 600


class CommLoss(_Fault, tag="comm_loss", frozen=True):
    """The robot goes silent: its reports are lost (its seq keeps counting)."""

    duration: Time = 300


class ClockSkew(_Fault, tag="clock_skew", frozen=True):
    """The robot's clock is off by `offset_s` seconds."""

    offset_s: float = -90.0


class Duplicates(_Fault, tag="duplicate_delivery", frozen=True):
    """Reports are delivered more than once."""

    rate: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.3


class OutOfOrder(_Fault, tag="out_of_order", frozen=True):
    """Reports overtake each other on the way."""

    rate: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.3


class CodeBurst(_Fault, tag="fault_code_burst", frozen=True):
    """A burst of fault and warning codes, with e-stops."""

    rate: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.3
    estop_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.05
    duration: Time = 120


class PowerDip(_Fault, tag="site_power_dip", frozen=True):
    """Every robot at a site loses power briefly: motors stall, controllers fault."""

    duration: Time = 30


class Rollout(_Fault, tag="rollout", frozen=True):
    """An AI-model version reaches a share of a model's robots over `spread`.

    With `latency_factor` above 1 the new version regresses inference latency:
    each updated robot is labelled `latency_regression` from its update on.
    `robots` is ignored: `share` of the matching robots are updated.
    """

    version: str = "policy-2.5.0"
    share: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.5
    spread: Time = "10%"
    latency_factor: Positive = 1.0
    duration: Time = "100%"


Fault = (
    Wear | Overcurrent | StuckSensor | SensorDropout | SensorSpikes | BatteryFade | ThermalRunaway
    | CommLoss | ClockSkew | Duplicates | OutOfOrder | CodeBurst | PowerDip | Rollout
)
FAULT_TYPES: tuple[str, ...] = tuple(
    str(t.__struct_config__.tag) for t in Fault.__args__
)


class VersionEffect(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A trait of an AI-model version: what running it does to a robot (more e-stops, slower inference).

    Holds for every robot matching `where`, for the whole run, while the robot runs
    `version` (empty: whatever it runs, a background), however it got there: at the
    start, by a `rollout` fault or by a command (`FleetSim.command`). `estop_rate` is
    the chance of an e-stop per report while working. Not a fault with ground truth:
    whether it shows depends on the commands a run receives, so it is never labelled.
    """

    where: Where = Where()
    version: str = ""
    estop_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.0
    latency_factor: Positive = 1.0


class Scenario(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A fleet and what happens to it."""

    name: str
    description: str = ""
    robots: Annotated[int, msgspec.Meta(ge=1)] = 360
    rate_hz: Positive = 1.0
    duration_s: Positive = 3600.0
    start_ts: float = 1_767_600_000.0
    """Event time of the first report (2026-01-05 08:00 UTC) for offline runs; live runs start now."""
    sectors: list[str] = []
    """Sectors to populate; empty means all 18."""
    models: list[str] = []
    """Robot models to populate (in the sectors that have them); empty means each sector's own."""
    start_version: str | None = None
    """AI-model version every robot starts on; by default each robot's is drawn (policy-2.3.1 or -2.4.0)."""
    faults: list[Fault] = []
    version_effects: list[VersionEffect] = []
    """Traits of AI-model versions (e.g. one that e-stops more): robots show them while they run the version."""
    repeat: bool = False
    """Loop: every `duration_s` the faults are drawn again (other robots, fresh windows) for as
    long as the run goes; the fleet itself (physics, modes, seq numbers) carries on."""

    def at(self, value: Time) -> float:
        """Seconds from the start for a `Time` ("30%" of the duration, or seconds)."""
        if isinstance(value, str):
            if not value.endswith("%"):
                raise InvalidSeed(f"scenario {self.name}: time {value!r} is neither seconds nor 'N%'")
            return float(value[:-1]) / 100.0 * self.duration_s
        return float(value)


def load_scenario(doc: Any, source: str) -> Scenario:
    """Build a scenario from its parsed YAML document; errors name the file and field."""
    try:
        return msgspec.convert(doc, Scenario)
    except msgspec.ValidationError as exc:
        raise InvalidSeed(f"{source}: {exc}") from None

"""Detector parameters: one frozen set of defaults, overridable per robot model.

Loaded from seeds/detectors.yaml (the shell reads the file). Scores are
normalised so that 1.0 is the firing threshold of every detector.
"""

from __future__ import annotations

from typing import Any

import msgspec

from twin.detect.stall import StallParams
from twin.exceptions import InvalidSeed


class RobotDetectorParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every knob of the robot-level detectors, with the defaults in force."""

    band_margin: float = 0.15
    """How far beyond the nominal band (as a share of its width) a value must be to count."""
    band_reports: int = 3
    """Consecutive reports outside the band before it fires (filters single glitches)."""
    band_skip: tuple[str, ...] = ("inference_ms",)
    """Signals with a normal long tail: left to the rollout detector."""
    spike_threshold: float = 8.0
    """|value - running mean| in units of max(running std, spike_std_floor band widths)."""
    spike_std_floor: float = 0.15
    spike_hits: float = 1.0
    """Decayed count of spike hits (x0.8 per report) that fires; 1: a single clear spike."""
    spike_skip: tuple[str, ...] = ("inference_ms", "control_jitter_ms")
    settle_s: float = 60.0
    """After a mode change, value-based detectors wait this long (loads, speeds, heat settle)."""
    warmup_reports: int = 30
    """Value-based detectors wait for this many reports of a robot."""
    stuck_reports: int = 30
    """Identical consecutive values (away from the physical limits) that mean a frozen sensor."""
    stuck_skip: tuple[str, ...] = ()
    """Signals that repeat by design (a work-cycle counter holds its value for a whole cycle)."""
    dropout_reports: int = 5
    """Reports in a row missing a signal the robot used to send."""
    drift_signals: tuple[str, ...] = ("position_error_mm", "joint*_current_a")
    """Signals (glob patterns) whose level is watched for slow change against the robot's own
    reference: accuracy and motor currents, steady while a robot works. Not temperatures:
    ambient (a day cycle) and thermal lag after each mode change move them for hours."""
    trend_signals: tuple[str, ...] = ("battery_soc_pct",)
    """Signals whose rate of change is watched instead: a charge falls at the robot's own
    rate while it works, so a faster fall is the change, whatever the level."""
    drift_reference_s: float = 180.0
    """Settled working seconds that make a signal's reference (mean and spread); no alarm before."""
    drift_allowance: float = 0.5
    """Change tolerated, in reference spreads (the CUSUM's k: tuned to shifts of one spread)."""
    drift_threshold: float = 60.0
    """CUSUM alarm level, in reference spreads x seconds of settled working time. Calibrated as a
    false-alarm rate: twice the highest level healthy robots reached (steady, seed 2, docs/ANOMALY.md)."""
    drift_cap: float = 2.0
    """The statistic is capped at this many thresholds, so a fault that ends resolves in minutes."""
    drift_floor: float = 0.002
    """Least spread of a level, in band widths (a noise-free signal is not infinitely sensitive)."""
    trend_floor: float = 5e-6
    """Least spread of a rate of change, in band widths per second: about what rounding a value
    to 1/1000 of an 80-unit band gives a one-second difference (a charge reported to 0.001%)."""
    drift_cohort_z: float = 4.0
    """A trend signal's reference rate this many cohort standard deviations from the mean rate of
    its model's healthy robots is a change too (a robot already failing when it was learned). Set,
    not searched: robots' own drain rates differ by a uniform +-22%, under 2 standard deviations."""
    drift_max_step_s: float = 5.0
    """Consecutive settled working reports further apart than this are a gap, not a step."""
    silence_periods: float = 10.0
    """Silent for this many of the robot's own learned report intervals ..."""
    silence_min_s: float = 15.0
    """... and at least this long: offline."""
    skew_s: float = 30.0
    """|event time - broker time| beyond this ..."""
    skew_reports: int = 5
    """... for this many reports in a row: a clock that is off."""
    delivery_hits: float = 3.0
    """Decayed count (x0.95 per report) of duplicates and out-of-order arrivals that fires."""
    codes_hits: float = 3.0
    """Decayed count (x0.95 per report) of fault codes and e-stops that fires."""
    close_reports: int = 30
    """Normal reports in a row before an open anomaly resolves (hysteresis)."""
    critical_score: float = 3.0
    """Score (1 = threshold) at or above which an anomaly is critical."""
    critical_after_s: float = 1800.0
    """An anomaly open this long is critical whatever its score."""
    drift_grace_s: float = 600.0
    """A robot may differ from its desired state this long (event time) before a `desired_drift`
    anomaly opens (twin.desired.judge_drift): time to download and apply a new version."""
    stall: StallParams | None = None
    """The work-cycle stall detector (twin.detect.stall); None: off (models with no cycle counter)."""


DEFAULT = RobotDetectorParams()


class DetectorConfig(msgspec.Struct, frozen=True):
    """Defaults plus per-model overrides, as in seeds/detectors.yaml."""

    defaults: RobotDetectorParams = DEFAULT
    models: dict[str, RobotDetectorParams] = {}

    def for_model(self, model: str) -> RobotDetectorParams:
        return self.models.get(model, self.defaults)


def load_config(doc: Any, source: str) -> DetectorConfig:
    """Per-model entries override only the keys they name."""
    if not isinstance(doc, dict):
        raise InvalidSeed(f"{source}: expected a mapping with 'defaults' and 'models'")
    try:
        defaults = msgspec.convert(doc.get("defaults") or {}, RobotDetectorParams)
        base = msgspec.to_builtins(defaults)
        models = {
            name: msgspec.convert({**base, **(over or {})}, RobotDetectorParams)
            for name, over in (doc.get("models") or {}).items()
        }
    except msgspec.ValidationError as exc:
        raise InvalidSeed(f"{source}: {exc}") from None
    return DetectorConfig(defaults, models)

"""Per-signal detectors: each `(state, reading) -> (state, finding | None)`.

A reading is one signal's new value with what the twin knew before it: the
previous value and running statistics (`SignalState`) and the signal's
nominal band and physical limits from the fleet model.
"""

from __future__ import annotations

import math

from twin.detect.findings import Finding
from twin.detect.params import RobotDetectorParams
from twin.detect.watch import COUNTER_MAX, Drift, SignalWatch
from twin.fleet import Signal
from twin.state import SignalState

Step = tuple[SignalWatch, list[Finding]]


def watch_signal(w: SignalWatch, name: str, value: float, before: SignalState | None, spec: Signal,
                 operating: bool, p: RobotDetectorParams) -> Step:
    """Band, spike and stuck-sensor checks of one value (operating: settled in a normal mode)."""
    findings: list[Finding] = []
    out, f = _band(w.out, name, value, spec, operating, p)
    findings += f
    hits, f = _spike(w.hits, name, value, before, spec, operating, p)
    findings += f
    same, f = _stuck(w.same, name, value, before, spec, p)
    findings += f
    return SignalWatch(out, same, hits, w.drift), findings


def _band(out: int, name: str, value: float, spec: Signal, operating: bool, p: RobotDetectorParams) -> tuple[int, list[Finding]]:
    if not operating or name in p.band_skip:
        return 0, []
    lo, hi = spec.nominal
    margin = p.band_margin * (hi - lo)
    beyond = max(lo - margin - value, value - hi - margin)
    if beyond <= 0:
        return 0, []
    out = min(out + 1, COUNTER_MAX)
    if out < p.band_reports:
        return out, []
    score = 1.0 + beyond / max(margin, 1e-9)
    return out, [Finding("band", name, score, {"value": value, "nominal": [lo, hi]})]


def _spike(hits: int, name: str, value: float, before: SignalState | None, spec: Signal,
           operating: bool, p: RobotDetectorParams) -> tuple[int, list[Finding]]:
    hits = hits * 4 // 5
    if before is None or not operating or name in p.spike_skip:
        return hits, []
    width = spec.nominal[1] - spec.nominal[0]
    z = abs(value - before.mean) / max(math.sqrt(before.var), p.spike_std_floor * width, 1e-9)
    if z > p.spike_threshold:
        hits += 100
    if hits < p.spike_hits * 100:
        return hits, []
    evidence = {"value": value, "mean": before.mean, "std": math.sqrt(before.var), "z": z}
    return hits, [Finding("spike", name, max(z / p.spike_threshold, 1.0), evidence)]


def _stuck(same: int, name: str, value: float, before: SignalState | None, spec: Signal,
           p: RobotDetectorParams) -> tuple[int, list[Finding]]:
    # Real sensors are noisy: many identical values in a row mean a frozen reading,
    # unless the value sits on a physical limit (an empty battery, a stopped wheel).
    at_limit = value in spec.limits
    if before is None or value != before.value or at_limit or name in p.stuck_skip:
        return 0, []
    same = min(same + 1, COUNTER_MAX)
    if same < p.stuck_reports:
        return same, []
    return same, [Finding("stuck", name, same / p.stuck_reports, {"value": value, "reports": same})]


def dropout(name: str, latest_seq: int, seq: int, p: RobotDetectorParams) -> list[Finding]:
    """A signal the robot used to send has been missing from its last reports (`seq`: its last)."""
    missing = latest_seq - seq
    if missing < p.dropout_reports:
        return []
    return [Finding("dropout", name, missing / p.dropout_reports, {"last_seen_seq": seq})]


LEVEL_UNIT = 1e-4
"""Band widths per integer step of a level's reference (`Drift.level`, `Drift.spread`)."""
TREND_UNIT = 1e-7
"""Band widths per second per integer step of a rate's reference."""


def drift(d: Drift | None, name: str, x: float, dt: float, trend: bool, p: RobotDetectorParams) -> tuple[Drift, list[Finding]]:
    """Two-sided CUSUM of one signal against its own reference; `x` is the level in band widths
    or, for a `trend` signal, its rate of change in band widths per second.

    Called only for settled working reports that follow another one `dt` seconds
    earlier, so the reference and the residual are de-moded: idle, charging and
    the settling after a mode change never enter. The reference is the
    time-weighted mean and mean absolute deviation over the first
    `drift_reference_s` of such time; then each report adds
    (|z| - allowance) x dt to the statistic of its side, z in reference spreads.
    So the alarm level is in spreads x seconds: a horizon in event time, the
    same at any report rate, and a healthy robot's statistic is a false-alarm
    rate that does not depend on the signal's units.
    """
    d = d or Drift()
    unit = TREND_UNIT if trend else LEVEL_UNIT
    q = x / unit
    full = round(p.drift_reference_s * 10)
    if d.ref < full:  # learning: `level` and `spread` hold time-weighted sums until the reference is full
        step = max(round(dt * 10), 1)
        ref = d.ref + step
        spread = d.spread + abs(q - d.level / d.ref) * step if d.ref else 0.0
        level, spread = d.level + q * step, spread
        if ref >= full:
            level, spread = level / ref, spread / ref
        return Drift(ref, round(level), round(spread)), []
    floor = (p.trend_floor if trend else p.drift_floor) / unit
    z = (q - d.level) / max(1.25 * d.spread, floor)  # 1.25 MAD: a standard deviation for Gaussian noise
    cap = p.drift_cap * p.drift_threshold * 10
    up = min(max(0.0, d.up + (z - p.drift_allowance) * dt * 10), cap)
    down = min(max(0.0, d.down + (-z - p.drift_allowance) * dt * 10), cap)
    d = Drift(d.ref, d.level, d.spread, round(up), round(down))
    stat = max(d.up, d.down) / 10
    if stat < p.drift_threshold:
        return d, []
    evidence = {"view": "trend" if trend else "level", "direction": "up" if d.up >= d.down else "down",
                "x": round(x, 7), "reference": round(d.level * unit, 7), "spread": round(d.spread * unit, 7),
                "z": round(z, 2)}
    return d, [Finding("drift", name, stat / p.drift_threshold, evidence)]

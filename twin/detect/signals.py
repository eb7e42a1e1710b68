"""Per-signal detectors: each `(state, reading) -> (state, finding | None)`.

A reading is one signal's new value with what the twin knew before it: the
previous value and running statistics (`SignalState`) and the signal's
nominal band and physical limits from the fleet model.
"""

from __future__ import annotations

import math

from twin.detect.findings import Finding
from twin.detect.params import RobotDetectorParams
from twin.detect.watch import Drift, SignalWatch
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
    return SignalWatch(out, same, hits), findings


def _band(out: int, name: str, value: float, spec: Signal, operating: bool, p: RobotDetectorParams) -> tuple[int, list[Finding]]:
    if not operating or name in p.band_skip:
        return 0, []
    lo, hi = spec.nominal
    margin = p.band_margin * (hi - lo)
    beyond = max(lo - margin - value, value - hi - margin)
    if beyond <= 0:
        return 0, []
    out += 1
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
    if before is None or value != before.value or at_limit:
        return 0, []
    same += 1
    if same < p.stuck_reports:
        return same, []
    return same, [Finding("stuck", name, same / p.stuck_reports, {"value": value, "reports": same})]


def dropout(name: str, latest_seq: int, seq: int, p: RobotDetectorParams) -> list[Finding]:
    """A signal the robot used to send has been missing from its last reports (`seq`: its last)."""
    missing = latest_seq - seq
    if missing < p.dropout_reports:
        return []
    return [Finding("dropout", name, missing / p.dropout_reports, {"last_seen_seq": seq})]


def drift(d: Drift, name: str, value: float, spec: Signal, p: RobotDetectorParams, reference: int = 300) -> tuple[Drift, list[Finding]]:
    """Page-Hinkley test for an upward creep against the signal's own reference period."""
    width = max(spec.nominal[1] - spec.nominal[0], 1e-9)
    if d.n < reference:
        n = d.n + 1
        return Drift(n, d.base + (value - d.base) / n, 0.0), []
    stat = max(0.0, d.stat + (value - d.base) / width - p.drift_allowance)
    d = Drift(d.n, d.base, stat)
    if stat < p.drift_threshold:
        return d, []
    return d, [Finding("drift", name, stat / p.drift_threshold, {"value": value, "reference": d.base})]

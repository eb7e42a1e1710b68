"""From findings to anomalies: open, update, resolve, with hysteresis and severity.

An anomaly opens on the first finding of its (detector, signal), updates when
its severity rises, and resolves only after `close_reports` normal readings in
a row from the detectors that were evaluated (one for silence: a robot that
reports again is back), so an alert does not flap on a noisy boundary.
"""

from __future__ import annotations

from msgspec.structs import replace

from twin.detect.findings import Anomaly, Finding, anomaly_id
from twin.detect.params import RobotDetectorParams
from twin.detect.watch import Open
from twin.state import Twin

SEVERITIES: tuple[str, ...] = ("warning", "critical")


def track(opened: list[Open], findings: list[Finding], evaluated: frozenset[str], twin: Twin,
          ts: float, p: RobotDetectorParams) -> tuple[list[Open], list[Anomaly]]:
    """The open anomalies after this reading, and the lifecycle messages it caused."""
    by_key = {(f.detector, f.signal): f for f in findings}
    still: list[Open] = []
    out: list[Anomaly] = []
    for o in opened:
        f = by_key.pop((o.detector, o.signal), None)
        if f is not None:
            now = replace(o, peak=max(o.peak, f.score), normal=0)
            now = replace(now, severity=severity(now, ts, p))
            if now.severity != o.severity:
                out.append(_message(twin, now, "update", ts, f))
            still.append(now)
        elif o.detector in evaluated:
            normal = o.normal + 1
            if normal >= (1 if o.detector == "silence" else p.close_reports):
                out.append(_message(twin, o, "resolved", ts, None))
            else:
                still.append(replace(o, normal=normal))
        else:
            still.append(o)
    for (detector, signal), f in by_key.items():
        new = Open(detector, signal, ts, f.score, "warning")
        new = replace(new, severity=severity(new, ts, p))
        still.append(new)
        out.append(_message(twin, new, "open", ts, f))
    return still, out


def severity(o: Open, ts: float, p: RobotDetectorParams) -> str:
    if o.peak >= p.critical_score or ts - o.start >= p.critical_after_s:
        return "critical"
    return "warning"


def _message(twin: Twin, o: Open, status: str, ts: float, f: Finding | None) -> Anomaly:
    return Anomaly(
        id=anomaly_id(twin.robot_id, o.detector, o.signal, o.start),
        status=status,  # type: ignore[arg-type]  # one of the Status literals by construction
        robot_id=twin.robot_id, sector=twin.sector, site=twin.site, model=twin.model,
        detector=o.detector, signal=o.signal, severity=o.severity, score=round(o.peak, 4),
        start_ts=o.start, ts=ts, end_ts=ts if status == "resolved" else None,
        evidence=f.evidence if f else {},
    )

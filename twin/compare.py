"""Differences between two runs of the detectors (those between two snapshots
of a twin are in the views people read: `streams.twin_view.diff_twins`).

It answers "what if the detectors had been tuned differently?": the
same records folded with two configurations give two anomaly lists, and an
alert of one run is matched to the alert of the other about the same robot,
detector and signal whose open period overlaps it. Unmatched ones were gained
or lost; matched ones opened earlier, later or at the same time.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from twin.detect.findings import Anomaly


Kind = Literal["gained", "lost", "earlier", "later", "same"]


class Alert(msgspec.Struct, frozen=True):
    """One anomaly episode, from its opening message to its resolution (if any)."""

    id: str
    robot_id: str
    site: str
    model: str
    detector: str
    signal: str
    opened: float
    resolved: float | None
    severity: str


class AlertChange(msgspec.Struct, frozen=True):
    kind: Kind
    robot_id: str
    site: str
    model: str
    detector: str
    signal: str
    base_opened: float | None
    other_opened: float | None
    shift_s: float | None
    """other - base opening time; negative means the other configuration alerts earlier."""


def alert_episodes(anomalies: list[Anomaly]) -> list[Alert]:
    """The alerts an anomaly stream would raise, in the order they opened."""
    opened: dict[str, Anomaly] = {}
    resolved: dict[str, float] = {}
    for a in anomalies:
        if a.status == "open" and a.id not in opened:
            opened[a.id] = a
        elif a.status == "resolved":
            resolved.setdefault(a.id, a.end_ts if a.end_ts is not None else a.ts)
    return [Alert(a.id, a.robot_id, a.site, a.model, a.detector, a.signal, a.ts, resolved.get(a.id), a.severity)
            for a in opened.values()]


def compare_runs(base: list[Anomaly], other: list[Anomaly], tolerance_s: float = 1.0) -> list[AlertChange]:
    """How the alerts of `other` differ from those of `base`; openings within
    `tolerance_s` of each other count as the same time."""
    pending = alert_episodes(other)
    changes = []
    for alert in alert_episodes(base):
        match = next((o for o in pending if _same_alert(alert, o)), None)
        if match is None:
            changes.append(_change("lost", alert, None))
            continue
        pending.remove(match)
        shift = match.opened - alert.opened
        kind: Kind = "same" if abs(shift) <= tolerance_s else ("earlier" if shift < 0 else "later")
        changes.append(_change(kind, alert, match))
    changes += [_change("gained", None, o) for o in pending]
    return sorted(changes, key=lambda c: (c.base_opened or c.other_opened or 0.0, c.robot_id, c.detector))


def _same_alert(a: Alert, b: Alert) -> bool:
    if (a.robot_id, a.site, a.model, a.detector, a.signal) != (b.robot_id, b.site, b.model, b.detector, b.signal):
        return False
    a_end = a.resolved if a.resolved is not None else float("inf")
    b_end = b.resolved if b.resolved is not None else float("inf")
    return a.opened <= b_end and b.opened <= a_end


def _change(kind: Kind, base: Alert | None, other: Alert | None) -> AlertChange:
    about = base or other
    assert about is not None
    b = base.opened if base else None
    o = other.opened if other else None
    return AlertChange(kind, about.robot_id, about.site, about.model, about.detector, about.signal, b, o,
                       None if b is None or o is None else round(o - b, 3))


def count_changes(changes: list[AlertChange]) -> dict[str, int]:
    """Counts per kind, every kind present."""
    counts = dict.fromkeys(("same", "gained", "lost", "earlier", "later"), 0)
    for c in changes:
        counts[c.kind] += 1
    return counts

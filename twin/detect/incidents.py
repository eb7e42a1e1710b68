"""Site incidents: many robots of one site going anomalous together is one event.

When anomalies open on `min_robots` distinct robots of a site within
`window_s`, one site incident opens; its id is then the `caused_by` of those
robot anomalies and of the site's anomalies that open while it lasts. It
resolves when no robot of the site has opened an anomaly for `quiet_s`: the
resolution is sent by `expire` (called on a clock: the worker's timer, record
time in a replay) or, at the latest, by the next opening after the quiet spell.
An incident that never resolved would keep inhibiting the site's robot alerts
at Alertmanager.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
from msgspec.structs import replace

from twin.detect.findings import Anomaly, anomaly_id


class IncidentParams(msgspec.Struct, frozen=True, kw_only=True):
    min_robots: int = 4
    window_s: float = 60.0
    quiet_s: float = 300.0


class SiteState(msgspec.Struct, frozen=True):
    recent: list[Anomaly] = []
    """Recent robot anomaly openings (within `window_s` of the newest)."""
    incident: str | None = None
    start: float = 0.0
    last: float = 0.0
    opened: Anomaly | None = None
    """The incident's opening message, to resolve it with."""


def correlate(state: SiteState, anomaly: Anomaly, p: IncidentParams = IncidentParams()) -> tuple[SiteState, list[Anomaly]]:
    """Feed one robot anomaly message; returns the site's state and incident/cause messages."""
    if anomaly.status != "open" or not anomaly.robot_id:
        return state, []
    ts = anomaly.ts
    state, ended = expire(state, ts, p)
    recent = [r for r in state.recent if ts - r.ts <= p.window_s] + [anomaly]
    if state.incident is not None:
        return replace(state, recent=recent, last=ts), [replace(anomaly, status="update", caused_by=state.incident)]
    robots = {r.robot_id for r in recent}
    if len(robots) < p.min_robots:
        return replace(state, recent=recent), ended
    start = min(r.ts for r in recent)
    incident = anomaly_id("site", anomaly.site, start)
    opened = Anomaly(
        id=incident, status="open", robot_id="", sector=anomaly.sector, site=anomaly.site, model="",
        detector="site_incident", signal="", severity="critical", score=float(len(robots)),
        start_ts=start, ts=ts, evidence={"robots": sorted(robots)},
    )
    # Each robot anomaly is tagged as it was opened (its own start, detector, evidence), at this instant.
    causes = [replace(r, status="update", ts=ts, caused_by=incident) for r in recent]
    return SiteState(recent, incident, start, ts, opened), [*ended, opened, *causes]


def expire(state: SiteState, now: float, p: IncidentParams = IncidentParams()) -> tuple[SiteState, list[Anomaly]]:
    """Resolve the site's incident once no robot has opened an anomaly for `quiet_s` before `now`."""
    if state.incident is None or state.opened is None or now - state.last <= p.quiet_s:
        return state, []
    end = state.last + p.quiet_s
    resolved = replace(state.opened, status="resolved", ts=now, end_ts=end)
    return replace(state, incident=None, opened=None), [resolved]


def expire_all(sites: Mapping[str, SiteState], now: float,
               p: IncidentParams = IncidentParams()) -> tuple[dict[str, SiteState], list[Anomaly]]:
    """`expire` for every site: the worker's timer and the replay fold's beat both call this."""
    states: dict[str, SiteState] = {}
    ended: list[Anomaly] = []
    for name, state in sites.items():
        states[name], found = expire(state, now, p)
        ended += found
    return states, ended

"""Site incidents: open on many robots of one site, update while they last, resolve when quiet."""

from __future__ import annotations

from twin.detect.findings import Anomaly
from twin.detect.incidents import IncidentParams, SiteState, correlate, expire, expire_all

P = IncidentParams(min_robots=3, window_s=60.0, quiet_s=300.0)


def opening(robot: str, ts: float, site: str = "retail-london-01") -> Anomaly:
    return Anomaly(id=f"a-{robot}-{ts}", status="open", robot_id=robot, sector="retail", site=site, model="amr",
                   detector="band", signal="joint1_current_a", severity="critical", score=5.0, start_ts=ts, ts=ts)


def feed(state: SiteState, *anomalies: Anomaly) -> tuple[SiteState, list[Anomaly]]:
    out: list[Anomaly] = []
    for anomaly in anomalies:
        state, found = correlate(state, anomaly, P)
        out += found
    return state, out


def test_an_incident_opens_on_the_third_robot_within_the_window() -> None:
    state, out = feed(SiteState(), opening("r1", 0), opening("r2", 10))
    assert out == [] and state.incident is None
    state, out = feed(state, opening("r3", 20))
    incident = out[0]
    assert incident.detector == "site_incident" and incident.status == "open" and incident.start_ts == 0
    assert incident.evidence == {"robots": ["r1", "r2", "r3"]}
    assert {(a.robot_id, a.caused_by) for a in out[1:]} == {(r, incident.id) for r in ("r1", "r2", "r3")}


def test_robots_spread_wider_than_the_window_open_nothing() -> None:
    _, out = feed(SiteState(), opening("r1", 0), opening("r2", 40), opening("r3", 80))
    assert out == []


def test_it_resolves_once_quiet_and_only_once() -> None:
    state, out = feed(SiteState(), opening("r1", 0), opening("r2", 1), opening("r3", 2), opening("r4", 100))
    incident = out[0]
    assert out[-1].caused_by == incident.id and out[-1].status == "update"
    assert expire(state, 100 + 300, P) == (state, [])  # not quiet long enough yet
    state, ended = expire(state, 450, P)
    assert [(a.id, a.status, a.end_ts, a.ts) for a in ended] == [(incident.id, "resolved", 400.0, 450)]
    assert ended[0].evidence == incident.evidence and ended[0].site == incident.site
    assert state.incident is None and expire(state, 1000, P) == (state, [])


def test_an_opening_after_the_quiet_spell_resolves_the_old_incident_first() -> None:
    state, out = feed(SiteState(), opening("r1", 0), opening("r2", 1), opening("r3", 2))
    old = out[0].id
    state, out = feed(state, opening("r5", 1000))
    assert [(a.id, a.status) for a in out] == [(old, "resolved")]
    assert state.incident is None
    _, out = feed(state, opening("r6", 1001), opening("r7", 1002))
    assert out[0].detector == "site_incident" and out[0].status == "open" and out[0].id != old


def test_expire_all_resolves_only_the_quiet_sites() -> None:
    quiet, _ = feed(SiteState(), opening("r1", 0), opening("r2", 1), opening("r3", 2))
    busy, _ = feed(SiteState(), *(opening(r, 300, site="retail-paris-01") for r in ("p1", "p2", "p3")))
    sites, ended = expire_all({"retail-london-01": quiet, "retail-paris-01": busy}, 400, P)
    assert [(a.site, a.status) for a in ended] == [("retail-london-01", "resolved")]
    assert sites["retail-london-01"].incident is None and sites["retail-paris-01"] == busy


def test_the_anomalies_tagged_with_the_incident_keep_their_own_start_and_detector() -> None:
    # An alert's identity is its id and start: a tag carrying another robot's start would
    # post the same alert twice with two starts (seen at Alertmanager after a broker bounce).
    first = Anomaly(id="a-r1", status="open", robot_id="r1", sector="retail", site="retail-london-01", model="amr",
                    detector="silence", signal="", severity="warning", score=2.0, start_ts=-30.0, ts=0.0)
    _, out = feed(SiteState(), first, opening("r2", 10), opening("r3", 20))
    tags = {a.id: a for a in out if a.caused_by}
    assert tags["a-r1"].start_ts == -30.0 and tags["a-r1"].detector == "silence" and tags["a-r1"].ts == 20
    assert tags["a-r2-10"].start_ts == 10 and tags["a-r2-10"].robot_id == "r2"

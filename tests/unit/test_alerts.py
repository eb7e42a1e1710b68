"""Anomaly messages as Alertmanager alerts, and the refused ones kept for the retry."""

from __future__ import annotations

from datetime import datetime

from msgspec.structs import replace

from streams.worker.alerting import KEEPALIVE_S, Unposted, to_alert
from twin.detect.findings import Anomaly

OPEN = Anomaly(id="a1", status="open", robot_id="r1", sector="retail", site="retail-london-01", model="amr",
               detector="band", signal="joint1_current_a", severity="critical", score=5.0, start_ts=1000.0, ts=1005.0,
               evidence={"value": 30.0})


def at(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def test_an_open_anomaly_is_an_alert_kept_alive_past_now() -> None:
    alert = to_alert(OPEN, "http://worker", now=2000.0)
    assert alert["labels"]["alertname"] == "FleetRobotAnomaly" and alert["labels"]["robot_id"] == "r1"
    assert alert["annotations"]["twin"] == "http://worker/twins/r1"
    assert alert["annotations"]["replay"] == "fleet-twin replay --robot r1 --from 400 --to 1065"
    assert at(alert["startsAt"]) == 1000.0 and at(alert["endsAt"]) == 2000.0 + KEEPALIVE_S


def test_a_resolved_site_incident_ends_when_it_ended() -> None:
    incident = replace(OPEN, id="s1", robot_id="", model="", detector="site_incident", status="resolved", end_ts=1400.0)
    alert = to_alert(incident, "http://worker", now=2000.0)
    assert alert["labels"]["alertname"] == "FleetSiteIncident" and "robot_id" not in alert["labels"]
    assert "twin" not in alert["annotations"] and "replay" not in alert["annotations"]
    assert at(alert["endsAt"]) == 1400.0


def test_unposted_keeps_the_newest_message_per_anomaly_and_drops_the_oldest_beyond_its_limit() -> None:
    waiting = Unposted(limit=2)
    a, b, c = (replace(OPEN, id=i) for i in ("a", "b", "c"))
    waiting.add([a, b])
    newer_a = replace(a, status="resolved", end_ts=1010.0)
    waiting.add([newer_a])  # a is now the newest: b goes first
    waiting.add([c])
    assert waiting.snapshot() == {"a": newer_a, "c": c}


def test_posting_forgets_only_what_was_posted() -> None:
    waiting = Unposted()
    waiting.add([OPEN])
    taken = waiting.snapshot()
    resolved = replace(OPEN, status="resolved", end_ts=1010.0)
    waiting.add([resolved])  # arrived while the retry was posting the opening
    waiting.posted(taken)
    assert waiting.snapshot() == {"a1": resolved}
    waiting.posted(waiting.snapshot())
    assert len(waiting) == 0

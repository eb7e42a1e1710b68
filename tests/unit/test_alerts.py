"""Anomaly messages as Alertmanager alerts, and the refused ones kept for the retry."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from types import SimpleNamespace

import httpx
import msgspec
from msgspec.structs import replace

from streams.settings import Settings
from streams.worker.alerting import KEEPALIVE_S, AlertSink, Unposted, to_alert
from streams.worker.ingest import LogMessage
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


class Alertmanager:
    """Alertmanager's side of the wire: the states it received, in order; the first post answers slowly."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str]] = []
        self.posts = 0

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.posts += 1
        for alert in json.loads(request.content):
            self.received.append((alert["labels"]["anomaly_id"], alert["endsAt"]))
        if self.posts == 1:
            await asyncio.sleep(0.2)  # the resolution is in, its answer (and the write of `sent`) not yet
        return httpx.Response(200)


class Written:
    """The `sent` table and its changelog writer, in memory."""

    def __init__(self, rows: dict[str, bytes]) -> None:
        self.rows = rows

    async def write(self, table: dict[str, bytes], items: dict[str, tuple[int, bytes | None]]) -> None:
        for key, (_, value) in items.items():
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value


def test_a_keep_alive_during_the_post_of_a_resolution_does_not_reopen_the_alert() -> None:
    now = time.time()  # a recent resolution: the keep-alive does not forget it yet
    resolved = replace(OPEN, status="resolved", end_ts=now, ts=now)
    sent = {OPEN.id: msgspec.json.encode(OPEN)}
    alertmanager = Alertmanager()

    async def run() -> None:
        client = SimpleNamespace(client=httpx.AsyncClient(transport=httpx.MockTransport(alertmanager.handle)))
        sink = AlertSink(Settings(), sent, Written(sent), client, lambda key: 0)
        message = LogMessage("fleet.anomalies", 0, 7, 1010.0, b"retail-london-01", msgspec.json.encode(resolved))
        taking = asyncio.create_task(sink.take([(message, resolved)]))
        await asyncio.sleep(0.05)  # the agent is posting the resolution when the keep-alive timer fires
        await sink.keep_alive()
        await taking

    asyncio.run(run())
    assert alertmanager.received[0] == (OPEN.id, to_alert(resolved, "", 0.0)["endsAt"])
    assert alertmanager.received[-1] == alertmanager.received[0], alertmanager.received  # nothing re-opened it
    assert msgspec.json.decode(sent[OPEN.id], type=Anomaly) == resolved


def test_an_opening_refused_during_an_outage_is_not_retried_after_its_resolution_was_posted() -> None:
    now = time.time()
    resolved = replace(OPEN, status="resolved", end_ts=now, ts=now)
    sent: dict[str, bytes] = {}
    received: list[str] = []

    async def handle(request: httpx.Request) -> httpx.Response:
        if not received and not sent:
            received.append("refused")
            return httpx.Response(503)  # Alertmanager down for the opening
        received.extend(alert["endsAt"] for alert in json.loads(request.content))
        return httpx.Response(200)

    async def run() -> None:
        client = SimpleNamespace(client=httpx.AsyncClient(transport=httpx.MockTransport(handle)))
        sink = AlertSink(Settings(), sent, Written(sent), client, lambda key: 0)
        for offset, anomaly in enumerate((OPEN, resolved)):
            message = LogMessage("fleet.anomalies", 0, offset, now, b"k", msgspec.json.encode(anomaly))
            await sink.take([(message, anomaly)])
        await sink.retry_unposted()
        assert len(sink.unposted) == 0

    asyncio.run(run())
    assert received == ["refused", to_alert(resolved, "", 0.0)["endsAt"]]

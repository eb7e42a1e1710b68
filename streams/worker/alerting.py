"""Anomalies to Alertmanager: maintenance's alerts, with their context.

An open anomaly becomes an Alertmanager alert (labels to route, group and
inhibit on; annotations with the evidence, the twin's URL and the exact replay
command); it is re-posted while open, as Prometheus does, so it outlives
Alertmanager restarts, and posted with `endsAt` when the anomaly resolves.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import msgspec

from streams.settings import Settings
from streams.worker.ingest import LogMessage
from streams import links
from twin.detect.findings import Anomaly
from twin.fleet_fold import alert_forgotten, alert_is_news

log = logging.getLogger(__name__)

ALERTNAMES = {"site_incident": "FleetSiteIncident", "rollout": "FleetRolloutRegression",
              "rollout_gate": "FleetRolloutHalted"}
KEEPALIVE_S = 300.0
"""An open alert is re-posted well within this: Alertmanager resolves alerts it stops hearing about."""
RETRY_S = 5.0
"""How often alerts Alertmanager refused are posted again."""
UNPOSTED_MAX = 50_000
"""Refused alerts kept for the retry, at most: the oldest go first (open ones still come back
with the keep-alive; only a resolution would then wait for Alertmanager's own `endsAt`)."""


ANOMALY_DECODER = msgspec.json.Decoder(Anomaly)


class TableWriter(Protocol):
    """Where `sent` is written (`streams.worker.table.ChangelogWriter`): returns once it is durable."""

    async def write(self, table: Any, items: dict[str, tuple[int, bytes | None]]) -> None: ...


class AlertSink:
    """The alerts agent's work: post each anomaly message that is news to Alertmanager.

    `sent` (a table, so it survives restarts) holds the last message taken per
    anomaly: a worker that restarts and reads the same messages again posts
    nothing twice, not even an opening whose resolution it already sent; open
    alerts are kept alive from it; resolved ones leave it after a day
    (`twin.fleet_fold` has the rules). A batch of messages is one request. When
    Alertmanager refuses, the batch waits in `unposted` for the retry timer and
    the stream goes on: a blocked agent would stall the worker's intake.

    Posts go out one at a time, each decided from `sent` as it stands (`_posting`):
    the keep-alive and the retry run on timers beside the agent, and a keep-alive
    that read an opening while the agent was posting its resolution would re-open
    the alert for `KEEPALIVE_S` (seen once in CI, docs/RELIABILITY.md).
    """

    def __init__(self, settings: Settings, sent: Any, changelog: TableWriter, client: Any,
                 partition_of: Callable[[bytes], int]) -> None:
        self._settings = settings
        self._partition_of = partition_of
        self._sent = sent
        self._changelog = changelog
        self._client = client
        self.unposted = Unposted()
        self._posting = asyncio.Lock()

    async def take(self, found: list[tuple[LogMessage, Anomaly]]) -> None:
        """Post the messages that are news (each with its raw bytes, kept in `sent`) in one request."""
        async with self._posting:
            await self._take(found)

    async def _take(self, found: list[tuple[LogMessage, Anomaly]]) -> None:
        latest: dict[str, tuple[int, bytes | None]] = {}
        news: dict[str, Anomaly] = {}
        for message, anomaly in found:
            before = latest[anomaly.id][1] if anomaly.id in latest else self._sent.get(anomaly.id)
            if not alert_is_news(ANOMALY_DECODER.decode(before) if before is not None else None, anomaly):
                continue
            news[anomaly.id] = anomaly
            latest[anomaly.id] = (message.partition, message.value)
        if news:
            if await self.post([*news.values()]):
                self.unposted.superseded(news)  # an older message still waiting must not follow these
            else:
                self.unposted.add(news.values())
        await self._changelog.write(self._sent, latest)

    async def post(self, found: list[Anomaly]) -> bool:
        now = time.time()
        return await post(self._client.client, self._settings.alertmanager_url,
                          [to_alert(a, self._settings.web_url(), now) for a in found])

    async def retry_unposted(self) -> None:
        async with self._posting:
            waiting = self.unposted.snapshot()
            if waiting and await self.post([*waiting.values()]):
                self.unposted.posted(waiting)

    async def keep_alive(self) -> None:
        """Re-post every open alert (Alertmanager resolves alerts it stops hearing of); forget old resolutions.

        A forgotten one is deleted by a tombstone in the partition its messages came
        from (the anomalies topic is keyed by site, or robot model): a timer has no
        current event for Faust to take the partition from.
        """
        async with self._posting:
            now = time.time()
            known = [ANOMALY_DECODER.decode(v) for v in list(self._sent.values())]
            await self.post([a for a in known if a.status != "resolved"])
            await self._changelog.write(self._sent, {a.id: (self._partition_of((a.site or a.model).encode()), None)
                                                     for a in known if alert_forgotten(a, now)})


class Unposted:
    """The newest message of each anomaly Alertmanager has refused, waiting to be posted again.

    In memory and bounded: it bridges an outage of Alertmanager without holding
    the anomalies stream (which would stall the worker's intake behind it).
    """

    def __init__(self, limit: int = UNPOSTED_MAX) -> None:
        self._waiting: dict[str, Anomaly] = {}
        self._limit = limit

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, found: Iterable[Anomaly]) -> None:
        for anomaly in found:
            self._waiting.pop(anomaly.id, None)  # newest last: the oldest are dropped first
            self._waiting[anomaly.id] = anomaly
        over = len(self._waiting) - self._limit
        for _ in range(max(over, 0)):
            del self._waiting[next(iter(self._waiting))]
        if over > 0:
            log.warning("%d refused alerts dropped (%d kept for the retry)", over, self._limit)

    def snapshot(self) -> dict[str, Anomaly]:
        return dict(self._waiting)

    def superseded(self, posted: Iterable[str]) -> None:
        """Forget what waits for these anomalies: a newer message of each was just posted."""
        for anomaly_id in posted:
            self._waiting.pop(anomaly_id, None)

    def posted(self, sent: dict[str, Anomaly]) -> None:
        """Forget what was posted, unless a newer message of the same anomaly came meanwhile."""
        for anomaly_id, anomaly in sent.items():
            if self._waiting.get(anomaly_id) is anomaly:
                del self._waiting[anomaly_id]


def to_alert(anomaly: Anomaly, twin_base_url: str, now: float) -> dict[str, Any]:
    """The Alertmanager v2 alert for one anomaly message."""
    labels = {
        "alertname": ALERTNAMES.get(anomaly.detector, "FleetRobotAnomaly"),
        "sector": anomaly.sector or "fleet", "site": anomaly.site, "robot_id": anomaly.robot_id,
        "model": anomaly.model, "severity": anomaly.severity, "detector": anomaly.detector,
        "signal": anomaly.signal, "anomaly_id": anomaly.id,
    }
    what = anomaly.robot_id or anomaly.site or anomaly.model
    annotations = {
        "summary": f"{anomaly.detector} on {what}" + (f" ({anomaly.signal})" if anomaly.signal else "")
                   + f": score {anomaly.score:g}",
        "since": _iso(anomaly.start_ts),
        "evidence": json.dumps(anomaly.evidence, sort_keys=True, default=str),
        "twin": links.twin_url(twin_base_url, anomaly.robot_id),
        "replay": links.replay_command(anomaly),
    }
    if anomaly.caused_by:
        annotations["caused_by"] = anomaly.caused_by
    ends = anomaly.end_ts if anomaly.status == "resolved" and anomaly.end_ts else now + KEEPALIVE_S
    return {
        "labels": {k: v for k, v in labels.items() if v},
        "annotations": {k: v for k, v in annotations.items() if v},
        "startsAt": _iso(anomaly.start_ts),
        "endsAt": _iso(max(ends, anomaly.start_ts)),
    }


async def post(client: httpx.AsyncClient, url: str, alerts: list[dict[str, Any]]) -> bool:
    """POST to Alertmanager; False (logged) when it cannot be reached, to retry later."""
    if not alerts:
        return True
    try:
        response = await client.post(f"{url}/api/v2/alerts", json=alerts, timeout=5.0)
        response.raise_for_status()
        return True
    except httpx.HTTPError as err:
        log.warning("alertmanager at %s: %s; will retry", url, err)
        return False


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()

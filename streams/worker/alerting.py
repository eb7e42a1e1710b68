"""Anomalies to Alertmanager: maintenance's alerts, with their context.

An open anomaly becomes an Alertmanager alert (labels to route, group and
inhibit on; annotations with the evidence, the twin's URL and the exact replay
command); it is re-posted while open, as Prometheus does, so it outlives
Alertmanager restarts, and posted with `endsAt` when the anomaly resolves.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import httpx

from streams import links
from twin.detect.findings import Anomaly

log = logging.getLogger(__name__)

ALERTNAMES = {"site_incident": "FleetSiteIncident", "rollout": "FleetRolloutRegression"}
KEEPALIVE_S = 300.0
"""An open alert is re-posted well within this: Alertmanager resolves alerts it stops hearing about."""
FORGET_RESOLVED_S = 86400.0
"""A resolved anomaly is remembered this long (event time), far beyond any redelivery after a restart."""
RETRY_S = 5.0
"""How often alerts Alertmanager refused are posted again."""
UNPOSTED_MAX = 50_000
"""Refused alerts kept for the retry, at most: the oldest go first (open ones still come back
with the keep-alive; only a resolution would then wait for Alertmanager's own `endsAt`)."""


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

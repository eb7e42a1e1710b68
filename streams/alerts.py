"""Anomalies to Alertmanager: maintenance's alerts, with their context.

An open anomaly becomes an Alertmanager alert (labels to route, group and
inhibit on; annotations with the evidence, the twin's URL and the exact replay
command); it is re-posted while open, as Prometheus does, so it outlives
Alertmanager restarts, and posted with `endsAt` when the anomaly resolves.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import httpx

from twin.detect.findings import Anomaly

log = logging.getLogger(__name__)

ALERTNAMES = {"site_incident": "FleetSiteIncident", "rollout": "FleetRolloutRegression"}
KEEPALIVE_S = 300.0
"""An open alert is re-posted well within this: Alertmanager resolves alerts it stops hearing about."""
FORGET_RESOLVED_S = 86400.0
"""A resolved anomaly is remembered this long (event time), far beyond any redelivery after a restart."""


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
        "twin": f"{twin_base_url}/twins/{anomaly.robot_id}" if anomaly.robot_id else "",
        "replay": anomaly.links.get("replay", ""),
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

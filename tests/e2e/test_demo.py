"""`make up` alone shows faults: the stack as `up` starts it (its own ports, topics and state,
the demo scenario as it ships) puts robot anomalies of several detectors, a site incident and a
rollout regression at Alertmanager within minutes."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from streams.local.stack import Stack
from streams.settings import Settings
from tests.support.net import free_port

WITHIN_S = 240.0
"""From the simulator's start; the demo's faults all begin in the first 210 s of a cycle."""


@pytest.fixture
def demo(broker: str, tmp_path: Path) -> Iterator[Settings]:
    run = uuid.uuid4().hex[:8]
    settings = Settings(
        app_id=f"fleet-twin-demo-{run}", topic_prefix=f"demo-{run}.", state_dir=tmp_path,
        web_port=free_port(), prometheus_port=free_port(), alertmanager_port=free_port(), partitions=2,
        api_token=SecretStr(secrets.token_urlsafe(32)),
    )
    assert settings.sim_scenario == "demo" and settings.sim_robots == 360  # what `make up` runs
    stack = Stack(settings)
    try:
        stack.up()  # reuses the session's broker: nothing of it is stopped by `down`
        yield settings
    finally:
        stack.down()


def alerts(settings: Settings) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = httpx.get(f"{settings.alertmanager_url}/api/v2/alerts", timeout=10).json()
    return found


def test_the_demo_shows_anomalies_a_site_incident_and_a_rollout_within_minutes(demo: Settings) -> None:
    started = time.monotonic()
    deadline = started + WITHIN_S
    seen: dict[str, float] = {}
    detectors: set[str] = set()
    while time.monotonic() < deadline:
        for alert in alerts(demo):
            labels = alert["labels"]
            seen.setdefault(labels["alertname"], round(time.monotonic() - started))
            if labels["alertname"] == "FleetRobotAnomaly":
                detectors.add(labels["detector"])
        if {"FleetSiteIncident", "FleetRolloutRegression"} <= seen.keys() and len(detectors) >= 4:
            break
        time.sleep(5)
    print(f"first seen after (s): {seen}; robot detectors: {sorted(detectors)}")
    assert {"FleetRobotAnomaly", "FleetSiteIncident", "FleetRolloutRegression"} <= seen.keys(), seen
    assert len(detectors) >= 4, detectors

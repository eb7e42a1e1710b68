"""Alertmanager down: the worker keeps each refused alert until Alertmanager takes it.

While Alertmanager refuses, the refused alerts wait in the worker and are posted
again every few seconds (the anomalies stream goes on), so the alert arrives soon
after Alertmanager is back, well before the keep-alive would re-post it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from streams.worker.alerting import RETRY_S
from streams.settings import Settings
from tests.support.alerts import AlertRecorder
from tests.support.own import own_worker
from tests.support.telemetry import FAULT, NORMAL, drive
from tests.support.waiting import eventually

BACK_WITHIN_S = 20.0
"""After Alertmanager answers again, the alert must be there within this (the keep-alive would take up to 60 s)."""


@pytest.fixture
def refusing(private_alertmanager: str) -> Iterator[AlertRecorder]:
    proxy = AlertRecorder(private_alertmanager)
    proxy.refusing = True
    yield proxy
    proxy.server.shutdown()


@pytest.fixture
def worker_of_its_own(broker: str, settings: Settings, tmp_path: Path, refusing: AlertRecorder) -> Iterator[Settings]:
    """A worker of this test's own on the session broker (own topics), posting through `refusing`."""
    with own_worker(settings, tmp_path / "state", "amdown", alertmanager_port=refusing.port) as mine:
        yield mine


def band_alerts(alerts: list[dict], robot: str) -> list[dict] | None:
    return [a for a in alerts if a["labels"].get("robot_id") == robot and a["labels"].get("detector") == "band"] or None


def test_an_alert_refused_by_alertmanager_is_posted_once_it_is_back(
        worker_of_its_own: Settings, refusing: AlertRecorder, private_alertmanager: str) -> None:
    robot = f"amdown-{uuid.uuid4().hex[:8]}"
    asyncio.run(drive(worker_of_its_own, robot, time.time() - 140, NORMAL + FAULT))

    eventually(lambda: band_alerts(refusing.refused, robot), timeout_s=60)

    def retried() -> bool | None:
        return len(band_alerts(refusing.refused, robot) or []) >= 3 or None

    assert eventually(retried, timeout_s=4 * RETRY_S), "the worker did not retry while Alertmanager refused"
    assert not band_alerts(refusing.posted, robot)

    back = time.time()
    refusing.refusing = False
    posted = eventually(lambda: band_alerts(refusing.posted, robot), timeout_s=BACK_WITHIN_S)
    assert posted[0]["posted_at"] - back < BACK_WITHIN_S

    def at_alertmanager() -> list[dict] | None:
        got = httpx.get(f"{private_alertmanager}/api/v2/alerts", params={"filter": f'robot_id="{robot}"'}).json()
        return [a for a in got if a["labels"].get("detector") == "band"] or None

    fired = eventually(at_alertmanager, timeout_s=10)[0]
    assert fired["labels"]["signal"] == "joint1_current_a" and fired["status"]["state"] in ("active", "suppressed")

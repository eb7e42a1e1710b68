"""Maintenance alerts end to end: worker -> Alertmanager (real) -> webhook (real), grouped,
resolved when the fault ends, and suppressed by a silence.

The test runs a worker and an Alertmanager of its own. On the session's shared ones, the
robots other tests left silent at the same site open a site incident, which (rightly)
inhibits this test's robot alerts: what reaches maintenance would depend on test order."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from streams.settings import Settings
from tests.support.alerts import Webhook
from tests.support.net import free_port
from tests.support.own import own_worker
from tests.support.topics import read_dlq, send
from tests.support.telemetry import FAULT, NORMAL, drive
from tests.support.waiting import eventually


def received(webhook: Webhook, robot: str, status: str) -> list[dict[str, Any]] | None:
    found = [a for a in webhook.alerts() if a["labels"].get("robot_id") == robot
             and a["labels"].get("detector") == "band" and a["status"] == status]
    return found or None


@pytest.fixture
def own(broker: str, settings: Settings, tmp_path: Path) -> Iterator[tuple[Settings, Webhook]]:
    """A worker on topics of its own, posting to an Alertmanager of its own that notifies a webhook."""
    hook = Webhook(free_port())
    try:
        with own_worker(settings, tmp_path / "state", "alerts", alertmanager=True, alertmanager_port=free_port(),
                        maintenance_webhook=f"http://127.0.0.1:{hook.server.server_port}/hook") as mine:
            yield mine, hook
    finally:
        hook.server.shutdown()


async def test_an_alert_arrives_with_context_groups_resolves_and_can_be_silenced(
    own: tuple[Settings, Webhook]
) -> None:
    settings, webhook = own
    alertmanager = settings.alertmanager_url
    run = uuid.uuid4().hex[:6]
    first, second, silenced = f"al-{run}-a", f"al-{run}-b", f"al-{run}-c"
    start = time.time() - 140
    # Junk on fleet.anomalies (this worker's own topics) ahead of the site's messages, with their
    # key (so in their partition): the worker's reader of that topic dead-letters it and goes on.
    await send(settings, settings.anomalies_topic, b"retail-london-01", b"{not an anomaly")
    await drive(settings, first, start, NORMAL + FAULT)
    await drive(settings, second, start, NORMAL + FAULT)

    fired = eventually(lambda: received(webhook, first, "firing"), timeout_s=60)[0]
    assert fired["labels"]["alertname"] == "FleetRobotAnomaly"
    assert fired["labels"]["signal"] == "joint1_current_a" and fired["labels"]["severity"] == "critical"
    assert fired["annotations"]["twin"].endswith(f"/twins/{first}")
    assert fired["annotations"]["replay"].startswith(f"fleet-twin replay --robot {first}")
    assert "30.0" in fired["annotations"]["evidence"]
    junk = await read_dlq(settings, b"retail-london-01", 1)
    assert [dict(m.headers)["reason"] for m in junk] == [b"undecodable"]
    assert dict(junk[0].headers)["source_topic"] == settings.anomalies_topic.encode()
    # the webhook's own token from the settings, never the twin API's
    assert settings.maintenance_webhook_token and settings.api_token
    assert set(webhook.authorizations) == {f"Bearer {settings.maintenance_webhook_token.get_secret_value()}"}

    def grouped() -> bool | None:
        for note in webhook.received:
            # Prometheus's own alerts reach the same Alertmanager: they carry no detector label
            robots = {a["labels"].get("robot_id") for a in note["alerts"] if a["labels"].get("detector") == "band"}
            if {first, second} <= robots:
                return True
        return None

    assert eventually(grouped, timeout_s=60)
    await drive(settings, first, start, [4.0] * 40, first_seq=96)  # the fault is over
    assert eventually(lambda: received(webhook, first, "resolved"), timeout_s=60)

    ends = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    silence = {"matchers": [{"name": "robot_id", "value": silenced, "isRegex": False}],
               "startsAt": datetime.now(UTC).isoformat(), "endsAt": ends,
               "createdBy": "test", "comment": "robot in planned maintenance"}
    assert httpx.post(f"{alertmanager}/api/v2/silences", json=silence).status_code == 200
    await drive(settings, silenced, start, NORMAL + FAULT)

    def suppressed() -> list[dict[str, Any]] | None:
        got = httpx.get(f"{alertmanager}/api/v2/alerts", params={"filter": f'robot_id="{silenced}"'}).json()
        return [a for a in got if a["status"]["state"] == "suppressed"] or None

    assert eventually(suppressed, timeout_s=60)
    time.sleep(3)  # several group intervals: nothing may reach maintenance
    assert not [a for a in webhook.alerts() if a["labels"].get("robot_id") == silenced]

"""The twin API wants its bearer token; /healthz and /metrics stay open for probes and
Prometheus; a request routed to the worker owning the robot keeps its token; Alertmanager's
notifications reach the worker's own inbox with the token from a credentials file."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from pydantic import SecretStr

from streams.settings import Settings
from streams.local.stack import Stack
from streams.topics import ensure_topics
from tests.support.net import auth, free_port
from tests.support.telemetry import kcat_produce, telemetry
from tests.support.waiting import eventually

PRIVATE = ["/twins", "/twins/{robot}", "/twins/{robot}/history", "/fleet/summary", "/maintenance/inbox"]


@pytest.fixture(scope="module")
def robot(api: httpx.Client, settings: Settings) -> str:
    robot = f"auth-{uuid.uuid4().hex[:8]}"
    kcat_produce(settings, robot, telemetry(robot))
    eventually(lambda: api.get(f"/twins/{robot}").json() if api.get(f"/twins/{robot}").status_code == 200
               else None)
    return robot


def wrong_headers(token: str) -> list[dict[str, str]]:
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    return [
        {},
        {"Authorization": f"Bearer {flipped}"},  # same length
        {"Authorization": f"Bearer {token[:-1]}"},  # shorter
        {"Authorization": f"Bearer {token}x"},  # longer
        {"Authorization": "Bearer"},
        {"Authorization": token},  # no scheme
        {"Authorization": f"Basic {token}"},
    ]


@pytest.mark.parametrize("path", PRIVATE)
def test_fleet_data_is_401_without_the_token_and_200_with_it(
    worker: str, settings: Settings, robot: str, path: str
) -> None:
    assert settings.api_token
    url = f"{worker}{path.format(robot=robot)}"
    for headers in wrong_headers(settings.api_token.get_secret_value()):
        r = httpx.get(url, headers=headers)
        assert r.status_code == 401, (headers.get("Authorization", "")[:8], r.text)
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert robot not in r.text
    ok = httpx.get(url, headers=auth(settings))
    assert ok.status_code == 200, ok.text
    if "{robot}" in path:
        assert ok.json()["robot_id"] == robot


def test_posting_to_the_inbox_wants_the_token_too(worker: str, settings: Settings) -> None:
    note = {"receiver": "test", "status": "firing", "alerts": [], "marker": uuid.uuid4().hex}
    assert httpx.post(f"{worker}/maintenance/inbox", json=note).status_code == 401
    assert httpx.post(f"{worker}/maintenance/inbox", json=note, headers=auth(settings)).status_code == 200
    inbox = httpx.get(f"{worker}/maintenance/inbox", headers=auth(settings)).json()["notifications"]
    assert [n for n in inbox if n.get("marker") == note["marker"]]


def test_healthz_and_metrics_stay_open_and_name_no_robot(worker: str, robot: str) -> None:
    health = httpx.get(f"{worker}/healthz")
    assert health.status_code == 200 and set(health.json()) == {"status", "app_id", "partitions", "telemetry_partitions"}
    metrics = httpx.get(f"{worker}/metrics", timeout=30)
    assert metrics.status_code == 200 and "fleet_robots{" in metrics.text
    assert robot not in metrics.text and "robot_id" not in metrics.text


def test_fausts_own_pages_that_would_bypass_the_token_are_off(worker: str, settings: Settings, robot: str) -> None:
    for path in ("/table/", f"/table/twins/{robot}/", "/router/", f"/router/twins/{robot}/", "/graph/",
                 "/assignment/"):
        for headers in ({}, auth(settings)):
            r = httpx.get(f"{worker}{path}", headers=headers)
            assert r.status_code == 404 and robot not in r.text, (path, r.status_code)
    assert httpx.get(f"{worker}/").json() == {"status": "OK"}


def test_alertmanager_notifies_the_workers_inbox_with_the_token(
    worker: str, broker: str, settings: Settings, tmp_path: Path
) -> None:
    """An Alertmanager of its own whose webhook is the worker's inbox (no outside webhook set)."""
    mine = settings.model_copy(update={"maintenance_webhook": "", "alertmanager_port": free_port(),
                                       "state_dir": tmp_path})
    stack = Stack(mine)
    config = stack.render_alertmanager()
    assert settings.api_token and settings.api_token.get_secret_value() not in config.read_text()
    secret = Path(config.parent / "secrets" / "webhook-token")
    assert secret.stat().st_mode & 0o777 == 0o600
    marker = uuid.uuid4().hex
    alert = {"labels": {"alertname": "FleetTwinAuthProbe", "sector": "mining", "site": "mining-pilbara-01",
                        "marker": marker}, "annotations": {"summary": "probe"}}
    try:
        stack.start_alertmanager()
        assert httpx.post(f"{mine.alertmanager_url}/api/v2/alerts", json=[alert]).status_code == 200

        def arrived() -> list[dict[str, Any]] | None:
            inbox = httpx.get(f"{worker}/maintenance/inbox", headers=auth(settings)).json()["notifications"]
            found = [a for n in inbox for a in n["alerts"] if a["labels"].get("marker") == marker]
            return found or None

        assert eventually(arrived, timeout_s=60)[0]["status"] == "firing"
    finally:
        stack.procs.stop("alertmanager")


@pytest.fixture(scope="module")
def two_workers(broker: str, settings: Settings, tmp_path_factory: pytest.TempPathFactory,
                ) -> Iterator[tuple[Settings, list[str]]]:
    """Two workers of an app of their own (own topics), sharing its partitions; their /metrics
    wants a token too."""
    run = uuid.uuid4().hex[:8]
    own = settings.model_copy(update={
        "app_id": f"fleet-twin-auth-{run}", "topic_prefix": f"auth-{run}.", "partitions": 4,
        "state_dir": tmp_path_factory.mktemp("auth-state"), "prometheus_port": free_port(),
        "metrics_token": SecretStr(secrets.token_urlsafe(24))})
    asyncio.run(ensure_topics(own))
    ports = [free_port(), free_port()]
    stacks = [Stack(own.model_copy(update={"web_port": p})) for p in ports]
    try:
        for n, stack in enumerate(stacks):
            stack.start_worker(f"worker-{n}")

        def balanced() -> bool | None:
            held = [httpx.get(f"{own.web_url(p)}/healthz").json() for p in ports]
            return all(h["status"] == "ok" and h["partitions"] > 0 for h in held) or None

        eventually(balanced, timeout_s=90)
        yield own, [own.web_url(p) for p in ports]
    finally:
        for n, stack in enumerate(stacks):
            stack.procs.stop(f"worker-{n}")


async def test_a_request_routed_to_the_owning_worker_keeps_its_token(
    two_workers: tuple[Settings, list[str]]
) -> None:
    own, workers = two_workers
    robots = [f"route-{uuid.uuid4().hex[:8]}" for _ in range(16)]  # spread over the 4 partitions
    # Keys partitioned as Kafka's Java client and the simulator do (murmur2), which is what
    # Faust's router assumes; kcat's default partitioner (crc32) would put twins elsewhere.
    producer = AIOKafkaProducer(bootstrap_servers=own.bootstrap)
    await producer.start()
    try:
        for robot in robots:
            await producer.send(own.telemetry_topic, telemetry(robot), key=robot.encode())
        await producer.flush()
    finally:
        await producer.stop()

    def everywhere(robot: str) -> bool | None:
        # each worker answers for every robot: the other's robots through Faust's table routing,
        # which forwards the request with its headers to the owner, who checks the token again
        codes = {httpx.get(f"{w}/twins/{robot}", headers=auth(own)).status_code for w in workers}
        return codes == {200} or None

    for robot in robots:
        eventually(lambda: everywhere(robot), timeout_s=60)
    for w in workers:
        assert {httpx.get(f"{w}/twins/{r}").status_code for r in robots} == {401}
    # a worker lists the robots it holds: one that does not hold them all answered for the
    # others through routing
    held = [set(httpx.get(f"{w}/twins", headers=auth(own), params={"limit": 1000}).json()["robots"]) for w in workers]
    assert any(not set(robots) <= h for h in held), held


def test_a_metrics_token_closes_metrics_and_prometheus_sends_it(two_workers: tuple[Settings, list[str]]) -> None:
    own, workers = two_workers
    assert own.metrics_token
    bearer = {"Authorization": f"Bearer {own.metrics_token.get_secret_value()}"}
    for w in workers:
        assert httpx.get(f"{w}/metrics").status_code == 401
        assert httpx.get(f"{w}/metrics", headers=auth(own)).status_code == 401  # the API token is not it
        assert httpx.get(f"{w}/metrics", headers=bearer).status_code == 200
        assert httpx.get(f"{w}/healthz").status_code == 200
    stack = Stack(own)
    ports = [int(w.rsplit(":", 1)[1]) for w in workers]
    try:
        stack.start_prometheus(ports)
        rendered = (own.state_dir / "prometheus" / "prometheus.yml").read_text()
        assert own.metrics_token.get_secret_value() not in rendered and "credentials_file" in rendered

        def scraped() -> list[str] | None:
            targets = httpx.get(f"http://127.0.0.1:{own.prometheus_port}/api/v1/targets").json()
            health = [t["health"] for t in targets["data"]["activeTargets"]
                      if t["labels"]["job"] == "fleet-twin-workers"]
            return health if health == ["up", "up"] else None

        eventually(scraped, timeout_s=60)
    finally:
        stack.procs.stop("prometheus")

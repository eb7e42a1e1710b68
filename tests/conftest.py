"""Fixtures shared by every tier.

Services are real: the broker is the project's own Kafka (reused when one
already answers on the configured port, started otherwise and stopped after),
Prometheus and Alertmanager come from the system packages, the worker is
`fleet-twin worker` in a subprocess. Each test session gets its own topic
prefix, app id, ports and state folder, so it can share a broker with a
running `make up` without either seeing the other's data.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import settings as hypothesis_settings
from pydantic import SecretStr

from streams.seeds import read_fleet
from streams.settings import Settings
from streams.local.stack import Stack
from streams.topics import ensure_topics
from tests.support.alerts import Webhook
from tests.support.budget import THOROUGH
from tests.support.net import auth, free_port
from twin.fleet import Fleet

ROOT = Path(__file__).resolve().parent.parent
TIERS = ("unit", "integration", "e2e")
"""The folders under tests/, each a marker of the same name (registered in pyproject.toml)."""

# `pytest --hypothesis-profile=thorough`: every property test with 10x hypothesis's default
# examples, and the costly ones (tests/support/budget.py) with their full budget.
hypothesis_settings.register_profile(THOROUGH, max_examples=1000)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test with its tier, the folder it lives in: `pytest -m unit` runs tests/unit only."""
    tests = ROOT / "tests"
    for item in items:
        tier = item.path.relative_to(tests).parts[0] if item.path.is_relative_to(tests) else None
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: a test belongs in tests/unit, tests/integration or tests/e2e")
        item.add_marker(tier)


@pytest.fixture(scope="session")
def fleet() -> Fleet:
    return read_fleet(ROOT / "seeds")


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    run = uuid.uuid4().hex[:8]
    return Settings(
        app_id=f"fleet-twin-test-{run}",
        topic_prefix=f"test-{run}.",
        web_port=free_port(),
        prometheus_port=free_port(),
        alertmanager_port=free_port(),
        state_dir=tmp_path_factory.mktemp("state"),
        scrape_interval="1s",
        silence_check_s=1.0,
        partitions=4,
        maintenance_webhook=f"http://127.0.0.1:{free_port()}/hook",
        maintenance_webhook_token=SecretStr(secrets.token_urlsafe(16)),
        api_token=SecretStr(secrets.token_urlsafe(32)),
        alert_group_wait="1s",
        alert_group_interval="2s",
    )


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Stack:
    return Stack(settings)


@pytest.fixture(scope="session")
def broker(stack: Stack, settings: Settings) -> Iterator[str]:
    """A real Kafka broker on the configured port, with this session's topics."""
    started = stack.start_kafka()
    try:
        asyncio.run(ensure_topics(settings))
        yield settings.bootstrap
    finally:
        if started:
            stack.stop_kafka()


@pytest.fixture(scope="session")
def worker(stack: Stack, broker: str, settings: Settings) -> Iterator[str]:
    """A `fleet-twin worker` process; yields its base URL."""
    try:
        stack.start_worker()
        yield settings.web_url()
    finally:
        stack.procs.stop("worker")


@pytest.fixture(scope="session")
def api(worker: str, settings: Settings) -> Iterator[httpx.Client]:
    """A client of the worker's twin API that sends the token."""
    with httpx.Client(base_url=worker, headers=auth(settings)) as client:
        yield client


@pytest.fixture(scope="session")
def prometheus(stack: Stack, worker: str, settings: Settings) -> Iterator[str]:
    """Prometheus from the system package, scraping the worker every second."""
    try:
        stack.start_prometheus([settings.web_port])
        yield f"http://127.0.0.1:{settings.prometheus_port}"
    finally:
        stack.procs.stop("prometheus")


@pytest.fixture(scope="session")
def webhook(settings: Settings) -> Iterator[Webhook]:
    hook = Webhook(int(settings.maintenance_webhook.split(":")[2].split("/")[0]))
    yield hook
    hook.server.shutdown()


@pytest.fixture(scope="session")
def alertmanager(stack: Stack, settings: Settings, webhook: Webhook) -> Iterator[str]:
    """Alertmanager from the system package with the project's config, notifying `webhook`."""
    try:
        stack.start_alertmanager()
        yield settings.alertmanager_url
    finally:
        stack.procs.stop("alertmanager")

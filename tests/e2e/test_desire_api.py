"""Desired state through the API and the CLI, against the real broker and a real worker:
no token, no change (401); a bad selector, unknown field or bad value is a 400 that says why
and leaves fleet.desired as it was; a good change is on fleet.desired, keyed for compaction,
with who, when, why and its id, before the 202; the CLI does the same round trip."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from pydantic import SecretStr

from streams.kafka_client import client_kwargs, partition_ids, read_topic
from streams.local.stack import Stack, settings_env
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.support.net import free_port
from tests.support.waiting import eventually
from twin.desired import DesiredChange, change_key, decode_change

AMR = {"model": "amr", "sector": "logistics"}


def desired_records(settings: Settings) -> list[Any]:
    """Every record of fleet.desired now (all its partitions: it has one), in offset order."""
    return asyncio.run(read_topic(settings, settings.desired_topic))


def published(settings: Settings, change_id: str) -> list[tuple[Any, DesiredChange]]:
    return [(r, c) for r in desired_records(settings) if (c := decode_change(r.value)).change_id == change_id]


def test_the_control_topics_are_made_as_the_contract_says(broker: str, settings: Settings) -> None:
    async def layout() -> tuple[dict[str, int], dict[str, str]]:
        counts = {t: len(await partition_ids(settings, t))
                  for t in (settings.desired_topic, settings.commands_topic, settings.rollouts_topic)}
        admin = AIOKafkaAdminClient(**client_kwargs(settings))
        await admin.start()
        try:
            (described,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC,
                                                                        settings.desired_topic)])
            return counts, {name: value for name, value, *_ in described.resources[0][4]}
        finally:
            await admin.close()

    counts, configs = asyncio.run(layout())
    assert counts == {settings.desired_topic: 1, settings.commands_topic: settings.partitions,
                      settings.rollouts_topic: 1}
    assert configs["cleanup.policy"] == "compact"


BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"selector": {"sector": "atlantis"}, "fields": {"ai_model": "policy-2.5.0"}}, "bad_selector",
     "unknown sector 'atlantis'"),
    ({"selector": {**AMR, "share": 1.5}, "fields": {"ai_model": "policy-2.5.0"}}, "bad_selector",
     "share must be in (0, 1]"),
    ({"selector": {"modle": "amr"}, "fields": {"ai_model": "policy-2.5.0"}}, "bad_selector", "unknown field `modle`"),
    ({"selector": AMR, "fields": {"ai_modle": "policy-2.5.0"}}, "unknown_field", "'ai_modle' is not desirable"),
    ({"selector": AMR, "fields": {"config.return_home_soc_pct": "20"}}, "unknown_field", "declares"),
    ({"selector": AMR, "fields": {"ai_model": "policy-9.9.9"}}, "bad_value", "allowed: policy-2.3.1"),
    ({"selector": AMR, "fields": {"ai_model": "policy-2.5.0", "config.max_speed_mps": "99"}}, "bad_value",
     "outside [0.1, 2.0]"),
    ({"selector": AMR, "fields": {"ai_model": "policy-2.5.0"}, "reason": ""}, "bad_value", "reason"),
]


def test_without_a_token_nothing_changes_and_a_bad_change_is_a_400_that_says_why(
        api: httpx.Client, worker: str, settings: Settings) -> None:
    before = len(desired_records(settings))
    good = {"selector": AMR, "fields": {"ai_model": "policy-2.5.0"}, "reason": "would be fine with a token"}
    assert settings.api_token
    token = settings.api_token.get_secret_value()
    for headers in ({}, {"Authorization": f"Bearer {token[:-1]}"}, {"Authorization": f"Basic {token}"}):
        for method in ("GET", "POST"):
            answer = httpx.request(method, f"{worker}/desired", json=good, headers=headers)
            assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Bearer"), answer.text
    for body, code, says in BAD:
        answer = api.post("/desired", json={"reason": f"bad {uuid.uuid4().hex}", **body})
        assert answer.status_code == 400, (body, answer.text)
        assert answer.json()["reason"] == code and says in answer.json()["error"], (body, answer.json())
    answer = api.post("/desired", content=b"{selector: amr}", headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and "not JSON" in answer.json()["error"]
    assert len(desired_records(settings)) == before  # nothing reached the topic


def test_a_change_is_on_the_topic_with_who_when_why_and_its_id_before_the_202(
        api: httpx.Client, settings: Settings) -> None:
    reason = f"canary of policy-2.5.0 ({uuid.uuid4().hex[:6]})"
    answer = api.post("/desired", json={"selector": {**AMR, "share": 0.05},
                                        "fields": {"ai_model": "policy-2.5.0", "config.safety_profile": "cautious"},
                                        "reason": reason})
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["changes"] == 2 and len(body["change_id"]) == 32
    records = published(settings, body["change_id"])  # read right after the 202: already there
    assert sorted(c.field for _, c in records) == ["ai_model", "config.safety_profile"]
    for record, change in records:
        assert (change.principal, change.reason, change.ts) == ("operator", reason, body["ts"])
        assert change.selector.share == 0.05 and change.selector.model == "amr"
        assert record.key == change_key(change) and record.timestamp == round(body["ts"] * 1000)

    def listed() -> list[dict[str, Any]] | None:
        mine = [c for c in api.get("/desired").json() if c["change_id"] == body["change_id"]]
        return mine if len(mine) == 2 else None

    shown = eventually(listed, timeout_s=30)  # the worker folds it back from the topic
    assert {(c["field"], c["value"], c["principal"], c["reason"]) for c in shown} == {
        ("ai_model", "policy-2.5.0", "operator", reason), ("config.safety_profile", "cautious", "operator", reason)}
    assert shown[0]["selector"] == {**AMR, "share": 0.05}


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings_env(settings), "COLUMNS": "250"}
    return subprocess.run([sys.executable, "-m", "streams", "desire", *args], env=env, capture_output=True,
                          text=True, timeout=60)


def test_the_cli_sets_lists_and_clears_through_the_api(api: httpx.Client, settings: Settings) -> None:
    reason = f"cli round trip {uuid.uuid4().hex[:6]}"
    done = cli(settings, "set", "--model", "amr", "--sector", "logistics", "--share", "0.1",
               "ai_model=policy-2.3.1", "config.max_speed_mps=1.5", "--reason", reason)
    assert done.returncode == 0, done.stdout + done.stderr
    change_id = done.stdout.split()[1]
    assert {(c.field, c.value, c.principal) for _, c in published(settings, change_id)} == {
        ("ai_model", "policy-2.3.1", "operator"), ("config.max_speed_mps", "1.5", "operator")}

    def listed() -> list[dict[str, Any]] | None:
        shown = json.loads(cli(settings, "list", "--json").stdout)
        return [c for c in shown if c["change_id"] == change_id] or None

    assert {c["reason"] for c in eventually(listed, timeout_s=30)} == {reason}
    table = eventually(lambda: out if change_id[:8] in (out := cli(settings, "list").stdout) else None)
    assert reason in table and "policy-2.3.1" in table

    cleared = cli(settings, "clear", "--model", "amr", "--sector", "logistics", "--share", "0.1", "ai_model",
                  "--reason", "cli round trip done")
    assert cleared.returncode == 0, cleared.stdout + cleared.stderr
    ((_, clear),) = published(settings, cleared.stdout.split()[1])
    assert (clear.field, clear.value) == ("ai_model", None)
    assert change_key(clear) == change_key(next(c for _, c in published(settings, change_id) if c.field == "ai_model"))

    refused = cli(settings, "set", "--model", "tank", "ai_model=policy-2.5.0", "--reason", "no such model")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    (line,) = refused.stdout.strip().splitlines()
    assert "answered 400: unknown robot model 'tank'" in line


@pytest.fixture(scope="module")
def named_worker(broker: str, settings: Settings, tmp_path_factory: pytest.TempPathFactory,
                 ) -> Iterator[tuple[Settings, str]]:
    """A worker of its own (own topics) that knows a second principal, `release-bot`."""
    run = uuid.uuid4().hex[:8]
    bot = secrets.token_urlsafe(24)
    own = settings.model_copy(update={
        "app_id": f"fleet-twin-desire-{run}", "topic_prefix": f"desire-{run}.", "partitions": 1,
        "state_dir": tmp_path_factory.mktemp("desire-state"), "web_port": free_port(),
        "api_tokens": SecretStr(f"release-bot:{bot}")})
    asyncio.run(ensure_topics(own))
    stack = Stack(own)
    try:
        stack.start_worker("worker-desire")
        yield own, bot
    finally:
        stack.procs.stop("worker-desire")


def test_a_named_token_is_recorded_as_its_principal(named_worker: tuple[Settings, str]) -> None:
    own, bot = named_worker
    answer = httpx.post(f"{own.web_url()}/desired", headers={"Authorization": f"Bearer {bot}"},
                        json={"selector": {"model": "amr"}, "fields": {"firmware": "fw-1.9.0"}, "reason": "bot"})
    assert answer.status_code == 202, answer.text
    ((_, change),) = published(own, answer.json()["change_id"])
    assert (change.principal, change.field, change.value) == ("release-bot", "firmware", "fw-1.9.0")

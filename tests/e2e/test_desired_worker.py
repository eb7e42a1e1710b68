"""The worker's side of desired state, against the real broker, worker and Prometheus: a change on
fleet.desired sends the robot its delta on fleet.commands and shows as drift in Prometheus; the robot
reporting the desired value ends the drift and gets nothing more; a bad record on fleet.desired is
dead-lettered with its reason; after `kill -9` of the worker the twin still shows what is desired
(the reader folds the compacted topic again)."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from streams.local.stack import Stack
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.support.control import NEW, OLD, Robot, commands, desire, prom, view, view_at_seq
from tests.support.net import auth, free_port
from tests.support.topics import read_dlq, send
from tests.support.waiting import eventually

SECTOR, SITE = "logistics", "log-rotterdam-01"
DRIFT = f'sum(fleet_desired_drift{{sector="{SECTOR}", model="amr", field="ai_model"}})'
DESIRED = f'sum(fleet_desired_robots{{sector="{SECTOR}", model="amr", field="ai_model"}})'


@pytest.fixture
def own(broker: str, settings: Settings, tmp_path: Path) -> Iterator[tuple[Settings, Stack]]:
    """A worker of this test's own (topics, group, state) and a Prometheus scraping it every second."""
    run = uuid.uuid4().hex[:8]
    mine = settings.model_copy(update={
        "app_id": f"fleet-twin-desired-{run}", "topic_prefix": f"desired-{run}.", "web_port": free_port(),
        "prometheus_port": free_port(), "state_dir": tmp_path / "state"})
    asyncio.run(ensure_topics(mine))
    stack = Stack(mine)
    try:
        stack.start_worker()
        stack.start_prometheus([mine.web_port])
        yield mine, stack
    finally:
        stack.procs.stop("prometheus")
        stack.procs.stop("worker")


def value(prometheus: str, query: str) -> float | None:
    result = prom(prometheus, query)
    return float(result[0]["value"][1]) if result else None


def equals(prometheus: str, query: str, want: float) -> bool | None:
    return True if value(prometheus, query) == want else None


def test_a_desired_change_commands_the_robot_shows_drift_and_survives_kill_minus_9(
        own: tuple[Settings, Stack]) -> None:
    mine, stack = own
    prometheus = f"http://127.0.0.1:{mine.prometheus_port}"
    robot = Robot(mine, f"amr-desired-{uuid.uuid4().hex[:6]}", SECTOR, SITE, version=OLD)
    with httpx.Client(base_url=mine.web_url(), headers=auth(mine), timeout=10) as api:
        robot.report(3)
        view_at_seq(api, robot)
        eventually(lambda: equals(prometheus, DESIRED, 0), timeout_s=30)  # exported before any desire

        change = desire(api, {"robots": [robot.robot_id]}, {"ai_model": NEW}, reason="e2e: move to the new policy")
        robot.report(1)  # the robot's first report past the change carries its command (twin.desired.took_effect)

        sent = eventually(lambda: commands(mine, [robot.robot_id]) or None, timeout_s=30)
        assert [c["fields"] for c in sent] == [{"ai_model": NEW}]
        assert sent[0]["change_ids"] == [change["change_id"]]
        eventually(lambda: equals(prometheus, DRIFT, 1), timeout_s=30)
        assert value(prometheus, DESIRED) == 1
        drifting = view(api, robot.robot_id)
        assert drifting["desired"]["ai_model"]["value"] == NEW
        assert [(d["field"], d["desired"], d["reported"]) for d in drifting["delta"]] == [("ai_model", NEW, OLD)]

        # a record no API wrote: dead-lettered with its reason, and the reader goes on
        asyncio.run(send(mine, mine.desired_topic, b"bad-desired", b"{not json"))
        (letter,) = asyncio.run(read_dlq(mine, b"bad-desired", 1))
        headers = dict(letter.headers)
        assert headers["reason"] == b"undecodable" and headers["source_topic"] == mine.desired_topic.encode()

        robot.version = NEW  # the robot applied the command
        robot.report(2)
        assert view_at_seq(api, robot)["delta"] == []
        eventually(lambda: equals(prometheus, DRIFT, 0), timeout_s=30)
        assert value(prometheus, DESIRED) == 1

        pid = stack.procs.pid("worker")
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        eventually(lambda: True if stack.procs.pid("worker") is None else None, timeout_s=20)  # gone, not dying
        stack.start_worker()

        def desired_again() -> dict[str, object] | None:
            try:
                got = view(api, robot.robot_id)
            except (httpx.HTTPError, AssertionError):
                return None  # the worker is still taking its partitions back
            return got if got.get("desired") else None

        after = eventually(desired_again, timeout_s=60)
        assert after["desired"]["ai_model"]["value"] == NEW  # type: ignore[index]
        assert after["desired"]["ai_model"]["change_id"] == change["change_id"]  # type: ignore[index]
        assert after["delta"] == []
        robot.report(1)
        view_at_seq(api, robot)
        # the robot reports what is desired: nothing more was sent to it, restart included
        assert len(commands(mine, [robot.robot_id])) == 1
        eventually(lambda: equals(prometheus, DRIFT, 0), timeout_s=30)

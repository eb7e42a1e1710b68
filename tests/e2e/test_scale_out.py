"""Scale-out and failover: two workers of one consumer group share the partitions, the twin API
of either answers for every robot (routed to the owner), and when one is killed with SIGKILL the
other takes over its partitions, recovers their twins from the changelog and goes on applying
new reports.

Each test has an app, topics, ports and state folder of its own on the session's broker, and a
deadline on every wait; it stops what it started by pid. Silence detection is switched off (its
timer set to an hour): as the fleet goes quiet it would open anomalies on the twins and change
them while they are compared across the kill.

Faust would keep a standby replica of each table partition on the other worker, and with the
memory store (ours) it applies standby changelog records to the same dict as the worker's own:
once a worker had buffered 1000 of them its table held the other's robots too, stale, and so did
its /twins list, /fleet/summary, fleet metrics and silence checks. Workers run without standbys
(`table_standby_replicas=0`); the last test runs past 1000 records to keep it so.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from streams.settings import Settings
from streams.local.simulator import KafkaSink
from streams.local.stack import Stack
from streams.topics import ensure_topics
from tests.support.net import auth, free_port
from twin.fleet import Fleet
from twin.schema import Event
from twin.sim import FleetSim, load_scenario

T = TypeVar("T")
ROBOTS, REPORTS, MORE = 48, 20, 5
"""48 x 20 changelog records."""
SPEED = 10.0
"""Reports go out ten times faster than the scenario's 1 Hz (event time follows)."""
BEYOND_STANDBY_BUFFER = 50
"""Reports per robot that take each worker's standby buffer (24 robots' records) past 1000."""
SCENARIO = load_scenario({"name": "scale-out-e2e", "robots": ROBOTS, "duration_s": BEYOND_STANDBY_BUFFER,
                          "sectors": ["logistics", "retail"]}, "test")
TAKEOVER_MARGIN_S = 20.0
"""Kill to survivor holding every robot: at most the group session (10 s), then this for the
rebalance and the recovery of the changelog."""


class Worker:
    """One worker of the group: its stack (own web port, hence own datadir) and an API client."""

    def __init__(self, settings: Settings, name: str) -> None:
        self.name = name
        self.settings = settings
        self.stack = Stack(settings)
        self.api = httpx.Client(base_url=settings.web_url(), headers=auth(settings), timeout=5)

    def held(self) -> set[str]:
        """The robots whose twins this worker holds (its own partitions only)."""
        body = self.api.get("/twins", params={"limit": 10_000}).json()
        assert body["total"] == len(body["robots"])
        return set(body["robots"])

    def twin(self, robot: str) -> bytes | None:
        """The twin API's answer for `robot` as bytes, None unless 200 (the owner may be gone)."""
        try:
            r = self.api.get(f"/twins/{robot}")
        except httpx.HTTPError:
            return None
        return r.content if r.status_code == 200 else None

    def seq(self, robot: str) -> int | None:
        raw = self.twin(robot)
        return json.loads(raw)["seq"] if raw else None


@pytest.fixture
def workers(broker: str, settings: Settings, tmp_path: Path) -> Iterator[list[Worker]]:
    """Two workers of an app of their own (same app id and topics, 8 partitions), balanced."""
    run = uuid.uuid4().hex[:8]
    group = settings.model_copy(update={
        "app_id": f"fleet-twin-scale-{run}", "topic_prefix": f"scale-{run}.", "partitions": 8,
        "state_dir": tmp_path / "state", "silence_check_s": 3600.0})
    asyncio.run(ensure_topics(group))
    pair = [Worker(group.model_copy(update={"web_port": free_port()}), n) for n in ("worker-a", "worker-b")]
    assert len({w.settings.web_port for w in pair}) == 2
    try:
        for w in pair:
            w.stack.start_worker(w.name)

        def balanced() -> bool | None:
            health = [httpx.get(f"{w.settings.web_url()}/healthz", timeout=5).json() for w in pair]
            return all(h["status"] == "ok" and h["partitions"] > 0 for h in health) or None

        until(balanced, 60, "both workers holding partitions")
        datadirs = {group.state_dir / f"worker-{w.settings.web_port}" for w in pair}  # as build_app names them
        assert len(datadirs) == 2 and all(d.is_dir() for d in datadirs), datadirs
        yield pair
    finally:
        for w in pair:
            w.api.close()
            w.stack.procs.stop(w.name)


def until(fetch: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """Poll `fetch` until it returns something; TimeoutError naming `what` after `timeout_s` (not an
    AssertionError, which the xfail below expects from its assertions only)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if (value := fetch()) is not None:
                return value
        except httpx.HTTPError:
            pass  # a worker busy rebalancing, or its peer gone
        time.sleep(0.25)
    raise TimeoutError(f"no {what} after {timeout_s:.0f}s")


async def publish(settings: Settings, sim: FleetSim, ticks: int, robots: set[str] | None = None) -> None:
    """The next `ticks` reports of every robot (or of `robots`), paced at SPEED."""
    start = time.monotonic()
    async with KafkaSink(settings) as sink:
        for tick in range(ticks):
            await asyncio.sleep(max(0.0, start + tick * sim.dt / SPEED - time.monotonic()))
            events: list[Event] = sim.step()
            await sink.send([e for e in events if robots is None or e.robot_id in robots])


def test_two_workers_share_the_fleet_and_one_takes_over_when_the_other_is_killed(
        workers: list[Worker], fleet: Fleet) -> None:
    dead, survivor = workers
    sim = FleetSim(fleet, SCENARIO, seed=5, start_ts=round(time.time(), 3), time_scale=1 / SPEED)
    robots = set(sim.roster.robot_ids)
    assert len(robots) == ROBOTS
    asyncio.run(publish(dead.settings, sim, REPORTS))

    # Both workers answer for every robot: their own, and the other's through routing.
    until(lambda: all(w.seq(r) == REPORTS for w in workers for r in robots) or None, 45,
          f"twin at seq {REPORTS} from both workers for every robot")
    held = {w.name: w.held() for w in workers}
    assert all(held.values()), f"a worker holds no robot: { {n: len(h) for n, h in held.items()} }"
    assert held[dead.name].isdisjoint(held[survivor.name]), held[dead.name] & held[survivor.name]
    assert held[dead.name] | held[survivor.name] == robots
    before = {r: survivor.twin(r) for r in sorted(robots)}
    assert before == {r: dead.twin(r) for r in sorted(robots)}, "the two workers answer differently"

    pid = dead.stack.procs.pid(dead.name)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    until(lambda: survivor.held() == robots or None, dead.settings.session_timeout_s + TAKEOVER_MARGIN_S,
          "survivor holding every robot")
    listed = time.monotonic() - killed
    until(lambda: all(survivor.twin(r) == before[r] for r in sorted(robots)) or None, 15,
          "survivor answering every robot with its twin from before the kill")
    took_over = time.monotonic() - killed
    assert dead.stack.procs.pid(dead.name) is None

    # The dead worker's robots report again: the survivor applies the new reports.
    orphans = held[dead.name]
    asyncio.run(publish(survivor.settings, sim, MORE, orphans))
    until(lambda: all(survivor.seq(r) == REPORTS + MORE for r in orphans) or None, 30,
          f"the dead worker's robots at seq {REPORTS + MORE} on the survivor")
    after = {r: json.loads(survivor.twin(r) or b"null") for r in sorted(robots)}
    for r in orphans:
        assert after[r]["counts"]["events"] == json.loads(before[r] or b"null")["counts"]["events"] + MORE
    assert {r: survivor.twin(r) for r in sorted(robots - orphans)} == \
        {r: before[r] for r in sorted(robots - orphans)}
    print(f"robots {ROBOTS} over {dead.settings.partitions} partitions: {dead.name} held {len(orphans)}, "
          f"{survivor.name} {len(held[survivor.name])}; takeover after SIGKILL (session "
          f"{dead.settings.session_timeout_s:.0f} s): all robots listed {listed:.1f} s, "
          f"all twins answered as before {took_over:.1f} s")


def test_each_worker_holds_only_its_own_robots_however_long_it_runs(workers: list[Worker], fleet: Fleet) -> None:
    sim = FleetSim(fleet, SCENARIO, seed=5, start_ts=round(time.time(), 3), time_scale=1 / SPEED)
    robots = set(sim.roster.robot_ids)
    asyncio.run(publish(workers[0].settings, sim, BEYOND_STANDBY_BUFFER))
    until(lambda: all(w.seq(r) == BEYOND_STANDBY_BUFFER for w in workers for r in robots) or None, 45,
          f"twin at seq {BEYOND_STANDBY_BUFFER} from both workers for every robot")
    time.sleep(2.0)  # the last standby records reach the other worker a moment after the table write
    held = [w.held() for w in workers]
    metric = [sum(float(v) for v in re.findall(r"^twin_table_robots (\S+)$", w.api.get("/metrics").text, re.M))
              for w in workers]
    assert held[0].isdisjoint(held[1]) and held[0] | held[1] == robots, [len(h) for h in held]
    assert sum(metric) == ROBOTS, metric

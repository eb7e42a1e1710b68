"""The control surface as the end-to-end tier drives it: seeds with short detector settings, robot
reports with a version, a robot that keeps reporting, desired-state changes through the API,
and readers of what the worker made of them (commands, twins, alerts, metrics)."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml
from aiokafka import AIOKafkaProducer

from streams.settings import Settings
from tests.support.topics import read_topic
from tests.support.waiting import eventually

T = TypeVar("T")

OLD, NEW, OTHER = "policy-2.4.0", "policy-2.5.0", "policy-2.3.1"
"""AI-model versions of the amr in seeds/models.yaml: the one robots run, the one desired, a third."""


def until(fetch: Callable[[], T | None], timeout_s: float, what: str | Callable[[], str]) -> T:
    """`eventually`, failing with what was awaited and, if `what` is a function, what was seen instead."""
    try:
        return eventually(fetch, timeout_s=timeout_s)
    except AssertionError:
        raise AssertionError(f"after {timeout_s:g}s still not: {what() if callable(what) else what}") from None


def seeds_with(base: Path, into: Path, **defaults: Any) -> Path:
    """A copy of the seeds whose detectors.yaml has `defaults` (e.g. drift_grace_s=4): how a test
    shortens a detector's setting for a worker of its own and for the replays it compares with."""
    shutil.copytree(base, into)
    path = into / "detectors.yaml"
    doc = yaml.safe_load(path.read_text()) or {}
    doc["defaults"] = {**(doc.get("defaults") or {}), **defaults}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return into


def amr_report(robot: str, seq: int, ts: float, version: str, sector: str, site: str) -> bytes:
    """One valid report of an amr running AI-model `version` (signals steady but never constant)."""
    return json.dumps({
        "schema": 1, "robot_id": robot, "seq": seq, "ts": ts, "sector": sector, "site": site,
        "model": "amr", "mode": "working", "ai_model_version": version, "firmware": "fw-1.8.2",
        "signals": {"battery_soc_pct": 70.0 + seq % 5 * 0.1, "speed_mps": 1.0 + seq % 4 * 0.01,
                    "joint1_current_a": 4.0 + seq % 3 * 0.1},
    }).encode()


class Robot:
    """A hand-made robot: each `report` call publishes `n` reports one second apart, each stamped
    when it is sent (event time and broker time alike, as a robot's own producer would), with the
    next seqs; `version` is what it says it runs. Nothing is backdated, so an instant the test takes
    between two calls divides the log as it divided what the worker had seen."""

    def __init__(self, settings: Settings, robot_id: str, sector: str, site: str, version: str = OLD) -> None:
        self.settings, self.robot_id, self.sector, self.site, self.version = settings, robot_id, sector, site, version
        self.seq = 0
        self.last_ts = 0.0

    def report(self, n: int = 1) -> float:
        """Publish `n` reports a second apart and wait for the broker; returns the first one's ts."""
        return asyncio.run(self._send(n))

    async def _send(self, n: int) -> float:
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.bootstrap)
        await producer.start()
        first = 0.0
        try:
            for i in range(n):
                if i:
                    await asyncio.sleep(1.0)
                await (await producer.send(self.settings.telemetry_topic, self.next_report(),
                                           key=self.robot_id.encode(), timestamp_ms=int(self.last_ts * 1000)))
                first = first or self.last_ts
        finally:
            await producer.stop()
        return first

    def next_report(self) -> bytes:
        """The next report, stamped now (and after the previous one)."""
        self.seq += 1
        self.last_ts = max(self.last_ts + 0.001, time.time())
        return amr_report(self.robot_id, self.seq, self.last_ts, self.version, self.sector, self.site)


class Reporter:
    """A robot that reports every second in a thread of its own until stopped (it never goes silent);
    set `version` to change what it says it runs."""

    def __init__(self, settings: Settings, robot_id: str, sector: str, site: str, version: str = OLD) -> None:
        self.robot = Robot(settings, robot_id, sector, site, version)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def version(self) -> str:
        return self.robot.version

    @version.setter
    def version(self, value: str) -> None:
        self.robot.version = value

    def _run(self) -> None:
        while not self._stop.is_set():
            self.robot.report()
            self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def desire(api: httpx.Client, selector: dict[str, Any], fields: dict[str, str | None], reason: str) -> dict[str, Any]:
    """POST /desired (the client sends the token); the 202 answer's body. Waits until the worker
    has folded the change (GET /desired lists its change id), so reports sent after it see it."""
    answer = api.post("/desired", json={"selector": selector, "fields": fields, "reason": reason})
    assert answer.status_code == 202, f"POST /desired: {answer.status_code} {answer.text}"
    body: dict[str, Any] = answer.json()
    assert body["changes"] == len(fields), body

    def folded() -> bool | None:
        listed = api.get("/desired")
        return any(c.get("change_id") == body["change_id"] for c in listed.json()) or None if listed.is_success else None

    until(folded, 20, lambda: f"GET /desired lists change {body['change_id']} (the worker folded it); "
          f"it answers {api.get('/desired').status_code}: {api.get('/desired').text[:300]}")
    return body


def view(api: httpx.Client, robot: str) -> dict[str, Any]:
    answer = api.get(f"/twins/{robot}")
    assert answer.status_code == 200, f"GET /twins/{robot}: {answer.status_code} {answer.text}"
    got: dict[str, Any] = answer.json()
    return got


def view_at_seq(api: httpx.Client, robot: Robot, timeout_s: float = 20) -> dict[str, Any]:
    """The robot's twin once it holds the robot's newest report."""
    def newest() -> dict[str, Any] | None:
        answer = api.get(f"/twins/{robot.robot_id}")
        got: dict[str, Any] | None = answer.json() if answer.is_success else None
        return got if got is not None and got.get("seq") == robot.seq else None

    return eventually(newest, timeout_s=timeout_s)


def commands(settings: Settings, robots: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The commands on fleet.commands (for `robots` only, if given), in offset order per robot;
    each checked to be keyed by its robot."""
    wanted = set(robots) if robots is not None else None
    out = []
    for key, value in read_topic(settings, settings.commands_topic):
        command = json.loads(value)
        assert key == command["robot_id"].encode(), f"command keyed {key!r} for {command['robot_id']}"
        if wanted is None or command["robot_id"] in wanted:
            out.append(command)
    return out


def anomalies(settings: Settings, robot: str, detector: str) -> list[dict[str, Any]]:
    """The anomaly messages of `detector` about `robot`, in topic order."""
    found = (json.loads(v) for _, v in read_topic(settings, settings.anomalies_topic))
    return [a for a in found if a.get("robot_id") == robot and a.get("detector") == detector]


def alerts(alertmanager: str, robot: str, detector: str) -> list[dict[str, Any]]:
    """Alerts Alertmanager holds (not resolved) for `robot` from `detector`."""
    got = httpx.get(f"{alertmanager}/api/v2/alerts",
                    params={"filter": [f'robot_id="{robot}"', f'detector="{detector}"']}, timeout=5)
    got.raise_for_status()
    return list(got.json())


def prom(prometheus: str, query: str) -> list[dict[str, Any]]:
    """An instant query's result vector."""
    got = httpx.get(f"{prometheus}/api/v1/query", params={"query": query}, timeout=5)
    got.raise_for_status()
    result: list[dict[str, Any]] = got.json()["data"]["result"]
    return result


def open_kinds(v: dict[str, Any]) -> set[tuple[str, str]]:
    """(detector, signal) of the anomalies a twin view shows open."""
    return {(a["detector"], a["signal"]) for a in v.get("anomalies", [])}


def report_all(robots: list[Robot]) -> None:
    """One report stamped now from each robot, through one producer (a fleet's worth at once)."""
    asyncio.run(_report_all(robots))


async def _report_all(robots: list[Robot]) -> None:
    if not robots:
        return
    producer = AIOKafkaProducer(bootstrap_servers=robots[0].settings.bootstrap)
    await producer.start()
    try:
        for robot in robots:
            value = robot.next_report()
            await producer.send(robot.settings.telemetry_topic, value, key=robot.robot_id.encode(),
                                timestamp_ms=int(robot.last_ts * 1000))
        await producer.flush()
    finally:
        await producer.stop()

"""The control surface end to end (issue 16): desired state set through the API, folded by a real
worker, deltas on fleet.commands, drift measured in Prometheus and alerted through Alertmanager,
and replay showing desired beside reported as the API did.

The module runs a worker of its own (own topics, its own Prometheus and Alertmanager, whose
maintenance notifications reach a real webhook), with seeds whose drift grace is 4 s, so a
drift alert opens within seconds. Robots are hand-made reports (tests/support/control.py):
which robot reports what, and when, is the test's decision, so every step is deterministic.
Each test keeps to robots of a sector of its own (the drift gauge is per sector and model).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from streams.local.stack import Stack, settings_env
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.support.alerts import Webhook
from tests.support.control import (NEW, OLD, OTHER, Reporter, Robot, alerts, anomalies, commands, desire, open_kinds,
                                   prom, report_all, seeds_with, until, view,
                                   view_at_seq)
from tests.support.net import auth, free_port
from tests.support.topics import changelog, read_topic
from tests.support.waiting import eventually
from twin.desired import DesiredRules, add_change, decode_change, resolve, robot_share
from twin.state import decode_twin

GRACE_S = 4.0
"""The drift grace of this module's worker (seeds/detectors.yaml `drift_grace_s`, 600 s as shipped)."""


@dataclass(frozen=True)
class World:
    settings: Settings
    api: httpx.Client
    prometheus: str
    webhook: Webhook
    run: str
    stack: Stack


@pytest.fixture(scope="module")
def world(broker: str, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A worker, Prometheus and Alertmanager of this module's own, on the session's broker."""
    run = uuid.uuid4().hex[:6]
    home = tmp_path_factory.mktemp("control")
    hook = Webhook(free_port())
    mine = settings.model_copy(update={
        "app_id": f"fleet-twin-control-{run}", "topic_prefix": f"control-{run}.", "web_port": free_port(),
        "prometheus_port": free_port(), "alertmanager_port": free_port(), "state_dir": home / "state",
        "seeds_dir": seeds_with(settings.seeds_dir, home / "seeds", drift_grace_s=GRACE_S),
        "maintenance_webhook": f"http://127.0.0.1:{hook.server.server_port}/hook"})
    asyncio.run(ensure_topics(mine))
    stack = Stack(mine)
    try:
        stack.start_alertmanager()
        stack.start_worker()
        stack.start_prometheus([mine.web_port])
        with httpx.Client(base_url=mine.web_url(), headers=auth(mine), timeout=10) as api:
            yield World(mine, api, f"http://127.0.0.1:{mine.prometheus_port}", hook, run, stack)
    finally:
        for name in ("prometheus", "worker", "alertmanager"):
            stack.procs.stop(name)
        hook.server.shutdown()


def silent(api: httpx.Client, robot: str) -> dict[str, Any] | None:
    answer = api.get(f"/twins/{robot}")
    v: dict[str, Any] | None = answer.json() if answer.is_success else None
    return v if v is not None and ("silence", "") in open_kinds(v) else None


def shown(v: dict[str, Any]) -> dict[str, Any]:
    """The control fields of a twin view, for a failure's message."""
    return {k: v.get(k) for k in ("seq", "ai_model_version", "desired", "reported", "delta", "anomalies")}


def converged_view(api: httpx.Client, robot: Robot) -> dict[str, Any] | None:
    v = view_at_seq(api, robot)
    return v if v.get("delta") == [] else None


def test_a_robot_offline_during_the_change_converges_when_it_returns(world: World) -> None:
    api, s = world.api, world.settings
    robot = Robot(s, f"ctl-off-{world.run}", "logistics", "log-rotterdam-01")
    rid = robot.robot_id
    robot.report(6)
    until(lambda: silent(api, rid), 40, lambda: f"silence open on {rid}: {shown(view(api, rid))}")  # offline

    change = desire(api, {"robots": [rid]}, {"ai_model": NEW}, reason="e2e: offline robot converges")
    returned = robot.report()  # back, still on the old version

    resent = eventually(lambda: [c for c in commands(s, [rid]) if c["ts"] >= returned] or None, timeout_s=20)
    assert resent[0]["fields"] == {"ai_model": NEW}, resent
    assert change["change_id"] in resent[0]["change_ids"], resent
    back = view_at_seq(api, robot)
    assert "ai_model" in (back.get("desired") or {}), f"GET /twins shows no desired ai_model: {shown(back)}"
    assert back["desired"]["ai_model"]["value"] == NEW
    assert back["desired"]["ai_model"]["principal"] == "operator"
    assert back["desired"]["ai_model"]["reason"] == "e2e: offline robot converges"
    assert back["desired"]["ai_model"]["change_id"] == change["change_id"]
    assert [(d["field"], d["desired"], d["reported"]) for d in back["delta"]] == [("ai_model", NEW, OLD)]

    robot.version = NEW  # the robot applied the command
    converged = robot.report(3)
    done = eventually(lambda: converged_view(api, robot), timeout_s=20)
    assert done["reported"]["ai_model"] == NEW and done["desired"]["ai_model"]["value"] == NEW

    # offline and back once more: a robot that reports the desired value gets nothing re-sent
    until(lambda: silent(api, rid), 40, lambda: f"silence open again on {rid}: {shown(view(api, rid))}")
    robot.report(2)
    assert view_at_seq(api, robot)["delta"] == []
    time.sleep(2)
    later = [c for c in commands(s, [rid]) if c["ts"] >= converged]
    assert not later, f"sent after the robot reported the desired value: {later}"


def test_a_drift_alert_fires_and_resolves(world: World) -> None:
    api, s = world.api, world.settings
    drift_gauge = 'fleet_desired_drift{sector="mining",model="amr",field="ai_model"}'
    reporter = Reporter(s, f"ctl-drift-{world.run}", "mining", "mining-pilbara-01")
    rid = reporter.robot.robot_id
    try:
        eventually(lambda: api.get(f"/twins/{rid}").is_success or None, timeout_s=20)
        change = desire(api, {"robots": [rid]}, {"ai_model": NEW}, reason="e2e: drift alert")

        opened = eventually(lambda: [a for a in anomalies(s, rid, "desired_drift") if a["status"] == "open"] or None,
                            timeout_s=30)[0]
        assert opened["signal"] == "ai_model", opened
        assert opened["ts"] - change["ts"] >= GRACE_S, f"opened before the grace: {opened}, change at {change['ts']}"
        fired = eventually(lambda: alerts(s.alertmanager_url, rid, "desired_drift") or None, timeout_s=30)[0]
        assert fired["status"]["state"] == "active", fired
        assert fired["labels"]["signal"] == "ai_model" and fired["labels"]["anomaly_id"] == opened["id"]
        eventually(lambda: [a for a in world.webhook.alerts() if a["labels"].get("anomaly_id") == opened["id"]
                            and a["status"] == "firing"] or None, timeout_s=20)
        eventually(lambda: [r for r in prom(world.prometheus, drift_gauge) if float(r["value"][1]) == 1] or None,
                   timeout_s=20)

        reporter.version = NEW  # the robot reports the desired value
        eventually(lambda: [a for a in anomalies(s, rid, "desired_drift")
                            if a["status"] == "resolved" and a["id"] == opened["id"]] or None, timeout_s=30)
        eventually(lambda: not alerts(s.alertmanager_url, rid, "desired_drift") or None, timeout_s=30)
        eventually(lambda: [a for a in world.webhook.alerts() if a["labels"].get("anomaly_id") == opened["id"]
                            and a["status"] == "resolved"] or None, timeout_s=20)
        eventually(lambda: [r for r in prom(world.prometheus, drift_gauge) if float(r["value"][1]) == 0] or None,
                   timeout_s=20)
        assert ("desired_drift", "ai_model") not in open_kinds(view(api, rid))
    finally:
        reporter.stop()


def twin_at(settings: Settings, robot: str, at: float, start: float) -> dict[str, Any]:
    shown = subprocess.run([str(Path(sys.executable).parent / "fleet-twin"), "twin-at", robot, repr(at),
                            "--from", repr(start)], env={**os.environ, **settings_env(settings)},
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    got: dict[str, Any] = json.loads(shown.stdout)
    return got


def captured(api: httpx.Client, robot: Robot) -> tuple[float, dict[str, Any]]:
    """An instant and the twin the API showed then (once it held the robot's newest report)."""
    view_at_seq(api, robot)
    time.sleep(1.0)  # anomaly messages and the table's write of the last report
    at = time.time()
    return at, view(api, robot.robot_id)


def test_replay_shows_desired_and_reported_as_the_api_did(world: World) -> None:
    api, s = world.api, world.settings
    robot = Robot(s, f"ctl-replay-{world.run}", "manufacturing", "mfg-osaka-01")
    start = time.time() - 10
    robot.report(3)
    before = captured(api, robot)
    desire(api, {"robots": [robot.robot_id]}, {"ai_model": NEW}, reason="e2e: replay of desired state")
    robot.report(2)
    during = captured(api, robot)
    robot.version = NEW
    robot.report(2)
    after = captured(api, robot)

    assert not before[1].get("desired"), before[1]
    assert [d["field"] for d in during[1]["delta"]] == ["ai_model"] and during[1]["desired"]["ai_model"]["value"] == NEW
    assert after[1]["delta"] == [] and after[1]["reported"]["ai_model"] == NEW
    for name, (at, live) in (("before", before), ("during", during), ("after", after)):
        shown = twin_at(s, robot.robot_id, at, start)
        for field in ("desired", "reported", "delta"):
            assert shown.get(field) == live.get(field), f"{name} the change, {field}: {shown.get(field)} != {live.get(field)}"
        assert shown == live, f"{name} the change"


def test_a_selector_by_share_and_version_reaches_the_robots_resolve_selects(world: World) -> None:
    api, s = world.api, world.settings
    robots = [Robot(s, f"ctl-sel-{world.run}-{i:02d}", "retail", "retail-london-01", OLD if i % 2 else OTHER)
              for i in range(40)]
    ids = [r.robot_id for r in robots]
    report_all(robots)
    for robot in robots:
        view_at_seq(api, robot)
    selector = {"sector": "retail", "model": "amr", "version": OLD, "share": 0.5}
    change = desire(api, selector, {"ai_model": NEW}, reason="e2e: canary by share and version")
    report_all(robots)
    shown = {r.robot_id for r in robots if "ai_model" in (view_at_seq(api, r).get("desired") or {})}

    rules = DesiredRules()
    for _, value in read_topic(s, s.desired_topic):
        rules = add_change(rules, decode_change(value))
    assert change["change_id"] in {c.change_id for c in rules.changes}

    def stored() -> dict[str, Any] | None:  # the changelog is written a moment after the table
        twins = {r: decode_twin(v) for r, v in changelog(s).items() if r in ids}
        return twins if all(t.seq == 2 for t in twins.values()) and len(twins) == len(ids) else None

    twins = eventually(stored, timeout_s=20)
    selected = {r for r in ids if "ai_model" in resolve(rules, twins[r])}
    assert shown == selected
    assert selected == {r.robot_id for r in robots if r.version == OLD and robot_share(r.robot_id) < 0.5}
    assert 0 < len(selected) < len([r for r in robots if r.version == OLD])

    def sent() -> set[str] | None:
        got = {c["robot_id"] for c in commands(s, ids)}
        return got if got >= selected else None

    assert eventually(sent, timeout_s=20) == selected


SIM_SCENARIO = {
    "name": "control-e2e", "robots": 10, "rate_hz": 1.0, "duration_s": 90, "models": ["amr"],
    "sectors": ["energy_utilities"], "start_version": OLD,
    "faults": [{"type": "comm_loss", "robots": 3, "start": 8, "duration": 40}],
}
"""Ten amrs of a sector no other test here uses, three of them out of reach from 8 s to 48 s."""


def returned_at(settings: Settings, robot: str) -> float | None:
    """Event time the robot came back: its silence anomaly's resolution."""
    back = [a for a in anomalies(settings, robot, "silence") if a["status"] == "resolved"]
    return float(back[0]["ts"]) if back else None


def test_the_simulated_fleet_obeys_and_robots_offline_apply_on_return(world: World, tmp_path: Path) -> None:
    """`fleet-twin simulate` as the robots: online ones apply the command after their delay, the
    ones out of reach (the simulator drops what they would not receive) apply it once back."""
    api, s = world.api, world.settings
    scenario = tmp_path / "control-e2e.yaml"
    scenario.write_text(yaml.safe_dump(SIM_SCENARIO))
    sim = subprocess.Popen([sys.executable, "-m", "streams", "simulate", "--no-progress", "--scenario", str(scenario),
                            "--apply-delay-s", "3", "--seed", "5"], env={**os.environ, **settings_env(s)},
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        listed = until(lambda: (got := api.get("/twins", params={"sector": "energy_utilities"}).json())["total"] == 10
                       and got["robots"] or None, 30, "the simulator's 10 robots have twins")
        robots = set(listed)
        def quiet() -> set[str] | None:
            found = {r for r in robots if silent(api, r)}
            return found if len(found) == 3 else None

        offline = until(quiet, 40, lambda: f"3 robots silent, not {sorted(r for r in robots if silent(api, r))}")
        change = desire(api, {"sector": "energy_utilities", "model": "amr"}, {"ai_model": NEW},
                        reason="e2e: the simulated fleet obeys")

        def converged(which: set[str]) -> dict[str, dict[str, Any]] | None:
            views = {r: view(api, r) for r in which}
            return views if all(v["delta"] == [] and v["reported"]["ai_model"] == NEW for v in views.values()) else None

        until(lambda: converged(robots - offline), 20,
              lambda: f"online robots converged: {[shown(view(api, r)) for r in sorted(robots - offline)]}")
        for r in offline:  # still out of reach: the command could not reach them
            assert [d["field"] for d in view(api, r)["delta"]] == ["ai_model"], shown(view(api, r))
        until(lambda: converged(offline), 45,
              lambda: f"robots back from comm loss converged: {[shown(view(api, r)) for r in sorted(offline)]}")
        for r in offline:
            back = returned_at(s, r)
            assert back is not None and back > change["ts"], f"{r} came back at {back}"
            sent = [c for c in commands(s, [r]) if c["ts"] >= back]
            assert sent and sent[0]["fields"] == {"ai_model": NEW}, f"{r}: no command after its return: {commands(s, [r])}"
    finally:
        sim.terminate()
        _, err = sim.communicate(timeout=30)
    assert sim.returncode in (0, -15), err[-2000:]

def test_desired_state_survives_kill_minus_9_of_the_worker(world: World) -> None:
    """Last in the module: it kills the module's worker (and starts it again)."""
    api, s = world.api, world.settings
    robot = Robot(s, f"ctl-kill-{world.run}", "agriculture", "agri-fresno-01")
    start = time.time() - 10
    robot.report(3)
    desire(api, {"robots": [robot.robot_id]}, {"ai_model": NEW}, reason="e2e: survives kill -9")
    robot.report(1)
    at, before = captured(api, robot)
    listed = api.get("/desired").json()
    assert before["delta"] and before["desired"]["ai_model"]["value"] == NEW

    pid = world.stack.procs.pid("worker")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    time.sleep(1.0)  # the port is free once the kernel has closed the dead process's sockets
    world.stack.start_worker()

    assert eventually(lambda: (got := api.get("/desired")).is_success and got.json() == listed or None,
                      timeout_s=60), "GET /desired differs after the restart"
    again = view(api, robot.robot_id)
    for field in ("desired", "reported", "delta"):
        assert again.get(field) == before.get(field), f"{field} after kill -9: {again.get(field)} != {before.get(field)}"
    shown = twin_at(s, robot.robot_id, at, start)
    assert {f: shown.get(f) for f in ("desired", "reported", "delta")} == \
        {f: before.get(f) for f in ("desired", "reported", "delta")}

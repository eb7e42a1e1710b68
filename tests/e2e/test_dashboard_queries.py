"""Every dashboard panel's PromQL returns data from the real Prometheus while the simulator runs.

The simulator (chaos scenario) feeds the session's worker through Kafka; the
session's Prometheus scrapes it every second. Each query of each committed
dashboard is sent as Grafana would send it (template variables replaced with
real values, `$__rate_interval` and `$__range` with durations), and must
return at least one finite sample within a bounded wait. A query that never
does fails on its own, naming whether its metrics exist at all.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

import dashboards
from dashboards.catalogue import metric_names, queries
from dashboards.prom import Prometheus, QueryFailed, substitute
from streams.settings import Settings
from streams.local.stack import settings_env
from tests.support.net import auth
from twin.fleet import Fleet
from twin.sim.roster import place

ROBOTS, DURATION_S, WAIT_S = 60, 150, 120
"""Simulated fleet, how long it runs, and how long every query gets to show data."""
RATE_S, RANGE_S = 60, 600
MODELS = dashboards.render_all()
CONTROL = "rollouts-drift"
"""Its panels need desired state and a rollout's gate: proven by tests/e2e/test_control_dashboard.py."""
QUERIES = [(name, title, ref, expr) for name, model in MODELS.items() if name != CONTROL
           for title, ref, expr in queries(model)]


def _id(q: tuple[str, str, str, str]) -> str:
    return f"{q[0]}:{q[1]}:{q[2]}"


@dataclass
class Run:
    """What the poll loop saw: values used, and each query's outcome."""

    values: dict[str, str]
    worker: str
    robot: str
    data: dict[str, bool] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    sent: dict[str, str] = field(default_factory=dict)
    absent_metrics: set[str] = field(default_factory=set)
    waited_s: float = 0.0


def _has_data(prom: Prometheus, expr: str) -> bool:
    return any(math.isfinite(v) for s in prom.instant(expr) for v in s.values)


def _choose_sector(prom: Prometheus, fleet: Fleet, deadline: float) -> str:
    """The sector an operator would open: the one with the most anomalies so far (seeds order breaks ties).

    Waits (within the same deadline as the queries) for the first anomaly; with
    none at all, the first sector of the seeds.
    """
    order = list(fleet.sectors)
    while time.monotonic() < deadline:
        found = {s.labels["sector"]: s.last for s in
                 prom.instant('sum by (sector) (fleet_anomalies_opened_total{sector!="fleet"})')}
        if found:
            return max(order, key=lambda name: (found.get(name, 0), -order.index(name)))
        time.sleep(2)
    return order[0]


@pytest.fixture(scope="module")
def run(settings: Settings, worker: str, prometheus: str, fleet: Fleet, tmp_path_factory: pytest.TempPathFactory,
        ) -> Iterator[Run]:
    log = tmp_path_factory.mktemp("dash-sim") / "simulate.log"
    with open(log, "wb") as out:
        sim = subprocess.Popen(
            [sys.executable, "-m", "streams", "simulate", "--no-progress", "--scenario", "chaos", "--fleet-id", "",
             "--robots", str(ROBOTS), "--duration", str(DURATION_S), "--speed", "1"],
            env={**os.environ, **settings_env(settings)}, stdout=out, stderr=subprocess.STDOUT,
        )
    started = time.monotonic()
    deadline = started + WAIT_S
    roster = place(fleet, ROBOTS, settings.sim_seed)
    try:
        with Prometheus(prometheus) as prom:
            sector = _choose_sector(prom, fleet, started + WAIT_S / 2)
            site = next(s for s in fleet.sectors[sector].sites if s in roster.sites)
            robot = next(r for r, s in zip(roster.robot_ids, roster.sites) if s == site)
            values = {"sector": sector, "site": site, "model": ".*", "detector": ".*", "robot": robot,
                      "worker": worker.removeprefix("http://")}
            result = Run(values=values, worker=worker, robot=robot)
            pending = {_id(q): substitute(q[3], values, range_s=RANGE_S, rate_s=RATE_S) for q in QUERIES}
            result.sent = dict(pending)
            while pending and time.monotonic() < deadline:
                for key, expr in list(pending.items()):
                    try:
                        ok = _has_data(prom, expr)
                    except QueryFailed as err:
                        result.errors[key] = str(err)
                        ok = False
                    if ok:
                        result.data[key] = True
                        result.errors.pop(key, None)
                        del pending[key]
                if pending:
                    time.sleep(3)
            result.waited_s = time.monotonic() - started
            for key in pending:
                result.data[key] = False
                for metric in metric_names(pending[key]):
                    if not _has_data(prom, f'count({{__name__="{metric}"}})'):
                        result.absent_metrics.add(metric)
        assert sim.poll() is None, f"the simulator stopped early:\n{log.read_text()[-2000:]}"
        yield result
    finally:
        sim.terminate()
        try:
            sim.wait(30)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait(10)


@pytest.mark.parametrize("query", QUERIES, ids=[_id(q) for q in QUERIES])
def test_panel_query_has_data(query: tuple[str, str, str, str], run: Run) -> None:
    key = _id(query)
    sent = run.sent[key]
    assert key not in run.errors, f"Prometheus rejected {sent!r}: {run.errors[key]}"
    missing = sorted(m for m in metric_names(sent) if m in run.absent_metrics)
    assert run.data[key], (
        f"no data after {run.waited_s:.0f}s for {sent!r} (variables {run.values}); "
        + (f"these metrics do not exist in Prometheus: {missing}" if missing else "its metrics exist"))


def test_variables_resolve_from_prometheus(run: Run, prometheus: str) -> None:
    """Each dashboard's query variables list the values the test used."""
    from dashboards.prom import resolve

    with Prometheus(prometheus) as prom:
        for model in MODELS.values():
            for var in model.get("templating", {}).get("list", []):
                if var["type"] != "query" or var.get("includeAll"):
                    continue
                selector = var["query"].removeprefix("label_values(").rsplit(",", 1)[0]
                known = prom.label_values(var["name"], substitute(selector, run.values))
                assert run.values[var["name"]] in known, (model["title"], var["name"], known)
        chosen = resolve(MODELS["robot"], prom, {"sector": run.values["sector"]})
        assert chosen["sector"] == run.values["sector"] and chosen["site"]


def test_robot_drill_down_links_open_the_twin(run: Run, settings: Settings) -> None:
    """The drill-down's links, with its variables filled in, answer from the worker's twin API
    (to a client that sends the API token: a browser following the link gets 401)."""
    values = run.values
    links = [substitute(link["url"], values) for link in MODELS["robot"]["links"] if link["type"] == "link"]
    twin_url = next(u for u in links if "/twins/" in u)
    deadline = time.monotonic() + 30
    while (r := httpx.get(twin_url, headers=auth(settings))).status_code != 200 and time.monotonic() < deadline:
        time.sleep(1)
    assert r.status_code == 200 and r.json()["robot_id"] == run.robot
    listing_url = next(u for u in links if "/twins?" in u)
    listing = httpx.get(listing_url, headers=auth(settings)).json()
    assert listing["robots"] and listing["total"] >= len(listing["robots"])
    # other tests may have put hundreds of robots on this site: look past the link's page
    # (the link has its own limit, and a repeated query parameter would lose to it)
    everything = httpx.URL(listing_url).copy_set_param("limit", "10000")
    assert run.robot in httpx.get(everything, headers=auth(settings)).json()["robots"]


def test_render_draws_pngs_from_this_prometheus(run: Run, prometheus: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from streams.cli.dashboards import dashboards_app; dashboards_app()", "render",
         "--prometheus", prometheus, "--out", str(tmp_path), "--dashboard", "fleet-overview",
         "--dashboard", "anomalies", "--window", "5", "--var", f"sector={run.values['sector']}"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    import matplotlib.image

    for name in ("fleet-overview", "anomalies"):
        png = tmp_path / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        height, width = matplotlib.image.imread(png).shape[:2]
        assert width >= 1800 and height >= 800

"""Dashboards as code: the committed JSON is what the code generates, and every query stays in the catalogue."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

import dashboards
from dashboards.catalogue import ALLOWED, metric_names, panels, queries, variable_selector, variables
from dashboards.prom import substitute
from dashboards.snapshot import fmt, legend
from streams.cli.dashboards import dashboards_app

MODELS = dashboards.render_all()
NAMES = sorted(MODELS)
ROOT = Path(__file__).resolve().parents[2]
TWIN_API = {"type": "yesoreyeram-infinity-datasource", "uid": "twin-api"}


def test_the_eight_views_exist() -> None:
    assert set(MODELS) == {"fleet-overview", "sector", "site", "robot", "rollout", "anomalies", "pipeline",
                           "rollouts-drift"}
    titles = {m["title"] for m in MODELS.values()}
    assert {"Fleet overview", "Sector", "Site", "Robot drill-down", "AI-model rollout", "Anomalies",
            "Pipeline health", "Rollouts and drift"} == titles
    assert len({m["uid"] for m in MODELS.values()}) == len(MODELS)


@pytest.mark.parametrize("name", NAMES)
def test_committed_json_is_what_the_code_generates(name: str) -> None:
    committed = dashboards.JSON_DIR / f"{name}.json"
    assert committed.is_file(), f"{committed} missing: run `fleet-twin dashboards generate` and commit it"
    assert committed.read_text(encoding="utf-8") == dashboards.dumps(MODELS[name]), (
        f"{committed} differs from the code: run `fleet-twin dashboards generate` and commit it")


def test_no_stray_json_in_the_provisioned_folder() -> None:
    on_disk = {p.stem for p in dashboards.JSON_DIR.glob("*.json")}
    assert on_disk == set(MODELS)


def test_regeneration_is_byte_identical(tmp_path: Path) -> None:
    first = {p.name: p.read_bytes() for p in dashboards.write_all(tmp_path / "a")}
    second = {p.name: p.read_bytes() for p in dashboards.write_all(tmp_path / "b")}
    assert first == second and len(first) == len(MODELS)
    text = next(iter(first.values())).decode()
    assert text.endswith("}\n") and json.loads(text)  # stable formatting, valid JSON


@pytest.mark.parametrize("name", NAMES)
def test_every_panel_queries_prometheus_within_the_catalogue(name: str) -> None:
    model = MODELS[name]
    found = list(panels(model))
    assert found, "a dashboard without panels"
    for panel in found:
        targets = panel.get("targets", [])
        assert targets, f"{name}: panel {panel.get('title')!r} has no query"
        if panel["datasource"] == TWIN_API:  # one robot's own history: the robot dashboard's only
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}
        for target in targets:
            assert target["datasource"] == {"type": "prometheus", "uid": "prometheus"}
            expr = target.get("expr", "")
            used = metric_names(expr)
            assert used, f"{name}: {panel['title']!r} reads no metric: {expr}"
            assert used <= ALLOWED, f"{name}: {panel['title']!r} uses {sorted(used - ALLOWED)}: {expr}"
            assert "robot_id" not in expr


@pytest.mark.parametrize("name", NAMES)
def test_variables_read_catalogue_metrics_and_never_robot_ids(name: str) -> None:
    for var in variables(MODELS[name]):
        assert "robot_id" not in json.dumps(var)
        if var["type"] == "query":
            assert var["datasource"]["uid"] == "prometheus"
            selector, label = variable_selector(var["query"])
            assert label != "robot_id" and selector is not None
            assert metric_names(selector) <= ALLOWED


def test_no_query_anywhere_mentions_robot_id() -> None:
    everything = [expr for m in MODELS.values() for _t, _r, expr in queries(m)]
    assert len(everything) > 50
    assert not [e for e in everything if "robot_id" in e]


@pytest.mark.parametrize("name", NAMES)
def test_panels_fit_the_grid_with_unique_ids(name: str) -> None:
    model = MODELS[name]
    ids = [p["id"] for p in model["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in model["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"{name}: {p['title']!r} overlaps another panel"
        cells |= mine


def test_template_variables() -> None:
    names = {n: [v["name"] for v in variables(m)] for n, m in MODELS.items()}
    assert names["sector"] == ["sector"]
    assert names["site"] == ["site"]
    assert names["robot"][:2] == ["sector", "site"]
    for name, model in MODELS.items():
        used = {v for _t, _r, e in queries(model) for v in ("$sector", "$site", "$model", "$detector") if v in e}
        assert used <= {f"${n}" for n in names[name]}, f"{name} uses an undefined variable"
    assert any('sector="$sector"' in e for _t, _r, e in queries(MODELS["sector"]))
    assert all('site="$site"' in e for _t, _r, e in queries(MODELS["site"]) if "fleet_robots{" in e)


def test_rollouts_and_drift_shows_progress_gate_drift_and_safety_per_version() -> None:
    """Issue 16's operators' views: each asked-for view is a panel reading the metric that holds it."""
    reads: dict[str, set[str]] = {}
    for title, _r, expr in queries(MODELS["rollouts-drift"]):
        reads.setdefault(title, set()).update(metric_names(expr))
    wanted = {
        "Share of desired reached, per wave": {"fleet_rollout_wave_reached_robots", "fleet_rollout_wave_robots"},
        "Current wave, per plan": {"fleet_rollout_wave"},
        "Gate statistic against its boundaries": {"fleet_rollout_gate_statistic", "fleet_rollout_gate_boundary"},
        "Robots drifting, by sector and model": {"fleet_desired_drift"},
        "Share drifting, by field": {"fleet_desired_drift", "fleet_desired_robots"},
        "Safety events per operating hour, by version": {"fleet_version_safety_events_total",
                                                         "fleet_version_operating_seconds_total"},
    }
    for title, metrics in wanted.items():
        assert metrics <= reads.get(title, set()), (title, reads.get(title))
    gate = [e for t, _r, e in queries(MODELS["rollouts-drift"]) if t == "Gate statistic against its boundaries"]
    assert any("by (plan, side)" in e for e in gate)  # both boundaries, each its own series
    assert [v["name"] for v in variables(MODELS["rollouts-drift"])] == ["plan", "sector", "model"]


def test_robot_drill_down_links_to_the_twin_api() -> None:
    model = MODELS["robot"]
    urls = [link["url"] for link in model["links"] if link["type"] == "link"]
    assert "http://${worker}/twins/${robot}" in urls
    assert "http://${worker}/twins?sector=${sector}&site=${site}&limit=100" in urls
    for panel in panels(model):
        assert any("/twins" in link["url"] for link in panel.get("links", [])), panel["title"]


def test_robot_drill_down_shows_the_robots_own_signals_from_the_twin_api() -> None:
    """The robot's history comes from GET /twins/{id}/history through the provisioned JSON data source;
    no other dashboard reads the twin API, and no Prometheus query names a robot."""
    own = [(name, p) for name in NAMES for p in panels(MODELS[name]) if p["datasource"] == TWIN_API]
    assert [name for name, _ in own] == ["robot"]
    panel = own[0][1]
    (target,) = panel["targets"]
    assert target["datasource"] == TWIN_API and target["url"] == "/twins/${robot}/history"
    params = {p["key"]: p["value"] for p in target["url_options"]["params"]}
    assert params == {"from": "${__from:date:seconds}", "to": "${__to:date:seconds}", "signal": "${signals}",
                      "max_points": "500"}
    assert target["root_selector"] == "points"
    assert [(c["selector"], c["type"]) for c in target["columns"]] == [
        ("ts", "timestamp_epoch_s"), ("signal", "string"), ("value", "number")]
    assert panel["transformations"] == [{"id": "partitionByValues",
                                         "options": {"fields": ["signal"], "keepFields": False}}]
    assert MODELS["robot"]["panels"][1] is panel  # first, above its peers
    provisioned = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/twin-api.yml").read_text())
    (source,) = provisioned["datasources"]
    assert {"type": source["type"], "uid": source["uid"]} == TWIN_API
    assert source["jsonData"]["auth_method"] == "bearerToken" and source["url"] in source["jsonData"]["allowedHosts"]
    assert source["secureJsonData"]["bearerToken"] == "$__file{/run/secrets/api_token}"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["grafana"]
    assert compose["environment"]["GF_INSTALL_PLUGINS"].split()[0] == TWIN_API["type"]
    assert "api_token" in compose["secrets"]


def test_metric_names_extracts_what_a_query_reads() -> None:
    """The checker itself: it must see every metric, and only metrics."""
    assert metric_names('sum by (sector) (fleet_robots{mode=~"fault|estop"})') == {"fleet_robots"}
    assert metric_names("histogram_quantile(0.9, sum by (le) (rate(x_bucket[$__rate_interval])))") == {"x_bucket"}
    assert metric_names('a / on (site) group_left b and on(sector) group by (sector) (c{x="y"}) > 0') == {"a", "b", "c"}
    assert metric_names("3600 * sector:fleet_anomalies_opened:rate5m offset 5m") == {
        "sector:fleet_anomalies_opened:rate5m"}
    assert metric_names("(increase(x[$__range]) and x offset $__range) or y") == {"x", "y"}
    assert metric_names('robot_temp{robot_id="r-1"}') - ALLOWED == {"robot_temp"}


def test_substitute_replaces_grafana_variables() -> None:
    expr = 'sum(rate(x{sector="$sector", site=~"${site}"}[$__rate_interval])) + y[$__range]'
    out = substitute(expr, {"sector": "mining", "site": "mining-pilbara-01"}, range_s=600, rate_s=60)
    assert out == 'sum(rate(x{sector="mining", site=~"mining-pilbara-01"}[60s])) + y[600s]'
    assert substitute("$sectors $sector", {"sector": "a"}) == "$sectors a"


def test_snapshot_formatting() -> None:
    assert fmt(0.1234, "percentunit") == "12.3%"
    assert fmt(0.0042, "s") == "4.2 ms" and fmt(2.5, "s") == "2.50 s"
    assert fmt(3 * 2**20, "bytes") == "3.0 MiB"
    assert fmt(float("nan"), "short") == "–"
    assert legend("{{model}} {{version}}", {"model": "amr", "version": "1.2"}) == "amr 1.2"


# -- the CLI -------------------------------------------------------------------------------------------
def test_cli_generate_writes_every_dashboard(tmp_path: Path) -> None:
    result = CliRunner().invoke(dashboards_app, ["generate", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert {p.stem for p in tmp_path.glob("*.json")} == set(MODELS)
    assert (tmp_path / "anomalies.json").read_text() == dashboards.dumps(MODELS["anomalies"])


class _FakeGrafana(BaseHTTPRequestHandler):
    """Enough of Grafana's HTTP API for `push`: folders and dashboards/db, with a bearer token
    or the admin's basic auth."""

    token = "s3cret-token-value"
    password = "s3cret-admin-password"
    requests: list[tuple[str, str, dict[str, Any] | None, str]] = []
    folders: set[str] = set()

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.requests.append((self.command, self.path, body, self.headers.get("Authorization", "")))
        return body

    def _authorized(self) -> bool:
        basic = base64.b64encode(f"admin:{self.password}".encode()).decode()
        return self.headers.get("Authorization") in (f"Bearer {self.token}", f"Basic {basic}")

    def do_GET(self) -> None:  # noqa: N802
        self._record()
        if not self._authorized():
            return self._reply(401, {"message": "Unauthorized"})
        uid = self.path.rsplit("/", 1)[-1]
        if self.path.startswith("/api/folders/") and uid in self.folders:
            return self._reply(200, {"uid": uid, "title": uid})
        return self._reply(404, {"message": "folder not found"})

    def do_POST(self) -> None:  # noqa: N802
        body = self._record() or {}
        if not self._authorized():
            return self._reply(401, {"message": "Unauthorized"})
        if self.path == "/api/folders":
            self.folders.add(body["uid"])
            return self._reply(200, {"uid": body["uid"], "title": body["title"]})
        if self.path == "/api/dashboards/db":
            uid = body["dashboard"]["uid"]
            return self._reply(200, {"status": "success", "uid": uid, "url": f"/d/{uid}/x"})
        return self._reply(404, {"message": "not found"})

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def grafana() -> Iterator[str]:
    _FakeGrafana.requests = []
    _FakeGrafana.folders = set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeGrafana)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_cli_push_uploads_every_dashboard_without_printing_the_token(grafana: str) -> None:
    token = _FakeGrafana.token
    result = CliRunner().invoke(dashboards_app, ["push", "--url", grafana, "--token", token])
    assert result.exit_code == 0, result.output
    assert token not in result.output
    posted = [body for method, path, body, _auth in _FakeGrafana.requests if path == "/api/dashboards/db"]
    assert sorted(b["dashboard"]["uid"] for b in posted if b) == sorted(m["uid"] for m in MODELS.values())
    assert all(b and b["overwrite"] and b["folderUid"] == "fleet-twin" for b in posted)
    assert _FakeGrafana.folders == {"fleet-twin"}
    assert {auth for *_rest, auth in _FakeGrafana.requests} == {f"Bearer {token}"}


def test_cli_push_takes_the_token_from_the_environment(grafana: str) -> None:
    token = _FakeGrafana.token
    result = CliRunner().invoke(dashboards_app, ["push", "--url", grafana],
                                env={"FLEET_TWIN_GRAFANA_TOKEN": token})
    assert result.exit_code == 0, result.output
    assert token not in result.output
    assert sum(1 for _m, path, *_r in _FakeGrafana.requests if path == "/api/dashboards/db") == len(MODELS)


def test_cli_push_takes_basic_auth_from_the_environment_without_printing_it(grafana: str) -> None:
    password = _FakeGrafana.password
    result = CliRunner().invoke(dashboards_app, ["push", "--url", grafana],
                                env={"FLEET_TWIN_GRAFANA_TOKEN": "", "FLEET_TWIN_GRAFANA_PASSWORD": password})
    assert result.exit_code == 0, result.output
    assert password not in result.output
    assert {auth.split()[0] for *_rest, auth in _FakeGrafana.requests} == {"Basic"}
    assert sum(1 for _m, path, *_r in _FakeGrafana.requests if path == "/api/dashboards/db") == len(MODELS)


def test_cli_push_fails_cleanly_on_a_wrong_token(grafana: str) -> None:
    wrong = "wrong-token-123"
    result = CliRunner().invoke(dashboards_app, ["push", "--url", grafana, "--token", wrong])
    assert result.exit_code == 1
    assert "push failed" in result.output and wrong not in result.output
    assert not [p for _m, p, *_r in _FakeGrafana.requests if p == "/api/dashboards/db"]


def test_cli_push_needs_a_token() -> None:
    result = CliRunner().invoke(dashboards_app, ["push", "--url", "http://127.0.0.1:9"],
                                env={"FLEET_TWIN_GRAFANA_TOKEN": "", "FLEET_TWIN_GRAFANA_PASSWORD": ""})
    assert result.exit_code == 2 and "FLEET_TWIN_GRAFANA_TOKEN" in result.output

"""The Prometheus and Alertmanager configs, checked by their own tools and a real Alertmanager."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from streams.settings import Settings
from streams.local.stack import Stack

ROOT = Path(__file__).resolve().parents[2]


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is installed by `make test` (Debian packages prometheus, prometheus-alertmanager)"
    return path


def run(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_rendered_prometheus_config_is_valid(stack: Stack) -> None:
    config = stack.render_prometheus([6066, 6067])
    out = run(tool("promtool"), "check", "config", str(config))
    assert "SUCCESS" in out and "rule files found" in out


def test_alert_rules_pass_their_unit_tests() -> None:
    for tests in sorted((ROOT / "deploy/prometheus/tests").glob("*.yml")):
        assert "SUCCESS" in run(tool("promtool"), "test", "rules", str(tests))


def test_alertmanager_config_is_valid_as_committed_and_as_rendered(stack: Stack) -> None:
    for config in (ROOT / "deploy/alertmanager/alertmanager.yml", stack.render_alertmanager()):
        assert "SUCCESS" in run(tool("amtool"), "check-config", str(config))


def test_alertmanager_from_the_stack_accepts_and_groups_an_alert(alertmanager: str) -> None:
    alert = {
        "labels": {"alertname": "FleetTwinProbe", "sector": "mining", "site": "mining-pilbara-01"},
        "annotations": {"summary": "probe"},
    }
    assert httpx.post(f"{alertmanager}/api/v2/alerts", json=[alert]).status_code == 200
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        groups = httpx.get(f"{alertmanager}/api/v2/alerts/groups").json()
        names = [a["labels"]["alertname"] for g in groups for a in g["alerts"]]
        if "FleetTwinProbe" in names:
            assert {g["receiver"]["name"] for g in groups} >= {"maintenance"}
            return
        time.sleep(0.3)
    raise AssertionError("alert never appeared in Alertmanager's groups")


def test_every_alert_rule_has_a_unit_test_that_fires_it() -> None:
    import yaml

    rules = yaml.safe_load((ROOT / "deploy/prometheus/rules/fleet.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    fired = set()
    for tests in (ROOT / "deploy/prometheus/tests").glob("*.yml"):
        for case in yaml.safe_load(tests.read_text())["tests"]:
            fired |= {t["alertname"] for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
    assert alerts and alerts <= fired, f"alerts without a firing test: {sorted(alerts - fired)}"

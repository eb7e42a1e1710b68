"""docker-compose.yml cannot run here; check it describes the same system as `make up`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def published(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    out = []
    for spec in service.get("ports", []):
        host, outside, inside = spec.split(":")
        out.append((host, int(outside), int(inside)))
    return out


def test_it_has_the_services_of_the_local_stack(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        "kafka", "worker", "simulator", "prometheus", "alertmanager", "grafana",
    }


def test_ports_match_the_local_defaults_and_bind_loopback(compose: dict[str, Any]) -> None:
    s = Settings()
    expected = {
        "kafka": s.kafka_port, "worker": s.web_port, "prometheus": s.prometheus_port,
        "alertmanager": s.alertmanager_port, "grafana": s.grafana_port,
    }
    for name, port in expected.items():
        assert published(compose["services"][name]) == [("127.0.0.1", port, port)], name


def test_kafka_listeners_match_the_local_broker(compose: dict[str, Any]) -> None:
    env = compose["services"]["kafka"]["environment"]
    s = Settings()
    assert env["KAFKA_LISTENERS"] == f"PLAINTEXT://:{s.kafka_port},CONTROLLER://:{s.kafka_controller_port}"
    local = dict(
        line.split("=", 1)
        for line in (ROOT / "deploy/kafka/server.properties").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert str(env["KAFKA_NUM_PARTITIONS"]) == local["num.partitions"] == str(s.partitions)
    assert local["process.roles"] == env["KAFKA_PROCESS_ROLES"]


def test_workers_use_the_broker_and_port_prometheus_scrapes(compose: dict[str, Any]) -> None:
    worker_env = compose["services"]["worker"]["environment"]
    assert worker_env["FLEET_TWIN_KAFKA_BOOTSTRAP"] == "kafka:9092"
    targets = yaml.safe_load((ROOT / "deploy/prometheus/targets/compose/workers.json").read_text())
    assert targets == [{"targets": [f"worker:{worker_env['FLEET_TWIN_WEB_PORT']}"]}]


def test_mounted_configs_exist_in_the_repo(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert (ROOT / source).exists(), f"{name} mounts missing {source}"
    for name in ("worker", "simulator"):
        assert (ROOT / compose["services"][name]["build"]["dockerfile"]).is_file()


def test_no_credential_has_a_default(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]["environment"]
    required = [grafana["GF_SECURITY_ADMIN_USER"], grafana["GF_SECURITY_ADMIN_PASSWORD"],
                compose["services"]["worker"]["environment"]["FLEET_TWIN_API_TOKEN"]]
    for value in required:
        assert value.startswith("${") and ":?" in value and value.endswith("}"), value
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert "FLEET_TWIN_API_TOKEN" not in compose["services"]["simulator"]["environment"]


def test_alertmanager_reads_the_inbox_token_from_compose_secret(compose: dict[str, Any]) -> None:
    assert compose["secrets"]["api_token"] == {"environment": "FLEET_TWIN_API_TOKEN"}
    assert compose["services"]["alertmanager"]["secrets"] == ["api_token"]
    config = yaml.safe_load((ROOT / "deploy/alertmanager/alertmanager.yml").read_text())
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            assert hook["url"] == "http://worker:6066/maintenance/inbox"
            assert hook["http_config"]["authorization"] == {
                "type": "Bearer", "credentials_file": "/run/secrets/api_token"}

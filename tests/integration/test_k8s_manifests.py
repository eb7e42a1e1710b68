"""The Kubernetes manifests in deploy/k8s hang together and match the code they deploy."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.settings import Settings
from streams.topics import topic_layout

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
SOURCES = Path(__file__).resolve().parents[2] / "streams" / "worker"


def docs() -> list[dict[str, Any]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            out += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return out


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def topics() -> dict[str, dict[str, Any]]:
    return {d["spec"]["topicName"]: d for d in docs() if d["kind"] == "KafkaTopic"}


def container() -> dict[str, Any]:
    return one("Deployment", "fleet-twin-worker")["spec"]["template"]["spec"]["containers"][0]


def test_every_manifest_is_listed_and_well_formed() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    for d in docs():
        assert d["apiVersion"] and d["kind"] and re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", d["metadata"]["name"])


def test_topics_are_the_settings_topics_and_co_partitioned() -> None:
    s, t = Settings(), topics()
    app = s.app_id
    assert set(t) == {*s.live_topics, f"{app}-twins-changelog", f"{app}-alerts-changelog"}
    for name in (s.desired_topic, s.rollouts_topic):  # as streams/topics.py creates them locally
        layout = topic_layout(s, name)
        assert t[name]["spec"]["partitions"] == layout.partitions == 1, name
        assert layout.configs.items() <= t[name]["spec"]["config"].items(), name
    assert t[s.desired_topic]["spec"]["config"]["cleanup.policy"] == "compact"
    partitions = t[s.telemetry_topic]["spec"]["partitions"]
    for name in (s.checks_topic, f"{app}-twins-changelog", f"{app}-alerts-changelog"):
        assert t[name]["spec"]["partitions"] == partitions, name
    for name in (f"{app}-twins-changelog", f"{app}-alerts-changelog"):
        assert t[name]["spec"]["config"]["cleanup.policy"] == "compact"
    assert {d["metadata"]["labels"]["strimzi.io/cluster"] for d in t.values()} == {"fleet-kafka"}
    assert all(d["spec"]["replicas"] >= 3 and d["spec"]["config"]["min.insync.replicas"] == "2" for d in t.values())
    assert one("ConfigMap", "fleet-twin-settings")["data"]["FLEET_TWIN_PARTITIONS"] == str(partitions)


def test_the_worker_is_configured_only_with_settings_that_exist_and_secrets_from_secrets() -> None:
    fields = set(Settings.model_fields)
    names = [e["name"] for e in container()["env"]] + list(one("ConfigMap", "fleet-twin-settings")["data"])
    for name in names:
        assert name.startswith("FLEET_TWIN_") and name.removeprefix("FLEET_TWIN_").lower() in fields, name
    for env in container()["env"]:
        if re.search("PASSWORD|TOKEN|SECRET", env["name"]):
            assert "secretKeyRef" in env.get("valueFrom", {}), env["name"]
    text = "\n".join(p.read_text() for p in K8S.glob("*.yaml"))
    assert not re.search(r"(?i)(password|token)\s*:\s*['\"]?[A-Za-z0-9+/=]{12,}", text)


def test_probes_service_and_service_monitor_point_at_the_workers_web_port() -> None:
    c = container()
    port = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert port == {"web": Settings().web_port}
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "web"}
    assert c["args"] == ["worker"]
    deployment = one("Deployment", "fleet-twin-worker")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = one("Service", "fleet-twin-worker")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "web"
    monitor = one("ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == "web" and monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert '"/healthz"' in (SOURCES / "views.py").read_text()


@pytest.mark.parametrize("kind", ["HorizontalPodAutoscaler", "PodDisruptionBudget"])
def test_scaling_objects_target_the_worker(kind: str) -> None:
    d = one(kind)
    if kind == "HorizontalPodAutoscaler":
        assert d["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                               "name": "fleet-twin-worker"}
    else:
        assert d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "fleet-twin-worker"


def test_the_hpa_scales_on_the_lag_the_worker_exports_and_never_beyond_the_partitions() -> None:
    hpa = one("HorizontalPodAutoscaler")
    metric = hpa["spec"]["metrics"][0]["external"]["metric"]["name"]
    assert f'"{metric}"' in (SOURCES / "metrics.py").read_text()
    assert metric in one("ConfigMap", "fleet-twin-adapter-rules")["data"]["config.yaml"]
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert hpa["spec"]["maxReplicas"] <= topics()[Settings().telemetry_topic]["spec"]["partitions"]

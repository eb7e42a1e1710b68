"""How each service of the local stack is doing, asked of the service itself.

A pid file says a process runs, not that it works: issue 17's worker ran, its
pid was there, and it answered 500 for every twin. `fleet-twin status` shows
what the services say: the worker's /healthz (and the reason when it cannot
serve twins), its consumer lag from /metrics, the processing-lag p99
Prometheus computes, and whether Prometheus and Alertmanager are ready.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from streams.local.procs import port_open
from streams.settings import Settings

TIMEOUT_S = 2.0
P99_LAG = "histogram_quantile(0.99, sum by (le) (rate(twin_processing_lag_seconds_bucket[1m])))"


@dataclass(frozen=True)
class Health:
    """What a service said about itself: `ok` None when there is nothing to ask."""

    ok: bool | None
    text: str


def consumer_lag(metrics_text: str) -> float | None:
    """Telemetry messages the worker has not read yet (every partition it holds), from /metrics."""
    families = [f for f in text_string_to_metric_families(metrics_text) if f.name == "twin_consumer_lag"]
    # present without samples: no partition has shown an end offset yet, so nothing waits
    return sum(s.value for f in families for s in f.samples) if families else None


def worker_health(settings: Settings) -> Health:
    """/healthz's verdict with its reason, the partitions held and the consumer lag."""
    base = settings.web_url()
    try:
        answer = httpx.get(f"{base}/healthz", timeout=TIMEOUT_S)
        body = answer.json()
    except (httpx.HTTPError, ValueError) as err:
        return Health(False, f"/healthz does not answer ({type(err).__name__})")
    words = [str(body.get("status", answer.status_code)), f"{body.get('partitions', '?')} partitions"]
    if reason := body.get("reason"):
        words[0] += f": {reason}"
    if (lag := _worker_lag(settings)) is not None:
        words.append(f"lag {lag:,.0f} messages")
    return Health(answer.status_code == 200 and body.get("status") == "ok", ", ".join(words))


def _worker_lag(settings: Settings) -> float | None:
    headers = {}
    if settings.metrics_token:  # /metrics is closed with its own token where one is set
        headers["Authorization"] = f"Bearer {settings.metrics_token.get_secret_value()}"
    try:
        answer = httpx.get(f"{settings.web_url()}/metrics", headers=headers, timeout=TIMEOUT_S)
    except httpx.HTTPError:
        return None
    return consumer_lag(answer.text) if answer.status_code == 200 else None


def processing_p99(settings: Settings) -> float | None:
    """The workers' processing-lag p99 over the last minute, as Prometheus computes it (None:
    no Prometheus, or no messages processed in that minute)."""
    try:
        answer = httpx.get(f"http://127.0.0.1:{settings.prometheus_port}/api/v1/query",
                           params={"query": P99_LAG}, timeout=TIMEOUT_S).json()
        value = float(answer["data"]["result"][0]["value"][1])
    except (httpx.HTTPError, ValueError, KeyError, IndexError):
        return None
    return value if value == value else None  # NaN: nothing processed in the window


def ready(url: str) -> Health:
    """Prometheus' and Alertmanager's readiness endpoint."""
    try:
        answer = httpx.get(url, timeout=TIMEOUT_S)
    except httpx.HTTPError as err:
        return Health(False, f"does not answer ({type(err).__name__})")
    return Health(answer.status_code == 200, "ready" if answer.status_code == 200 else f"HTTP {answer.status_code}")


def service_health(name: str, settings: Settings) -> Health:
    """What service `name` of the local stack says about itself."""
    if name == "kafka":
        return Health(True, "answers") if port_open(settings.kafka_port) else Health(False, "port closed")
    if name == "prometheus":
        return ready(f"http://127.0.0.1:{settings.prometheus_port}/-/ready")
    if name == "alertmanager":
        return ready(f"http://127.0.0.1:{settings.alertmanager_port}/-/ready")
    if name == "worker":
        health = worker_health(settings)
        if health.ok is not None and (p99 := processing_p99(settings)) is not None:
            return Health(health.ok, f"{health.text}, p99 processing lag {p99:.2f} s (1 min)")
        return health
    return Health(None, "")

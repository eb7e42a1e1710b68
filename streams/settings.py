"""Every setting of fleet-twin, read from `FLEET_TWIN_*` environment variables.

Built once at the entry point (the CLI) and passed down; nothing reads the
environment at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


ChangelogCodec = Literal["none", "gzip", "snappy", "lz4", "zstd"]
"""The codecs a Kafka producer may give a record batch (`Settings.changelog_compression`)."""


class Settings(BaseSettings):
    """Ports, addresses, paths and tunables. Each field is `FLEET_TWIN_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="FLEET_TWIN_", frozen=True)

    kafka_port: int = 9092
    kafka_controller_port: int = 9094
    kafka_bootstrap: str = ""
    """host:port list; empty means 127.0.0.1:<kafka_port>."""
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    """SASL_SSL: every client authenticates with SCRAM over TLS; the local broker then serves only that."""
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str = "fleet-twin"
    kafka_sasl_password: SecretStr | None = None
    """Unset: `<state_dir>/secrets/kafka-client.password`, which the local secure broker writes once."""
    kafka_ssl_cafile: Path | None = None
    """CA that signed the broker's certificate; unset: `<state_dir>/secrets/ca.pem` (the local broker's)."""
    web_host: str = "127.0.0.1"
    """Where other workers and clients reach this worker's web server (a pod's IP in Kubernetes)."""
    web_bind: str = ""
    """Address the web server binds; empty means `web_host` (this machine: 127.0.0.1 only)."""
    web_port: int = 6066
    api_token: SecretStr | None = None
    """Bearer token of the twin API; unset: `<state_dir>/secrets/api-token`, which `fleet-twin up` writes.
    Its principal (who a desired-state change records) is `operator`."""
    api_tokens: SecretStr | None = None
    """More principals of the twin API: `principal:token` entries, one a line (or comma-separated);
    unset: `<state_dir>/secrets/api-tokens` if that file exists (streams/auth.py)."""
    metrics_token: SecretStr | None = None
    """If set, /metrics wants this bearer token too (Prometheus sends it from its scrape config)."""
    prometheus_port: int = 9090
    alertmanager_port: int = 9093
    alertmanager_address: str = ""
    """URL of an Alertmanager elsewhere (e.g. http://alertmanager:9093); empty: the local one on alertmanager_port."""
    grafana_port: int = 3000
    grafana_token: SecretStr | None = None
    """Service-account token that `fleet-twin dashboards push` sends to Grafana."""
    grafana_user: str = "admin"
    grafana_password: SecretStr | None = None
    """Basic auth for `dashboards push` when no token is set (compose: GRAFANA_ADMIN_USER/PASSWORD)."""

    app_id: str = "fleet-twin"
    topic_prefix: str = ""
    """Prepended to every topic name: lets tests and staging share a broker."""
    partitions: int = Field(default=8, ge=1)
    max_event_bytes: int = 64 * 1024
    max_future_s: float = 300.0
    """Events timed further ahead of the broker's clock are rejected (future_ts)."""

    state_dir: Path = Path(".fleet-twin")
    archive_dir: Path = Path(".fleet-twin/archive")
    """Root of the Parquet archive of the topics that `fleet-twin archive` writes and replays read."""
    seeds_dir: Path = PROJECT_ROOT / "seeds"
    deploy_dir: Path = PROJECT_ROOT / "deploy"
    data_dir: Path = PROJECT_ROOT.parent / "shared" / "data"
    """Labelled public data sets (NAB, SKAB, UR3 CobotOps) for `fleet-twin eval --data`."""
    scrape_interval: str = "5s"
    maintenance_webhook: str = ""
    """Where Alertmanager sends maintenance's notifications; empty: the worker's demo inbox."""
    maintenance_webhook_token: SecretStr | None = None
    """Bearer token Alertmanager sends to that webhook; the worker's own inbox gets the API token."""
    alert_group_wait: str = "10s"
    alert_group_interval: str = "1m"
    silence_check_s: float = 5.0
    """How often a worker looks for robots that went quiet."""
    session_timeout_s: float = Field(default=10.0, gt=0)
    """Kafka consumer-group session: how long a dead worker keeps its partitions."""
    batch_max: int = Field(default=4000, ge=1)
    """Records ingest's own consumer folds at a time: a bound reached only under a backlog, where a
    larger batch spreads the fold's fixed cost per partition over more records (pre-filled drains:
    2,000 ran 1.43x faster than 500; 4,000 ran 1.16x and 1.08x faster than 2,000 in two runs,
    docs/BENCHMARKS.md); each batch holds the event loop for its fold (at the ~50 us per event of a
    draining worker's profile, ~0.2 s at 4,000) ..."""
    batch_within_s: float = Field(default=0.02, gt=0)
    """... or fewer: what the consumer has fetched when ingest asks, waiting at most this long only
    when it has nothing (aiokafka's `getmany`). A batch is never held back for more records, so
    under a steady load batches are as small as the loop is quick (docs/BENCHMARKS.md, seventeenth
    session: letting the broker hold a fetch for this long made batches larger and cost less CPU,
    and more latency)."""
    fetch_max_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    """Bytes one fetch of a worker's readers may bring back over all their partitions (each partition
    at most 64 x `max_event_bytes` of it): with a batch of `batch_max` records, what bounds the
    worker's transient memory. The broker still returns a record batch larger than this whole, so
    one oversized batch is read, never stuck on."""
    checkpoint_s: float = Field(default=2.0, ge=0)
    """How often ingest stores the twins changed since it last did (one changelog record each,
    however many records each robot had) and commits the offsets folded into them; 0: after every
    batch. A crash re-reads up to this much log; the views serve the fold meanwhile."""
    changelog_compression: ChangelogCodec = "zstd"
    """Codec of the twins changelog's batches, which the broker stores and replicates as they come
    (`compression.type=producer`): zstd wrote 2.9x fewer bytes per twin for ~3 us of the worker's
    CPU per twin (bench/changelog_codecs.py; gzip 2.8x for 29 us, lz4 2.5x for 12 us)."""

    sim_scenario: str = "demo"
    """What `fleet-twin up` simulates: `demo` loops every fault type, each within minutes."""
    sim_robots: int = 360
    sim_rate_hz: float = 1.0
    sim_seed: int = 1

    @property
    def bootstrap(self) -> str:
        return self.kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    @property
    def telemetry_topic(self) -> str:
        return self.topic("fleet.telemetry")

    @property
    def dlq_topic(self) -> str:
        return self.topic("fleet.telemetry.dlq")

    @property
    def anomalies_topic(self) -> str:
        return self.topic("fleet.anomalies")

    @property
    def checks_topic(self) -> str:
        """Internal: silence checks, co-partitioned with telemetry."""
        return self.topic("fleet.twin.checks")

    @property
    def desired_topic(self) -> str:
        """Desired-state changes (compacted, key selector|field, 1 partition: one total order)."""
        return self.topic("fleet.desired")

    @property
    def commands_topic(self) -> str:
        """Each robot's delta, keyed by robot id."""
        return self.topic("fleet.commands")

    @property
    def rollouts_topic(self) -> str:
        """The rollout gate's looks and decisions, keyed by plan id (1 partition)."""
        return self.topic("fleet.rollouts")

    @property
    def live_topics(self) -> tuple[str, ...]:
        """The topics this deployment's workers read and write (Faust's changelogs aside)."""
        return (self.telemetry_topic, self.dlq_topic, self.anomalies_topic, self.checks_topic,
                self.desired_topic, self.commands_topic, self.rollouts_topic)

    @property
    def alertmanager_url(self) -> str:
        return self.alertmanager_address or f"http://127.0.0.1:{self.alertmanager_port}"

    @property
    def webhook_url(self) -> str:
        return self.maintenance_webhook or f"{self.web_url()}/maintenance/inbox"

    def web_url(self, port: int | None = None) -> str:
        return f"http://{self.web_host}:{port or self.web_port}"

"""The local stack: broker, Prometheus, Alertmanager, a worker and the simulator.

Each service is started from the project's own configuration in `deploy/`,
bound to 127.0.0.1, with its data and logs under the state folder. The
docker-compose.yml describes the same services for users with Docker.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import SecretStr

from streams.auth import api_token, write_secret
from streams.exceptions import ProcessFailed
from streams.local.procs import Procs, http_ok, port_open
from streams.settings import Settings
from streams.topics import ensure_topics

ORDER = ("kafka", "prometheus", "alertmanager", "worker", "simulator")


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    url: str
    external: bool = False
    """Answers on its port but was not started by this stack (e.g. a shared broker)."""


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as FLEET_TWIN_* variables, so child processes see the same ones (secrets too:
    a child's environment is readable by its own user only); unset ones are left out."""
    return {
        f"FLEET_TWIN_{name.upper()}": value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        for name, value in settings.model_dump().items() if value is not None
    }


class Stack:
    """Start, stop and inspect the services of one state folder."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state_dir = settings.state_dir.resolve()
        self.procs = Procs(self.state_dir)

    # -- kafka (its own script: it resolves jars and formats storage) --------
    def start_kafka(self) -> bool:
        """Start our broker unless one already answers on the port; True if we started it.

        With FLEET_TWIN_KAFKA_SECURITY_PROTOCOL=SASL_SSL, kafka.sh starts the
        secure profile (and makes its certificates and passwords, once)."""
        if self.procs.pid("kafka") is not None:
            marker = self.state_dir / "run" / "kafka.security"  # written by kafka.sh start
            running = marker.read_text().strip() if marker.exists() else "PLAINTEXT"
            if running != self.settings.kafka_security_protocol:
                raise ProcessFailed(f"the broker of {self.state_dir} runs {running}, not "
                                    f"{self.settings.kafka_security_protocol}: stop it first (make down)")
            return False
        if port_open(self.settings.kafka_port):
            return False
        self._kafka_script("start")
        return True

    def stop_kafka(self) -> bool:
        if self.procs.pid("kafka") is None:
            return False
        self._kafka_script("stop")
        return True

    def batch_codecs(self, topic: str, partition: int) -> list[str]:
        """The codec of every record batch our broker holds for a partition, as Kafka's own
        DumpLogSegments reads its segment files (so a test sees what is on disk, not what a
        client decoded)."""
        folder = self.kafka_data / f"{topic}-{partition}"
        segments = sorted(str(f) for f in folder.glob("*.log"))
        if not segments:
            raise ProcessFailed(f"no segment files in {folder}: is the broker this stack's own?")
        out = self._kafka_script("dump-log", *segments, capture=True)
        return [line.split("compresscodec: ")[1].split()[0] for line in out.splitlines() if "compresscodec: " in line]

    @property
    def kafka_data(self) -> Path:
        """Where the broker this stack starts (PLAINTEXT) keeps its partitions (deploy/kafka/kafka.sh)."""
        return self.state_dir / "kafka" / "data"

    def _kafka_script(self, action: str, *args: str, capture: bool = False) -> str:
        script = self.settings.deploy_dir / "kafka" / "kafka.sh"
        env = {**settings_env(self.settings), "FLEET_TWIN_STATE_DIR": str(self.state_dir)}
        result = subprocess.run([str(script), action, *args], env={**os.environ, **env},
                                stdout=subprocess.PIPE if capture else None, text=True)
        if result.returncode != 0:
            raise ProcessFailed(f"kafka.sh {action} failed (exit {result.returncode})")
        return result.stdout or ""

    # -- prometheus and alertmanager -----------------------------------------
    def start_prometheus(self, worker_ports: list[int] | None = None) -> None:
        config = self.render_prometheus(worker_ports or [self.settings.web_port])
        port = self.settings.prometheus_port
        argv = [
            _binary("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={self.state_dir / 'prometheus' / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
        ]
        self.procs.spawn("prometheus", argv, {})
        self.procs.wait_ready("prometheus", http_ok(f"http://127.0.0.1:{port}/-/ready"), 60)

    def render_prometheus(self, worker_ports: list[int]) -> Path:
        """Copy the project's Prometheus config and rules, with local targets and interval."""
        src = self.settings.deploy_dir / "prometheus"
        dst = self.state_dir / "prometheus"
        shutil.rmtree(dst / "rules", ignore_errors=True)
        shutil.copytree(src / "rules", dst / "rules")
        config = yaml.safe_load((src / "prometheus.yml").read_text())
        config["global"]["scrape_interval"] = self.settings.scrape_interval
        config["global"]["evaluation_interval"] = self.settings.scrape_interval
        if self.settings.metrics_token:
            token = write_secret(dst / "secrets" / "metrics-token", self.settings.metrics_token.get_secret_value())
            for job in config["scrape_configs"]:
                if job["job_name"] == "fleet-twin-workers":
                    job["authorization"] = {"type": "Bearer", "credentials_file": str(token)}
        (dst / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        targets = {
            "workers": [f"127.0.0.1:{p}" for p in worker_ports],
            "alertmanagers": [f"127.0.0.1:{self.settings.alertmanager_port}"],
            "prometheus": [f"127.0.0.1:{self.settings.prometheus_port}"],
        }
        (dst / "targets").mkdir(parents=True, exist_ok=True)
        for name, hosts in targets.items():
            (dst / "targets" / f"{name}.json").write_text(json.dumps([{"targets": hosts}]))
        return dst / "prometheus.yml"

    def render_alertmanager(self) -> Path:
        """The project's Alertmanager config with this stack's webhook URL, its bearer token and
        group timings. The token goes to a 0600 file beside it, named by `credentials_file`."""
        config = yaml.safe_load((self.settings.deploy_dir / "alertmanager" / "alertmanager.yml").read_text())
        route = config["route"]
        for r in [route, *route.get("routes", [])]:
            r["group_wait"] = self.settings.alert_group_wait
        route["group_interval"] = self.settings.alert_group_interval
        out = self.state_dir / "alertmanager" / "alertmanager.yml"
        token = self._webhook_token()
        if token:
            secret = write_secret(out.parent / "secrets" / "webhook-token", token.get_secret_value())
        for receiver in config["receivers"]:
            for hook in receiver.get("webhook_configs", []):
                hook["url"] = self.settings.webhook_url
                hook.pop("http_config", None)  # the committed one names compose's secret
                if token:
                    hook["http_config"] = {"authorization": {"type": "Bearer", "credentials_file": str(secret)}}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(yaml.safe_dump(config, sort_keys=False))
        return out

    def _webhook_token(self) -> SecretStr | None:
        """The worker's own inbox wants the API token; an outside webhook gets its own token, if
        one is set, and never the API's."""
        if not self.settings.maintenance_webhook:
            return api_token(self.settings)
        return self.settings.maintenance_webhook_token or None

    def start_alertmanager(self) -> None:
        port = self.settings.alertmanager_port
        argv = [
            _binary("prometheus-alertmanager", "alertmanager"),
            f"--config.file={self.render_alertmanager()}",
            f"--storage.path={self.state_dir / 'alertmanager' / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip port: it would default to 0.0.0.0:9094
        ]
        self.procs.spawn("alertmanager", argv, {})
        self.procs.wait_ready("alertmanager", http_ok(f"http://127.0.0.1:{port}/-/ready"), 60)

    # -- our own processes ------------------------------------------------------
    def start_worker(self, name: str = "worker") -> None:
        env = settings_env(self.settings)
        self.procs.spawn(name, [sys.executable, "-m", "streams", "worker"], env)
        health = f"{self.settings.web_url()}/healthz"
        self.procs.wait_ready(name, http_ok(health), 90)

    def start_simulator(self) -> None:
        s = self.settings
        argv = [
            sys.executable, "-m", "streams", "simulate", "--no-progress",
            "--scenario", s.sim_scenario, "--robots", str(s.sim_robots), "--rate", str(s.sim_rate_hz),
            "--duration", str(30 * 86400),  # the local stack's fleet runs until `down`
            "--fleet-id", "",  # stable robot ids (the README's); `simulate` runs get ids of their own
        ]
        self.procs.spawn("simulator", argv, settings_env(self.settings))

    # -- the whole stack --------------------------------------------------------
    def up(self) -> None:
        self.start_kafka()
        asyncio.run(ensure_topics(self.settings))
        self.start_prometheus()
        self.start_alertmanager()
        self.start_worker()
        self.start_simulator()

    def down(self) -> list[str]:
        """Stop, newest first, what this state folder's pid files name; return their names."""
        stopped = [n for n in reversed(ORDER[1:]) if self.procs.stop(n)]
        if self.stop_kafka():
            stopped.append("kafka")
        return stopped

    def status(self) -> list[ServiceStatus]:
        s = self.settings
        urls = {
            "kafka": s.bootstrap,
            "prometheus": f"http://127.0.0.1:{s.prometheus_port}",
            "alertmanager": f"http://127.0.0.1:{s.alertmanager_port}",
            "worker": s.web_url(),
            "simulator": f"-> {s.telemetry_topic}",
        }
        found = [ServiceStatus(n, self.procs.pid(n), urls[n]) for n in ORDER]
        if found[0].pid is None and port_open(s.kafka_port):
            found[0] = ServiceStatus("kafka", None, urls["kafka"], external=True)
        return found


def _binary(*names: str) -> str:
    for name in names:
        if path := shutil.which(name):
            return path
    raise ProcessFailed(
        f"none of {', '.join(names)} is installed; on Debian/Ubuntu: "
        "sudo apt-get install prometheus prometheus-alertmanager"
    )


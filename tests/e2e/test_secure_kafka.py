"""Kafka with SASL/SCRAM over TLS, end to end, on a second broker of its own.

The module starts the project's broker in its secure profile (`kafka.sh` via
`Stack`, FLEET_TWIN_KAFKA_SECURITY_PROTOCOL=SASL_SSL) on free ports with its
own state folder, as `make up` would: certificates and passwords are made at
start. Every client then connects with settings taken from an environment
(protocol, user, password, CA file): topic creation, the simulator (a
subprocess), a worker and its API, a replay from Kafka, republish, the
archive. Clients without the right credentials are refused: PLAINTEXT, TLS
without SASL, a wrong password, kcat without credentials.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed
from pydantic import SecretStr

from streams.analysis import replay_window as replaying
from streams.analysis.archive import archive
from streams.kafka_client import client_kwargs, ssl_context
from streams.analysis.replay_window import Window
from streams.settings import Settings
from streams.local.stack import Stack, settings_env
from streams.topics import ensure_topics
from tests.support.net import free_port
from tests.support.waiting import eventually
from twin.record import Record
from twin.replay import Selection

ROBOTS = 12
BAD_PASSWORD = "invalid credentials with SASL mechanism SCRAM-SHA-512"  # in the broker log


def from_environment(env: dict[str, str]) -> Settings:
    """Settings as a process with exactly these FLEET_TWIN_* variables would build them."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("FLEET_TWIN_")]:
            patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        return Settings()


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A secure broker of this module; yields the clients' settings (password and CA set)."""
    run = uuid.uuid4().hex[:8]
    extra: dict[str, Any] = {}
    if "api_token" in Settings.model_fields:  # the twin API may want a bearer token
        extra["api_token"] = SecretStr(secrets.token_urlsafe(32))
    broker = Settings(
        kafka_security_protocol="SASL_SSL", kafka_port=free_port(), kafka_controller_port=free_port(),
        state_dir=tmp_path_factory.mktemp("secure-state"), app_id=f"fleet-twin-secure-{run}",
        topic_prefix=f"secure-{run}.", partitions=2, web_port=free_port(), silence_check_s=1.0, **extra,
    )  # no password: kafka.sh generates them into the state folder, as for `make up`
    stack = Stack(broker)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLEET_TWIN_KAFKA_HEAP", "512M")
        patch.setenv("FLEET_TWIN_KAFKA_START_TIMEOUT", "60")
        assert stack.start_kafka(), "the secure broker is this module's own"
    try:
        secrets_dir = broker.state_dir / "secrets"
        yield from_environment({
            **settings_env(broker),
            "FLEET_TWIN_KAFKA_SASL_USERNAME": "fleet-twin",
            "FLEET_TWIN_KAFKA_SASL_PASSWORD": (secrets_dir / "kafka-client.password").read_text().strip(),
            "FLEET_TWIN_KAFKA_SSL_CAFILE": str(secrets_dir / "ca.pem"),
        })
    finally:
        stack.procs.stop("worker")
        stack.stop_kafka()


def passwords(settings: Settings) -> list[str]:
    folder = settings.state_dir / "secrets"
    return [(folder / f"kafka-{who}.password").read_text().strip() for who in ("admin", "client")]


def broker_log(settings: Settings) -> str:
    return (settings.state_dir / "logs" / "kafka" / "server.log").read_text(errors="replace")


def api_headers(settings: Settings) -> dict[str, str]:
    token = getattr(settings, "api_token", None)
    return {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}


# ---------------------------------------------------------------- the secrets


def test_secrets_are_private_and_never_logged(secure: Settings) -> None:
    folder = secure.state_dir / "secrets"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
    assert {"ca.pem", "broker.keystore.pem", "kafka-admin.password", "kafka-client.password"} <= set(files)
    assert set(files.values()) == {0o600}, files
    config = secure.state_dir / "kafka-sasl_ssl" / "server.properties"  # holds the admin password
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert not (secure.state_dir / "run" / "format.args").exists()  # the SCRAM arguments, removed
    pid = int((secure.state_dir / "run" / "kafka.pid").read_text())
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
    logs = [p.read_text(errors="replace") for p in (secure.state_dir / "logs").rglob("*.log")]
    for password in passwords(secure):
        assert len(password) >= 32
        assert password not in cmdline
        assert not any(password in log for log in logs)
    assert "SASL_SSL://127.0.0.1" in broker_log(secure) and "PLAINTEXT://127.0.0.1" not in broker_log(secure)


# ---------------------------------------------------------------- every client over SASL_SSL


def test_topics_simulator_and_worker_over_sasl_ssl(secure: Settings) -> None:
    without_password = secure.model_copy(update={"kafka_sasl_password": None, "kafka_ssl_cafile": None})
    asyncio.run(ensure_topics(without_password))  # the state folder's password and CA, as `make up`
    env = {**os.environ, **settings_env(secure)}
    argv = [sys.executable, "-m", "streams", "simulate", "--no-progress", "--robots", str(ROBOTS),
            "--rate", "1", "--duration", "20", "--speed", "10"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{ROBOTS * 20} events to {secure.telemetry_topic}" in done.stdout.replace(",", "")

    Stack(secure).start_worker()
    with httpx.Client(base_url=secure.web_url(), headers=api_headers(secure), timeout=5) as api:
        def all_twins() -> dict[str, Any] | None:
            body = api.get("/twins", params={"limit": 100}).raise_for_status().json()
            return body if body["total"] == ROBOTS else None

        robot = eventually(all_twins, 60)["robots"][0]

        def caught_up() -> dict[str, Any] | None:
            twin: dict[str, Any] = api.get(f"/twins/{robot}").raise_for_status().json()
            return twin if twin["counts"]["events"] == 21 else None  # 20 reports, then the sign-off

        assert eventually(caught_up, 30)["robot_id"] == robot
    worker = Stack(secure).procs
    pid = worker.pid("worker")
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
    assert secure.kafka_sasl_password is not None
    password = secure.kafka_sasl_password.get_secret_value()
    assert password in Path(f"/proc/{pid}/environ").read_bytes().decode()  # how it got there
    assert password not in cmdline and password not in worker.log_file("worker").read_text()


def test_replay_republish_and_archive_over_sasl_ssl(secure: Settings, tmp_path: Path) -> None:
    telemetry: list[Record] = []

    def keep(record: Record) -> None:
        if record.kind == "telemetry":
            telemetry.append(record)

    result = replaying.run(secure, Window(0.0, time.time() + 60), Selection(), at=[], on_record=keep)
    assert len(result.twins) == ROBOTS and len(telemetry) == ROBOTS * 21  # 20 reports, then the sign-off

    sent = replaying.republish(secure, iter(telemetry), secure.topic("staging"), speed=1e6)
    assert sent == len(telemetry)

    stats = asyncio.run(archive(secure, tmp_path / "archive", once=True, flush_rows=1_000))
    assert stats.records["telemetry"] == len(telemetry) and stats.commits >= 1
    assert list((tmp_path / "archive" / "telemetry").rglob("part-*.parquet"))


# ---------------------------------------------------------------- who is refused


async def _produce(topic: str, **kwargs: Any) -> None:
    producer = AIOKafkaProducer(request_timeout_ms=10_000, **kwargs)
    try:
        await asyncio.wait_for(producer.start(), 20)
        await asyncio.wait_for(producer.send_and_wait(topic, b"x"), 20)
    finally:
        await producer.stop()


def test_the_right_credentials_produce(secure: Settings) -> None:
    """The control of the refusals below: the same producer with the settings' credentials works."""
    asyncio.run(_produce(secure.topic("refused"), **client_kwargs(secure)))


@pytest.mark.parametrize("how", ["plaintext", "tls without sasl", "wrong password"])
def test_clients_without_the_right_credentials_are_refused(secure: Settings, how: str) -> None:
    kwargs: dict[str, Any] = {"bootstrap_servers": secure.bootstrap}
    if how == "tls without sasl":
        kwargs.update(security_protocol="SSL", ssl_context=ssl_context(secure))
    if how == "wrong password":
        kwargs = {**client_kwargs(secure), "sasl_plain_password": "not-the-password-" + secrets.token_hex(8)}
    with pytest.raises(KafkaConnectionError):
        asyncio.run(_produce(secure.topic("refused"), **kwargs))


def test_a_wrong_password_is_an_authentication_error(secure: Settings) -> None:
    """On one connection the refusal is SCRAM's own, and the broker logs it as such."""
    host, port = secure.bootstrap.split(":")
    kwargs = {k: v for k, v in client_kwargs(secure).items() if k != "bootstrap_servers"}

    async def connect(password: str) -> None:
        conn = await create_conn(host, int(port), request_timeout_ms=10_000,
                                 **{**kwargs, "sasl_plain_password": password})
        conn.close()

    asyncio.run(connect(kwargs["sasl_plain_password"]))  # the right one connects
    before = broker_log(secure).count(BAD_PASSWORD)
    with pytest.raises(SaslAuthenticationFailed):
        asyncio.run(connect("wrong-" + secrets.token_hex(12)))

    def logged() -> int | None:
        count = broker_log(secure).count(BAD_PASSWORD)
        return count if count > before else None

    assert eventually(logged, 10) == before + 1


def test_kcat_without_credentials_is_refused(secure: Settings) -> None:
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    if kcat is None:
        pytest.skip("kcat is not installed (`make test` installs the Debian package kafkacat)")

    async def topics() -> set[str]:  # the broker answers the right credentials meanwhile
        admin = AIOKafkaAdminClient(**client_kwargs(secure))
        await admin.start()
        try:
            return set(await admin.list_topics())
        finally:
            await admin.close()

    assert secure.telemetry_topic in asyncio.run(topics())
    ca = secure.kafka_ssl_cafile
    for extra in ([], ["-X", "security.protocol=SSL", "-X", f"ssl.ca.location={ca}"]):
        done = subprocess.run([kcat, "-b", secure.bootstrap, "-L", "-m", "5", *extra],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode != 0 and "Failed to acquire metadata" in done.stderr, done.stderr
        assert secure.telemetry_topic not in done.stdout

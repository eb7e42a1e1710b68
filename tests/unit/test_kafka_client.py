"""Kafka connection settings: the SASL password stays out of reprs and command lines. No broker."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from streams import kafka_client
from streams.exceptions import MissingKafkaSecret, ProcessFailed
from streams.kafka_client import client_kwargs, faust_broker, sasl_password
from streams.local.procs import Procs
from streams.settings import Settings
from streams.local.stack import Stack, settings_env

PASSWORD = "correct-horse-battery-staple-42"


def secure(tmp_path: Path, **changes: Any) -> Settings:
    return Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_password=SecretStr(PASSWORD),
                    state_dir=tmp_path, kafka_port=1, **changes)


def test_the_password_is_redacted_when_settings_are_printed(tmp_path: Path) -> None:
    settings = secure(tmp_path)
    for text in (repr(settings), str(settings), settings.model_dump_json(), repr(settings.model_dump())):
        assert PASSWORD not in text
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == PASSWORD


def test_the_stack_passes_the_password_by_environment_never_by_command_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    launched: list[tuple[list[str], Mapping[str, str]]] = []

    def spawn(self: Procs, name: str, argv: list[str], env: Mapping[str, str]) -> int:
        launched.append((argv, env))
        return 1

    def run(argv: list[str], env: Mapping[str, str], **_: Any) -> subprocess.CompletedProcess[bytes]:
        launched.append((argv, env))
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(Procs, "spawn", spawn)
    monkeypatch.setattr(Procs, "wait_ready", lambda *_: None)
    monkeypatch.setattr("streams.local.stack.subprocess.run", run)
    stack = Stack(secure(tmp_path))
    assert stack.start_kafka()
    stack.start_worker()
    stack.start_simulator()
    assert len(launched) == 3
    for argv, env in launched:
        assert not any(PASSWORD in arg for arg in argv)
        assert env["FLEET_TWIN_KAFKA_SASL_PASSWORD"] == PASSWORD
        assert env["FLEET_TWIN_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"


def test_an_unset_password_or_ca_is_left_to_the_state_folder(tmp_path: Path) -> None:
    settings = Settings(kafka_security_protocol="SASL_SSL", state_dir=tmp_path)
    env = settings_env(settings)
    assert "FLEET_TWIN_KAFKA_SASL_PASSWORD" not in env and "FLEET_TWIN_KAFKA_SSL_CAFILE" not in env
    with pytest.raises(MissingKafkaSecret, match="FLEET_TWIN_KAFKA_SASL_PASSWORD"):
        sasl_password(settings)
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / kafka_client.CLIENT_PASSWORD_FILE).write_text(PASSWORD + "\n")
    assert sasl_password(settings) == PASSWORD
    with pytest.raises(MissingKafkaSecret, match="FLEET_TWIN_KAFKA_SSL_CAFILE"):
        client_kwargs(settings)  # no CA yet: refuse, rather than trust any certificate


def test_plaintext_clients_get_only_the_servers(tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap="a:1,b:2", state_dir=tmp_path)
    assert client_kwargs(settings) == {"bootstrap_servers": "a:1,b:2"}
    assert faust_broker(settings) == {"broker": "kafka://a:1;kafka://b:2"}


def test_clients_never_meet_a_running_broker_of_the_other_profile(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "kafka.pid").write_text(str(os.getpid()))  # alive: "our broker runs"
    (tmp_path / "run" / "kafka.security").write_text("SASL_SSL\n")
    assert not Stack(secure(tmp_path)).start_kafka()  # the same profile: reused
    with pytest.raises(ProcessFailed, match="runs SASL_SSL, not PLAINTEXT"):
        Stack(Settings(state_dir=tmp_path)).start_kafka()

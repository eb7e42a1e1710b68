"""The API token: never printed with the settings, found in setting or file, checked exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from streams.auth import api_token, bearer_ok, ensure_api_token, token_file
from streams.exceptions import NoApiToken
from streams.settings import Settings
from streams.local.stack import settings_env

TOKEN = "s3cret-token-0123456789abcdef"


def test_secrets_are_not_in_the_settings_repr_or_str(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, api_token=SecretStr(TOKEN), metrics_token=SecretStr(TOKEN + "m"),
                        maintenance_webhook_token=SecretStr(TOKEN + "w"))
    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        assert TOKEN not in shown


def test_env_of_child_processes_carries_the_secret_and_leaves_unset_ones_out(tmp_path: Path) -> None:
    env = settings_env(Settings(state_dir=tmp_path, api_token=SecretStr(TOKEN)))
    assert env["FLEET_TWIN_API_TOKEN"] == TOKEN
    assert "FLEET_TWIN_METRICS_TOKEN" not in env


def test_the_setting_wins_over_the_file(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    with pytest.raises(NoApiToken):
        api_token(settings)
    written = ensure_api_token(settings)
    assert written == token_file(settings) and written.stat().st_mode & 0o777 == 0o600
    assert written.parent.stat().st_mode & 0o777 == 0o700
    from_file = api_token(settings).get_secret_value()
    assert len(from_file) >= 32 and ensure_api_token(settings) is None  # once: kept across runs
    assert api_token(settings).get_secret_value() == from_file
    both = Settings(state_dir=tmp_path, api_token=SecretStr(TOKEN))
    assert api_token(both).get_secret_value() == TOKEN


def test_an_empty_setting_is_unset_and_a_short_token_is_refused(tmp_path: Path) -> None:
    assert ensure_api_token(Settings(state_dir=tmp_path, api_token=SecretStr(""))) is not None
    with pytest.raises(NoApiToken, match="shorter"):
        api_token(Settings(state_dir=tmp_path, api_token=SecretStr("short")))


@pytest.mark.parametrize(("header", "ok"), [
    (f"Bearer {TOKEN}", True),
    (f"bearer {TOKEN}", True),
    (f"Bearer  {TOKEN} ", True),
    (None, False),
    ("", False),
    ("Bearer", False),
    ("Bearer ", False),
    (TOKEN, False),
    (f"Basic {TOKEN}", False),
    (f"Bearer {TOKEN[:-1]}", False),
    (f"Bearer {TOKEN}x", False),
    (f"Bearer {TOKEN[:-1]}X", False),
])
def test_bearer_check(header: str | None, ok: bool) -> None:
    assert bearer_ok(header, SecretStr(TOKEN)) is ok

"""The API token: never printed with the settings, found in setting or file, checked exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from streams.auth import (
    OPERATOR, BadApiTokens, api_token, bearer_ok, ensure_api_token, principal_in, principal_of, principals,
    token_file, tokens_file, write_secret,
)
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


ALICE, BOB = "alice-token-0123456789abcdef", "bob-token-0123456789abcdef:x"


def test_the_api_token_is_the_operator_and_named_tokens_are_their_principals(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, api_token=SecretStr(TOKEN),
                        api_tokens=SecretStr(f"# who may change desired state\nalice:{ALICE}\n\n bob : {BOB} "))
    assert set(principals(settings)) == {OPERATOR, "alice", "bob"}
    assert principal_of(f"Bearer {TOKEN}", settings) == OPERATOR
    assert principal_of(f"bearer {ALICE}", settings) == "alice"
    assert principal_of(f"Bearer {BOB}", settings) == "bob"  # a token may hold ':'; the principal may not
    for header in (None, "", "Bearer", "Bearer ", ALICE, f"Basic {ALICE}", f"Bearer {ALICE[:-1]}",
                   f"Bearer {ALICE}x", f"Bearer alice:{ALICE}"):
        assert principal_of(header, settings) is None, header


def test_without_named_tokens_only_the_operator_exists(tmp_path: Path) -> None:
    assert principals(Settings(state_dir=tmp_path, api_token=SecretStr(TOKEN))) == {OPERATOR: SecretStr(TOKEN)}
    assert principals(Settings(state_dir=tmp_path, api_token=SecretStr(TOKEN), api_tokens=SecretStr(" "))) == \
        {OPERATOR: SecretStr(TOKEN)}
    with pytest.raises(NoApiToken):  # no principal without the API token
        principals(Settings(state_dir=tmp_path, api_tokens=SecretStr(f"alice:{ALICE}")))


def test_the_state_folder_file_is_read_when_the_setting_is_unset_and_commas_separate_too(tmp_path: Path) -> None:
    write_secret(tokens_file(Settings(state_dir=tmp_path)), f"alice:{ALICE},bob:{BOB}")
    settings = Settings(state_dir=tmp_path, api_token=SecretStr(TOKEN))
    assert principal_of(f"Bearer {BOB}", settings) == "bob"
    assert principal_in(f"Bearer {ALICE}", principals(settings)) == "alice"
    overridden = Settings(state_dir=tmp_path, api_token=SecretStr(TOKEN), api_tokens=SecretStr(f"carol:{ALICE}"))
    assert principal_of(f"Bearer {ALICE}", overridden) == "carol" and principal_of(f"Bearer {BOB}", overridden) is None


@pytest.mark.parametrize(("entries", "says"), [
    (f"alice{ALICE}", "want `principal:token`"),
    (f":{ALICE}", "want `principal:token`"),
    (f"al ice:{ALICE}", "want `principal:token`"),
    ("alice:short", "shorter than 16"),
    (f"alice:{ALICE}\nalice:{BOB}", "named twice"),
    (f"operator:{ALICE}", "named twice"),
    (f"alice:{ALICE}\nbob:{ALICE}", "another principal's"),
    (f"bob:{TOKEN}", "another principal's"),
])
def test_malformed_entries_are_refused_saying_which_and_why_but_never_the_token(
        tmp_path: Path, entries: str, says: str) -> None:
    settings = Settings(state_dir=tmp_path, api_token=SecretStr(TOKEN), api_tokens=SecretStr(entries))
    with pytest.raises(BadApiTokens, match=says) as err:
        principals(settings)
    assert "FLEET_TWIN_API_TOKENS, entry" in str(err.value)
    assert ALICE not in str(err.value) and TOKEN not in str(err.value)

"""Bearer tokens of the twin API: where a worker finds its token, and the check.

The token is the setting `FLEET_TWIN_API_TOKEN` or, when that is unset, the
file `<state_dir>/secrets/api-token` that `fleet-twin up` writes once (0600).
A request's token is compared with `hmac.compare_digest`, in constant time, so
how long a wrong token takes to refuse does not tell how much of it was right.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from pydantic import SecretStr

from streams.exceptions import NoApiToken
from streams.settings import Settings

MIN_TOKEN_CHARS = 16


def token_file(settings: Settings) -> Path:
    return settings.state_dir / "secrets" / "api-token"


def api_token(settings: Settings) -> SecretStr:
    """The setting, else the state folder's file; NoApiToken if neither holds a usable one."""
    token = settings.api_token
    if token is None or not token.get_secret_value():
        try:
            token = SecretStr(token_file(settings).read_text().strip())
        except FileNotFoundError:
            raise NoApiToken(f"no API token: set FLEET_TWIN_API_TOKEN or write one to "
                             f"{token_file(settings)} (`fleet-twin up` does)") from None
    if len(token.get_secret_value()) < MIN_TOKEN_CHARS:
        raise NoApiToken(f"the API token is shorter than {MIN_TOKEN_CHARS} characters")
    return token


def ensure_api_token(settings: Settings) -> Path | None:
    """Write a new random token to the state folder unless one is set or there; the file if written."""
    if (settings.api_token and settings.api_token.get_secret_value()) or token_file(settings).exists():
        return None
    return write_secret(token_file(settings), secrets.token_urlsafe(32))


def write_secret(path: Path, value: str) -> Path:
    """Write `value` to `path` readable by its owner only (0600, in a 0700 folder)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older file may have had wider permissions
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    return path


def bearer_ok(authorization: str | None, token: SecretStr) -> bool:
    """Whether an Authorization header carries `Bearer <token>` (scheme case-insensitive)."""
    scheme, _, given = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode())

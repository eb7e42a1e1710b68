"""Bearer tokens of the twin API: where a worker finds its token, and the check.

The token is the setting `FLEET_TWIN_API_TOKEN` or, when that is unset, the
file `<state_dir>/secrets/api-token` that `fleet-twin up` writes once (0600).
A request's token is compared with `hmac.compare_digest`, in constant time, so
how long a wrong token takes to refuse does not tell how much of it was right.

Principals say who made a desired-state change. The API token's principal is
`operator`; more can be named in `FLEET_TWIN_API_TOKENS` or, when that is
unset, the optional file `<state_dir>/secrets/api-tokens`: `principal:token`
entries, one a line (or separated by commas), `#` starting a comment line.
A request's token is compared with every principal's token, each in constant
time, and all of them always, so the time taken does not tell whose it was.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
from pathlib import Path

from pydantic import SecretStr

from streams.exceptions import NoApiToken
from streams.settings import Settings

MIN_TOKEN_CHARS = 16
OPERATOR = "operator"
"""The principal of the single API token (`FLEET_TWIN_API_TOKEN`)."""
PRINCIPAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


class BadApiTokens(NoApiToken):
    """The named principals' tokens cannot be used as written: a worker refuses to start with them."""


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


def tokens_file(settings: Settings) -> Path:
    return settings.state_dir / "secrets" / "api-tokens"


def principals(settings: Settings) -> dict[str, SecretStr]:
    """Every principal and its token: `operator` (the API token) and the named ones.

    NoApiToken without an API token; BadApiTokens, saying which entry and why,
    for a malformed entry, a short token, a principal named twice or a token shared.
    """
    known = {OPERATOR: api_token(settings)}
    text, where = _tokens_text(settings)
    for n, entry in enumerate(re.split(r"[\n,]", text), start=1):
        entry = entry.strip()
        if not entry or entry.startswith("#"):
            continue
        name, sep, token = (part.strip() for part in entry.partition(":"))
        at = f"{where}, entry {n}"
        if not sep:  # the entry may be a bare token: never echo it
            raise BadApiTokens(f"{at}: want `principal:token`; it has no ':'")
        if not PRINCIPAL.fullmatch(name):
            raise BadApiTokens(f"{at}: want `principal:token`, the principal 1 to 64 of A-Z a-z 0-9 _ . @ - "
                               f"(got {name[:64]!r})")
        if name in known:
            raise BadApiTokens(f"{at}: principal {name!r} is named twice"
                               + (" (`operator` is the API token's)" if name == OPERATOR else ""))
        if len(token) < MIN_TOKEN_CHARS:
            raise BadApiTokens(f"{at}: the token of {name!r} is shorter than {MIN_TOKEN_CHARS} characters")
        if any(hmac.compare_digest(token.encode(), t.get_secret_value().encode()) for t in known.values()):
            raise BadApiTokens(f"{at}: the token of {name!r} is another principal's too")
        known[name] = SecretStr(token)
    return known


def _tokens_text(settings: Settings) -> tuple[str, str]:
    """The entries, and where they come from (for error messages; never the text itself)."""
    if settings.api_tokens is not None and settings.api_tokens.get_secret_value().strip():
        return settings.api_tokens.get_secret_value(), "FLEET_TWIN_API_TOKENS"
    try:
        return tokens_file(settings).read_text(), str(tokens_file(settings))
    except FileNotFoundError:
        return "", ""


def principal_in(authorization: str | None, known: dict[str, SecretStr]) -> str | None:
    """Whose token an Authorization header bears (`Bearer <token>`), or None.

    Every token is compared, in constant time each, whatever matched before.
    """
    scheme, _, given = (authorization or "").strip().partition(" ")
    presented = given.strip().encode()
    found = None
    for name, token in known.items():
        if hmac.compare_digest(presented, token.get_secret_value().encode()) and found is None:
            found = name
    return found if scheme.lower() == "bearer" and presented else None


def principal_of(authorization: str | None, settings: Settings) -> str | None:
    """Whose token an Authorization header bears, reading the tokens now (a worker reads them once:
    `principals`, then `principal_in` per request)."""
    return principal_in(authorization, principals(settings))

"""Ports and the twin API's credentials."""

from __future__ import annotations

import socket

from streams.auth import api_token
from streams.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def auth(settings: Settings) -> dict[str, str]:
    """The header a client of the twin API sends (the setting's token, else the state folder's)."""
    return {"Authorization": f"Bearer {api_token(settings).get_secret_value()}"}

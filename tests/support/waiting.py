"""Waiting for what a worker does after the fact."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(fetch: Callable[[], T | None], timeout_s: float = 45.0) -> T:
    """Poll until `fetch` returns something, or fail with the time waited."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (value := fetch()) is not None:
            return value
        time.sleep(0.25)
    raise AssertionError(f"nothing after {timeout_s}s")

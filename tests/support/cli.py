"""The `fleet-twin` command line as a test runs it."""

from __future__ import annotations

import os
import subprocess
import sys

from streams.local.stack import settings_env
from streams.settings import Settings


def simulate(settings: Settings, *args: str) -> str:
    """`fleet-twin simulate --no-progress ARGS` against `settings`' broker; its stdout (fails on a non-zero exit)."""
    result = subprocess.run(
        [sys.executable, "-m", "streams", "simulate", "--no-progress", *args],
        env={**os.environ, **settings_env(settings)}, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout

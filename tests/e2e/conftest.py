"""What the end-to-end tests share beyond the session's stack: an Alertmanager of a test's own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.settings import Settings
from streams.local.stack import Stack
from tests.support.net import free_port


@pytest.fixture
def private_alertmanager(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """A real Alertmanager of the test's own: the site incidents its robots open (they all fall
    silent at the end) would otherwise inhibit the robot alerts of other tests at those sites."""
    # no maintenance webhook: it notifies a worker inbox, on a port nobody listens on
    mine = settings.model_copy(update={
        "alertmanager_port": free_port(), "web_port": free_port(), "maintenance_webhook": "",
        "state_dir": tmp_path / "alertmanager"})
    stack = Stack(mine)
    try:
        stack.start_alertmanager()
        yield mine.alertmanager_url
    finally:
        stack.procs.stop("alertmanager")

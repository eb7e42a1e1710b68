"""A worker of a test's own: its topics, its consumer group, its state folder, on the session's broker.

For tests whose figures the session's shared fleet would blur (other tests' robots going silent at
the same sites, their anomalies in the same topic)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from streams.local.stack import Stack
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.support.net import free_port


@contextmanager
def own_worker(settings: Settings, state_dir: Path, name: str, *, alertmanager: bool = False,
               **update: Any) -> Iterator[Settings]:
    """Start the worker (and, with `alertmanager`, an Alertmanager of its own first); yield its settings."""
    run = uuid.uuid4().hex[:8]
    mine = settings.model_copy(update={
        "app_id": f"fleet-twin-{name}-{run}", "topic_prefix": f"{name}-{run}.", "web_port": free_port(),
        "state_dir": state_dir, **update})
    asyncio.run(ensure_topics(mine))
    stack = Stack(mine)
    try:
        if alertmanager:
            stack.start_alertmanager()
        stack.start_worker()
        yield mine
    finally:
        stack.procs.stop("worker")
        stack.procs.stop("alertmanager")

"""The `/metrics` page: collected on the event loop, rendered to text in a thread.

A scrape has two parts. Collecting reads the worker's state (the fleet and
desired-state summaries over the fold's columns, the pipeline counters); it
must run on the event loop, where that state changes. Rendering the ~3,700
collected series to the exposition text (`prometheus_client.generate_latest`)
reads only the collected families: ~60 ms at 4,000 robots (tenth session's
profile), most of a scrape, and on the loop it held ingest up for all of it.
In a thread it still takes the GIL, but the loop gets it back every switch
interval (5 ms) instead of waiting for the whole text.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector


class Collected(Collector):
    """Families already collected: a snapshot `generate_latest` can render anywhere."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


async def exposition(registry: CollectorRegistry) -> bytes:
    """The registry's exposition text: collected here, on the loop; rendered in a worker thread."""
    collected = Collected(registry.collect())
    return await asyncio.to_thread(generate_latest, collected)

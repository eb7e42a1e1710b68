"""The /metrics text: collected on the calling (event-loop) thread, rendered elsewhere, the same bytes."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streams.worker import exposition as module
from streams.worker.exposition import exposition


class Recording(Collector):
    """A collector that notes the thread it is collected on (the fold's state lives on the loop's)."""

    def __init__(self) -> None:
        self.threads: list[int] = []

    def collect(self) -> Iterator[Metric]:
        self.threads.append(threading.get_ident())
        family = GaugeMetricFamily("fleet_robots", "Robots.", labels=["sector"])
        for sector in ("logistics", "mining"):
            family.add_metric([sector], 3.0)
        yield family


def test_the_text_is_what_generate_latest_gives_collected_on_the_loop_rendered_off_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    renderers: list[int] = []

    def render(collector: Collector) -> bytes:
        renderers.append(threading.get_ident())
        return generate_latest(collector)

    monkeypatch.setattr(module, "generate_latest", render)
    registry, recording = CollectorRegistry(), Recording()
    registry.register(recording)
    Counter("twin_events", "Events.", registry=registry).inc(5)
    rendered: list[int] = []

    async def scrape() -> bytes:
        loop_thread = threading.get_ident()
        text = await exposition(registry)
        rendered.append(loop_thread)
        return text

    text = asyncio.run(scrape())
    assert text == generate_latest(registry)
    assert b'fleet_robots{sector="mining"} 3.0' in text and b"twin_events_total 5.0" in text
    assert recording.threads[0] == rendered[0]  # collected on the loop's thread
    assert len(renderers) == 1 and renderers[0] != rendered[0]  # rendered on another

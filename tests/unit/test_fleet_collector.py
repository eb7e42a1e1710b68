"""The fleet gauges are summarised from every twin at most every few seconds, whatever the scrape rate.

Seen in CI: with ~30k twins, one summary took seconds on the worker's event loop, a scrape came every
second, and the ingest agent stalled for minutes behind /metrics (/healthz answered after 209 s).
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from streams.seeds import read_fleet
from streams.worker.metrics import SUMMARY_MIN_AGE_S, FleetCollector, Summarised
from twin.summary import FleetSummary

FLEET = read_fleet(Path(__file__).resolve().parents[2] / "seeds")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def scrape(registry: CollectorRegistry) -> dict[str, float]:
    return {s.name: s.value for m in registry.collect() for s in m.samples if not s.labels}


def collector(clock: Clock, reads: list[int], cost_s: float = 0.0) -> CollectorRegistry:
    def summarise() -> Summarised:
        reads.append(1)
        clock.now += cost_s  # summarising takes this long
        return Summarised(FleetSummary(), 0, 0)

    registry = CollectorRegistry()
    registry.register(FleetCollector(FLEET, summarise, lambda: {0: 7}, clock=clock))
    return registry


def test_scrapes_within_the_minimum_age_reuse_the_summary() -> None:
    clock, reads = Clock(), list[int]()
    registry = collector(clock, reads)
    for _ in range(11):
        assert scrape(registry)["twin_table_robots"] == 0
        clock.now += SUMMARY_MIN_AGE_S / 10
    assert len(reads) == 2  # at t=0 and once the first summary was SUMMARY_MIN_AGE_S old


def test_a_slow_summary_is_kept_ten_times_as_long_as_it_took() -> None:
    clock, reads = Clock(), list[int]()
    registry = collector(clock, reads, cost_s=3.0)  # 3 s to summarise: kept 30 s
    scrape(registry)
    clock.now += 29.0
    assert scrape(registry)["twin_fleet_summary_age_seconds"] == 29.0 and len(reads) == 1
    clock.now += 1.0
    scrape(registry)
    assert len(reads) == 2


def test_the_consumer_lag_is_fresh_on_every_scrape() -> None:
    clock, reads = Clock(), list[int]()
    registry = collector(clock, reads)
    lag = [s.value for m in registry.collect() if m.name == "twin_consumer_lag" for s in m.samples]
    assert lag == [7] and len(reads) == 1

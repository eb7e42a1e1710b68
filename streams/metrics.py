"""Prometheus metrics of a worker, on a registry passed in (tests make their own).

Pipeline counters are bumped per event (cheap, bounded labels). Fleet state is
not: `FleetCollector` reads the twins at scrape time, so the hot path never
touches fleet gauges. Every label value comes from a bounded set (sectors from
the seeds, modes from the schema, results and reasons from the core), and every
combination is exported from the start, so the series count is fixed by the
fleet model, never by the number of robots.
"""

from __future__ import annotations

from collections import Counter as Counter_
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from twin.detect.findings import DETECTORS, Anomaly
from twin.exceptions import InvalidEvent
from twin.fleet import Fleet
from twin.effects import EFFECT_KINDS, OUTCOMES, Effects
from twin.schema import MODES
from twin.state import Twin
from twin.summary import count_by_sector_mode


class PipelineMetrics:
    """Counters of what the ingest agent did with each message."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "twin_events",
            "Telemetry messages processed, by what happened to them.",
            ["result"],
            registry=registry,
        )
        self.dlq = Counter(
            "twin_dlq",
            "Messages sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=registry,
        )
        self.changes = Counter(
            "twin_changes",
            "Changes the reducer reported: mode and version changes, seq gaps.",
            ["kind"],
            registry=registry,
        )
        for result in (*OUTCOMES, "rejected"):
            self.events.labels(result=result)
        for reason in sorted(InvalidEvent.REASONS):
            self.dlq.labels(reason=reason)
        self.anomalies = Counter(
            "fleet_anomalies_opened",
            "Anomalies opened, by sector, detector and severity (fleet-level ones: sector 'fleet').",
            ["sector", "detector", "severity"],
            registry=registry,
        )
        for kind in EFFECT_KINDS:
            self.changes.labels(kind=kind)

    def anomaly(self, anomaly: Anomaly) -> None:
        if anomaly.status == "open":
            self.anomalies.labels(anomaly.sector or "fleet", anomaly.detector, anomaly.severity).inc()

    def processed(self, effects: Effects) -> None:
        self.events.labels(result=effects.outcome).inc()
        for change in effects.changes:
            self.changes.labels(kind=type(change).__name__).inc()

    def rejected(self, reason: str) -> None:
        self.events.labels(result="rejected").inc()
        self.dlq.labels(reason=reason).inc()


class FleetCollector(Collector):
    """`fleet_robots{sector,mode}` computed from the local twins at scrape time."""

    def __init__(self, fleet: Fleet, twins: Callable[[], Iterable[Twin]]) -> None:
        self._sectors = sorted(fleet.sectors)
        self._twins = twins

    def collect(self) -> Iterator[Metric]:
        twins = list(self._twins())
        counts = count_by_sector_mode(twins)
        gauge = GaugeMetricFamily(
            "fleet_robots", "Robots known to this worker, by sector and reported mode.",
            labels=["sector", "mode"],
        )
        for sector in self._sectors:
            for mode in MODES:
                gauge.add_metric([sector, mode], counts.get((sector, mode), 0))
        yield gauge
        active = GaugeMetricFamily(
            "fleet_anomalies_active", "Open robot anomalies held by this worker, by sector and detector.",
            labels=["sector", "detector"],
        )
        opened = Counter_((t.sector, o.detector) for t in twins for o in (t.watch.open if t.watch else []))
        for sector in self._sectors:
            for detector in DETECTORS:
                active.add_metric([sector, detector], opened.get((sector, detector), 0))
        yield active

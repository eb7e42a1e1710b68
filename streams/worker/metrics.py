"""Prometheus metrics of a worker, on a registry passed in (tests make their own).

Pipeline counters and the lag histograms move once per micro-batch (`ingest.Batch.count`,
`batch_histogram`; bounded labels). Fleet state is
not: `FleetCollector` summarises the twins at scrape time, so the hot path never
touches fleet gauges. Every label value comes from a bounded set (sectors from
the seeds, modes from the schema, results and reasons from the core), and every
combination is exported from the start, so the series count is fixed by the
fleet model, never by the number of robots.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import accumulate
from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.context_managers import Timer
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from streams.worker.batch_histogram import BatchHistogram
from twin.detect.findings import DETECTORS, Anomaly
from twin.detect.lifecycle import SEVERITIES
from twin.exceptions import InvalidEvent
from twin.fleet import Fleet
from twin.effects import EFFECT_KINDS, OUTCOMES
from twin.kpi import KINDS
from twin.schema import MODES
from twin.summary import (
    BAND_BUCKETS, Distribution, FleetSummary, VersionSummary, label_space, signal_space, version_space,
)


PROCESSING_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
"""Up to 30 minutes: a backlog shows lags of minutes, and a quantile above the last finite
bucket reads as that bucket (a 168 s lag showed as 60 s when it ended at 60)."""


class PipelineMetrics:
    """Counters of what the ingest agent did with each message."""

    def __init__(self, registry: CollectorRegistry, sectors: tuple[str, ...] = (),
                 versions: Iterable[tuple[str, str, str]] = ()) -> None:
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
        # per record, so observed a batch at a time
        self.processing_lag = BatchHistogram(
            "twin_processing_lag_seconds", "From the broker receiving a message to the worker processing it.",
            buckets=PROCESSING_LAG_BUCKETS, registry=registry,
        )
        self.event_time_lag = BatchHistogram(
            "twin_event_time_lag_seconds", "From a robot's event time to the broker receiving it.",
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300), registry=registry,
        )
        self.dlq_errors = Counter(
            "twin_dlq_errors_total",
            "Attempts to dead-letter a message that the broker refused (retried; the partition waits).",
            registry=registry,
        )
        self.fetch_errors = Counter(
            "twin_fetch_errors_total",
            "Fetches of ingest's consumer that raised (an unreadable record batch); each retried after a second.",
            registry=registry,
        )
        self.batch = Histogram(
            "twin_batch_records", "Records (telemetry and silence checks) per micro-batch of the ingest agent.",
            buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000), registry=registry,
        )
        self.step_seconds = Histogram(
            "twin_step_seconds",
            "Seconds one step of ingest took, by step (fold, publish, encode, store: no batch is read meanwhile).",
            ["step"], buckets=STEP_BUCKETS, registry=registry,
        )
        for step in STEPS:
            self.step_seconds.labels(step=step)
        self.alerts_unposted = Gauge(
            "twin_alerts_unposted", "Alerts Alertmanager refused, waiting to be posted again.", registry=registry,
        )
        self.redelivered = Counter(
            "twin_redelivered_total",
            "Records skipped because the twin already held them (re-read after a worker restart).",
            registry=registry,
        )
        self.offset_gaps = Counter(
            "twin_offset_gaps_total",
            "Records the consumer passed over without handing them to ingest, read back from Kafka and folded.",
            registry=registry,
        )
        self.commands = Counter(
            "twin_commands",
            "Commands sent to fleet.commands: a robot's delta, on reconnect or on a desired change.",
            ["cause"],
            registry=registry,
        )
        self.operating = Counter(
            "fleet_version_operating_seconds",
            "Operating (working) seconds credited per AI-model version (twin.kpi.exposure): the gate's exposure.",
            ["sector", "model", "version"],
            registry=registry,
        )
        self.safety = Counter(
            "fleet_version_safety_events",
            "Safety events per AI-model version, by kind (twin.kpi.safety_events): the gate's counts.",
            ["sector", "model", "version", "kind"],
            registry=registry,
        )
        for cause in COMMAND_CAUSES:
            self.commands.labels(cause=cause)
        for kind in EFFECT_KINDS:
            self.changes.labels(kind=kind)
        for sector, model, version in versions:
            self.operating.labels(sector, model, version)
            for kind in KINDS:
                self.safety.labels(sector, model, version, kind)
        # Born at zero: rate() and increase() cannot see a series' first count.
        for sector in (*sectors, "fleet"):
            for detector in DETECTORS:
                for severity in SEVERITIES:
                    self.anomalies.labels(sector, detector, severity)

    def step(self, step: str) -> Timer:
        """Times one step of ingest into `twin_step_seconds` (a `with` block)."""
        return self.step_seconds.labels(step=step).time()

    def anomaly(self, anomaly: Anomaly) -> None:
        if anomaly.status == "open":
            self.anomalies.labels(anomaly.sector or "fleet", anomaly.detector, anomaly.severity).inc()


STEPS = ("fold", "publish", "encode", "store", "silence_check", "summary", "trim")
"""Ingest's steps, each timed whole: `fold` the batch's decode and fold, `publish` awaiting its
anomalies, commands and dead letters, `encode` and `store` a checkpoint's twins made and acked,
`silence_check` finding quiet robots and sending their checks, `summary` the gauges' pass over the
twins at a scrape, `trim` the heap's free pages handed back (`streams.worker.memory`). The first
four run under the reader's lock and `summary` and `trim` hold the event loop whole
(`silence_check` holds it but while it awaits the broker): each holds up every record fetched
behind it, so the tail of `twin_processing_lag_seconds` is explained here."""

STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

COMMAND_CAUSES = ("reconnect", "change")
"""Why a command was sent: the robot (re)connected with a delta, or a desired change gave it one."""


def sector_version_space(fleet: Fleet) -> list[tuple[str, str, str]]:
    """Every (sector, model, version label) the fleet model allows: the per-version KPI counters' label sets."""
    return [(name, model, v) for name, sector in sorted(fleet.sectors.items()) for model in sector.models
            if model in fleet.models for v in (*fleet.models[model].ai_model_versions, "other")]


SUMMARY_MIN_AGE_S = 5.0
"""A fleet summary is reused for at least this long (and for ten times what it took to compute)."""


class Summarised(NamedTuple):
    """A worker's fleet summary with the count and stored bytes of the twins it covers."""

    summary: FleetSummary
    robots: int
    nbytes: int


@dataclass(frozen=True)
class _Summary:
    summary: FleetSummary
    robots: int
    nbytes: int
    done_at: float
    took_s: float


class FleetCollector(Collector):
    """Fleet state and table size, computed from this worker's twins at scrape time.

    Every label set the fleet model allows is exported from the first scrape
    (zeros included), so the number of series does not grow with the fleet.

    Summarising runs on the worker's event loop. When it decoded every twin,
    one pass over tens of thousands took seconds, and scrapes every second (or
    several scrapers) left the ingest agent no time at all (a worker stalled
    for minutes behind its own /metrics); the fold's robots are now read from
    its columns (`twin.batch_summary`), but a summary is still reused until it
    is `SUMMARY_MIN_AGE_S` old and ten times as old as it took to make: fleet
    gauges lag by that much, and summarising never takes more than a tenth of
    the loop. The consumer lag is read fresh on every scrape.
    """

    def __init__(self, fleet: Fleet, summarise: Callable[[], Summarised],
                 consumer_lag: Callable[[], dict[int, int]] = dict,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._fleet = fleet
        self._places = label_space(fleet)
        self._kinds = signal_space(fleet)
        self._summarise = summarise
        self._lag = consumer_lag
        self._clock = clock
        self._last: _Summary | None = None

    def _summary(self) -> _Summary:
        now, last = self._clock(), self._last
        if last is not None and now - last.done_at < max(SUMMARY_MIN_AGE_S, 10 * last.took_s):
            return last
        made = self._summarise()
        done = self._clock()
        self._last = _Summary(made.summary, made.robots, made.nbytes, done, done - now)
        return self._last

    def collect(self) -> Iterator[Metric]:
        held = self._summary()
        summary = held.summary
        yield from self._robots(summary)
        yield from self._signals(summary)
        yield from self._versions(summary)
        active = GaugeMetricFamily("fleet_anomalies_active", "Open robot anomalies, by sector and detector.",
                                   labels=["sector", "detector"])
        for sector in sorted(self._fleet.sectors):
            for detector in DETECTORS:
                active.add_metric([sector, detector], summary.anomalies.get((sector, detector), 0))
        yield active
        yield GaugeMetricFamily("twin_table_robots", "Twins held by this worker.", value=held.robots)
        yield GaugeMetricFamily("twin_table_bytes", "Stored bytes of the twins held by this worker, as last stored.",
                                value=held.nbytes)
        yield GaugeMetricFamily("twin_fleet_summary_age_seconds",
                                "Age of the fleet summary behind the fleet gauges (it is reused between scrapes).",
                                value=round(self._clock() - held.done_at, 3))
        lag = GaugeMetricFamily("twin_consumer_lag", "Telemetry messages not yet read, per partition.",
                                labels=["partition"])
        for partition, behind in sorted(self._lag().items()):
            lag.add_metric([str(partition)], behind)
        yield lag

    def _robots(self, s: FleetSummary) -> Iterator[Metric]:
        robots = GaugeMetricFamily("fleet_robots", "Robots, by sector, site, robot model and reported mode.",
                                   labels=["sector", "site", "model", "mode"])
        offline = GaugeMetricFamily("fleet_robots_offline", "Robots silent beyond their own cadence.",
                                    labels=["sector", "site", "model"])
        places = sorted(set(self._places) | {k[:3] for k in s.robots})
        for place in places:
            for mode in MODES:
                robots.add_metric([*place, mode], s.robots.get((*place, mode), 0))
            offline.add_metric(list(place), s.offline.get(place, 0))
        yield robots
        yield offline

    def _signals(self, s: FleetSummary) -> Iterator[Metric]:
        band = HistogramMetricFamily(
            "fleet_signal_band", "Latest value of each robot's signals as a position in the nominal band "
            "(0 bottom, 1 top), per sector, robot model and signal kind.", labels=["sector", "model", "signal"])
        mean = GaugeMetricFamily("fleet_signal_mean", "Mean latest value, engineering units.",
                                 labels=["sector", "model", "signal"])
        for key in sorted(set(self._kinds) | set(s.signals)):
            dist = s.signals.get(key) or Distribution()
            cumulative = list(accumulate(dist.buckets))
            buckets = [(str(b), c) for b, c in zip(BAND_BUCKETS, cumulative)] + [("+Inf", dist.count)]
            band.add_metric(list(key), buckets, dist.band_sum)
            mean.add_metric(list(key), dist.value_sum / dist.count if dist.count else 0.0)
        yield band
        yield mean

    def _versions(self, s: FleetSummary) -> Iterator[Metric]:
        robots = GaugeMetricFamily("fleet_version_robots", "Robots per robot model and AI-model version.",
                                   labels=["model", "version"])
        latency = GaugeMetricFamily("fleet_version_inference_ms", "Mean latest inference latency, per version.",
                                    labels=["model", "version"])
        anomalous = GaugeMetricFamily("fleet_version_anomalous_robots",
                                      "Robots with an open anomaly, per version.", labels=["model", "version"])
        for key in sorted(set(version_space(self._fleet)) | set(s.versions)):
            v = s.versions.get(key) or VersionSummary()
            model, version = key
            robots.add_metric([model, version], v.robots)
            latency.add_metric([model, version], v.latency_sum / v.latency_n if v.latency_n else 0.0)
            anomalous.add_metric([model, version], v.anomalous)
        yield from (robots, latency, anomalous)

"""The composition root of a worker: topics, table, agent and views in one place.

This module wires; it does not decide. The ingest agent takes records in
micro-batches and hands each to `twin.pipeline.feed` (validate, reduce, detect:
the same step the replay fold takes); what comes back is published to
`fleet.anomalies`, dead-lettered, stored (each twin once per batch) or counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import faust
import msgspec
from prometheus_client import CollectorRegistry

from streams.worker.table import ChangelogWriter
from streams.kafka_client import faust_broker
from streams.worker.metrics import FleetCollector, PipelineMetrics
from streams.settings import Settings
from streams import auth
from streams.worker import alerting as alerts
from streams.worker.views import HttpClient, register_inbox, register_views
from twin.exceptions import InvalidEvent
from twin.fleet import Fleet
from twin import pipeline
from twin.record import Record
from twin.detect import incidents, rollout
from twin.detect.cohort import Cohorts
from twin.detect.findings import Anomaly
from twin.detect.params import DetectorConfig
from twin.state import Twin, decode_twin, encode_twin
from twin.validate import Policy

log = logging.getLogger(__name__)


def build_app(settings: Settings, fleet: Fleet, detectors: DetectorConfig,
              registry: CollectorRegistry) -> faust.App:
    """A Faust app for one worker process, configured from `settings`."""
    app = faust.App(
        settings.app_id,
        **faust_broker(settings),  # broker URL, and SASL_SSL credentials if configured
        store="memory://",
        datadir=str(settings.state_dir / f"worker-{settings.web_port}"),
        web_bind=settings.web_bind or settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        topic_partitions=settings.partitions,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        # A killed worker's partitions move to the others after this long without heartbeats.
        broker_session_timeout=settings.session_timeout_s,
        # Memory store: standby changelog records would land in the same dict as this
        # worker's own twins (faust stores/memory.py); a takeover rebuilds a partition
        # from the changelog's start anyway.
        table_standby_replicas=0,
        broker_heartbeat_interval=settings.session_timeout_s / 3,
        autodiscover=False,
        # Faust's own pages would bypass the token: /table reads table values (the twins),
        # /router and the stats show the cluster. Table routing needs none of them.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
    )
    telemetry = app.topic(
        settings.telemetry_topic, key_serializer="raw", value_serializer="raw",
        partitions=settings.partitions,
    )
    dlq = app.topic(settings.dlq_topic, key_serializer="raw", value_serializer="raw")
    anomalies = app.topic(settings.anomalies_topic, key_serializer="raw", value_serializer="raw")
    # Silence checks go through a topic co-partitioned with telemetry: only the
    # ingest agent writes the table, and the checks then sit in the log for replay.
    checks = app.topic(settings.checks_topic, key_serializer="raw",
                       value_serializer="raw", partitions=settings.partitions)
    # Twins are kept as their encoded bytes: a third of the memory of the
    # objects, and the changelog needs the bytes anyway.
    twins = app.Table("twins", key_type=str, value_type=bytes, partitions=settings.partitions)
    metrics = PipelineMetrics(registry, tuple(sorted(fleet.sectors)))
    registry.register(FleetCollector(fleet, lambda: list(twins.values()),
                                     lambda: consumer_lag(app, settings.telemetry_topic)))
    policy = Policy(max_bytes=settings.max_event_bytes, max_future_s=settings.max_future_s)
    fleet_state = FleetState()

    async def publish(found: list[Anomaly]) -> None:
        """Send anomaly messages and wait for the broker's acks: the twins that caused them
        are stored after, so a twin (and its offset marker) in the changelog means they were sent."""
        acks = []
        for anomaly in found:
            metrics.anomaly(anomaly)
            key = (anomaly.site or anomaly.model).encode()
            acks.append(await anomalies.send(key=key, value=ANOMALY_JSON.encode(anomaly)))
        await asyncio.gather(*acks)

    # One agent writes the twins, from telemetry and silence checks alike (one
    # topic object, two co-partitioned topics): no other coroutine can change a
    # twin between its read and its write.
    twin_log = app.topic(settings.telemetry_topic, settings.checks_topic, key_serializer="raw",
                         value_serializer="raw", partitions=settings.partitions)

    changelog = ChangelogWriter(settings, twins)

    @app.agent(twin_log, name="ingest")
    async def ingest(stream: faust.StreamT[bytes]) -> None:
        try:
            async for events in stream.take_events(settings.batch_max, within=settings.batch_within_s):
                await fold_batch(events)
        finally:
            await changelog.stop()

    async def fold_batch(events: list[Any]) -> None:
        """Fold a micro-batch record by record (as replay does), then store each changed twin once.

        Order of effects: anomaly messages and dead letters are acked by the broker
        before the twins that caused them are written; the twins are acked before
        the table serves them; the batch's offsets are committed after.
        """
        batch = Batch(twins)
        for event in events:
            message = event.message
            record = Record("check" if message.topic == settings.checks_topic else "telemetry",
                                     message.partition, message.offset, message.timestamp,
                                     message.key, message.value)
            step = pipeline.feed(batch.get, record, fleet, detectors, policy, fleet_state.cohorts)
            batch.add(event, step)
            if step.event is not None and step.effects is not None and step.effects.outcome == "applied":
                fleet_state.versions = rollout.observe(fleet_state.versions, step.event)
        await asyncio.gather(publish(batch.found), *(_dead_letter(m, err) for m, err in batch.rejected))
        # telemetry and checks are co-partitioned: a robot's event names its twin's partition
        await changelog.write({r: (e.message.partition, encode_twin(t)) for r, (e, t) in batch.changed.items()})
        batch.count(metrics)
        metrics.batch.observe(len(events))
        if batch.last is not None:
            fleet_state.read_ts, fleet_state.read_at = batch.last.timestamp, time.time()

    async def _dead_letter(message: Any, err: InvalidEvent) -> None:
        """Wait for the broker to take the rejected message: while the dead-letter topic
        refuses it, retry with backoff and hold the partition (its lag and
        twin_dlq_errors_total say so) rather than drop it or die."""
        delay = 0.5
        while True:
            try:
                await (await dlq.send(key=message.key, value=message.value, headers=dlq_headers(err, message)))
                return
            except Exception as exc:  # noqa: BLE001 - whatever the producer says, the message must not be lost
                metrics.dlq_errors.inc()
                log.warning("dead-letter topic refused %s[%s]@%s (%s); retrying in %.1fs",
                            message.topic, message.partition, message.offset, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    @app.timer(interval=settings.silence_check_s)
    async def look_for_silence() -> None:
        now = time.time()  # the shell owns the clock; the core only compares times
        if fleet_state.catching_up(now, settings.silence_check_s + 1):
            return  # the twins are behind (after a restart, say), not the robots
        for twin in twin_values(twins):
            if now - twin.last_seen > detectors.for_model(twin.model).silence_min_s and not _silent(twin):
                await checks.send(key=twin.robot_id.encode(), value=repr(now).encode())

    @app.timer(interval=30.0)
    async def judge_rollouts_and_sites() -> None:
        now = time.time()
        fleet_state.versions, found = rollout.judge(fleet_state.versions, now)
        fleet_state.sites, ended = incidents.expire_all(fleet_state.sites, now)
        await publish([*found, *ended])

    sent = app.Table("alerts", key_type=str, value_type=bytes, partitions=settings.partitions)
    http = HttpClient()
    unposted = alerts.Unposted()
    metrics.alerts_unposted.set_function(lambda: len(unposted))

    @app.agent(anomalies, name="alerts")
    async def to_alertmanager(stream: faust.StreamT[bytes]) -> None:
        # `sent` holds the last message taken per anomaly: a worker that restarts
        # and reads the same messages again posts nothing twice, not even an
        # opening whose resolution it already sent; open alerts are kept alive
        # from it; resolved ones leave it after a day (bounded).
        # Posted a batch at a time: one request per batch, not per anomaly. When
        # Alertmanager refuses, the batch waits in `unposted` for the retry timer
        # and the stream goes on: a blocked agent would stall the worker's intake.
        async for events in stream.take_events(ALERT_BATCH, within=ALERT_WITHIN_S):
            latest: dict[str, tuple[Any, bytes]] = {}
            taken: dict[str, Anomaly] = {}
            for event in events:
                value = event.value
                anomaly = ANOMALY_DECODER.decode(value)
                before = latest[anomaly.id][1] if anomaly.id in latest else sent.get(anomaly.id)
                if before == value or (before is not None and ANOMALY_DECODER.decode(before).status == "resolved"):
                    continue
                taken[anomaly.id] = anomaly
                latest[anomaly.id] = (event, value)
            if taken and not await post([*taken.values()]):
                unposted.add(taken.values())
            store(stream, sent, latest)

    async def post(found: list[Anomaly]) -> bool:
        now = time.time()
        return await alerts.post(http.client, settings.alertmanager_url,
                                 [alerts.to_alert(a, settings.web_url(), now) for a in found])

    @app.timer(interval=alerts.RETRY_S)
    async def retry_unposted() -> None:
        waiting = unposted.snapshot()
        if waiting and await post([*waiting.values()]):
            unposted.posted(waiting)

    @app.timer(interval=alerts.KEEPALIVE_S / 5)
    async def keep_alerts_alive() -> None:
        now = time.time()
        known = [ANOMALY_DECODER.decode(v) for v in list(sent.values())]
        await alerts.post(http.client, settings.alertmanager_url,
                          [alerts.to_alert(a, settings.web_url(), now) for a in known if a.status != "resolved"])
        for a in known:
            if a.status == "resolved" and now - a.ts > alerts.FORGET_RESOLVED_S:
                sent.pop(a.id, None)

    @app.agent(anomalies, name="incidents")
    async def site_incidents(stream: faust.StreamT[bytes]) -> None:
        async for value in stream:
            anomaly = ANOMALY_DECODER.decode(value)
            site = fleet_state.sites.get(anomaly.site, incidents.SiteState())
            fleet_state.sites[anomaly.site], found = incidents.correlate(site, anomaly)
            await publish(found)

    token = auth.api_token(settings)  # NoApiToken: no worker serves fleet data openly
    register_views(app, twins, telemetry, fleet, registry, token, settings.metrics_token or None)
    register_inbox(app, token)
    return app


ALERT_BATCH, ALERT_WITHIN_S = 500, 0.1
"""Anomaly messages posted to Alertmanager in one request, at most, and the longest one waits."""
ANOMALY_JSON = msgspec.json.Encoder()
ANOMALY_DECODER = msgspec.json.Decoder(Anomaly)


@dataclass
class FleetState:
    """What this worker knows beyond single robots: kept in memory, relearned after a restart.

    Cohort baselines are learned per partition of telemetry: a baseline is then
    a function of one partition's log alone, whatever order the worker happens
    to interleave partitions in, so a replay (`twin.replay`) learns the same one.
    Rollouts are judged on the robots of this worker's partitions, and sites are
    correlated from the anomalies it consumes.
    """

    versions: rollout.RolloutState = field(default_factory=rollout.RolloutState)
    cohorts: dict[int, Cohorts] = field(default_factory=dict)
    sites: dict[str, incidents.SiteState] = field(default_factory=dict)
    read_ts: float = 0.0
    """Broker time of the newest telemetry record processed ..."""
    read_at: float = 0.0
    """... and when it was processed."""

    def catching_up(self, now: float, slack_s: float) -> bool:
        """Processing records (lately) that are older than `slack_s`: working through a backlog.

        A quiet fleet is not a backlog: then nothing was processed lately.
        """
        return now - self.read_at < slack_s and self.read_at - self.read_ts > slack_s


class Batch:
    """One micro-batch of the ingest agent: the twins it touched (read from the table once,
    then kept decoded), what to send, and counts for the metrics (updated once per batch)."""

    def __init__(self, table: Any) -> None:
        self._table = table
        self._twins: dict[str, Twin | None] = {}
        self.changed: dict[str, tuple[Any, Twin]] = {}
        """Robot -> (its last event in the batch, its newest twin)."""
        self.found: list[Anomaly] = []
        self.rejected: list[tuple[Any, InvalidEvent]] = []
        self.outcomes: Counter[str] = Counter()
        self.changes: Counter[str] = Counter()
        self.redelivered = 0
        self.received: list[tuple[float, float]] = []
        """(broker time, event time) of each telemetry event applied or judged."""
        self.last: Any = None
        """The newest telemetry message of the batch."""

    def get(self, robot_id: str) -> Twin | None:
        if robot_id not in self._twins:
            raw = self._table.get(robot_id)
            self._twins[robot_id] = decode_twin(raw) if raw else None
        return self._twins[robot_id]

    def add(self, event: Any, step: pipeline.Step) -> None:
        message = event.message
        if step.twin is not None:
            self._twins[step.twin.robot_id] = step.twin
            self.changed[step.twin.robot_id] = (event, step.twin)
        self.found.extend(step.found)
        if step.redelivered:
            self.redelivered += 1
        elif step.error is not None:
            self.rejected.append((message, step.error))
            self.outcomes["rejected"] += 1
        if step.event is not None and step.effects is not None:
            self.outcomes[step.effects.outcome] += 1
            self.changes.update(type(c).__name__ for c in step.effects.changes)
            self.received.append((message.timestamp, step.event.ts))
            self.last = message

    def count(self, metrics: PipelineMetrics) -> None:
        """Once the twins are stored: their processing lag, and the batch's counts."""
        now = time.time()
        for received, ts in self.received:
            metrics.processing_lag.observe(max(now - received, 0.0))
            metrics.event_time_lag.observe(max(received - ts, 0.0))
        for reason, n in Counter(err.reason for _, err in self.rejected).items():
            metrics.dlq.labels(reason=reason).inc(n)
        for outcome, n in self.outcomes.items():
            metrics.events.labels(result=outcome).inc(n)
        for kind, n in self.changes.items():
            metrics.changes.labels(kind=kind).inc(n)
        if self.redelivered:
            metrics.redelivered.inc(self.redelivered)


def store(stream: faust.StreamT[Any], table: Any, items: dict[str, tuple[Any, bytes]]) -> None:
    """Write `table[key] = value` for a batch, each changelog record going to the partition
    of the event given with it (a Faust table takes it from the stream's current event).

    The stream's current event is put back afterwards: `take_events` reads it for the
    next event it buffers, and would otherwise buffer one of ours again in its place."""
    pending = stream.current_event
    try:
        for key, (event, value) in items.items():
            stream._set_current_event(event)
            table[key] = value
    finally:
        stream._set_current_event(pending)


def consumer_lag(app: faust.App, topic: str) -> dict[int, int]:
    """Messages not yet read, per partition of `topic` this worker holds (from Faust's monitor)."""
    monitor = app.monitor
    read, end = monitor.tp_read_offsets or {}, monitor.tp_end_offsets or {}
    # The end offset is the next one to be written; the read one the last message read.
    return {tp.partition: max(end[tp] - read.get(tp, -1) - 1, 0) for tp in end if tp.topic == topic}


def _silent(twin: Twin) -> bool:
    return any(o.detector == "silence" for o in (twin.watch.open if twin.watch else []))


def dlq_headers(err: InvalidEvent, message: Any) -> list[tuple[str, bytes]]:
    """Why a message was rejected and where it came from, plus its own headers."""
    ours = [
        ("reason", err.reason.encode()),
        ("detail", err.detail[:1000].encode()),
        ("source_topic", str(message.topic).encode()),
        ("source_partition", str(message.partition).encode()),
        ("source_offset", str(message.offset).encode()),
    ]
    return ours + [(k, bytes(v)) for k, v in (message.headers or [])]


def twin_values(table: Any) -> Iterable[Twin]:
    """Every twin of this worker, decoded; a copy, since the agent may be writing."""
    return [decode_twin(raw) for raw in list(table.values())]

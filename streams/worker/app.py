"""A worker's topology in one screen: topics, tables, agents, timers and pages.

This module wires; it does not decide. Each agent or task is a short loop over a
driver: `ingest.Ingest` folds telemetry and silence checks, read a batch at a time
by its own consumer (`ingest_reader`, given its partitions by `handover`), through
`twin.batch_fold` into the twins table and `fleet.anomalies`; a second reader of
that topic feeds `anomaly_intake`: `sites.Sites` correlates it into site
incidents, `alerting.AlertSink` posts what is news to Alertmanager; `views`
serves the twins; `metrics` exports aggregates.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from prometheus_client import CollectorRegistry

from streams import auth
from streams.desired_log import DesiredPublisher
from streams.kafka_client import faust_broker, partitioner
from streams.settings import Settings
from streams.worker import bulk_store, memory
from streams.worker.alerting import KEEPALIVE_S, RETRY_S, AlertSink
from streams.worker.anomaly_intake import AnomalyIntake
from streams.worker.control_views import register_control
from streams.worker.control_metrics import ControlCollector
from streams.worker.desired_book import DesiredBook
from streams.worker.desired_reader import DesiredReader, RolloutReader
from streams.worker.history import register_history
from streams.worker.handover import Handover, Lane
from streams.worker.ingest import Ingest, Outbox
from streams.worker.ingest_reader import IngestReader, alerts_group
from streams.worker.metrics import FleetCollector, PipelineMetrics, sector_version_space
from streams.worker.routing import TwinRouter
from streams.worker.sites import Sites
from streams.worker.table import ChangelogWriter
from streams.worker.views import HttpClient, register_inbox, register_views
from twin.detect.params import DetectorConfig
from twin.fleet import Fleet
from twin.fleet_fold import TICK_S, Rules
from twin.validate import Policy

ALERT_BATCH, ALERT_WITHIN_S = 500, 0.1
"""Anomaly messages posted to Alertmanager in one request, at most, and the longest one waits."""


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
    dlq = app.topic(settings.dlq_topic, key_serializer="raw", value_serializer="raw")
    anomalies = app.topic(settings.anomalies_topic, key_serializer="raw", value_serializer="raw")
    commands = app.topic(settings.commands_topic, key_serializer="raw", value_serializer="raw")
    # Silence checks go through a topic co-partitioned with telemetry: only ingest
    # writes the table, and the checks then sit in the log for replay. Telemetry and
    # checks are read by ingest's own consumer (`handover`), not by a Faust agent:
    # this topic object only sends.
    checks = app.topic(settings.checks_topic, key_serializer="raw", value_serializer="raw",
                       partitions=settings.partitions)
    # Twins are kept as their encoded bytes: a third of the memory of the
    # objects, and the changelog needs the bytes anyway.
    # Both tables are recovered by one bulk read of their changelog per rebalance, not by
    # Faust's record-by-record recovery (which once hung on the alerts table's changelog after
    # back-to-back restarts: docs/RELIABILITY.md); that is left for a bulk read that fails.
    twins = app.Table("twins", key_type=str, value_type=bytes, partitions=settings.partitions, store=bulk_store.URL)
    sent = app.Table("alerts", key_type=str, value_type=bytes, partitions=settings.partitions, store=bulk_store.URL)
    for table in (twins, sent):
        bulk_store.of(table).use(settings)

    metrics = PipelineMetrics(registry, tuple(sorted(fleet.sectors)), sector_version_space(fleet))
    changelog = ChangelogWriter(settings)
    outbox = Outbox(anomalies, dlq, metrics, commands)
    policy = Policy(max_bytes=settings.max_event_bytes, max_future_s=settings.max_future_s)
    desired_ready = asyncio.Event()  # ingest waits for the desired rules (streams/worker/desired_reader.py)
    ingest = Ingest(settings, Rules(fleet, detectors, policy), twins, changelog, outbox, checks, metrics,
                    desired_ready)
    # One reader folds telemetry and silence checks alike, a batch at a time under one lock: no
    # other coroutine changes a twin between its read and its write.
    reader = IngestReader(settings, ingest.fold_batch, batch_max=settings.batch_max,
                          within_s=settings.batch_within_s, refold=ingest.refold,
                          checkpoint=ingest.checkpoint, every_s=settings.checkpoint_s,
                          fetch_failed=metrics.fetch_errors.inc)
    registry.register(FleetCollector(fleet, ingest.summary,
                                     lambda: reader.lag(settings.telemetry_topic)))
    sites = Sites(outbox)
    http = HttpClient()
    alert_sink = AlertSink(settings, sent, changelog, http, partitioner(settings.partitions))
    metrics.alerts_unposted.set_function(lambda: len(alert_sink.unposted))
    intake = AnomalyIntake(sites, alert_sink, outbox)
    anomaly_reader = IngestReader(settings, intake.take, batch_max=ALERT_BATCH, within_s=ALERT_WITHIN_S,
                                  group=alerts_group(settings))
    handover = Handover(app, settings, [
        Lane(reader, (settings.telemetry_topic, settings.checks_topic), twins.changelog_topic.get_topic_name(),
             starting=ingest.assigned, released=ingest.released),
        # Faust's own group read fleet.anomalies before this reader did: an upgraded worker goes on
        # from there, not from the topic's first message (which the site correlation would fold again).
        Lane(anomaly_reader, (settings.anomalies_topic,), sent.changelog_topic.get_topic_name(),
             before=settings.app_id),
    ])

    @app.task  # type: ignore[untyped-decorator]  # faust: App.task returns a bare Callable
    async def ingest_telemetry() -> None:
        await reader.run()

    @app.task  # type: ignore[untyped-decorator]  # faust: App.task returns a bare Callable
    async def take_anomalies() -> None:
        await anomaly_reader.run()

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        await handover.revoked()

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        handover.assigned()

    @app.on_rebalance_complete.connect
    async def on_recovered(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        await handover.recovered()

    @app.on_before_shutdown.connect
    async def on_shutdown(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        await handover.stop()
        await changelog.stop()

    @app.timer(interval=settings.silence_check_s)  # type: ignore[untyped-decorator]  # faust: App.timer returns a bare Callable
    async def look_for_silence() -> None:
        await ingest.check_silence()

    @app.timer(interval=memory.TRIM_S)  # type: ignore[untyped-decorator]  # faust: App.timer returns a bare Callable
    async def return_free_memory() -> None:
        with metrics.step("trim"):
            memory.trim()

    @app.timer(interval=TICK_S)  # type: ignore[untyped-decorator]  # faust: App.timer returns a bare Callable
    async def expire_site_incidents() -> None:
        await sites.tick()

    @app.timer(interval=RETRY_S)  # type: ignore[untyped-decorator]  # faust: App.timer returns a bare Callable
    async def retry_unposted() -> None:
        await alert_sink.retry_unposted()

    @app.timer(interval=KEEPALIVE_S / 5)  # type: ignore[untyped-decorator]  # faust: App.timer returns a bare Callable
    async def keep_alerts_alive() -> None:
        await alert_sink.keep_alive()

    token = auth.api_token(settings)  # NoApiToken: no worker serves fleet data openly
    router = TwinRouter(app, twins.changelog_topic.get_topic_name(), settings.partitions)
    desired_book = DesiredBook()  # the fleet.desired reader folds into it; GET /desired and /twins read it
    register_views(app, ingest.twin_bytes, ingest.labels, router, fleet, registry, token, settings.metrics_token or None,
                   lambda: desired_book.rules)
    register_inbox(app, token)
    register_history(app, ingest.twin_bytes, router, fleet, settings, token)
    desired = DesiredReader(settings, fleet, ingest, desired_book, outbox, desired_ready)
    rollouts = RolloutReader(settings, outbox)
    registry.register(ControlCollector(fleet, ingest.desired_summary, lambda: desired_book.rules,
                                       lambda: rollouts.latest))

    @app.task  # type: ignore[untyped-decorator]  # faust: App.task returns a bare Callable
    async def read_desired_and_rollouts() -> None:
        await asyncio.gather(desired.run(), rollouts.run())

    register_control(app, fleet, auth.principals(settings), DesiredPublisher(settings), desired_book)
    return app

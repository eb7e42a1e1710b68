"""The composition root of a worker: topics, table, agent and views in one place.

This module wires; it does not decide. Each message goes through
`twin.validate.parse` and `twin.reduce.apply`; what comes back is stored,
dead-lettered or counted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import faust
from prometheus_client import CollectorRegistry

from streams.metrics import FleetCollector, PipelineMetrics
from streams.settings import Settings
from streams.views import register_views
from twin.exceptions import InvalidEvent
from twin.fleet import Fleet
from twin.reduce import apply, note_rejected
from twin.state import Twin, decode_twin, encode_twin
from twin.validate import Policy, parse


def build_app(settings: Settings, fleet: Fleet, registry: CollectorRegistry) -> faust.App:
    """A Faust app for one worker process, configured from `settings`."""
    app = faust.App(
        settings.app_id,
        broker=";".join(f"kafka://{h}" for h in settings.bootstrap.split(",")),
        store="memory://",
        datadir=str(settings.state_dir / f"worker-{settings.web_port}"),
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        topic_partitions=settings.partitions,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        autodiscover=False,
    )
    telemetry = app.topic(
        settings.telemetry_topic, key_serializer="raw", value_serializer="raw",
        partitions=settings.partitions,
    )
    dlq = app.topic(settings.dlq_topic, key_serializer="raw", value_serializer="raw")
    # Twins are kept as their encoded bytes: a third of the memory of the
    # objects, and the changelog needs the bytes anyway.
    twins = app.Table("twins", key_type=str, value_type=bytes, partitions=settings.partitions)
    metrics = PipelineMetrics(registry)
    registry.register(FleetCollector(fleet, lambda: twin_values(twins)))

    policy = Policy(max_bytes=settings.max_event_bytes, max_future_s=settings.max_future_s)

    @app.agent(telemetry, name="ingest")
    async def ingest(stream: faust.StreamT[bytes]) -> None:
        async for record in stream.events():
            message = record.message
            try:
                event = parse(message.value, fleet, key=message.key,
                              received_ts=message.timestamp, policy=policy)
            except InvalidEvent as err:
                await dlq.send(key=message.key, value=message.value, headers=dlq_headers(err, message))
                _count_rejection(twins, message.key)
                metrics.rejected(err.reason)
                continue
            stored = twins.get(event.robot_id)
            twin, effects = apply(decode_twin(stored) if stored else None, event,
                                  received_ts=message.timestamp)
            twins[event.robot_id] = encode_twin(twin)
            metrics.processed(effects)

    register_views(app, twins, fleet, registry)
    return app


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


def _count_rejection(twins: Any, key: bytes | None) -> None:
    """Note a rejected message on the twin its key names, if that robot is known."""
    try:
        robot_id = key.decode() if key else None
    except UnicodeDecodeError:
        return
    stored = twins.get(robot_id) if robot_id else None
    if stored is not None:
        twins[robot_id] = encode_twin(note_rejected(decode_twin(stored)))


def twin_values(table: Any) -> Iterable[Twin]:
    """Every twin of this worker, decoded; a copy, since the agent may be writing."""
    return [decode_twin(raw) for raw in list(table.values())]

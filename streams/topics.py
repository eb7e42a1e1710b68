"""Create the project's topics before anyone uses them.

Faust creates its own changelog topics, but the source and sink topics must
exist with the right partition count first: the `twins` table is
co-partitioned with `fleet.telemetry`, so both must have the same count.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams.kafka_client import client_kwargs
from streams.settings import Settings


async def ensure_topics(settings: Settings, names: Iterable[str] | None = None) -> None:
    """Create the topics that are missing, each with `settings.partitions` partitions.

    `names`: the deployment's live topics (telemetry, DLQ, anomalies, checks)
    unless given, as the replay's staging topic for `--republish` is.
    """
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = settings.live_topics if names is None else tuple(names)
        new = [
            NewTopic(name=t, num_partitions=settings.partitions, replication_factor=1)
            for t in wanted
            if t not in existing
        ]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass  # another process created it between list and create
    finally:
        await admin.close()

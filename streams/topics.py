"""Create the project's topics before anyone uses them.

Faust creates its own changelog topics, but the source and sink topics must
exist with the right partition count first: the `twins` table is
co-partitioned with `fleet.telemetry`, so both must have the same count.

Two topics differ from the rest (`topic_layout`): `fleet.desired` is
compacted (only the latest change per selector|field key must be kept for
ever) and has one partition, so every worker folds all changes in one order;
`fleet.rollouts` has one partition for the same reason. docker-compose's
worker creates them with this code; deploy/k8s/kafka-topics.yaml declares them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams.kafka_client import client_kwargs
from streams.settings import Settings


class TopicLayout(NamedTuple):
    partitions: int
    configs: dict[str, str]


def topic_layout(settings: Settings, name: str) -> TopicLayout:
    """How many partitions `name` gets and its topic configs; most: `settings.partitions`, the broker's defaults."""
    if name == settings.desired_topic:
        return TopicLayout(1, {"cleanup.policy": "compact"})
    if name == settings.rollouts_topic:
        return TopicLayout(1, {})
    return TopicLayout(settings.partitions, {})


async def ensure_topics(settings: Settings, names: Iterable[str] | None = None) -> None:
    """Create the topics that are missing, each as `topic_layout` says.

    `names`: the deployment's live topics (telemetry, DLQ, anomalies, checks,
    desired, commands, rollouts) unless given, as the replay's staging topic
    for `--republish` is. An existing topic is left as it is.
    """
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = settings.live_topics if names is None else tuple(names)
        new = []
        for name in wanted:
            if name not in existing:
                layout = topic_layout(settings, name)
                new.append(NewTopic(name=name, num_partitions=layout.partitions, replication_factor=1,
                                    topic_configs=layout.configs))
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass  # another process created it between list and create
    finally:
        await admin.close()

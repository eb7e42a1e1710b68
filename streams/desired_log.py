"""Publishing desired-state changes to `fleet.desired`, and knowing the broker took them.

The changes of one request go out as one Kafka record batch to the topic's one
partition, so they are appended together or not at all (a batch is appended
whole) and every reader folds them in the same order. Each record is keyed by
`twin.desired.change_key` (selector|field: what compaction keeps the latest
of) and stamped with the change's own time, so a replay that merges topics by
record time puts the change where the API received it.
"""

from __future__ import annotations

from collections.abc import Sequence

from streams.kafka_client import OwnProducer
from streams.settings import Settings
from twin.desired import DesiredChange, change_key, encode_change
from twin.exceptions import FleetTwinError

MAX_BATCH_BYTES = 900 * 1024
"""One request's changes, encoded, at most: under the broker's default message.max.bytes (1 MiB)."""
ACK_TIMEOUT_MS = 15_000
"""How long a request waits for the broker before it is told the change may not be published."""


class ChangesTooLarge(FleetTwinError):
    """One request's changes do not fit in one record batch."""


class DesiredPublisher:
    """Sends desired-state changes on a producer of its own (acks from every in-sync replica)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer = OwnProducer(settings, acks="all", linger_ms=0, max_batch_size=MAX_BATCH_BYTES,
                                     request_timeout_ms=ACK_TIMEOUT_MS)

    async def publish(self, changes: Sequence[DesiredChange]) -> None:
        """Return once the broker holds every change; raise (aiokafka's error) if it did not take them."""
        producer = await self._producer.started()
        batch = producer.create_batch()
        for change in changes:
            if batch.append(key=change_key(change), value=encode_change(change),
                            timestamp=round(change.ts * 1000)) is None:
                raise ChangesTooLarge(f"the {len(changes)} changes exceed {MAX_BATCH_BYTES // 1024} KiB encoded: "
                                      "send fewer robots or fields at a time")
        await (await producer.send_batch(batch, self._settings.desired_topic, partition=0))

    async def stop(self) -> None:
        await self._producer.stop()

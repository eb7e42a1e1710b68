"""Store a micro-batch of table values: one producer batch per changelog partition, then the table
(the alerts table; the twins go to their changelog only: ingest's fold holds them).

Faust writes a table's changelog one record at a time (a future, a buffer entry
and a callback per `table[key] = value`); at one twin per event that was a
fifth of a worker's time. Here the batch's records go out as one Kafka record
batch per partition on a producer of our own, the broker's acks are awaited,
and only then is the table's in-memory store updated (when it keeps them). The
records are exactly what Faust would have written (the bytes of its key and
value serializers, the same topic and partition), so Faust's table recovery
reads them back unchanged.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from streams.kafka_client import OwnProducer
from streams.settings import Settings
from streams.worker.bulk_store import BulkMemoryStore

CODECS = ("json", "raw")
"""The key and value serializers of the tables written here (str keys, bytes values)."""


def changelog_key(key: str) -> bytes:
    """A key's changelog bytes, as Faust's json key serializer makes them (`faust.utils.json.dumps`:
    for a str, `json.dumps`; tests/unit/test_faust_pins.py pins the equality). Faust's
    `prepare_key` costs ~4 us a record in codec look-ups, and a checkpoint writes one per twin;
    raw values are the value itself."""
    return json.dumps(key).encode()


MAX_BATCH_BYTES = 512 * 1024
"""Under the broker's default message.max.bytes (1 MiB), before compression."""


class ChangelogWriter:
    """Writes `key -> value` into the worker's Faust tables and their changelogs, a batch at a
    time, on one producer of its own."""

    def __init__(self, settings: Settings) -> None:
        codec = settings.changelog_compression
        self._producer = OwnProducer(settings, acks="all", linger_ms=0, max_batch_size=MAX_BATCH_BYTES,
                                     compression_type=None if codec == "none" else codec)

    async def write(self, table: Any, items: Mapping[str, tuple[int, bytes | None]], keep: bool = True) -> None:
        """`items`: key -> (partition, value), a value of None deleting the key (a tombstone).
        Returns once the broker holds every record, then puts them in this worker's store too,
        unless not to `keep` them (the twins: ingest's fold holds them, `bulk_store`)."""
        if not items:
            return
        if (table.key_serializer, table.value_serializer) != CODECS:
            raise TypeError(f"table {table.name}: the changelog writer takes keys in json and values raw, "
                            f"not {table.key_serializer} and {table.value_serializer}")
        producer = await self._producer.started()
        topic = table.changelog_topic
        batches: dict[int, Any] = {}
        sent: list[tuple[int, int, Any]] = []
        """(partition, records, delivery) of each batch sent."""
        for key, (partition, value) in items.items():
            raw_key = changelog_key(key)
            batch = batches.get(partition)
            if batch is None or batch.append(key=raw_key, value=value, timestamp=None) is None:
                if batch is not None:  # full: send it, start another
                    sent.append((partition, batch.record_count(),
                                 await producer.send_batch(batch, topic.get_topic_name(), partition=partition)))
                batch = batches[partition] = producer.create_batch()
                batch.append(key=raw_key, value=value, timestamp=None)
        for partition, batch in batches.items():
            sent.append((partition, batch.record_count(),
                         await producer.send_batch(batch, topic.get_topic_name(), partition=partition)))
        acked = await asyncio.gather(*(delivery for _, _, delivery in sent))
        store = table.data
        if not keep:
            if isinstance(store, BulkMemoryStore):
                store.not_held({partition for partition, _, _ in sent})
            return
        for key, (partition, value) in items.items():
            put_local(table, key, value, partition)
        if isinstance(store, BulkMemoryStore):  # it then knows it holds these partitions still
            runs: dict[int, list[tuple[int, int]]] = {}
            for (partition, count, _), meta in zip(sent, acked):
                runs.setdefault(partition, []).append((meta.offset, count))
            for partition, offsets in runs.items():
                store.written(partition, offsets)

    async def stop(self) -> None:
        await self._producer.stop()


def put_local(table: Any, key: str, value: bytes | None, partition: int) -> None:
    """Set (None: delete) a table's value in this worker's store only, without a changelog record of Faust's.

    Faust has no public call for it: `Collection.data` is its store (faust
    tables/base.py), which `table[key] = value` writes after sending the
    changelog record itself. The store also keeps each key's changelog
    partition (`_key_partition`), which it fills only for keys it recovered:
    after a rebalance it drops the keys of partitions the worker no longer
    holds by that map (`on_recovery_completed`). A key put here without its
    partition stayed behind when its partition moved to another worker, and
    that worker's twins were then counted on both (fleet metrics, /twins). The
    one place this project reaches into Faust's tables; tests/unit/test_faust_pins.py
    pins the behaviour for the version in use.
    """
    store = table.data
    if value is None:
        store.pop(key, None)
        store._key_partition.pop(key, None)
    else:
        store[key] = value
        store._key_partition[key] = partition

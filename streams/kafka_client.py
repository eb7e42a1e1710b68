"""How every client of ours connects to Kafka: PLAINTEXT, or SASL/SCRAM over TLS.

The worker (Faust), the simulator, topic creation, replays, republish and the
archive all take their connection from here, so a deployment switches them
together with `FLEET_TWIN_KAFKA_SECURITY_PROTOCOL`. Where the password and the
CA are not set, the local secure broker's own files are used: `kafka.sh`
writes them once into `<state_dir>/secrets/` (docs/SECURITY.md).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from streams.exceptions import MissingKafkaSecret
from streams.settings import Settings

CLIENT_PASSWORD_FILE = "kafka-client.password"
CA_FILE = "ca.pem"


def secrets_dir(settings: Settings) -> Path:
    return settings.state_dir / "secrets"


def sasl_password(settings: Settings) -> str:
    """The setting, else the password the local secure broker generated for its client user."""
    if settings.kafka_sasl_password and settings.kafka_sasl_password.get_secret_value():
        return settings.kafka_sasl_password.get_secret_value()
    path = secrets_dir(settings) / CLIENT_PASSWORD_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise MissingKafkaSecret(f"no Kafka SASL password: set FLEET_TWIN_KAFKA_SASL_PASSWORD, or start the "
                                 f"local broker in the secure profile (it writes {path})") from None


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """Verifies the broker's certificate and host name against the configured CA (TLS 1.2 at least)."""
    cafile = settings.kafka_ssl_cafile or secrets_dir(settings) / CA_FILE
    if not cafile.is_file():
        raise MissingKafkaSecret(f"no CA file at {cafile}: set FLEET_TWIN_KAFKA_SSL_CAFILE, or start the "
                                 "local broker in the secure profile (it makes one)")
    context = ssl.create_default_context(cafile=str(cafile))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client (producer, consumer, admin): servers and security."""
    kwargs: dict[str, Any] = {"bootstrap_servers": settings.bootstrap}
    if settings.kafka_security_protocol == "SASL_SSL":
        kwargs.update(
            security_protocol="SASL_SSL",
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=sasl_password(settings),
            ssl_context=ssl_context(settings),
        )
    return kwargs


class OwnProducer:
    """A producer of a component's own (the twins changelog's writer, the desired-state publisher),
    made and started on first use: aiokafka binds a client to the event loop running when it is made."""

    def __init__(self, settings: Settings, **options: Any) -> None:
        self._settings = settings
        self._options = options
        """AIOKafkaProducer's arguments beyond where the broker is and how to reach it."""
        self._producer: Any = None

    async def started(self) -> Any:
        """The producer, started."""
        if self._producer is None:
            producer = AIOKafkaProducer(**client_kwargs(self._settings), **self._options)
            await producer.start()
            self._producer = producer
        return self._producer

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()


def faust_broker(settings: Settings) -> dict[str, Any]:
    """`broker=` and `broker_credentials=` for `faust.App`.

    Faust takes the security from the credentials, not from the URL: the
    scheme stays `kafka://`, and `SASLCredentials` with an SSL context make
    every client it builds (consumer, producer, topic admin) speak SASL_SSL.
    """
    broker = ";".join(f"kafka://{host}" for host in settings.bootstrap.split(","))
    if settings.kafka_security_protocol != "SASL_SSL":
        return {"broker": broker}
    import faust  # here, not on top: only the worker needs it, and it is slow to import

    credentials = faust.SASLCredentials(
        username=settings.kafka_sasl_username, password=sasl_password(settings),
        mechanism=settings.kafka_sasl_mechanism, ssl_context=ssl_context(settings),
    )
    return {"broker": broker, "broker_credentials": credentials}


@asynccontextmanager
async def _consumer(settings: Settings, **kwargs: Any) -> AsyncIterator[Any]:
    """A started aiokafka consumer that commits nothing by itself, stopped on the way out."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(**client_kwargs(settings), enable_auto_commit=False, **kwargs)
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


async def read_topic(settings: Settings, topic: str) -> list[Any]:
    """Every record of `topic` as it is now, partition by partition in offset order
    (aiokafka `ConsumerRecord`s): for checks and tools that compare whole logs.
    Every partition the topic has (fleet.desired and fleet.rollouts have one, not `settings.partitions`);
    none when the topic does not exist (yet)."""
    partitions = sorted(await partition_ids(settings, topic))
    out: list[Any] = []
    await scan(settings, [(topic, p) for p in partitions], out.extend)
    return sorted(out, key=lambda r: (r.partition, r.offset))


async def scan(settings: Settings, partitions: Iterable[tuple[str, int]], apply: Callable[[list[Any]], None],
               max_records: int = 10_000,
               choose: Callable[[dict[tuple[str, int], int]], Iterable[tuple[str, int]]] | None = None
               ) -> dict[tuple[str, int], int]:
    """Hand `apply` every record of the partitions from their start to their end as it is now, in
    batches (aiokafka `ConsumerRecord`s, each partition's in offset order), and return those ends.
    For bulk reads that must not pay a call per record, as a table's recovery. `choose`: given the
    ends, the partitions to read (default: all); the ends of all are returned."""
    from aiokafka import TopicPartition

    tps = [TopicPartition(topic, partition) for topic, partition in partitions]
    if not tps:
        return {}
    async with _consumer(settings, max_partition_fetch_bytes=8 * 1024 * 1024) as consumer:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        chosen = None if choose is None else set(choose({(tp.topic, tp.partition): n for tp, n in ends.items()}))
        left = [tp for tp in tps
                if (chosen is None or (tp.topic, tp.partition) in chosen) and await consumer.position(tp) < ends[tp]]
        while left:
            fetched = await consumer.getmany(*left, timeout_ms=1000, max_records=max_records)
            for tp, records in fetched.items():
                apply([r for r in records if r.offset < ends[tp]])
            left = [tp for tp in left if await consumer.position(tp) < ends[tp]]
    return {(tp.topic, tp.partition): end for tp, end in ends.items()}


def partitioner(partitions: int) -> Callable[[bytes], int]:
    """Kafka's default (murmur2) partitioner over `partitions` partitions, as a function of the key:
    where a keyed send puts a record."""
    every = list(range(partitions))
    choose = DefaultPartitioner()
    return lambda key: int(choose(key, every, every))


async def read_range(settings: Settings, topic: str, partition: int, start: int, end: int) -> list[Any]:
    """The records of one partition with offsets in [start, end), as aiokafka `ConsumerRecord`s
    (fewer where offsets hold no record: transaction markers, compaction)."""
    from aiokafka import TopicPartition

    tp = TopicPartition(topic, partition)
    out: list[Any] = []
    async with _consumer(settings) as consumer:
        consumer.assign([tp])
        consumer.seek(tp, start)
        last = min(end, (await consumer.end_offsets([tp]))[tp])
        while await consumer.position(tp) < last:
            for records in (await consumer.getmany(tp, timeout_ms=1000)).values():
                out += [r for r in records if start <= r.offset < end]
    return out


async def start_offsets(settings: Settings, group: str, partitions: Iterable[tuple[str, int]],
                        before: str | None = None) -> dict[tuple[str, int], int]:
    """Where a consumer of `group` starts reading each partition: the group's committed offset,
    else where `before` committed (the group that read these partitions in an older version), else
    the partition's first (the worker resets to `earliest`). Asked of the broker; joins no group."""
    from aiokafka import TopicPartition

    tps = [TopicPartition(topic, partition) for topic, partition in partitions]
    if not tps:
        return {}
    async with _consumer(settings, group_id=group) as consumer:
        committed = {tp: await consumer.committed(tp) for tp in tps}
        if before is not None and None in committed.values():
            async with _consumer(settings, group_id=before) as older:
                committed.update({tp: await older.committed(tp) for tp, n in committed.items() if n is None})
        first = await consumer.beginning_offsets([tp for tp, n in committed.items() if n is None])
    return {(tp.topic, tp.partition): n if n is not None else first[tp] for tp, n in committed.items()}


async def end_offsets(settings: Settings, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """The offset the next record of each partition will get (its end), asked of the broker."""
    from aiokafka import TopicPartition

    tps = [TopicPartition(topic, partition) for topic, partition in partitions]
    if not tps:
        return {}
    async with _consumer(settings) as consumer:
        ends = await consumer.end_offsets(tps)
    return {(tp.topic, tp.partition): n for tp, n in ends.items()}


async def partition_ids(settings: Settings, topic: str) -> set[int]:
    """The partitions `topic` has now, asked of the cluster (empty if it does not exist)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return {p["partition"] for t in described if t["topic"] == topic and not t["error_code"] for p in t["partitions"]}

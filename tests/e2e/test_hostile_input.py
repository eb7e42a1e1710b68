"""Thousands of hostile messages through the real broker and worker: every one dead-lettered
with its specific reason, the valid events between them applied, the worker alive and its
memory bounded.

The messages are `tests/support/hostile.py`'s corpus, whose reasons the unit tier has already
checked against `twin.validate`; here the question is what the running system does with them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError

from streams.settings import Settings
from streams.local.stack import Stack
from tests.support.hostile import Hostile, corpus, dumps
from twin.exceptions import InvalidEvent

BUDGET_S = 120.0
"""The whole test, warm-up included; every wait below takes what is left of it."""
RSS_GROWTH_LIMIT_MB = 24.0
"""How much the worker's resident memory may grow over the measured batch (after two warm-up batches):
less than the 27 MB of its BIG messages, so a worker that kept them would fail."""
BIG = 900_000
"""Under the broker's 1 MB message limit, far over the worker's 64 KiB: the worker must refuse it."""
BIG_COUNT = 30
"""How many random messages of BIG bytes each batch has besides the corpus' own (27 MB in all)."""
VALID_EVERY = 100
"""One valid event of the robot after every this many hostile messages."""


def bearer(settings: Settings, name: str) -> dict[str, str]:
    """The Authorization header for a token setting, if this version of Settings has it set."""
    token = getattr(settings, name, None)
    secret = token.get_secret_value() if hasattr(token, "get_secret_value") else token
    return {"Authorization": f"Bearer {secret}"} if secret else {}


def get(url: str, settings: Settings, token: str = "api_token") -> httpx.Response:
    r = httpx.get(url, timeout=5.0)
    if r.status_code == 401:  # the API wants a bearer token (docs/SECURITY.md)
        r = httpx.get(url, timeout=5.0, headers=bearer(settings, token))
    return r


def scrape(worker: str, settings: Settings) -> dict[str, float]:
    samples = {}
    for line in get(f"{worker}/metrics", settings, "metrics_token").text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def rss_mb(pid: int) -> tuple[float, float]:
    """Resident memory now and at its peak (VmRSS, VmHWM), in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


async def settled_rss_mb(pid: int) -> tuple[float, float]:
    """VmRSS at its lowest over one second, with the peak: what the worker keeps, not what it
    briefly holds (a fetch of 900 KB messages, a garbage collection not yet run)."""
    samples = []
    for _ in range(6):
        samples.append(rss_mb(pid))
        await asyncio.sleep(0.2)
    return min(now for now, _ in samples), max(peak for _, peak in samples)


def remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    assert left > 0, f"over the {BUDGET_S:.0f}s budget"
    return left


async def publish(producer: AIOKafkaProducer, topic: str, robot: str, cases: list[Hostile],
                  first_seq: int) -> tuple[dict[tuple[int, int], Hostile], int]:
    """Send `cases` with a valid event of `robot` before them and after every VALID_EVERY.

    Returns the hostile messages by (partition, offset) and the number of valid events sent.
    """
    now, sent, valid = time.time(), [], 0
    for i, case in enumerate(cases):
        if i % VALID_EVERY == 0:
            value = dumps(robot, now + valid * 1e-3, seq=first_seq + valid)
            await producer.send(topic, value, key=robot.encode())
            valid += 1
        sent.append((case, await producer.send(topic, case.value, key=case.key)))
    await producer.flush()
    return {(m.partition, m.offset): case for case, fut in sent for m in [fut.result()]}, valid


async def dead_letters(settings: Settings, wanted: set[tuple[int, int]], deadline: float) -> dict[tuple[int, int], Any]:
    """DLQ messages whose source is one of `wanted` (telemetry partition, offset); waits for all."""
    consumer = AIOKafkaConsumer(settings.dlq_topic, bootstrap_servers=settings.bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    found: dict[tuple[int, int], Any] = {}
    try:
        while len(found) < len(wanted) and remaining(deadline):
            for batch in (await consumer.getmany(timeout_ms=500, max_records=2000)).values():
                for m in batch:
                    h = dict(m.headers)
                    source = (int(h["source_partition"]), int(h["source_offset"]))
                    if h["source_topic"] == settings.telemetry_topic.encode() and source in wanted:
                        found[source] = m
    finally:
        await consumer.stop()
    return found


async def wait_for_twin(worker: str, settings: Settings, robot: str, seq: int, deadline: float) -> dict[str, Any]:
    while remaining(deadline):
        r = await asyncio.to_thread(get, f"{worker}/twins/{robot}", settings)
        if r.status_code == 200 and r.json()["seq"] == seq:
            return dict(r.json())
        await asyncio.sleep(0.25)
    raise AssertionError("unreachable")


async def one_more_batch(settings: Settings, robot: str, seed: int, seq: int, deadline: float) -> int:
    """A batch of the corpus as the warm-ups send it, waited for in the DLQ; the valid events it sent."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, max_request_size=16 * 2**20, linger_ms=5)
    await producer.start()
    try:
        cases, sent = await publish(producer, settings.telemetry_topic, robot,
                                    corpus(robot, seed=seed, big=BIG, big_count=BIG_COUNT), seq)
    finally:
        await producer.stop()
    assert len(await dead_letters(settings, set(cases), deadline)) == len(cases)
    return sent


async def test_hostile_batch_is_dead_lettered_by_reason_and_the_worker_survives(
    worker: str, settings: Settings, stack: Stack
) -> None:
    deadline = time.monotonic() + BUDGET_S
    pid = stack.procs.pid("worker")
    assert pid is not None
    warm_robot, robot = f"hostile-warm-{uuid.uuid4().hex[:8]}", f"hostile-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, max_request_size=16 * 2**20, linger_ms=5)
    await producer.start()
    try:
        # the broker itself refuses 10 MB (message.max.bytes ~1 MB): it never reaches the worker
        with pytest.raises(MessageSizeTooLargeError):
            await producer.send_and_wait(settings.telemetry_topic, b"[" * 10_000_000, key=robot.encode())

        # warm-up: the same classes twice, so the allocator and caches have seen every shape
        # (a micro-batch may hold all the big messages at once: the heap grows to that first)
        seq = 1
        for seed in (1, 3):
            seq += await one_more_batch(settings, warm_robot, seed, seq, deadline)
        rss_before, _ = await settled_rss_mb(pid)
        metrics_before = scrape(worker, settings)

        started = time.monotonic()
        cases, valid = await publish(producer, settings.telemetry_topic, robot,
                                     corpus(robot, seed=2, scale=2, big=BIG, big_count=BIG_COUNT), 1)
    finally:
        await producer.stop()

    dead = await dead_letters(settings, set(cases), deadline)
    twin = await wait_for_twin(worker, settings, robot, valid, deadline)
    elapsed = time.monotonic() - started
    rss_after, rss_peak = await settled_rss_mb(pid)
    metrics_after = scrape(worker, settings)

    # every hostile message is in the DLQ, unchanged, with the reason its class must get
    assert set(dead) == set(cases), f"{len(set(cases) - set(dead))} hostile messages not dead-lettered"
    wrong = [(c.kind, c.reason, dict(dead[at].headers)["reason"]) for at, c in cases.items()
             if dict(dead[at].headers)["reason"] != c.reason.encode()]
    assert not wrong, wrong[:10]
    assert all(dead[at].value == c.value and dead[at].key == c.key for at, c in cases.items())

    # the valid events between them all reached the twin, and the twin counted the rejections keyed to it
    keyed_to_robot = sum(c.key == robot.encode() for c in cases.values())
    assert twin["counts"]["events"] == valid and twin["counts"]["rejected"] == keyed_to_robot

    # twin_dlq_total grew by exactly the batch's count per reason
    by_reason = Counter(c.reason for c in cases.values())
    for reason in InvalidEvent.REASONS:
        metric = f'twin_dlq_total{{reason="{reason}"}}'
        grew = metrics_after.get(metric, 0) - metrics_before.get(metric, 0)
        assert grew == by_reason[reason], (reason, grew, by_reason[reason])

    # alive, healthy, and memory bounded
    assert stack.procs.pid("worker") == pid
    assert get(f"{worker}/healthz", settings).json()["status"] == "ok"
    growth = rss_after - rss_before
    kinds = Counter(c.kind for c in cases.values())
    print(f"\nhostile e2e: {len(cases)} hostile + {valid} valid in {elapsed:.1f}s; per class {dict(kinds)}; "
          f"per reason {dict(by_reason)}; worker RSS {rss_before:.1f} -> {rss_after:.1f} MiB "
          f"(+{growth:.1f}, peak {rss_peak:.1f})")
    if growth >= RSS_GROWTH_LIMIT_MB:
        # The heap grows once to the largest micro-batch it has held: when the measured batch's big
        # messages came in one fetch and the warm-ups' did not (a busy machine, a slow worker), it
        # grows here (+28 and +31 MiB seen in full CI runs). A worker that keeps messages grows by
        # them at every batch: the same test again must stay under the bound.
        await one_more_batch(settings, warm_robot, 4, seq, deadline)
        again, _ = await settled_rss_mb(pid)
        print(f"one more batch: worker RSS {rss_after:.1f} -> {again:.1f} MiB (+{again - rss_after:.1f})")
        growth = again - rss_after
    assert growth < RSS_GROWTH_LIMIT_MB, f"worker RSS grew {growth:.1f} MiB over the hostile batch"

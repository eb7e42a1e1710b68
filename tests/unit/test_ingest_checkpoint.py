"""Ingest's checkpoint bookkeeping, without a broker: which twins a checkpoint of some partitions
stores, what it leaves for later, and what `GET /twins/{id}` serves in between. (The writer's
records against the real broker: tests/integration/test_changelog_writer.py; the reader's commits:
tests/integration/test_ingest_reader.py.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from streams.seeds import read_detectors, read_fleet
from streams.settings import Settings
from streams.worker.ingest import Ingest, LogMessage, Outbox
from streams.worker.metrics import PipelineMetrics
from twin.fleet_fold import Rules
from twin.state import decode_twin

SEEDS = Path(__file__).resolve().parents[2] / "seeds"


class Recorder:
    """`ChangelogWriter.write`'s contract (the table serves a twin once the write returns), kept in
    memory; `fail` makes the next write raise, as a broker refusing the records would."""

    def __init__(self) -> None:
        self.writes: list[dict[str, tuple[int, bytes | None]]] = []
        self.fail = False

    async def write(self, table: dict[str, bytes], items: Mapping[str, tuple[int, bytes | None]]) -> None:
        if self.fail:
            self.fail = False
            raise RuntimeError("the broker refused the checkpoint")
        self.writes.append(dict(items))
        table.update({key: value for key, (_, value) in items.items() if value is not None})


def report(robot: str, partition: int, seq: int) -> LogMessage:
    body = {"schema": 1, "robot_id": robot, "seq": seq, "ts": 100.0 + seq, "sector": "logistics",
            "site": "log-memphis-01", "model": "amr", "mode": "working", "ai_model_version": "policy-2.4.0",
            "firmware": "fw-1.8.2", "signals": {"battery_soc_pct": 50.0 + seq}}
    return LogMessage("telemetry", partition, seq, 100.1 + seq, robot.encode(), json.dumps(body).encode())


@pytest.fixture
def ingest() -> tuple[Ingest, Recorder, dict[str, bytes]]:
    metrics = PipelineMetrics(CollectorRegistry())
    table: dict[str, bytes] = {}
    writer = Recorder()
    outbox = Outbox(None, None, metrics)  # type: ignore[arg-type]  # nothing is found or refused here
    return Ingest(Settings(), Rules(read_fleet(SEEDS), read_detectors(SEEDS)), table, writer,  # type: ignore[arg-type]
                  outbox, None, metrics), writer, table  # type: ignore[arg-type]


def seqs(raw: bytes | None) -> int:
    assert raw is not None
    return decode_twin(raw).seq


def test_a_checkpoint_stores_only_its_partitions_twins_and_leaves_the_others_for_theirs(
        ingest: tuple[Ingest, Recorder, dict[str, bytes]]) -> None:
    agent, writer, table = ingest
    asyncio.run(agent.fold_batch([report("r-1", 0, 1), report("r-2", 1, 1), report("r-3", 0, 1)]))
    asyncio.run(agent.checkpoint({0}))
    assert [{r: p for r, (p, _) in w.items()} for w in writer.writes] == [{"r-1": 0, "r-3": 0}]
    assert set(table) == {"r-1", "r-3"}
    assert seqs(agent.twin_bytes("r-2")) == 1  # not stored yet: served from the fold
    asyncio.run(agent.fold_batch([report("r-1", 0, 2)]))
    assert seqs(agent.twin_bytes("r-1")) == 2 and seqs(table["r-1"]) == 1
    asyncio.run(agent.checkpoint({1}))
    assert {r: p for r, (p, _) in writer.writes[-1].items()} == {"r-2": 1}
    asyncio.run(agent.checkpoint({1}))
    assert writer.writes[-1] == {}  # nothing changed there since
    asyncio.run(agent.checkpoint({0}))
    assert {r: p for r, (p, _) in writer.writes[-1].items()} == {"r-1": 0} and seqs(table["r-1"]) == 2


def test_a_failed_checkpoint_keeps_its_twins_for_the_next_one(
        ingest: tuple[Ingest, Recorder, dict[str, bytes]]) -> None:
    agent, writer, table = ingest
    asyncio.run(agent.fold_batch([report("r-1", 0, 1), report("r-2", 1, 1)]))
    writer.fail = True
    with pytest.raises(RuntimeError):
        asyncio.run(agent.checkpoint({0, 1}))
    assert table == {} and seqs(agent.twin_bytes("r-1")) == 1
    asyncio.run(agent.checkpoint({0, 1}))
    assert {r: p for r, (p, _) in writer.writes[-1].items()} == {"r-1": 0, "r-2": 1}
    assert {r: seqs(raw) for r, raw in table.items()} == {"r-1": 1, "r-2": 1}

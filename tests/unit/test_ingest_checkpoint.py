"""Ingest's checkpoint bookkeeping, without a broker: which twins a checkpoint of some partitions
stores, what it leaves for later, what `GET /twins/{id}` serves in between, and that a twin is kept
once (the fold's, taken out of the table). (The writer's records against the real broker:
tests/integration/test_changelog_writer.py; the reader's commits:
tests/integration/test_ingest_reader.py.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import faust
import pytest
from prometheus_client import CollectorRegistry

from streams.seeds import read_detectors, read_fleet
from streams.settings import Settings
from streams.worker import bulk_store
from streams.worker.ingest import Ingest, LogMessage, Outbox
from streams.worker.metrics import PipelineMetrics
from streams.worker.table import put_local
from twin.fleet_fold import Rules
from twin.state import decode_twin, encode_twin

SEEDS = Path(__file__).resolve().parents[2] / "seeds"


class Recorder:
    """`ChangelogWriter.write`'s contract kept in memory, as ingest calls it (not keeping the values
    in the table): `stored` is what the changelog holds; `fail` makes the next write raise, as a
    broker refusing the records would."""

    def __init__(self) -> None:
        self.writes: list[dict[str, tuple[int, bytes | None]]] = []
        self.stored: dict[str, bytes] = {}
        self.fail = False

    async def write(self, table: Any, items: Mapping[str, tuple[int, bytes | None]], keep: bool = True) -> None:
        if self.fail:
            self.fail = False
            raise RuntimeError("the broker refused the checkpoint")
        self.writes.append(dict(items))
        assert not keep, "ingest stores twins to the changelog only"
        self.stored.update({key: value for key, (_, value) in items.items() if value is not None})


def twins_table() -> Any:
    """The worker's twins table (its store `bulk_store`'s), on an app never started."""
    app = faust.App("ingest-test", broker="kafka://127.0.0.1:1", store="memory://", autodiscover=False)
    return app.Table("twins", key_type=str, value_type=bytes, partitions=4, store=bulk_store.URL)


def report(robot: str, partition: int, seq: int) -> LogMessage:
    body = {"schema": 1, "robot_id": robot, "seq": seq, "ts": 100.0 + seq, "sector": "logistics",
            "site": "log-memphis-01", "model": "amr", "mode": "working", "ai_model_version": "policy-2.4.0",
            "firmware": "fw-1.8.2", "signals": {"battery_soc_pct": 50.0 + seq}}
    return LogMessage("telemetry", partition, seq, 100.1 + seq, robot.encode(), json.dumps(body).encode())


@pytest.fixture
def ingest() -> tuple[Ingest, Recorder, Any]:
    metrics = PipelineMetrics(CollectorRegistry())
    table = twins_table()
    writer = Recorder()
    outbox = Outbox(None, None, metrics)  # type: ignore[arg-type]  # nothing is found or refused here
    return Ingest(Settings(), Rules(read_fleet(SEEDS), read_detectors(SEEDS)), table, writer,  # type: ignore[arg-type]
                  outbox, None, metrics), writer, table  # type: ignore[arg-type]


def seqs(raw: bytes | None) -> int:
    assert raw is not None
    return decode_twin(raw).seq


def test_a_checkpoint_stores_only_its_partitions_twins_and_leaves_the_others_for_theirs(
        ingest: tuple[Ingest, Recorder, Any]) -> None:
    agent, writer, table = ingest
    asyncio.run(agent.fold_batch([report("r-1", 0, 1), report("r-2", 1, 1), report("r-3", 0, 1)]))
    asyncio.run(agent.checkpoint({0}))
    assert [{r: p for r, (p, _) in w.items()} for w in writer.writes] == [{"r-1": 0, "r-3": 0}]
    assert set(writer.stored) == {"r-1", "r-3"} and dict(table.items()) == {}  # to the changelog only
    assert seqs(agent.twin_bytes("r-2")) == 1  # not stored yet: served from the fold
    asyncio.run(agent.fold_batch([report("r-1", 0, 2)]))
    assert seqs(agent.twin_bytes("r-1")) == 2 and seqs(writer.stored["r-1"]) == 1
    asyncio.run(agent.checkpoint({1}))
    assert {r: p for r, (p, _) in writer.writes[-1].items()} == {"r-2": 1}
    asyncio.run(agent.checkpoint({1}))
    assert writer.writes[-1] == {}  # nothing changed there since
    asyncio.run(agent.checkpoint({0}))
    assert {r: p for r, (p, _) in writer.writes[-1].items()} == {"r-1": 0} and seqs(writer.stored["r-1"]) == 2


def test_a_failed_checkpoint_keeps_its_twins_for_the_next_one(
        ingest: tuple[Ingest, Recorder, Any]) -> None:
    agent, writer, table = ingest
    asyncio.run(agent.fold_batch([report("r-1", 0, 1), report("r-2", 1, 1)]))
    writer.fail = True
    with pytest.raises(RuntimeError):
        asyncio.run(agent.checkpoint({0, 1}))
    assert writer.stored == {} and seqs(agent.twin_bytes("r-1")) == 1
    asyncio.run(agent.checkpoint({0, 1}))
    assert {r: p for r, (p, _) in writer.writes[-1].items()} == {"r-1": 0, "r-2": 1}
    assert {r: seqs(raw) for r, raw in writer.stored.items()} == {"r-1": 1, "r-2": 1}


def test_a_twin_loaded_from_the_table_is_taken_out_of_it_and_counted_once(
        ingest: tuple[Ingest, Recorder, Any]) -> None:
    """After a restart the table holds the twins as the last checkpoint stored them; once a robot
    reports, the fold holds its twin and the table no longer does (one copy in memory), and the
    gauges count it once, at its stored size."""
    agent, writer, table = ingest
    asyncio.run(agent.fold_batch([report("r-1", 0, 1), report("r-2", 1, 1)]))
    asyncio.run(agent.checkpoint({0, 1}))
    agent.assigned({})  # a restart: the fold starts over, the table as the changelog holds it
    for robot, raw in writer.stored.items():
        put_local(table, robot, raw, {"r-1": 0, "r-2": 1}[robot])
    store = bulk_store.of(table)
    store.held_to = {0: 1, 1: 1}
    sizes = {r: len(raw) for r, raw in writer.stored.items()}
    assert agent.summary().robots == 2 and agent.summary().nbytes == sum(sizes.values())
    asyncio.run(agent.fold_batch([report("r-1", 0, 2)]))
    assert set(dict(table.items())) == {"r-2"} and store.held_to == {1: 1}  # partition 0 to be read again
    assert seqs(agent.twin_bytes("r-1")) == 2 and seqs(agent.twin_bytes("r-2")) == 1
    assert (agent.summary().robots, agent.summary().nbytes) == (2, sum(sizes.values()))
    asyncio.run(agent.checkpoint({0}))
    assert agent.summary().nbytes == len(writer.stored["r-1"]) + sizes["r-2"]
    assert [t.seq for t in agent.twins()] == [2, 1]
    assert [t.robot_id for t in agent.twins(lambda r: r == "r-2")] == ["r-2"]
    assert encode_twin(list(agent.twins())[0]) == agent.twin_bytes("r-1")

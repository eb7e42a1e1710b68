"""Which log partitions this worker reads: those of the tables it is active for.

Faust's group assigns the tables' changelog partitions (its assignor keeps partition p of
co-partitioned topics on one worker). No log is read through Faust's stream (its per-record cost,
docs/BATCH_ENGINE.md, and the records it passes over after a rebalance, docs/RELIABILITY.md), so
telemetry, checks and anomalies are no Faust agent's topics here. Each is read on the worker's own
consumer (`IngestReader`), one per `Lane`: the worker active for partition p of a lane's table
reads partition p of the lane's topics (the twins table: telemetry and checks; the alerts table:
fleet.anomalies, whose messages that table remembers as sent):

* on revoke (Faust has paused its consumer; the broker waits for this handler), each reader
  finishes the batch in flight, checkpoints and commits, and lets every partition go (its fold
  too): the next owner starts exactly where it ended;
* once the tables are recovered (`on_rebalance_complete`, for the generation that assigned), each
  reader takes its partitions from where its group committed (ingest's reader commits at each
  checkpoint of its twins, the anomalies reader after each batch's posts; a crash re-reads the
  records since into the twins as the checkpoint stored them, and the alerts table marks them as
  already posted);
* on shutdown (Faust sends no revoke then), the readers stop after their batch in flight and a
  last checkpoint.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from streams.kafka_client import start_offsets
from streams.settings import Settings
from streams.worker.ingest_reader import IngestReader

log = logging.getLogger(__name__)

Starts = Mapping[tuple[str, int], int]


@dataclass(frozen=True)
class Lane:
    """A reader, the topics it reads, and the table whose assignment says which partitions."""

    reader: IngestReader
    topics: tuple[str, ...]
    changelog: str
    """The changelog topic of the table the reader's fold writes."""
    starting: Callable[[Starts], None] | None = None
    """Told where each partition starts before the first batch (the fold starts over)."""
    released: Callable[[], None] | None = None
    """Told on revoke, once the reader has let its partitions go."""
    before: str | None = None
    """The group that read these topics in an older version: where a reader starts on a partition
    its own group has no commit for (rather than the log's first record)."""


class Handover:
    """Keeps each reader's partitions in step with Faust's assignment of its table."""

    def __init__(self, app: Any, settings: Settings, lanes: Sequence[Lane]) -> None:
        self._app = app
        self._settings = settings
        self._lanes = tuple(lanes)
        self._generation: int | None = None
        self._partitions: dict[str, set[int]] = {}

    async def revoked(self) -> None:
        await asyncio.gather(*(lane.reader.release() for lane in self._lanes))
        for lane in self._lanes:
            if lane.released is not None:
                lane.released()

    def assigned(self) -> None:
        """Note the partitions this worker is active for, and for which generation of the group."""
        actives = self._app.assignor.assigned_actives()
        self._partitions = {lane.changelog: {tp.partition for tp in actives if tp.topic == lane.changelog}
                            for lane in self._lanes}
        self._generation = self._app.consumer_generation_id

    async def recovered(self) -> None:
        """Start each reader on this worker's partitions, unless the group has moved on since they were assigned."""
        generation = self._generation
        if generation is None or generation != self._app.consumer_generation_id:
            return
        starts = []
        for lane in self._lanes:
            logs = [(topic, p) for p in sorted(self._partitions[lane.changelog]) for topic in lane.topics]
            found = await self._starts(lane, logs, generation)
            if found is None:
                return
            starts.append(found)
        for lane, start in zip(self._lanes, starts):
            await lane.reader.release()  # no batch in flight while the fold starts over
            if lane.starting is not None:
                lane.starting(start)
            await lane.reader.assign(start)
            log.info("reading partitions %s of %s", sorted(self._partitions[lane.changelog]), ", ".join(lane.topics))

    async def _starts(self, lane: Lane, logs: list[tuple[str, int]], generation: int) -> dict[tuple[str, int], int] | None:
        """Where the lane's group stands on `logs`, asked until the broker answers; None if Faust's
        group moves on meanwhile."""
        while True:
            try:
                return await start_offsets(self._settings, lane.reader.group, logs, before=lane.before)
            except Exception as exc:  # noqa: BLE001 - without them nothing is read: ask again
                log.warning("could not read where %s stands (%r); asking again in 1 s", lane.reader.group, exc)
                await asyncio.sleep(1.0)
                if generation != self._app.consumer_generation_id:
                    return None

    async def stop(self) -> None:
        await asyncio.gather(*(lane.reader.stop() for lane in self._lanes))

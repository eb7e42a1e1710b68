"""Which telemetry and check partitions this worker ingests: those of the twins it holds.

Faust's group assigns the twins table's changelog partitions (its assignor keeps partition p of
co-partitioned topics on one worker). Ingest does not run on Faust's stream (its per-record cost,
docs/BATCH_ENGINE.md), so telemetry and checks are no Faust topics here: the worker active for
changelog partition p reads telemetry p and checks p on its own consumer (`IngestReader`):

* on revoke (Faust has paused its consumer; the broker waits for this handler), the reader finishes
  the batch in flight and lets every partition go: the next owner starts exactly where it ended;
* once the table is recovered (`on_rebalance_complete`, for the generation that assigned), the
  reader takes its partitions from where the ingest group committed (`ingest_group`: the reader
  commits after each batch's effects are stored; a crash re-reads at most the batches since, which
  the twins' own offsets mark as redelivered);
* on shutdown (Faust sends no revoke then), the reader stops after its batch in flight.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from streams.kafka_client import start_offsets
from streams.settings import Settings
from streams.worker.ingest import Ingest
from streams.worker.ingest_reader import IngestReader, ingest_group

log = logging.getLogger(__name__)


class Handover:
    """Keeps the reader's partitions in step with Faust's assignment of the twins changelog."""

    def __init__(self, app: Any, settings: Settings, reader: IngestReader, ingest: Ingest, changelog: str) -> None:
        self._app = app
        self._settings = settings
        self._reader = reader
        self._ingest = ingest
        self._changelog = changelog
        self._generation: int | None = None
        self._partitions: set[int] = set()

    async def revoked(self) -> None:
        await self._reader.release()

    def assigned(self) -> None:
        """Note the partitions this worker is active for, and for which generation of the group."""
        self._partitions = {tp.partition for tp in self._app.assignor.assigned_actives()
                            if tp.topic == self._changelog}
        self._generation = self._app.consumer_generation_id

    async def recovered(self) -> None:
        """Start reading this worker's partitions, unless the group has moved on since they were assigned."""
        if self._generation is None or self._generation != self._app.consumer_generation_id:
            return
        s = self._settings
        logs = [(topic, p) for p in sorted(self._partitions) for topic in (s.telemetry_topic, s.checks_topic)]
        while True:
            try:
                starts = await start_offsets(s, ingest_group(s), logs)
                break
            except Exception as exc:  # noqa: BLE001 - without them nothing is ingested: ask again
                log.warning("could not read where the ingest group stands (%r); asking again in 1 s", exc)
                await asyncio.sleep(1.0)
                if self._generation != self._app.consumer_generation_id:
                    return
        await self._reader.release()  # no batch in flight while the fold starts over
        self._ingest.assigned(starts)
        await self._reader.assign(starts)
        log.info("ingesting partitions %s of %s and %s", sorted(self._partitions), s.telemetry_topic,
                 s.checks_topic)

    async def stop(self) -> None:
        await self._reader.stop()

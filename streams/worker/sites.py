"""Site incidents: the worker's consumer of `fleet.anomalies` correlates each site's messages.

`fleet.anomalies` is keyed by site, so every message of a site reaches the
same worker, whichever worker found it. The rules are `twin.fleet_fold`'s
(`on_anomaly`, `on_tick`); this module only feeds them and sends what they find.
"""

from __future__ import annotations

import time

from streams.worker.ingest import Outbox
from twin.detect.findings import Anomaly
from twin.fleet_fold import FleetState, on_anomaly, on_tick


class Sites:
    """The site state of this worker's share of `fleet.anomalies` (in memory, relearned after a restart)."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self.state = FleetState()

    def correlate(self, anomaly: Anomaly) -> list[Anomaly]:
        """The site-incident messages one anomaly message causes (none sent yet)."""
        self.state, found = on_anomaly(self.state, anomaly)
        return found

    async def tick(self) -> None:
        """Resolve incidents that went quiet. On the wall clock: that topic's records carry no tick,
        and a quiet site sends no message that could end its incident."""
        self.state, found = on_tick(self.state, time.time())
        await self._outbox.publish(found)

"""The worker's share of `fleet.anomalies`, a batch at a time: site incidents, then alerts.

Read by the worker's own consumer (`ingest_reader`, partitions from `handover`), not a Faust
agent: Faust's stream passed over messages fetched before a rebalance, and after back-to-back
restarts an anomaly was never posted to Alertmanager (docs/RELIABILITY.md). The reader commits a
batch only after this returns, so a message is taken at least once; the alerts table makes the
posting of each one once.
"""

from __future__ import annotations

import msgspec

from streams.worker.alerting import ANOMALY_DECODER, AlertSink
from streams.worker.ingest import LogMessage, Outbox
from streams.worker.sites import Sites
from twin.detect.findings import Anomaly
from twin.exceptions import InvalidEvent


class AnomalyIntake:
    """Feeds each readable message to the site correlation and the alert sink; dead-letters the rest."""

    def __init__(self, sites: Sites, alerts: AlertSink, outbox: Outbox) -> None:
        self._sites = sites
        self._alerts = alerts
        self._outbox = outbox

    async def take(self, batch: list[LogMessage]) -> None:
        found: list[tuple[LogMessage, Anomaly]] = []
        for message in batch:
            try:
                found.append((message, ANOMALY_DECODER.decode(message.value)))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                # Only workers write this topic, but a writer with the rights may send anything:
                # the message goes aside with its reason, and the batch goes on.
                await self._outbox.dead_letter(message, InvalidEvent("undecodable", f"not an anomaly message: {exc}"))
        # The batch's site-incident messages go out together: one wait for the broker's acks.
        await self._outbox.publish([m for _, anomaly in found for m in self._sites.correlate(anomaly)])
        await self._alerts.take(found)

"""One record of the fleet's log, as a worker or a replay reads it from Kafka or the archive."""

from __future__ import annotations

from typing import Literal

import msgspec

Kind = Literal["telemetry", "check"]


class Record(msgspec.Struct, frozen=True):
    """One log record as the worker received it: telemetry or a silence check."""

    kind: Kind
    partition: int
    offset: int
    timestamp: float
    """Broker record timestamp, seconds since the epoch: the worker's and the replay's only clock."""
    key: bytes | None
    value: bytes

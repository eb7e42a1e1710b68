"""One record of the fleet's log, as a worker or a replay reads it from Kafka or the archive."""

from __future__ import annotations

from typing import Literal

import msgspec

Kind = Literal["telemetry", "check", "anomaly", "desired"]
"""Which topic a record comes from: telemetry, silence checks (the two the worker and a
replay fold), anomaly messages (which the archive keeps too), or desired-state changes
(`fleet.desired`, folded by `twin.fleet_fold.on_desired`)."""


class Record(msgspec.Struct, frozen=True):
    """One log record as the worker received it, or the archive stored it."""

    kind: Kind
    partition: int
    offset: int
    timestamp: float
    """Broker record timestamp, seconds since the epoch: the worker's and the replay's only clock.

    Kafka's integer milliseconds / 1000.0, as Faust hands it to the worker; the
    milliseconds come back exactly as `round(timestamp * 1000)` (the archive's
    date folders are cut on them)."""
    key: bytes | None
    value: bytes


def robot_of(key: bytes | None) -> str:
    """The robot a record's key names: "" for no key or one that is no UTF-8 (a rejected record counts
    on that robot's twin, a silence check judges it)."""
    try:
        return key.decode() if key else ""
    except UnicodeDecodeError:
        return ""

"""What a detector says about one reading, and the anomalies a robot's findings become."""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import msgspec

DETECTORS: tuple[str, ...] = (
    "band", "spike", "stuck", "dropout", "drift", "cohort", "silence", "clock_skew", "delivery",
    "fault_codes", "seq_gap", "rollout", "site_incident", "desired_drift",
)
"""Every detector name: a bounded label set for metrics and alert routing."""


class Finding(msgspec.Struct, frozen=True):
    """A detector firing on one reading; `score` >= 1 (1 is its threshold)."""

    detector: str
    signal: str
    score: float
    evidence: dict[str, Any] = {}


Status = Literal["open", "update", "resolved"]


class Anomaly(msgspec.Struct, frozen=True, kw_only=True):
    """One lifecycle message of an anomaly, as published to `fleet.anomalies`."""

    id: str
    """Deterministic: the same robot, detector, signal and start give the same id."""
    status: Status
    robot_id: str
    sector: str
    site: str
    model: str
    detector: str
    signal: str
    severity: str
    score: float
    start_ts: float
    ts: float
    """Event time of this message."""
    end_ts: float | None = None
    evidence: dict[str, Any] = {}
    caused_by: str | None = None
    """Id of a site incident this anomaly is part of."""
    links: dict[str, str] = {}
    """Where people go from here (the twin's path, the replay command): empty in the core,
    rendered from the facts above by the shell as it publishes (`streams.links.with_links`)."""


def anomaly_id(*parts: object) -> str:
    return hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).hexdigest()

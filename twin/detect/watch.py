"""Detector state kept inside each twin: small, positional, integer where it can be.

Per signal three small integers, aligned with the twin's (canonically sorted)
signals, so names are not stored twice. Decayed counters are integers scaled
by 100 and decayed by integer arithmetic: exact on replay, and a zero costs a
single byte in msgpack.
"""

from __future__ import annotations

import msgspec

from twin.detect.multivariate import State as CohortState


class SignalWatch(msgspec.Struct, frozen=True, array_like=True):
    out: int = 0
    """Consecutive reports outside the nominal band (plus margin)."""
    same: int = 0
    """Consecutive identical values."""
    hits: int = 0
    """Decayed count of spikes, x100."""


class Drift(msgspec.Struct, frozen=True, array_like=True):
    """Page-Hinkley state of one signal that wears."""

    n: int = 0
    base: float = 0.0
    """Mean of the reference period (the first reports), then frozen."""
    stat: float = 0.0


class Open(msgspec.Struct, frozen=True, array_like=True):
    """An anomaly that is open on this robot."""

    detector: str
    signal: str
    start: float
    """Event time it opened."""
    peak: float
    """Highest score seen (1.0 = threshold)."""
    severity: str
    normal: int = 0
    """Normal readings in a row since it last fired (hysteresis)."""


class Watch(msgspec.Struct, frozen=True, array_like=True):
    """All detector state of one robot."""

    signals: list[SignalWatch] = []
    drift: dict[str, Drift] = {}
    interval: float = 0.0
    """Learned time between reports (broker time), for silence."""
    skew: int = 0
    delivery: int = 0
    """Decayed count of duplicates and out-of-order arrivals, x100."""
    codes: int = 0
    """Decayed count of fault codes and e-stops, x100."""
    open: list[Open] = []
    cohort: CohortState | None = None
    """Smoothed distance to the robot model's cohort baseline (twin.detect.cohort)."""

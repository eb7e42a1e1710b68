"""Detector state kept inside each twin: small, positional, integer where it can be.

Per signal three small integers, aligned with the twin's (canonically sorted)
signals, so names are not stored twice. Decayed counters are integers scaled
by 100 and decayed by integer arithmetic: exact on replay, and a zero costs a
single byte in msgpack.
"""

from __future__ import annotations

import msgspec

from twin.detect.multivariate import State as CohortState
from twin.detect.stall import State as StallState


class Drift(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """Two-sided CUSUM state of one signal watched for slow change (twin.detect.signals.drift).

    Five integers: the reference (time-weighted mean and mean absolute deviation
    of the signal's level, or of its rate of change, over its first settled
    working seconds) and the two one-sided statistics. Fixed-point so that
    replay is exact and a healthy signal costs about a dozen bytes.
    """

    ref: int = 0
    """Settled working time learned into the reference so far, in tenths of a second."""
    level: int = 0
    """Reference mean, in `unit`s (band widths, or band widths per second for a trend); while
    the reference is learned, the time-weighted sum (a running mean in integers would stall)."""
    spread: int = 0
    """Reference mean absolute deviation, same units; while learned, the time-weighted sum."""
    up: int = 0
    """Upward CUSUM, x10, in reference spreads x seconds."""
    down: int = 0
    """Downward CUSUM, x10."""


COUNTER_MAX = 2**31 - 1
"""Where `SignalWatch.out` and `.same` stop counting. No threshold comes near it (68 years of 1 Hz
reports in a row), and the batch fold keeps both as 32-bit columns: half a signal cell's bytes."""

HITS_MAX = 500
"""The most `SignalWatch.hits` can hold: decayed by a fifth, then 100 added, it never passes 500
(x * 4 // 5 + 100 <= 500 for x <= 500; from 0 it settles at 496). The batch fold keeps it in 16 bits."""


class SignalWatch(msgspec.Struct, frozen=True, gc=False, array_like=True):
    out: int = 0
    """Consecutive reports outside the nominal band (plus margin), up to `COUNTER_MAX`."""
    same: int = 0
    """Consecutive identical values, up to `COUNTER_MAX`."""
    hits: int = 0
    """Decayed count of spikes, x100 (at most `HITS_MAX`)."""
    drift: Drift | None = None
    """Slow-change state, for the signals the robot model watches for drift or trend."""


class Open(msgspec.Struct, frozen=True, gc=False, array_like=True):
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


class Watch(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """All detector state of one robot."""

    signals: list[SignalWatch] = []
    legacy_drift: dict[str, list[float]] = {}
    """Unused: the Page-Hinkley state of an earlier version, kept in its place so stored twins
    decode; drift state now lives per signal in `SignalWatch.drift`."""
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
    stall: StallState | None = None
    """Work-cycle phase and still readings (twin.detect.stall), for models that configure it."""

"""Rollout detector: does a new AI-model version make inference slower on a robot model?

Per (robot model, AI-model version) it keeps running statistics of log
latency (Welford: count, mean, M2). A version is compared with the version
before it on the same robot model (the most used one first seen earlier) by
Welch's test on log latency; a significant slowdown beyond `min_ratio` opens
one fleet-level anomaly for that (model, version). Log latency, because
latency is skewed and a regression is a ratio.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec
from msgspec.structs import replace

from twin.detect.findings import Anomaly, anomaly_id
from twin.schema import Event


class RolloutParams(msgspec.Struct, frozen=True, kw_only=True):
    signal: str = "inference_ms"
    min_reports: int = 300
    """Reports of each version before judging."""
    min_ratio: float = 1.15
    """Slowdown of the geometric-mean latency that matters to operations."""
    z: float = 6.0
    """Welch statistic needed: far beyond chance with thousands of reports."""


class LatencyStats(msgspec.Struct, frozen=True, array_like=True):
    """Welford statistics of the log latency of one AI-model version on one robot model."""

    first_ts: float
    n: int = 0
    mean: float = 0.0
    m2: float = 0.0


class RolloutState(msgspec.Struct, frozen=True):
    stats: dict[str, LatencyStats] = {}
    """Keyed `model|version`."""
    flagged: dict[str, float] = {}
    """`model|version` -> event time it was flagged."""


def observe(state: RolloutState, event: Event, p: RolloutParams = RolloutParams()) -> RolloutState:
    observed = latency_of(event, p)
    if observed is None:
        return state
    key, value = observed
    return replace(state, stats={**state.stats, key: add_latency(state.stats.get(key), event.ts, value)})


def latency_of(event: Event, p: RolloutParams = RolloutParams()) -> tuple[str, float] | None:
    """The `model|version` key and the latency this report teaches, if it teaches one (the batch
    fold calls this and `add_latency` on a dict of its own, so the rule stays here)."""
    value = event.signals.get(p.signal)
    if value is None or value <= 0 or not event.ai_model_version:
        return None
    return f"{event.model}|{event.ai_model_version}", value


def add_latency(s: LatencyStats | None, ts: float, value: float) -> LatencyStats:
    """One Welford step on the log latency (`s` None: the version's first report, at `ts`)."""
    return add_latencies(s, [ts], [value])


def add_latencies(s: LatencyStats | None, ts: Sequence[float], values: Sequence[float]) -> LatencyStats:
    """`add_latency` for each (ts, value) in turn (`ts` not empty), on plain floats: a batch fold
    teaches a version many reports at once, and one struct per report was most of its cost."""
    s = s or LatencyStats(ts[0])
    first, n, mean, m2 = s.first_ts, s.n, s.mean, s.m2
    for t, value in zip(ts, values):
        x = math.log(value)
        n += 1
        delta = x - mean
        mean = mean + delta / n
        m2 = m2 + delta * (x - mean)
        first = min(first, t)
    return LatencyStats(first, n, mean, m2)


def judge(state: RolloutState, ts: float, p: RolloutParams = RolloutParams()) -> tuple[RolloutState, list[Anomaly]]:
    """Compare each version with its predecessor; open an anomaly for each new regression."""
    flagged = dict(state.flagged)
    out = []
    for key, new in sorted(state.stats.items()):
        model, version = key.split("|", 1)
        old_key = _predecessor(state, model, key)
        if key in flagged or old_key is None:
            continue
        old = state.stats[old_key]
        if min(new.n, old.n) < p.min_reports:
            continue
        ratio = math.exp(new.mean - old.mean)
        z = (new.mean - old.mean) / math.sqrt(_var(new) / new.n + _var(old) / old.n + 1e-300)
        if ratio >= p.min_ratio and z >= p.z:
            flagged[key] = ts
            out.append(_anomaly(model, version, old_key.split("|", 1)[1], ratio, z, new, ts))
    return replace(state, flagged=flagged), out


def _predecessor(state: RolloutState, model: str, key: str) -> str | None:
    first = state.stats[key].first_ts
    earlier = [(s.n, k) for k, s in state.stats.items()
               if k.startswith(model + "|") and k != key and s.first_ts < first]
    return max(earlier)[1] if earlier else None


def _var(s: LatencyStats) -> float:
    return s.m2 / (s.n - 1) if s.n > 1 else 0.0


def _anomaly(model: str, version: str, previous: str, ratio: float, z: float, s: LatencyStats,
             ts: float) -> Anomaly:
    return Anomaly(
        id=anomaly_id("rollout", model, version), status="open", robot_id="", sector="", site="",
        model=model, detector="rollout", signal=f"inference_ms@{version}", severity="critical",
        score=round(ratio, 4), start_ts=s.first_ts, ts=ts,
        evidence={"version": version, "previous": previous, "latency_ratio": round(ratio, 4),
                  "welch_z": round(z, 2), "reports": s.n},
    )

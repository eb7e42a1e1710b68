"""Fleet-level aggregates of twins, over bounded label sets only.

Everything the metrics and /fleet/summary show is computed here from the
twins, at scrape time, so the hot path never touches them. Label values come
from the fleet model (sector, site, model), the schema (mode), detector names
and a fixed set of signal kinds; `label_space` lists them all so exporters can
publish every series from the start and the series count never depends on the
number of robots.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from twin.fleet import Fleet
from twin.state import Twin

SIGNAL_KINDS: tuple[str, ...] = (
    "joint_temp_c", "joint_current_a", "battery_soc_pct", "battery_temp_c", "cpu_temp_c", "gpu_temp_c",
    "inference_ms",
)
"""Signals with a fleet-wide distribution; per-joint signals pool into one kind."""
BAND_BUCKETS: tuple[float, ...] = (-0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5)
"""Upper bounds of the band-position histogram (0 = bottom of the nominal band, 1 = top)."""

_JOINT = re.compile(r"joint\d+_(temp_c|current_a)$")


def kind_of(signal: str) -> str | None:
    joint = _JOINT.match(signal)
    if joint:
        return f"joint_{joint.group(1)}"
    return signal if signal in SIGNAL_KINDS else None


@dataclass
class Distribution:
    """Histogram of band positions plus the sum of values in engineering units."""

    buckets: list[int] = field(default_factory=lambda: [0] * (len(BAND_BUCKETS) + 1))
    band_sum: float = 0.0
    value_sum: float = 0.0
    count: int = 0

    def add(self, position: float, value: float) -> None:
        i = next((k for k, bound in enumerate(BAND_BUCKETS) if position <= bound), len(BAND_BUCKETS))
        self.buckets[i] += 1
        self.band_sum += position
        self.value_sum += value
        self.count += 1


@dataclass
class VersionSummary:
    """The robots of one (model, AI-model version) now: how many, how many anomalous, their latency."""

    robots: int = 0
    anomalous: int = 0
    latency_sum: float = 0.0
    latency_n: int = 0


@dataclass
class FleetSummary:
    robots: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    """(sector, site, model, mode) -> robots."""
    offline: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """(sector, site, model) -> robots with an open silence anomaly."""
    signals: dict[tuple[str, str, str], Distribution] = field(default_factory=dict)
    """(sector, model, signal kind) -> distribution of the robots' latest values."""
    versions: dict[tuple[str, str], VersionSummary] = field(default_factory=dict)
    """(model, AI-model version or 'other') -> the rollout view."""
    anomalies: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(sector, detector) -> open anomalies."""


def summarize_fleet(twins: Iterable[Twin], fleet: Fleet) -> FleetSummary:
    """One pass over the twins."""
    out = FleetSummary()
    for twin in twins:
        opened = twin.watch.open if twin.watch else []
        out.robots[(twin.sector, twin.site, twin.model, twin.mode)] += 1
        if any(o.detector == "silence" for o in opened):
            out.offline[(twin.sector, twin.site, twin.model)] += 1
        for o in opened:
            out.anomalies[(twin.sector, o.detector)] += 1
        _signals(out, twin, fleet)
        _version(out, twin, bool(opened), fleet)
    return out


class Labels(NamedTuple):
    """What the /twins listing and /fleet/summary read of a twin: no need to build the whole twin."""

    robot_id: str
    sector: str
    site: str
    mode: str

    @classmethod
    def of(cls, twin: Twin) -> Labels:
        return cls(twin.robot_id, twin.sector, twin.site, twin.mode)


def count_by_sector_mode(twins: Iterable[Labels]) -> Counter[tuple[str, str]]:
    """Robots per (sector, mode): what /fleet/summary shows."""
    return Counter((t.sector, t.mode) for t in twins)


def label_space(fleet: Fleet) -> list[tuple[str, str, str]]:
    """Every (sector, site, model) the fleet model allows."""
    return [(name, site, model) for name, sector in sorted(fleet.sectors.items())
            for site in sector.sites for model in sector.models]


def signal_space(fleet: Fleet) -> list[tuple[str, str, str]]:
    """Every (sector, model, signal kind) the fleet model allows."""
    out = []
    for name, sector in sorted(fleet.sectors.items()):
        for model in sector.models:
            kinds = {k for s in fleet.models[model].signals if (k := kind_of(s))}
            out += [(name, model, k) for k in SIGNAL_KINDS if k in kinds]
    return out


def _signals(out: FleetSummary, twin: Twin, fleet: Fleet) -> None:
    catalogue = fleet.models[twin.model].signals if twin.model in fleet.models else {}
    for name, state in twin.signals.items():
        kind = kind_of(name)
        spec = catalogue.get(name)
        if kind is None or spec is None:
            continue
        lo, hi = spec.nominal
        dist = out.signals.setdefault((twin.sector, twin.model, kind), Distribution())
        dist.add((state.value - lo) / (hi - lo), state.value)


def version_space(fleet: Fleet) -> list[tuple[str, str]]:
    """Every (model, version) of the release registry, plus 'other' per model."""
    return [(name, v) for name, model in sorted(fleet.models.items()) for v in (*model.ai_model_versions, "other")]


def _version(out: FleetSummary, twin: Twin, anomalous: bool, fleet: Fleet) -> None:
    version = fleet.version_label(twin.model, twin.ai_model_version)
    stats = out.versions.setdefault((twin.model, version), VersionSummary())
    stats.robots += 1
    stats.anomalous += anomalous
    latency = twin.signals.get("inference_ms")
    if latency is not None:
        stats.latency_sum += latency.value
        stats.latency_n += 1

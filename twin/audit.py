"""A model audit: what a safety reviewer signs before a model version goes further.

`fleet-twin audit --model-version V` folds the log exactly as a replay does
(`twin.replay.Fold`, so anomaly openings are the worker's) and credits every
applied report with operating time and safety events through `twin.kpi`, the
functions the worker's per-version counters call: the audit and the live
metrics cannot disagree on what an operating hour or an e-stop is.

From that fold this module answers, without I/O:

- which robots ran V (and its predecessor), first and last event time, operating hours;
- safety events per 1,000 operating hours by kind, with exact Poisson 95%
  intervals (`poisson_interval`), for V against its predecessor in the release
  registry (`predecessor`: the previous entry of the model's `ai_model_versions`);
- every desired-state change that touched V (`touching`) and every gate
  decision of the plans that did (`gate_decisions`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import msgspec

from twin import kpi
from twin.desired import DesiredChange, change_key
from twin.detect.params import DetectorConfig
from twin.fleet import Fleet, RobotModel
from twin.fleet_fold import Rules
from twin.plan import GateRecord
from twin.record import Record
from twin.replay import Fold
from twin.schema import Event
from twin.state import Twin
from twin.validate import DEFAULT_POLICY, Policy

PER_HOURS = 1000.0
"""Rates are per this many operating hours."""
CONFIDENCE = 0.95


# ---------------------------------------------------------------- exact Poisson intervals


def poisson_interval(events: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The exact (Garwood) interval for the mean of a Poisson count of `events`.

    lower = chi2(a/2; 2k) / 2 and upper = chi2(1 - a/2; 2k + 2) / 2, a = 1 - confidence;
    with even degrees of freedom these are gamma quantiles, found here by
    bisection on the regularised incomplete gamma function (no scipy). 0 events
    give [0, 3.689] at 95%: the "rule of three" done exactly.
    """
    if events < 0 or not 0 < confidence < 1:
        raise ValueError(f"events must be >= 0 and confidence in (0, 1): {events}, {confidence}")
    tail = (1 - confidence) / 2
    lower = 0.0 if events == 0 else _gamma_quantile(events, tail)
    return lower, _gamma_quantile(events + 1, 1 - tail)


def rate_interval(events: int, hours: float, per: float = PER_HOURS) -> tuple[float | None, float | None, float | None]:
    """Events per `per` operating hours and its exact 95% interval; None throughout without exposure."""
    if hours <= 0:
        return None, None, None
    lower, upper = poisson_interval(events)
    scale = per / hours
    return events * scale, lower * scale, upper * scale


def _gamma_quantile(shape: int, p: float) -> float:
    """x with P(shape, x) = p, where P is the regularised lower incomplete gamma function."""
    lo, hi = 0.0, max(1.0, 2.0 * shape)
    while _lower_gamma(shape, hi) < p:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if _lower_gamma(shape, mid) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2


def _lower_gamma(a: int, x: float) -> float:
    """P(a, x): the series below a + 1, the continued fraction (Lentz) above it (Numerical Recipes 6.2)."""
    if x <= 0:
        return 0.0
    log_front = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        n = a
        while abs(term) > abs(total) * 1e-16:
            n += 1
            term *= x / n
            total += term
        return total * math.exp(log_front)
    tiny = 1e-300
    b = x + 1 - a
    c, d = 1 / tiny, 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        step = d * c
        h *= step
        if abs(step - 1) < 1e-16:
            break
    return 1 - math.exp(log_front) * h


def ratio_interval(events: int, hours: float, base_events: int, base_hours: float,
                   confidence: float = CONFIDENCE) -> tuple[float | None, float | None, float | None]:
    """The rate ratio (events/hours over base_events/base_hours) and its exact conditional interval.

    Given n = events + base_events, the new version's share of the events is
    binomial with p = R·h / (R·h + h_base) (R the true ratio): the Clopper-Pearson
    interval of p, turned into R = p / (1 - p) · h_base / h. No events at all (or
    no exposure on either side) says nothing: None throughout; an upper bound is
    infinite while the base version has no event.
    """
    if hours <= 0 or base_hours <= 0 or events + base_events == 0:
        return None, None, None
    tail = (1 - confidence) / 2
    n = events + base_events
    p_lo = 0.0 if events == 0 else _beta_quantile(events, n - events + 1, tail)
    p_hi = 1.0 if events == n else _beta_quantile(events + 1, n - events, 1 - tail)
    scale = base_hours / hours

    def ratio(p: float) -> float:
        return math.inf if p >= 1 else p / (1 - p) * scale
    point = math.inf if base_events == 0 else events / hours / (base_events / base_hours)
    return point, ratio(p_lo), ratio(p_hi)


def _beta_quantile(a: int, b: int, p: float) -> float:
    """x with I_x(a, b) = p (the regularised incomplete beta function), by bisection."""
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if _beta(a, b, mid) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-14:
            break
    return (lo + hi) / 2


def _beta(a: int, b: int, x: float) -> float:
    """I_x(a, b): the continued fraction on the side where it converges fast (Numerical Recipes 6.4)."""
    if x <= 0 or x >= 1:
        return 0.0 if x <= 0 else 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _beta_fraction(a, b, x) / a
    return 1 - front * _beta_fraction(b, a, 1 - x) / b


def _beta_fraction(a: int, b: int, x: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (tiny if abs(d) < tiny else d)
    h = d
    for m in range(1, 10_000):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1 + num * d
            d = 1 / (tiny if abs(d) < tiny else d)
            c = 1 + num / c
            c = tiny if abs(c) < tiny else c
            h *= d * c
        if abs(d * c - 1) < 1e-16:
            break
    return h


# ---------------------------------------------------------------- the release registry


def predecessor(fleet: Fleet, version: str, model: str | None = None) -> str | None:
    """The version released before `version`: the previous entry of the models' `ai_model_versions`.

    With `model`, that model's registry; else every model that lists the
    version must agree (a reviewer comparing against different baselines per
    model should audit one model at a time). None for a first release.
    """
    models = [model] if model is not None else [m for m, spec in fleet.models.items()
                                                 if version in spec.ai_model_versions]
    if model is not None and model not in fleet.models:
        raise ValueError(f"unknown robot model {model!r}")
    before = set()
    for name in models:
        registry = fleet.models[name].ai_model_versions
        if version not in registry:
            raise ValueError(f"{version!r} is not in the release registry of {name} ({', '.join(registry)})")
        at = registry.index(version)
        before.add(registry[at - 1] if at > 0 else None)
    if not models:
        raise ValueError(f"{version!r} is in no model's release registry (seeds/models.yaml ai_model_versions)")
    if len(before) > 1:
        raise ValueError(f"{version!r} follows different versions per model ({', '.join(sorted(map(str, before)))}): "
                         "audit one model at a time (--model)")
    return before.pop()


# ---------------------------------------------------------------- the fold


class Usage(msgspec.Struct, kw_only=True):
    """One robot's time on one version."""

    robot_id: str
    sector: str
    site: str
    model: str
    version: str
    first_ts: float
    """Event time of its first accepted report on the version."""
    last_ts: float
    operating_s: float = 0.0
    events: dict[str, int] = {}
    """Safety events by kind (`twin.kpi.KINDS`)."""


@dataclass
class Tally:
    """What the fold credited to the versions audited, robot by robot."""

    versions: tuple[str, ...]
    models: frozenset[str] | None = None
    """Only robots of these models (None: every model)."""
    usage: dict[tuple[str, str], Usage] = field(default_factory=dict)
    """(robot_id, version) -> its usage."""

    def credit(self, before: Twin | None, event: Event, model: RobotModel, opened: int) -> None:
        """Credit one accepted report (`twin.kpi` decides the seconds and the events)."""
        version = event.ai_model_version
        if version not in self.versions or (self.models is not None and event.model not in self.models):
            return
        prior = kpi.prior_of(before)
        seconds = kpi.exposure(prior, event, model)
        kinds = kpi.safety_events(prior, event, model, opened)
        use = self.usage.get((event.robot_id, version))
        if use is None:
            use = self.usage[(event.robot_id, version)] = Usage(
                robot_id=event.robot_id, sector=event.sector, site=event.site, model=event.model,
                version=version, first_ts=event.ts, last_ts=event.ts, events=dict.fromkeys(kpi.KINDS, 0))
        use.first_ts, use.last_ts = min(use.first_ts, event.ts), max(use.last_ts, event.ts)
        use.operating_s += seconds
        for kind in kinds:
            use.events[kind] = use.events.get(kind, 0) + 1


def fold(records: Iterable[Record], fleet: Fleet, config: DetectorConfig, versions: Sequence[str], *,
         models: Iterable[str] | None = None, policy: Policy = DEFAULT_POLICY) -> tuple[Tally, Fold]:
    """Fold the log as a replay does and credit every accepted report of the versions audited.

    Returns the tally and the fold (its twins and anomalies, for whoever wants them).
    """
    state = Fold(Rules(fleet, config, policy))
    tally = Tally(tuple(versions), None if models is None else frozenset(models))
    for record in (row for whole in records for row in state.rows(whole)):  # a gateway's reports one by one
        robot_id = (record.key or b"").decode(errors="replace") if record.kind == "telemetry" else ""
        before = state.twins.get(robot_id)
        published = len(state.anomalies)
        event = state.feed(record)
        if event is None:
            continue
        after = state.twins.get(event.robot_id)
        if after is None or not _accepted(before, after):
            continue
        opened = sum(1 for a in state.anomalies[published:] if a.status == "open" and a.robot_id == event.robot_id)
        tally.credit(before, event, fleet.models[event.model], opened)
    return tally, state


def _accepted(before: Twin | None, after: Twin) -> bool:
    """Did the twin accept the event (applied or late; not a duplicate or stale): what `twin.kpi` counts."""
    return after.counts.events > (before.counts.events if before is not None else 0)


# ---------------------------------------------------------------- the figures


class Rate(NamedTuple):
    """Safety events of one kind per 1,000 operating hours of a version, over some scope of robots."""

    scope: str
    """`all` or a robot model."""
    version: str
    kind: str
    events: int
    operating_h: float
    rate: float | None
    lower: float | None
    upper: float | None


def rates(tally: Tally) -> list[Rate]:
    """Per version and kind, over all robots audited and per robot model; exact 95% intervals."""
    out: list[Rate] = []
    scopes = ["all", *sorted({u.model for u in tally.usage.values()})]
    for scope in scopes:
        for version in tally.versions:
            uses = [u for u in tally.usage.values() if u.version == version and scope in ("all", u.model)]
            hours = sum(u.operating_s for u in uses) / 3600
            for kind in kpi.KINDS:
                n = sum(u.events.get(kind, 0) for u in uses)
                out.append(Rate(scope, version, kind, n, hours, *rate_interval(n, hours)))
    return out


class Comparison(NamedTuple):
    """One kind's rate on the version over its predecessor's, over some scope of robots."""

    scope: str
    kind: str
    ratio: float | None
    lower: float | None
    upper: float | None


def compare(found: Sequence[Rate], version: str, base: str) -> list[Comparison]:
    """The rate ratio of `version` over `base` per scope and kind, with its exact 95% interval."""
    by = {(r.scope, r.version, r.kind): r for r in found}
    out = []
    for scope, kind in dict.fromkeys((r.scope, r.kind) for r in found):
        new, old = by.get((scope, version, kind)), by.get((scope, base, kind))
        if new is not None and old is not None:
            out.append(Comparison(scope, kind, *ratio_interval(new.events, new.operating_h,
                                                               old.events, old.operating_h)))
    return out


def robots(tally: Tally, version: str) -> list[Usage]:
    """The robots that ran `version`, the first to run it first."""
    return sorted((u for u in tally.usage.values() if u.version == version), key=lambda u: (u.first_ts, u.robot_id))


# ---------------------------------------------------------------- changes and gate decisions


class Touch(NamedTuple):
    """A desired-state change that touched the version, and how."""

    change: DesiredChange
    how: str
    """`sets it`, `selects robots on it`, or `replaces a desire for it` (a revert or a clear)."""


def touching(changes: Iterable[DesiredChange], version: str) -> list[Touch]:
    """Every change that set `version`, selected robots on it, or replaced a desire for it, in time order.

    A revert publishes the same selector and field with another value (the
    same compaction key): it touches the version it takes away.
    """
    desired: dict[bytes, str | None] = {}
    out: list[Touch] = []
    for change in sorted(changes, key=lambda c: (c.ts, c.change_id)):
        key = change_key(change)
        if change.field == "ai_model" and change.value == version:
            out.append(Touch(change, "sets it"))
        elif change.selector.version == version:
            out.append(Touch(change, "selects robots on it"))
        elif desired.get(key) == version:
            out.append(Touch(change, "replaces a desire for it"))
        desired[key] = change.value if change.field == "ai_model" else desired.get(key)
    return out


def gate_decisions(records: Iterable[GateRecord], plans: Iterable[str]) -> list[GateRecord]:
    """The gate's looks of the plans that touched the version, in time order."""
    wanted = set(plans)
    return sorted((r for r in records if r.plan in wanted), key=lambda r: (r.ts, r.plan, r.wave))

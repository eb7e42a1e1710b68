"""The safety gate of a staged rollout: a sequential test of "the new version stops robots more often".

The question is a rate ratio: safety events per working hour on the new
version against the old one, on robots of the same model and sector
(matched controls: the wave picks robots by a hash of their id, so within a
stratum the two groups differ only by version). Rates are Poisson.

Conditioning on events removes the unknown baseline rate. Within one stratum
and one look's increment, given that `n` safety events happened, each one is
on the new version with probability

    p = r * E_new / (r * E_new + E_old)

where `r` is the true rate ratio and `E_*` the working seconds each group
added in that increment. H0 (`r = 1`, no harm): `p0 = E_new / (E_new + E_old)`;
H1 (`r = harm_ratio`): `p1` as above. The log-likelihood ratio of the
increment is `x_new * log(p1/p0) + x_old * log((1-p1)/(1-p0))`, summed over
strata and looks: a sequential probability ratio test (Wald) on a binomial
that is re-weighted at every look, so waves that grow, robots that converge
late and strata of different sizes all enter with their own exposure.

Valid under repeated looks: under H0 the likelihood ratio is a nonnegative
martingale over the events, whenever one looks at it (Ville's inequality:
P(it ever exceeds 1/a) <= a). Wald's boundaries, `upper = log((1-beta)/alpha)`
(harm: halt) and `lower = log(beta/(1-alpha))` (no harm), bound the false halt
rate by alpha/(1-beta) ~ alpha however often the rollout looks; a look that
brings several events at once overshoots a boundary, which only makes the
test more conservative.

The KPI kinds (`twin.kpi.KINDS`, the plan's `kinds`) are pooled into one
unweighted count. A sum of independent Poisson counts is Poisson, so the
binomial argument above stays exact; a weighted count would not be Poisson and
the test would lose its error guarantee. Testing each kind on its own would
need alpha split between them and could rarely advance: a rare kind (e-stops)
almost never gathers the events that carry a test to its no-harm boundary.
The price of pooling is dilution: a harm in a rare kind hides among frequent
ones, so a plan that cares about e-stops lists only the kinds that matter.

Conditioning means only events carry evidence: with no events in either
group the statistic stays at 0 and never reaches the no-harm boundary. A wave
may therefore set `max_hours`: at that much new-version exposure without a
harm crossing it advances (a truncated SPRT: truncation can only lower the
false-halt rate; it costs power, which the docs state).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import msgspec
from msgspec.structs import replace

from twin.kpi import KINDS

Decision = Literal["continue", "halt", "advance"]


class GateParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The test's hypotheses and error rates (a plan's `gate:` block)."""

    harm_ratio: float = 2.0
    """H1: the new version's event rate is this many times the old one's (> 1)."""
    alpha: float = 0.05
    """Tolerated chance of halting a harmless version."""
    beta: float = 0.2
    """Tolerated chance of advancing a version that is `harm_ratio` times worse."""
    kinds: tuple[str, ...] = KINDS
    """The safety-event kinds pooled into the count."""

    def __post_init__(self) -> None:
        if not self.harm_ratio > 1:
            raise ValueError(f"gate.harm_ratio must be > 1, got {self.harm_ratio}")
        for name, value in (("alpha", self.alpha), ("beta", self.beta)):
            if not 0 < value < 0.5:
                raise ValueError(f"gate.{name} must be in (0, 0.5), got {value}")
        unknown = sorted(set(self.kinds) - set(KINDS))
        if unknown or not self.kinds:
            raise ValueError(f"gate.kinds must be a non-empty subset of {list(KINDS)}, got {list(self.kinds)}")


class Tally(msgspec.Struct, frozen=True, kw_only=True):
    """Cumulative working seconds and safety events of one group (as the counters read)."""

    exposure_s: float = 0.0
    events: float = 0.0


class Pair(msgspec.Struct, frozen=True, kw_only=True):
    """One stratum's two groups: robots reporting the new version and robots reporting the old one."""

    new: Tally = Tally()
    old: Tally = Tally()


Counts = Mapping[str, Pair]
"""Cumulative tallies by stratum (`stratum(model, sector)`)."""


def stratum(model: str, sector: str) -> str:
    return f"{model}/{sector}"


Series = tuple[str, str, str]
"""One source's counters of a stratum and version: (stratum, version, source); a source is a worker."""


class Readings(msgspec.Struct, frozen=True, kw_only=True):
    """The counter series as last read, and what each (stratum, version) has grown by since the first reading.

    The gate's counts come from several workers' counters. Summed before they are
    read, one worker's missed scrape or restart makes the sum fall, and the whole of
    the others' counts would look like new events; read series by series (Prometheus'
    `increase`, by hand), a worker that restarts counts from zero, one missing from an
    answer keeps its last value, and one first seen after the first reading (started
    since) counts from zero.
    """

    last: dict[Series, Tally] = {}
    grown: dict[tuple[str, str], Tally] = {}


def read(readings: Readings, answer: Mapping[Series, Tally]) -> Readings:
    """Fold in one answer: each series adds what it grew since it was last read (the first answer
    with any series is where counting starts)."""
    last, grown = dict(readings.last), dict(readings.grown)
    for series, now in sorted(answer.items()):
        before = last.get(series)
        step = _delta(before, now) if before is not None else now if readings.last else Tally()
        last[series] = now
        grown[series[:2]] = _plus(grown.get(series[:2], Tally()), step)
    return Readings(last=last, grown=grown)


def pairs(readings: Readings, new_version: str) -> dict[str, Pair]:
    """The gate's counts: per stratum, what robots on `new_version` and on any other version added."""
    out: dict[str, Pair] = {}
    for (key, version), tally in sorted(readings.grown.items()):
        pair = out.get(key, Pair())
        out[key] = (replace(pair, new=_plus(pair.new, tally)) if version == new_version
                    else replace(pair, old=_plus(pair.old, tally)))
    return out


class GateState(msgspec.Struct, frozen=True, kw_only=True):
    """One wave's test: where the statistic stands and what it has consumed."""

    params: GateParams
    min_hours: float = 0.0
    """New-version working hours needed before the wave may advance."""
    max_hours: float | None = None
    """New-version working hours at which a wave without harm advances (truncation); None: never."""
    seen: dict[str, Pair] = {}
    """Cumulative tallies up to the last increment consumed, per stratum (the wave's start first)."""
    totals: dict[str, Pair] = {}
    """What the test consumed since the wave began, per stratum: the evidence."""
    statistic: float = 0.0
    """The log-likelihood ratio of harm against no harm."""
    looks: int = 0
    decision: Decision = "continue"


def upper(params: GateParams) -> float:
    """The harm boundary: at or above it the wave halts."""
    return math.log((1 - params.beta) / params.alpha)


def lower(params: GateParams) -> float:
    """The no-harm boundary: at or below it (with enough exposure) the wave advances."""
    return math.log(params.beta / (1 - params.alpha))


def start(params: GateParams, baseline: Counts, min_hours: float = 0.0,
          max_hours: float | None = None) -> GateState:
    """A wave's test, counting from the tallies at its start (events before it are not evidence)."""
    return GateState(params=params, min_hours=min_hours, max_hours=max_hours, seen=dict(baseline))


def look(state: GateState, counts: Counts) -> tuple[GateState, Decision]:
    """Consume the increments since the last look and decide. A decision once made stays."""
    if state.decision != "continue":
        return state, state.decision
    seen, totals, statistic = dict(state.seen), dict(state.totals), state.statistic
    for key, now in sorted(counts.items()):
        step = _increment(seen.get(key, Pair()), now)
        if _deferred(step):
            continue  # events without exposure in their group: wait for the exposure to arrive
        statistic += llr(step, state.params.harm_ratio)
        seen[key] = now
        totals[key] = _add(totals.get(key, Pair()), step)
    state = replace(state, seen=seen, totals=totals, statistic=statistic, looks=state.looks + 1)
    decision = _decide(state)
    return replace(state, decision=decision), decision


def llr(step: Pair, harm_ratio: float) -> float:
    """Log-likelihood ratio (harm against none) of one stratum's increment, given its events."""
    e_new, e_old = step.new.exposure_s, step.old.exposure_s
    if e_new + e_old <= 0:
        return 0.0
    p0 = e_new / (e_new + e_old)
    p1 = harm_ratio * e_new / (harm_ratio * e_new + e_old)
    out = 0.0
    if step.new.events > 0 and p0 > 0:
        out += step.new.events * math.log(p1 / p0)
    if step.old.events > 0 and p0 < 1:
        out += step.old.events * math.log((1 - p1) / (1 - p0))
    return out


def new_hours(state: GateState) -> float:
    return sum(p.new.exposure_s for p in state.totals.values()) / 3600.0


def evidence(state: GateState) -> dict[str, Any]:
    """What a person needs to check the decision: the statistic, both boundaries, counts per group."""
    def group(t: Tally) -> dict[str, float | None]:
        hours = t.exposure_s / 3600.0
        return {"events": t.events, "hours": round(hours, 4),
                "per_1000h": round(1000.0 * t.events / hours, 3) if hours > 0 else None}

    new = Tally(exposure_s=sum(p.new.exposure_s for p in state.totals.values()),
                events=sum(p.new.events for p in state.totals.values()))
    old = Tally(exposure_s=sum(p.old.exposure_s for p in state.totals.values()),
                events=sum(p.old.events for p in state.totals.values()))
    return {
        "statistic": round(state.statistic, 4), "upper": round(upper(state.params), 4),
        "lower": round(lower(state.params), 4), "harm_ratio": state.params.harm_ratio,
        "alpha": state.params.alpha, "beta": state.params.beta, "kinds": list(state.params.kinds),
        "min_hours": state.min_hours, "max_hours": state.max_hours, "looks": state.looks,
        "new": group(new), "old": group(old),
        "strata": {k: {"new": group(p.new), "old": group(p.old)} for k, p in sorted(state.totals.items())},
    }


def _decide(state: GateState) -> Decision:
    if state.statistic >= upper(state.params):
        return "halt"
    hours = new_hours(state)
    if state.statistic <= lower(state.params) and hours >= state.min_hours:
        return "advance"
    if state.max_hours is not None and hours >= max(state.max_hours, state.min_hours):
        return "advance"
    return "continue"


def _increment(before: Pair, now: Pair) -> Pair:
    return Pair(new=_delta(before.new, now.new), old=_delta(before.old, now.old))


def _delta(before: Tally, now: Tally) -> Tally:
    """Counters only grow; a smaller value is a reset (the worker restarted): count from zero."""
    if now.exposure_s < before.exposure_s or now.events < before.events:
        return now
    return Tally(exposure_s=now.exposure_s - before.exposure_s, events=now.events - before.events)


def _deferred(step: Pair) -> bool:
    return any(t.events > 0 and t.exposure_s <= 0 for t in (step.new, step.old))


def _add(a: Pair, b: Pair) -> Pair:
    return Pair(new=_plus(a.new, b.new), old=_plus(a.old, b.old))


def _plus(a: Tally, b: Tally) -> Tally:
    return Tally(exposure_s=a.exposure_s + b.exposure_s, events=a.events + b.events)

"""A staged rollout plan and its next step: which desired changes to make, and when to stop.

A plan moves robots of one selector (robot model, sector, site) from one
AI-model version to another in nested waves: wave `i` desires `to` of the
robots with `robot_share(id) < share_i` that report `from` (the 5% wave is
inside the 25% wave). Each wave is watched by the safety gate (`twin.gate`)
until it decides: "advance" publishes the next wave, "halt" reverts. A wave of
share 1 leaves no robots on the old version to compare with, so it is not
gated: publishing it completes the plan.

The revert desires `from` of the robots the plan reached: its selector names
the *new* version (`version: to`), which matches robots that report it or that
are already back at `from`, so robots on any third version are left alone and
the revert stays in force after they comply. Its compaction key differs from
the waves' (the selector's version differs), so the log keeps the waves and
the revert, and resolution by time puts the revert last.

Pure: the shell (`streams.rollout`) stamps times and change ids, publishes
what this returns and asks Prometheus for the counts.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NamedTuple

import msgspec

from twin.desired import DesiredChange, Selector
from twin.detect.findings import Anomaly, anomaly_id
from twin.gate import GateParams, GateState, evidence

DETECTOR = "rollout_gate"
"""Detector name of the fleet-level anomaly a halted rollout raises."""

Status = Literal["running", "halted", "done", "timeout"]


class PlanSelector(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The robots a plan may touch; the waves add the share and the version."""

    model: str | None = None
    sector: str | None = None
    site: str | None = None


class Wave(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    share: Annotated[float, msgspec.Meta(gt=0, le=1)]
    """Robots with `robot_share(id) < share` (nested: a larger wave contains the smaller)."""
    min_hours: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    """New-version working hours the wave needs before it may advance."""
    max_hours: Annotated[float, msgspec.Meta(gt=0)] | None = None
    """New-version working hours after which a wave the gate has not halted advances (truncation)."""


class Plan(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename={"from_": "from"}):
    """A rollout plan as written in YAML (seeds/plans/*.yaml)."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
    selector: PlanSelector = PlanSelector()
    field: Literal["ai_model"] = "ai_model"
    from_: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    to: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    waves: Annotated[tuple[Wave, ...], msgspec.Meta(min_length=1)]
    gate: GateParams = GateParams()
    look_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    """Seconds between two looks at the counters."""
    reason: str = ""
    """Why the plan runs (goes into every change's reason)."""

    def __post_init__(self) -> None:
        shares = [w.share for w in self.waves]
        if shares != sorted(set(shares)):
            raise ValueError(f"waves must have strictly growing shares, got {shares}")
        if self.from_ == self.to:
            raise ValueError(f"from and to are both '{self.to}': nothing to roll out")


def load_plan(doc: Any, where: str = "plan") -> Plan:
    """A plan from its parsed YAML, or ValueError naming the file and field."""
    try:
        return msgspec.convert(doc, Plan)
    except msgspec.ValidationError as exc:
        raise ValueError(f"{where}: {exc}") from None


def principal(plan: Plan) -> str:
    return f"rollout:{plan.id}"


def gated(wave: Wave) -> bool:
    """Can the gate judge the wave? Only while robots of the selector remain on the old version."""
    return wave.share < 1


def wave_change(plan: Plan, index: int, ts: float, change_id: str) -> DesiredChange:
    """The desired change that starts wave `index`."""
    wave = plan.waves[index]
    sel = Selector(model=plan.selector.model, sector=plan.selector.sector, site=plan.selector.site,
                   version=plan.from_, share=wave.share)
    why = plan.reason or f"staged rollout of {plan.to}"
    return DesiredChange(change_id=change_id, ts=ts, principal=principal(plan), selector=sel, field=plan.field,
                         value=plan.to, plan=plan.id, wave=index,
                         reason=f"{why}: wave {index + 1}/{len(plan.waves)} ({wave.share:.0%} of the robots on {plan.from_})")


def revert_change(plan: Plan, index: int, ts: float, change_id: str, why: str) -> DesiredChange:
    """The change that takes the robots of waves 0..index back to `from` (the waves nest: one suffices)."""
    sel = Selector(model=plan.selector.model, sector=plan.selector.sector, site=plan.selector.site,
                   version=plan.to, share=plan.waves[index].share)
    return DesiredChange(change_id=change_id, ts=ts, principal=principal(plan), selector=sel, field=plan.field,
                         value=plan.from_, plan=plan.id, wave=index, reason=f"gate halted: {why}")


class Outcome(NamedTuple):
    """What the plan does now: its status, the wave in force, the changes to publish."""

    status: Status
    wave: int
    changes: tuple[DesiredChange, ...]


def begin(plan: Plan, ts: float, change_id: str) -> Outcome:
    """The first wave."""
    return _enter(plan, 0, ts, change_id)


def on_decision(plan: Plan, wave: int, decision: str, ts: float, change_id: str, why: str = "") -> Outcome:
    """The gate decided on `wave`: go on to the next wave, revert, or keep waiting."""
    if decision == "halt":
        return Outcome("halted", wave, (revert_change(plan, wave, ts, change_id, why or "harm detected"),))
    if decision == "advance":
        if wave + 1 >= len(plan.waves):
            return Outcome("done", wave, ())
        return _enter(plan, wave + 1, ts, change_id)
    if decision == "continue":
        return Outcome("running", wave, ())
    raise ValueError(f"unknown gate decision '{decision}'")


def _enter(plan: Plan, index: int, ts: float, change_id: str) -> Outcome:
    status: Status = "running" if gated(plan.waves[index]) else "done"
    return Outcome(status, index, (wave_change(plan, index, ts, change_id),))


class GateRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One look of a plan's gate, as published on `fleet.rollouts` (key: plan id)."""

    plan: str
    wave: int
    ts: float
    decision: str
    """The gate's: continue, halt or advance."""
    statistic: float
    upper: float
    lower: float
    evidence: dict[str, Any] = {}
    status: str = "running"
    """The plan's after this look: running, halted, done or timeout."""
    share: float = 0.0
    """The share of the wave in force."""


def halt_anomaly(plan: Plan, wave: int, gate: GateState, started: float, ts: float,
                 revert: DesiredChange) -> Anomaly:
    """The fleet-level anomaly of a halted wave (critical: robots were moved to a version that
    harms), for `fleet.anomalies`, so the worker's alert agent takes it to Alertmanager.

    Its evidence is what a person needs to check the halt: the statistic, both
    boundaries, the counts per group (and per stratum), and the revert made."""
    upper = evidence(gate)["upper"]
    return Anomaly(
        id=anomaly_id(DETECTOR, plan.id, wave, started), status="open", robot_id="",
        sector=plan.selector.sector or "", site=plan.selector.site or "", model=plan.selector.model or "",
        detector=DETECTOR, signal=f"{plan.field}@{plan.to}", severity="critical",
        score=round(gate.statistic / upper, 4) if upper > 0 else 1.0, start_ts=started, ts=ts,
        evidence={"plan": plan.id, "wave": wave, "share": plan.waves[wave].share, "from": plan.from_,
                  "to": plan.to, "revert_change_id": revert.change_id, "reason": revert.reason,
                  **evidence(gate)},
    )


def halt_reason(gate: GateState) -> str:
    """Why the gate halted, in one line (the revert's reason, the alert's summary)."""
    ev = evidence(gate)
    new, old = ev["new"], ev["old"]
    return (f"{'+'.join(gate.params.kinds)} on the new version {new['events']:g} in {new['hours']:.2f} h "
            f"against {old['events']:g} in {old['hours']:.2f} h on the old; log-likelihood ratio "
            f"{ev['statistic']:.2f} >= {ev['upper']:.2f} (harm ratio {gate.params.harm_ratio:g}, alpha {gate.params.alpha:g})")

"""Safety KPIs per AI-model version: operating exposure and safety events, one report at a time.

A staged rollout is judged by comparing *rates*: safety events per operating
hour of robots on the new version against robots of the same model and
sector still on the old one (`twin.gate`). Both the numerator and the
denominator come from here, so the worker's per-version counters
(`fleet_version_operating_seconds_total`, `fleet_version_safety_events_total`)
and `fleet-twin audit` count the same things (one code path).

Callers pass `before`, the `Prior` of the robot's twin before the event (the few
numbers these functions read of it; None for the robot's first event), and call
these only for events the twin accepted (duplicates and stale events are not
counted twice). A caller holding twins takes `prior_of(twin)`; a caller that
only sees each record's event and outcome (the batch fold) carries the prior
forward with `advance`. Both functions credit the event's own
`ai_model_version`: the version the robot says it runs.

Exposure is *working* time only: an idle or charging robot cannot stop on
people, so counting its hours would dilute the rate of a version that happens
to be rolled out to idle robots.
"""

from __future__ import annotations

import msgspec
from msgspec.structs import replace

from twin.fleet import RobotModel
from twin.schema import Event
from twin.state import Twin

KINDS: tuple[str, ...] = ("estop", "protective_stop", "fault_burst", "anomaly", "slow_inference")
"""Every safety-event kind: a bounded label set for metrics."""

GAP_PERIODS = 3.0
"""A gap longer than this many report periods is a silence, not operation: credit only this much."""

DEFAULT_PERIOD_S = 1.0
"""Report period when the caller has no robot model (every seeded model reports at 1 Hz)."""

FAULT_BURST = 3
"""Fault codes (`F-...`) in one report that make a burst: one fault is routine, three at once are not."""

ESTOP_CODE = "E-STOP"
PROTECTIVE_PREFIXES = ("P-STOP", "PROTECTIVE")
"""Codes of a protective stop (the UR3 controller's `Robot_ProtectiveStop`, `twin.detect.stall`)."""

INFERENCE = "inference_ms"


class Prior(msgspec.Struct, frozen=True, gc=False):
    """What the KPIs read of a robot's twin before an event: small enough to carry per robot.

    One per robot, replaced on every report and kept: `gc=False` (a value; no cycle) keeps them
    out of the cycle collector's walks and out of the allocations that set it off."""

    mode: str
    """The twin's latest mode."""
    ts: float
    """Event time of the twin's newest event."""
    latest_seq: int
    """Seq of the twin's newest event."""
    inference: float | None
    """The twin's newest `inference_ms` value; None when it has no such signal."""
    inference_at: tuple[float, int] | None
    """The (event time, seq) of `inference` (`Twin.signal_time`); None with `inference`.
    `advance` needs it: a late event supplies the value only if it is newer than this."""


def prior_of(twin: Twin | None) -> Prior | None:
    """What the KPIs read of `twin` (None for no twin yet)."""
    if twin is None:
        return None
    state = twin.signals.get(INFERENCE)
    if state is None:
        return Prior(twin.mode, twin.ts, twin.latest_seq, None, None)
    return Prior(twin.mode, twin.ts, twin.latest_seq, state.value, twin.signal_time(state))


def advance(prior: Prior | None, event: Event, outcome: str) -> Prior | None:
    """The `Prior` of the twin after `twin.reduce.apply` folded `event` with `outcome`.

    It exists because the batch fold (`twin.batch_fold`) hands out each record's event and
    `Effects` (its outcome), not the twin before and after: a caller carries the prior forward
    record by record instead. It follows the reducer's rules (twin.reduce): a first event
    creates the twin (rule 1, whatever `outcome` says); a duplicate or stale event changes
    nothing the KPIs read; an applied event becomes the latest; a late one does not, but it
    still supplies `inference_ms` if it is newer than that signal's own value (rule 4).
    tests/unit/test_kpi.py holds it equal to `prior_of` of the reducer's twin after every event.
    """
    if prior is None:
        return _created(event)
    if outcome in ("duplicate", "stale"):
        return prior
    if outcome == "applied":
        if INFERENCE in event.signals:
            return _created(event)
        return replace(prior, mode=event.mode, ts=event.ts, latest_seq=event.seq)
    if outcome == "late":
        value = event.signals.get(INFERENCE)
        when = (event.ts, event.seq)
        if value is not None and (prior.inference_at is None or when > prior.inference_at):
            return replace(prior, inference=value, inference_at=when)
        return prior
    raise ValueError(f"unknown outcome {outcome!r}")


def _created(event: Event) -> Prior:
    """The prior whose latest event, and newest `inference_ms` if it carries one, is `event`."""
    value = event.signals.get(INFERENCE)
    return Prior(event.mode, event.ts, event.seq, value, None if value is None else (event.ts, event.seq))


def exposure(before: Prior | None, event: Event, model: RobotModel | None = None) -> float:
    """Operating seconds this event credits: the event-time gap to the robot's previous report,
    when that report said `working`, capped at `GAP_PERIODS` x the model's period.

    The robot is taken to stay in a reported mode until its next report, so the interval
    belongs to the previous report's mode. A first event, a late event (older than the newest
    one) or a gap after a non-working report credits nothing."""
    if before is None or before.mode != "working":
        return 0.0
    gap = event.ts - before.ts
    if gap <= 0:
        return 0.0
    period = model.period_s if model is not None else DEFAULT_PERIOD_S
    return min(gap, GAP_PERIODS * period)


def safety_events(before: Prior | None, event: Event, model: RobotModel, opened: int) -> tuple[str, ...]:
    """The safety events this report shows, one kind per occurrence (`anomaly` repeated `opened` times).

    * `estop`: the codes hold `E-STOP`, or the mode turns to `estop` (from any other mode):
      one per report either way, so a stop reported by both code and mode counts once.
    * `protective_stop`: a code starting `P-STOP` or `PROTECTIVE`.
    * `fault_burst`: at least `FAULT_BURST` fault codes (`F-...`) in one report.
    * `anomaly`: anomalies this event opened (the detectors' count, passed by the caller).
    * `slow_inference`: `inference_ms` rises above the model's nominal band (the onset only:
      a robot that stays slow for an hour is one event, not 3,600).
    Codes are "raised since the previous report", so each counts once."""
    kinds: list[str] = []
    codes = [c.upper() for c in event.codes] if event.codes else []
    was_estop = before is not None and before.mode == "estop"
    if ESTOP_CODE in codes or (event.mode == "estop" and not was_estop):
        kinds.append("estop")
    if codes:
        kinds.extend("protective_stop" for c in codes if c.startswith(PROTECTIVE_PREFIXES))
        if sum(c.startswith("F-") for c in codes) >= FAULT_BURST:
            kinds.append("fault_burst")
    kinds += ["anomaly"] * max(opened, 0)
    if _slow_onset(before, event, model):
        kinds.append("slow_inference")
    return tuple(kinds)


def _slow_onset(before: Prior | None, event: Event, model: RobotModel) -> bool:
    signal = model.signals.get(INFERENCE)
    value = event.signals.get(INFERENCE)
    if signal is None or value is None or value <= signal.nominal[1]:
        return False
    previous = before.inference if before is not None else None
    return previous is None or previous <= signal.nominal[1]

"""All robot-level detectors for one event, and silence for a moment with no event.

`observe` is what the ingest path calls after `twin.reduce.apply`: it runs the
detectors that this kind of reading can inform, feeds their findings to the
lifecycle and returns the twin with its updated detector state plus the
anomaly messages to publish. Pure: event and broker time come in as values.
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase
from functools import lru_cache

from msgspec.structs import replace

from twin.detect import multivariate as mv
from twin.detect import signals as sig
from twin.detect import stall
from twin.detect.cohort import PARAMS as COHORT_PARAMS
from twin.detect.cohort import Moments, features, rate_stats
from twin.detect.findings import Anomaly, Finding
from twin.detect.lifecycle import track
from twin.detect.params import RobotDetectorParams
from twin.detect.watch import Drift, SignalWatch, Watch
from twin.effects import Effects, SeqGap
from twin.fleet import RobotModel, Signal
from twin.schema import Event
from twin.state import SignalState, Twin

_ALWAYS = frozenset({"stuck", "dropout"})
"""Value detectors that look at every reading once warm; band and spike look only while the
robot operates, drift only on settled working reports that follow one: a reading they did not
judge is not 'normal'."""
_ROBOT_DETECTORS = frozenset({"clock_skew", "delivery", "fault_codes", "seq_gap", "silence"})
_NOT_OPERATING = ("fault", "estop", "maintenance")


def observe(before: Twin | None, twin: Twin, event: Event, effects: Effects, received_ts: float,
            model: RobotModel, p: RobotDetectorParams, cohort: mv.Baseline | None = None,
            rates: Mapping[str, Moments] | None = None) -> tuple[Twin, list[Anomaly]]:
    """Run the detectors on one event; return the twin with detector state and the messages.

    `cohort` is the learned baseline of the robot's model (twin.detect.cohort), if any yet;
    `rates` the moments of its trend signals' rates of change over the model's healthy robots.
    """
    watch = twin.watch or Watch()
    # Anomalies are stamped in event time, unless the robot's clock is not to be trusted.
    at = event.ts if abs(event.ts - received_ts) <= p.skew_s else received_ts
    if effects.outcome in ("duplicate", "stale", "late"):
        delivery, found = _delivery(watch.delivery + 100, p)
        watch = replace(watch, delivery=delivery)
        return _close(twin, watch, found, frozenset(), at, p)
    findings: list[Finding] = []
    watch, f = _signals(watch, before, twin, event, model, p, rates or {})
    findings += f
    watch, f = _robot(watch, before, twin, event, effects, received_ts, p)
    findings += f
    evaluated = _ROBOT_DETECTORS | _judged(before, twin, event, p)
    if p.stall is not None:
        state, f, judged = stall.step(watch.stall, event.signals, event.ts, event.mode == "working", p.stall)
        watch = replace(watch, stall=state)
        findings += f
        evaluated |= {"stall"} if judged else frozenset()
    if cohort is not None and settled_at_work(twin, event, p):
        watch, f = _cohort(watch, cohort, event, model)
        findings += f
        evaluated |= {"cohort"}
    return _close(twin, watch, findings, evaluated, at, p)


def settled_at_work(twin: Twin, event: Event, p: RobotDetectorParams) -> bool:
    """Working, warmed up and past the settling time: reports comparable across the cohort."""
    return (event.mode == "working" and twin.counts.events > p.warmup_reports
            and event.ts - twin.mode_since >= p.settle_s)


def _cohort(watch: Watch, baseline: mv.Baseline, event: Event, model: RobotModel) -> tuple[Watch, list[Finding]]:
    x = features(event, model)
    if x is None or len(x) != baseline.dim:
        return watch, []
    state, score = mv.step(watch.cohort, baseline, x, event.ts, COHORT_PARAMS)
    found = [Finding("cohort", "", score, {"level": round(state.level, 3)})] if score >= 1 else []
    return replace(watch, cohort=state), found


def silence(twin: Twin, now: float, p: RobotDetectorParams) -> tuple[Twin, list[Anomaly]]:
    """Check, at broker time `now`, whether the robot has gone quiet against its own cadence."""
    watch = twin.watch or Watch()
    if twin.mode == "maintenance" or watch.interval <= 0:
        return twin, []  # planned downtime, or no cadence learned yet
    expected = max(watch.interval * p.silence_periods, p.silence_min_s)
    if twin.mode == "charging":
        expected *= 3  # robots may doze on the charger
    quiet = now - twin.last_seen
    findings = [Finding("silence", "", quiet / expected, {"silent_s": round(quiet, 3), "expected_s": expected})] \
        if quiet > expected else []
    return _close(twin, watch, findings, frozenset({"silence"}) if findings else frozenset(), now, p)


def _judged(before: Twin | None, twin: Twin, event: Event, p: RobotDetectorParams) -> frozenset[str]:
    """The value detectors that judged this reading (only they may count it as normal)."""
    if twin.counts.events <= p.warmup_reports:
        return frozenset()
    operating = event.mode not in _NOT_OPERATING and event.ts - twin.mode_since >= p.settle_s
    return _ALWAYS | ({"band", "spike"} if operating else frozenset()) | (
        {"drift"} if _work_step(before, twin, event, p) is not None else frozenset())


def _close(twin: Twin, watch: Watch, findings: list[Finding], evaluated: frozenset[str], ts: float,
           p: RobotDetectorParams) -> tuple[Twin, list[Anomaly]]:
    opened, messages = track(watch.open, findings, evaluated, twin, ts, p)
    return replace(twin, watch=replace(watch, open=opened)), messages


def _signals(watch: Watch, before: Twin | None, twin: Twin, event: Event, model: RobotModel,
             p: RobotDetectorParams, rates: Mapping[str, Moments]) -> tuple[Watch, list[Finding]]:
    old = _aligned(watch, before, twin)
    warm = twin.counts.events > p.warmup_reports
    operating = warm and event.mode not in _NOT_OPERATING and event.ts - twin.mode_since >= p.settle_s
    dt = _work_step(before, twin, event, p)
    findings: list[Finding] = []
    new: list[SignalWatch] = []
    for (name, state), w in zip(twin.signals.items(), old):
        spec = model.signals.get(name)
        value = event.signals.get(name)
        if spec is None or value is None:
            new.append(w)
            findings += sig.dropout(name, twin.latest_seq, twin.signal_time(state)[1], p) if warm and spec else []
            continue
        prior = before.signals.get(name) if before else None
        w, f = sig.watch_signal(w, name, value, prior, spec, operating, p)
        findings += f if warm else []
        if event.mode == "maintenance" and w.drift is not None:
            w = replace(w, drift=None)  # serviced: the signal's reference is learned again
        elif dt is not None and (view := drift_view(name, p)) is not None:
            x = _drift_input(value, prior, before, spec, dt, trend=view == "trend")
            if x is not None:
                d, f = sig.drift(w.drift, name, x, dt, view == "trend", p)
                w = replace(w, drift=d)
                if view == "trend" and not f:
                    f = _against_cohort(name, d, rates.get(name), p)
                findings += f
        new.append(w)
    return replace(watch, signals=new), findings


def _against_cohort(name: str, d: Drift, moments: Moments | None, p: RobotDetectorParams) -> list[Finding]:
    """A robot's own reference rate against its cohort's: a robot already failing while its
    reference was learned looks steady against itself, not against robots of its model."""
    stats = rate_stats(moments, COHORT_PARAMS.min_weight)
    if stats is None or d.ref < round(p.drift_reference_s * 10):
        return []
    mean, sd = stats
    z = (d.level * sig.TREND_UNIT - mean) / max(sd, p.trend_floor)
    if abs(z) < p.drift_cohort_z:
        return []
    evidence = {"view": "cohort", "direction": "up" if z > 0 else "down", "reference": round(d.level * sig.TREND_UNIT, 7),
                "cohort_mean": round(mean, 7), "cohort_sd": round(sd, 7), "z": round(z, 2)}
    return [Finding("drift", name, abs(z) / p.drift_cohort_z, evidence)]


def trend_rates(before: Twin | None, twin: Twin, event: Event, model: RobotModel, p: RobotDetectorParams) -> dict[str, float]:
    """This report's rates of change of the model's trend signals (what a cohort learns), if judged."""
    dt = _work_step(before, twin, event, p)
    if dt is None:
        return {}
    out: dict[str, float] = {}
    for name, value in event.signals.items():
        spec = model.signals.get(name)
        if spec is not None and drift_view(name, p) == "trend":
            x = _drift_input(value, before.signals.get(name) if before else None, before, spec, dt, trend=True)
            if x is not None:
                out[name] = x
    return out


@lru_cache(maxsize=4096)
def drift_view(name: str, p: RobotDetectorParams) -> str | None:
    """'trend', 'level' or None: how the model's detector parameters watch this signal for slow change."""
    if any(fnmatchcase(name, pattern) for pattern in p.trend_signals):
        return "trend"
    if any(fnmatchcase(name, pattern) for pattern in p.drift_signals):
        return "level"
    return None


def _work_step(before: Twin | None, twin: Twin, event: Event, p: RobotDetectorParams) -> float | None:
    """Seconds since the previous report if both it and this one are settled working reports
    in a row (what the drift detector judges), else None."""
    if before is None or not settled_at_work(twin, event, p) or before.mode != "working":
        return None
    if before.counts.events <= p.warmup_reports or before.ts - before.mode_since < p.settle_s:
        return None
    dt = event.ts - before.ts
    return dt if 0 < dt <= p.drift_max_step_s else None


def _drift_input(value: float, prior: SignalState | None, before: Twin | None, spec: Signal, dt: float,
                 trend: bool) -> float | None:
    """The level in band widths, or (trend) the change since the previous report per second."""
    width = max(spec.nominal[1] - spec.nominal[0], 1e-9)
    if not trend:
        return (value - spec.nominal[0]) / width
    if prior is None or before is None or before.signal_time(prior)[0] != before.ts:
        return None  # the previous report did not carry it
    return (value - prior.value) / width / dt


def _aligned(watch: Watch, before: Twin | None, twin: Twin) -> list[SignalWatch]:
    """Per-signal state in the order of `twin.signals` (which may have gained a signal)."""
    if before is not None and len(watch.signals) == len(before.signals) and len(before.signals) == len(twin.signals):
        return watch.signals
    known = dict(zip(before.signals, watch.signals)) if before and len(watch.signals) == len(before.signals) else {}
    return [known.get(name, SignalWatch()) for name in twin.signals]


def _robot(watch: Watch, before: Twin | None, twin: Twin, event: Event, effects: Effects,
           received_ts: float, p: RobotDetectorParams) -> tuple[Watch, list[Finding]]:
    findings: list[Finding] = []
    interval = watch.interval
    if before is not None and received_ts > before.last_seen:
        gap = received_ts - before.last_seen
        interval = gap if interval <= 0 else 0.9 * interval + 0.1 * min(gap, 10 * interval)
    skew = watch.skew + 1 if abs(event.ts - received_ts) > p.skew_s else 0
    if skew >= p.skew_reports:
        findings.append(Finding("clock_skew", "", skew / p.skew_reports,
                                {"offset_s": round(event.ts - received_ts, 3)}))
    delivery, f = _delivery(watch.delivery * 95 // 100, p)
    findings += f
    codes = watch.codes * 95 // 100 + 100 * (len(event.codes) + (event.mode == "estop"))
    if codes >= p.codes_hits * 100:
        findings.append(Finding("fault_codes", "", codes / (p.codes_hits * 100), {"codes": list(event.codes)}))
    for change in effects.changes:
        if isinstance(change, SeqGap) and change.missing >= 10:
            findings.append(Finding("seq_gap", "", change.missing / 10, {"missing": change.missing}))
    return replace(watch, interval=interval, skew=skew, delivery=delivery, codes=codes), findings


def _delivery(count: int, p: RobotDetectorParams) -> tuple[int, list[Finding]]:
    if count < p.delivery_hits * 100:
        return count, []
    return count, [Finding("delivery", "", count / (p.delivery_hits * 100))]

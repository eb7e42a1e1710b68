"""Robot detectors and the anomaly lifecycle on hand-made readings."""

from __future__ import annotations

from twin.detect.params import RobotDetectorParams
from twin.detect.robot import observe
from twin.fleet import Fleet
from twin.reduce import apply
from twin.schema import Event
from twin.state import Twin


def report(seq: int, current: float, mode: str = "working") -> Event:
    return Event(schema=1, robot_id="r", seq=seq, ts=1000.0 + seq, sector="retail", site="retail-london-01",
                 model="amr", mode=mode,  # type: ignore[arg-type]
                 signals={"joint1_current_a": current + seq % 3 * 0.01, "battery_soc_pct": 60 + seq % 5 * 0.1})


def run(fleet: Fleet, plan: list[tuple[float, str]]) -> tuple[Twin, list[str]]:
    twin: Twin | None = None
    log: list[str] = []
    for seq, (current, mode) in enumerate(plan, start=1):
        e = report(seq, current, mode)
        new, effects = apply(twin, e, received_ts=e.ts)
        twin, found = observe(twin, new, e, effects, e.ts, fleet.models["amr"], RobotDetectorParams())
        log += [f"{a.status}:{a.detector}" for a in found]
    assert twin is not None
    return twin, log


def test_an_overcurrent_opens_once_and_resolves_after_the_hysteresis(fleet: Fleet) -> None:
    plan = [(4.0, "working")] * 90 + [(30.0, "working")] * 5 + [(4.0, "working")] * 40
    _, log = run(fleet, plan)
    band = [entry for entry in log if entry.endswith(":band")]
    assert band == ["open:band", "resolved:band"]


def test_readings_a_detector_did_not_judge_do_not_close_its_anomaly(fleet: Fleet) -> None:
    # Band is judged only while the robot operates: idle readings while out of band may not resolve it,
    # and 40 readings in fault mode (not operating) must not count as 40 normal ones.
    plan = [(4.0, "working")] * 90 + [(30.0, "working")] * 5 + [(0.6, "fault")] * 40
    twin, log = run(fleet, plan)
    assert [entry for entry in log if entry.endswith(":band")] == ["open:band"]
    assert any(o.detector == "band" for o in (twin.watch.open if twin.watch else []))


def _drift_run(xs: list[float], dt: float = 1.0, trend: bool = False,
               p: RobotDetectorParams = RobotDetectorParams()) -> float | None:
    """Seconds (after the reference) until the drift detector fires on `xs`, or None."""
    from twin.detect.signals import drift
    d = None
    for i, x in enumerate(xs):
        d, found = drift(d, "s", x, dt, trend, p)
        if found:
            return i * dt - p.drift_reference_s
    return None


def _noise(n: int, sd: float = 0.01, seed: int = 0) -> list[float]:
    import random
    rng = random.Random(seed)
    return [rng.gauss(0.0, sd) for _ in range(n)]


def test_drift_catches_a_slow_creep_of_a_few_noise_widths_within_minutes_and_not_plain_noise() -> None:
    # A creep of 4e-5 band widths per second (the wear scenario's position error) under
    # noise of 0.01 band widths: 0.024 band widths, 2.4 noise widths, after ten minutes.
    ref, n = 180, 3 * 3600
    healthy = [0.25 + e for e in _noise(n)]
    assert _drift_run(healthy) is None
    worn = [0.25 + e + (4e-5 * (i - ref) if i > ref else 0.0) for i, e in enumerate(_noise(n, seed=1))]
    delay = _drift_run(worn)
    assert delay is not None and delay < 600


def test_drift_horizons_are_event_time_not_reports() -> None:
    # The same creep per second, reported twice as often, is found after about the same time.
    creep = 2e-4
    at_1hz = [0.5 + creep * max(0, i - 180) + e for i, e in enumerate(_noise(2000))]
    at_2hz = [0.5 + creep * max(0.0, i / 2 - 180) + e for i, e in enumerate(_noise(4000, seed=2))]
    one, two = _drift_run(at_1hz, 1.0), _drift_run(at_2hz, 0.5)
    assert one is not None and two is not None
    assert abs(one - two) < 0.25 * one


def test_a_trend_signal_is_judged_by_its_rate_of_change_in_either_direction() -> None:
    # A charge falling at the robot's own steady rate is normal whatever its level; a 10%
    # faster fall (a fading pack) is a change, and so would be a slower one.
    rate = -0.01 / 80  # band widths per second
    steady = [rate + e for e in _noise(3600, sd=5e-6)]
    assert _drift_run(steady, trend=True) is None
    fading = [rate * (1.1 if i > 180 else 1.0) + e for i, e in enumerate(_noise(3600, sd=5e-6, seed=3))]
    delay = _drift_run(fading, trend=True)
    assert delay is not None and delay < 600
    from twin.detect.signals import drift
    d = None
    for x in fading[:600]:
        d, found = drift(d, "battery_soc_pct", x, 1.0, True, RobotDetectorParams())
    assert found and found[0].evidence["direction"] == "down" and found[0].evidence["view"] == "trend"


def test_drift_statistic_is_capped_so_a_fault_that_ends_resolves_in_minutes() -> None:
    from twin.detect.signals import drift
    p = RobotDetectorParams()
    d = None
    for x in [0.5 + e for e in _noise(180)] + [0.9] * 600:  # a large step, held ten minutes
        d, _ = drift(d, "s", x, 1.0, False, p)
    assert d is not None and d.up <= p.drift_cap * p.drift_threshold * 10
    back = 0
    for x in [0.5 + e for e in _noise(3600, seed=5)]:
        d, found = drift(d, "s", x, 1.0, False, p)
        if not found:
            break
        back += 1
    assert back <= p.drift_cap * p.drift_threshold / p.drift_allowance


def test_drift_judges_only_settled_working_reports_and_relearns_after_maintenance(fleet: Fleet) -> None:
    # Idle readings at another current level are not a drift; after maintenance the reference is new.
    plan = [(4.0, "working")] * 400 + [(1.0, "idle")] * 200 + [(4.0, "working")] * 300
    twin, log = run(fleet, plan)
    assert not [e for e in log if e.endswith(":drift")]
    assert twin.watch is not None
    learned = [w.drift for w in twin.watch.signals if w.drift is not None]
    assert learned and all(d.ref == 1800 for d in learned)
    twin, log = run(fleet, plan + [(4.0, "maintenance")] * 5 + [(6.0, "working")] * 100)
    assert twin.watch is not None and all(w.drift is None or w.drift.ref < 1800 for w in twin.watch.signals)
    assert not [e for e in log if e.endswith(":drift")]


def test_a_rate_learned_while_already_failing_is_caught_against_the_cohort() -> None:
    # A pack that fades from the start looks steady against itself: its reference rate is the
    # faded one. Against the healthy robots of its model (drain -0.0102 %/s, sd 0.0014) a rate
    # twice as steep stands out; one within the cohort's spread does not.
    from twin.detect.cohort import Cohorts, learn_rates, rate_stats
    from twin.detect.robot import _against_cohort
    from twin.detect.watch import Drift
    p = RobotDetectorParams()
    cohorts = Cohorts()
    for i in range(3000):
        cohorts = learn_rates(cohorts, "amr", {"battery_soc_pct": (-0.0102 + 0.0014 * (i % 3 - 1) * 1.2247) / 80})
    moments = cohorts.rates["amr"]["battery_soc_pct"]
    stats = rate_stats(moments, 2000.0)
    assert stats is not None and abs(stats[0] * 80 + 0.0102) < 1e-6
    faded = Drift(ref=1800, level=round(-0.0234 / 80 / 1e-7))
    found = _against_cohort("battery_soc_pct", faded, moments, p)
    assert found and found[0].evidence["view"] == "cohort" and found[0].evidence["direction"] == "down"
    assert _against_cohort("battery_soc_pct", Drift(ref=1800, level=round(-0.0125 / 80 / 1e-7)), moments, p) == []
    assert _against_cohort("battery_soc_pct", Drift(ref=900, level=faded.level), moments, p) == []  # still learning
    assert rate_stats(moments, 5000.0) is None  # too few reports behind the cohort yet

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

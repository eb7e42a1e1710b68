"""The work-cycle stall detector (twin.detect.stall): pure, on event time."""

from __future__ import annotations

import numpy as np

from twin.detect import stall
from twin.detect.stall import StallParams, State

# A 6-second cycle: the arm moves at seconds 1-3 of every normal cycle, pauses at 0, 4 and 5.
PROFILE = (0.1, 1.0, 0.95, 0.9, 0.2, 0.0)
P = StallParams(cycle="cycle", speeds=("j*_speed",), profile=PROFILE)


def reading(cycle: float, speed: float) -> dict[str, float]:
    return {"cycle": cycle, "j1_speed": speed, "j2_speed": -speed, "temp": 30.0}


def run(rows: list[tuple[float, float, float]], working: bool = True) -> list[tuple[State, list[str], bool]]:
    """(ts, cycle, speed) rows through `step`: per row the state, the detectors that fired, judged."""
    state: State | None = None
    out = []
    for ts, cycle, speed in rows:
        state, found, judged = stall.step(state, reading(cycle, speed), ts, working, P)
        out.append((state, [f.detector for f in found], judged))
    return out


def normal_cycles(n: int, t0: float = 100.0) -> list[tuple[float, float, float]]:
    return [(t0 + 6 * c + k, float(c), 1.0 if PROFILE[k] >= 0.8 else 0.0) for c in range(n) for k in range(6)]


def test_normal_cycles_with_their_own_pauses_never_stall() -> None:
    out = run(normal_cycles(5))
    assert not any(found for _, found, _ in out)
    assert all(judged for _, _, judged in out[6:])  # every reading after the first cycle start is judged


def test_the_first_cycle_is_not_judged_its_start_was_not_seen() -> None:
    out = run([(100.0 + k, 7.0, 0.0) for k in range(6)])
    assert not any(judged for _, _, judged in out)
    assert not any(found for _, found, _ in out)


def test_standing_still_where_cycles_move_fires_on_the_third_reading() -> None:
    rows = normal_cycles(2) + [(112.0, 2.0, 0.0), (113.0, 2.0, 0.0), (114.0, 2.0, 0.001), (115.0, 2.0, -0.02)]
    out = run(rows)
    fired = [i for i, (_, found, _) in enumerate(out) if found]
    assert fired == [len(rows) - 1]  # seconds 1, 2, 3 of the cycle still: the third is a stall
    assert out[-1][0].still == 3


def test_a_moving_reading_resets_the_count() -> None:
    rows = normal_cycles(2) + [(112.0, 2.0, 0.0), (113.0, 2.0, 0.0), (114.0, 2.0, 0.5), (115.0, 2.0, 0.0)]
    assert not any(found for _, found, _ in run(rows))


def test_an_overrunning_cycle_is_unknown_and_not_judged() -> None:
    rows = normal_cycles(3) + [(118.0 + k, 2.0, 0.0) for k in range(6, 12)]  # cycle 2 lasts 12 s
    out = run(rows)
    assert not any(judged for _, _, judged in out[-6:])
    assert not any(found for _, found, _ in out)


def test_not_working_or_no_counter_is_not_judged() -> None:
    rows = normal_cycles(2) + [(112.0 + k, 2.0, 0.0) for k in range(1, 4)]
    assert not any(judged for _, _, judged in run(rows, working=False))
    state, found, judged = stall.step(None, {"j1_speed": 0.0}, 1.0, True, P)
    assert (found, judged) == ([], False)


def test_phases_match_the_step_arithmetic_and_profile_learns_moving_shares() -> None:
    rows = normal_cycles(20)
    ts = np.array([r[0] for r in rows])
    counter = np.array([r[1] for r in rows])
    speed = np.array([r[2] for r in rows])
    ph = stall.phases(ts, counter)
    assert (ph[:6] == -1).all() and ph[6:12].tolist() == list(range(6))
    learned = stall.profile([(ts, counter, speed)], P.still)
    assert learned == (0.0, 1.0, 1.0, 1.0, 0.0, 0.0)
    assert stall.profile([(ts[:30], counter[:30], speed[:30])], P.still) == ()  # fewer than 10 cycles: no profile


def test_the_importer_learns_the_profile_from_recording_columns() -> None:
    import polars as pl
    import pytest

    from streams.analysis.importing import ImportProblem, learn_stall_profile

    rows = normal_cycles(12)
    frame = pl.DataFrame({"timestamp": [r[0] for r in rows], "Cycle": [r[1] for r in rows],
                          "J1 speed": [r[2] for r in rows], "J2 speed": [-r[2] for r in rows]})
    mapping = {"Cycle": "cycle", "J1 speed": "j1_speed", "J2 speed": "j2_speed"}
    assert learn_stall_profile([frame], mapping, P) == (0.0, 1.0, 1.0, 1.0, 0.0, 0.0)
    with pytest.raises(ImportProblem, match="cycle counter"):
        learn_stall_profile([frame], {"J1 speed": "j1_speed"}, P)


def test_a_counter_named_in_stuck_skip_is_never_a_frozen_sensor() -> None:
    from twin.detect.params import RobotDetectorParams
    from twin.detect.signals import watch_signal
    from twin.detect.watch import SignalWatch
    from twin.fleet import Signal
    from twin.state import SignalState

    spec = Signal("count", (0.0, 1e6), (0.0, 1e9))
    before = SignalState(value=7.0, ts=None, seq=None, n=100, mean=7.0, var=0.0)

    def fired(p: RobotDetectorParams) -> list[str]:
        w, found = SignalWatch(), []
        for _ in range(40):
            w, f = watch_signal(w, "work_cycle", 7.0, before, spec, True, p)
            found += [x.detector for x in f]
        return found

    assert "stuck" in fired(RobotDetectorParams(stuck_reports=30))
    assert fired(RobotDetectorParams(stuck_reports=30, stuck_skip=("work_cycle",))) == []

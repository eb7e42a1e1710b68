"""Safety KPIs per report: exposure counts working time only, and each safety-event kind fires on its onset."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.fleet import RobotModel, Signal
from twin.kpi import KINDS, Prior, advance, exposure, prior_of, safety_events
from twin.reduce import apply
from twin.schema import MODES, Event
from twin.state import WINDOW, Twin

MODEL = RobotModel("amr", 1.0, {"inference_ms": Signal("ms", (10.0, 40.0), (0.0, 60000.0)),
                                "speed_mps": Signal("m/s", (0.0, 2.0), (0.0, 10.0))})
SLOW_MODEL = RobotModel("slow", 5.0, MODEL.signals)


def event(seq: int, ts: float, **changes: Any) -> Event:
    body: dict[str, Any] = {"schema": 1, "robot_id": "r1", "seq": seq, "ts": ts, "sector": "logistics",
                            "site": "log-rotterdam-01", "model": "amr", "mode": "working",
                            "signals": {"inference_ms": 20.0}, "ai_model_version": "policy-2.5.0"}
    body.update(changes)
    return Event(**body)


def twin_of(*events: Event) -> Twin:
    twin: Twin | None = None
    for e in events:
        twin, _ = apply(twin, e, received_ts=e.ts)
    assert twin is not None
    return twin


def step(before: Twin | None, e: Event, opened: int = 0, model: RobotModel = MODEL) -> tuple[float, tuple[str, ...]]:
    prior = prior_of(before)
    return exposure(prior, e, model), safety_events(prior, e, model, opened)


def test_kinds_are_the_contract() -> None:
    assert KINDS == ("estop", "protective_stop", "fault_burst", "anomaly", "slow_inference")


def test_first_event_credits_nothing_and_a_working_gap_credits_its_length() -> None:
    assert step(None, event(1, 100.0)) == (0.0, ())
    assert step(twin_of(event(1, 100.0)), event(2, 101.5))[0] == 1.5


@pytest.mark.parametrize("mode", ["idle", "charging", "fault", "estop", "maintenance"])
def test_time_after_a_non_working_report_is_not_exposure(mode: str) -> None:
    assert step(twin_of(event(1, 100.0, mode=mode)), event(2, 101.0))[0] == 0.0


def test_a_silence_is_capped_at_three_periods_of_the_model() -> None:
    before = twin_of(event(1, 100.0))
    assert step(before, event(2, 700.0))[0] == 3.0
    assert step(before, event(2, 700.0), model=SLOW_MODEL)[0] == 15.0
    assert exposure(prior_of(before), event(2, 700.0)) == 3.0  # no model: the seeds' 1 s period


def test_a_late_event_credits_nothing() -> None:
    before = twin_of(event(1, 100.0), event(3, 102.0))
    assert step(before, event(2, 101.0))[0] == 0.0


def test_estop_counts_once_by_code_or_by_entering_the_mode() -> None:
    working = twin_of(event(1, 100.0))
    assert step(working, event(2, 101.0, codes=["E-STOP"]))[1] == ("estop",)
    assert step(working, event(2, 101.0, mode="estop"))[1] == ("estop",)
    assert step(working, event(2, 101.0, mode="estop", codes=["E-STOP"]))[1] == ("estop",)
    stopped = twin_of(event(1, 100.0, mode="estop"))
    assert step(stopped, event(2, 101.0, mode="estop"))[1] == ()  # still stopped: not a new stop


def test_protective_stops_fault_bursts_and_anomalies() -> None:
    before = twin_of(event(1, 100.0))
    assert step(before, event(2, 101.0, codes=["P-STOP", "PROTECTIVE-STOP-J3"]))[1] == (
        "protective_stop", "protective_stop")
    assert step(before, event(2, 101.0, codes=["F-A", "F-B"]))[1] == ()
    assert step(before, event(2, 101.0, codes=["F-A", "F-B", "W-C", "F-D"]))[1] == ("fault_burst",)
    assert step(before, event(2, 101.0), opened=2)[1] == ("anomaly", "anomaly")


def test_slow_inference_counts_the_onset_above_the_band_only() -> None:
    fast = twin_of(event(1, 100.0))
    assert step(fast, event(2, 101.0, signals={"inference_ms": 40.0}))[1] == ()  # at the band's edge
    assert step(fast, event(2, 101.0, signals={"inference_ms": 55.0}))[1] == ("slow_inference",)
    slow = twin_of(event(1, 100.0, signals={"inference_ms": 55.0}))
    assert step(slow, event(2, 101.0, signals={"inference_ms": 70.0}))[1] == ()
    assert step(None, event(1, 100.0, signals={"inference_ms": 70.0}))[1] == ("slow_inference",)
    assert step(fast, event(2, 101.0, signals={"speed_mps": 1.0}))[1] == ()  # not reported: not judged


def test_every_kind_returned_is_a_known_label() -> None:
    before = twin_of(event(1, 100.0))
    e = event(2, 101.0, mode="estop", codes=["P-STOP", "F-A", "F-B", "F-C"], signals={"inference_ms": 99.0})
    kinds = step(before, e, opened=1)[1]
    assert set(kinds) == set(KINDS)


# -- Prior: what the KPIs read of the twin, carried forward without it ------------

def test_the_prior_is_what_the_kpis_read_of_the_twin() -> None:
    assert prior_of(None) is None
    twin = twin_of(event(1, 100.0, mode="idle"), event(2, 101.0, signals={"speed_mps": 1.0}))
    assert prior_of(twin) == Prior("working", 101.0, 2, 20.0, (100.0, 1))
    assert prior_of(twin_of(event(1, 100.0, signals={}))) == Prior("working", 100.0, 1, None, None)


def test_a_prior_is_untracked_by_the_cycle_collector() -> None:
    """The worker keeps one per robot, replaced on every report: a value the collector never walks."""
    prior = prior_of(twin_of(event(1, 100.0), event(2, 101.0, signals={"speed_mps": 1.0})))
    assert prior is not None and not gc.is_tracked(prior)
    assert not gc.is_tracked(advance(prior, event(3, 102.0), "applied"))


def test_a_late_event_supplies_inference_only_if_newer_than_the_signals_own_value() -> None:
    # latest is seq 3 without inference; the signal's value is seq 1's: a late seq 2 is newer than that
    twin = twin_of(event(1, 100.0), event(3, 102.0, signals={}))
    late = event(2, 101.0, signals={"inference_ms": 55.0})
    after, effects = apply(twin, late, received_ts=103.0)
    assert effects.outcome == "late"
    assert advance(prior_of(twin), late, "late") == prior_of(after) == Prior("working", 102.0, 3, 55.0, (101.0, 2))


def test_an_unknown_outcome_is_an_error() -> None:
    with pytest.raises(ValueError, match="outcome"):
        advance(prior_of(twin_of(event(1, 100.0))), event(2, 101.0), "rejected")


@st.composite
def arrivals(draw: st.DrawFn) -> list[Event]:
    """One robot's events in a shuffled arrival order: out-of-order ts and seq, redeliveries
    (duplicates), a few seqs far below the mark (stale), with and without `inference_ms`."""
    start = draw(st.integers(WINDOW + 10, 10**6))
    seqs = draw(st.lists(st.integers(start, start + 2 * WINDOW), min_size=1, max_size=30, unique=True))
    events = [
        event(seq, draw(st.sampled_from([100.0, 101.0, 102.0, 103.5, 110.0])), mode=draw(st.sampled_from(MODES)),
              signals=draw(st.dictionaries(st.sampled_from(["inference_ms", "speed_mps"]),
                                           st.floats(0, 100, allow_nan=False), max_size=2)))
        for seq in seqs
    ]
    events += draw(st.lists(st.sampled_from(events), max_size=5))  # redelivered: duplicates
    events += [event(draw(st.integers(0, start - WINDOW - 2)), 99.0, signals={"inference_ms": 90.0})
               for _ in range(draw(st.integers(0, 2)))]  # far below the mark once it has moved: stale
    return draw(st.permutations(events))


@given(arrivals())
@settings(max_examples=300)
def test_advance_carries_the_prior_exactly_as_the_reducer_moves_the_twin(evs: list[Event]) -> None:
    twin: Twin | None = None
    prior = prior_of(None)
    for e in evs:
        twin, effects = apply(twin, e, received_ts=e.ts)
        prior = advance(prior, e, effects.outcome)
        assert prior == prior_of(twin)

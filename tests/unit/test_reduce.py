from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.twin_view import to_view
from twin.effects import Effects, ModeChanged, SeqGap, VersionChanged
from twin.reduce import apply, note_rejected
from twin.schema import MODES, Event
from twin.state import ARRIVAL_ORDER_FIELDS, WINDOW, Twin, decode_twin, encode_twin

AMR_SIGNALS = ("battery_soc_pct", "battery_temp_c", "speed_mps", "joint1_current_a")


def ev(seq: int, ts: float, mode: str = "working", signals: dict[str, float] | None = None,
       **more: Any) -> Event:
    return Event(
        schema=1, robot_id="r-1", seq=seq, ts=ts, sector="mining", site="mining-pilbara-01",
        model="amr", mode=mode,  # type: ignore[arg-type]
        signals={"battery_soc_pct": 50.0} if signals is None else signals, **more,
    )


def fold(events: list[Event], twin: Twin | None = None) -> Twin:
    for e in events:
        twin, _ = apply(twin, e, received_ts=e.ts + 0.5)
    assert twin is not None
    return twin


def invariant(twin: Twin) -> dict[str, Any]:
    """The part of a twin that must not depend on arrival order."""
    out = {f: getattr(twin, f) for f in Twin.__struct_fields__
           if f not in ARRIVAL_ORDER_FIELDS and f != "signals"}
    out["signals"] = {k: (s.value, *twin.signal_time(s), twin.signal_count(s)) for k, s in twin.signals.items()}
    return out


# -- examples -----------------------------------------------------------------

def test_first_event_creates_the_twin() -> None:
    twin, effects = apply(None, ev(7, 10.0), received_ts=10.2)
    assert effects == Effects("applied")
    assert (twin.seq, twin.ts, twin.first_seen, twin.last_seen, twin.counts.events) == (7, 10.0, 10.2, 10.2, 1)
    assert twin.missing() == 0


def test_a_duplicate_changes_nothing_but_its_counter() -> None:
    twin = fold([ev(1, 10.0), ev(2, 11.0)])
    again, effects = apply(twin, ev(1, 99.0, "fault"), received_ts=100.0)
    assert effects.outcome == "duplicate"
    assert again.counts.duplicates == 1
    assert {**invariant(again), "counts": None} == {**invariant(twin), "counts": None}


def test_a_late_event_never_moves_latest_backwards_but_supplies_missing_signals() -> None:
    newer = ev(2, 20.0, "charging", {"battery_soc_pct": 40.0})
    older = ev(1, 10.0, "working", {"battery_soc_pct": 90.0, "speed_mps": 1.5})
    twin, effects = apply(fold([newer]), older, received_ts=21.0)
    assert effects.outcome == "late"
    assert (twin.mode, twin.ts, twin.signals["battery_soc_pct"].value) == ("charging", 20.0, 40.0)
    assert twin.signals["speed_mps"].value == 1.5
    assert (twin.late, twin.counts.events, twin.missing()) == (1, 2, 0)


def test_an_older_clock_with_a_higher_seq_is_late_but_moves_the_mark() -> None:
    twin, effects = apply(fold([ev(1, 10.0)]), ev(2, 5.0, "fault"), received_ts=11.0)
    assert effects.outcome == "late" and twin.seq == 2 and twin.mode == "working"


def test_a_gap_is_reported_and_filled_when_the_missing_event_arrives() -> None:
    twin, effects = apply(fold([ev(1, 10.0)]), ev(5, 14.0), received_ts=14.0)
    assert effects.changes == (SeqGap("r-1", 14.0, 1, 5),) and effects.changes[0].missing == 3  # type: ignore[union-attr]
    assert twin.missing() == 3
    twin, effects = apply(twin, ev(3, 12.0), received_ts=15.0)
    assert effects.outcome == "late" and twin.missing() == 2


def test_events_too_far_below_the_mark_are_stale() -> None:
    twin = fold([ev(1, 1.0), ev(WINDOW + 10, 2.0)])
    twin, effects = apply(twin, ev(2, 1.5), received_ts=3.0)
    assert effects.outcome == "stale" and twin.counts.stale == 1


def test_a_huge_seq_jump_is_handled_without_huge_integers() -> None:
    twin, effects = apply(fold([ev(1, 1.0)]), ev(2**62, 2.0), received_ts=2.0)
    assert effects.outcome == "applied" and twin.window == 0 and twin.seq == 2**62


def test_mode_and_version_changes_are_effects_and_recorded() -> None:
    twin = fold([ev(1, 10.0, ai_model_version="nav-1", firmware="fw-1")])
    twin, effects = apply(twin, ev(2, 11.0, "fault", ai_model_version="nav-2", firmware="fw-1"),
                          received_ts=11.0)
    assert effects.changes == (
        ModeChanged("r-1", 11.0, "working", "fault"),
        VersionChanged("r-1", 11.0, "ai_model_version", "nav-1", "nav-2"),
    )
    assert (twin.mode_since, twin.ai_model_since, twin.firmware_since, twin.version_changes) == (11.0, 11.0, 10.0, 1)


def test_mode_counts_and_rejections_are_counted() -> None:
    twin = note_rejected(fold([ev(1, 1.0), ev(2, 2.0, "charging"), ev(3, 3.0, "charging")]))
    assert dict(zip(MODES, twin.counts.modes)) == {**dict.fromkeys(MODES, 0), "working": 1, "charging": 2}
    assert twin.counts.rejected == 1


def test_running_statistics_follow_the_signal() -> None:
    twin = fold([ev(i, float(i), signals={"battery_soc_pct": 50.0 + (i % 2)}) for i in range(1, 200)])
    stats = twin.signals["battery_soc_pct"]
    assert twin.signal_count(stats) == 199 and stats.n is None and 50.2 < stats.mean < 50.8 and 0.1 < stats.var < 0.4


def test_a_signals_count_is_stored_only_when_it_missed_events() -> None:
    twin = fold([ev(1, 1.0, signals={"battery_soc_pct": 50.0}),
                 ev(2, 2.0, signals={"battery_soc_pct": 51.0, "speed_mps": 1.0}),
                 ev(3, 3.0, signals={"speed_mps": 1.0}), ev(4, 4.0, signals={"battery_soc_pct": 52.0, "speed_mps": 1.0})])
    soc, speed = twin.signals["battery_soc_pct"], twin.signals["speed_mps"]
    assert (soc.n, speed.n) == (3, 3)
    assert (twin.signal_count(soc), twin.signal_count(speed), twin.counts.events) == (3, 3, 4)
    every = fold([ev(i, float(i), signals={"battery_soc_pct": 50.0}) for i in range(1, 5)])
    assert every.signals["battery_soc_pct"].n is None and every.signal_count(every.signals["battery_soc_pct"]) == 4


def test_the_view_is_a_stable_named_shape() -> None:
    view = to_view(fold([ev(1, 10.0), ev(3, 12.0)]))
    assert set(view) >= {"robot_id", "mode", "signals", "counts", "ts", "seq", "last_seen"}
    assert view["counts"]["missing"] == 1
    assert set(view["signals"]["battery_soc_pct"]) == {"value", "ts", "ts_iso", "n", "mean", "std"}


def test_every_time_in_the_view_has_an_iso_8601_sibling() -> None:
    view = to_view(fold([ev(1, 1790000041.25), ev(2, 1790000042.5)]))
    assert view["ts"] == 1790000042.5 and view["ts_iso"] == "2026-09-21T14:14:02.500Z"
    assert view["signals"]["battery_soc_pct"]["ts_iso"] == view["ts_iso"]
    for name in ("mode_since", "ai_model_since", "firmware_since", "first_seen", "last_seen"):
        assert datetime.fromisoformat(view[name + "_iso"]).timestamp() == pytest.approx(view[name], abs=1e-3)


# -- properties ---------------------------------------------------------------

versions = st.sampled_from(["nav-1", "nav-2"])
signal_sets = st.dictionaries(st.sampled_from(AMR_SIGNALS), st.floats(0, 100, allow_nan=False), max_size=4)


@st.composite
def event_sets(draw: st.DrawFn, max_span: int = WINDOW) -> list[Event]:
    """Events of one robot with distinct seqs spanning at most `max_span`."""
    start = draw(st.integers(0, 10**6))
    seqs = draw(st.lists(st.integers(start, start + max_span - 1), min_size=1, max_size=25, unique=True))
    return [
        ev(seq, draw(st.sampled_from([10.0, 11.0, 12.0, 13.5])), draw(st.sampled_from(MODES)),
           draw(signal_sets), ai_model_version=draw(versions))
        for seq in seqs
    ]


@given(event_sets(), st.randoms(use_true_random=False))
@settings(max_examples=300)
def test_any_arrival_order_gives_the_same_latest_state_and_counts(evs: list[Event], rnd: Any) -> None:
    shuffled = list(evs)
    rnd.shuffle(shuffled)
    assert invariant(fold(shuffled)) == invariant(fold(evs))


@given(event_sets(), st.data())
def test_applying_an_event_twice_equals_applying_it_once(evs: list[Event], data: st.DataObject) -> None:
    twin = fold(evs[:-1]) if len(evs) > 1 else None
    once, _ = apply(twin, evs[-1], received_ts=99.0)
    twice, effects = apply(once, evs[-1], received_ts=99.0)
    assert effects.outcome == "duplicate"
    expected = Twin(**{**{f: getattr(once, f) for f in Twin.__struct_fields__},
                       "counts": once.counts.__class__(**{
                           **{f: getattr(once.counts, f) for f in once.counts.__struct_fields__},
                           "duplicates": once.counts.duplicates + 1})})
    assert twice == expected


@given(event_sets(max_span=10**9), st.integers(0, 25))
def test_replay_from_scratch_and_across_a_restart_is_bit_identical(evs: list[Event], cut: int) -> None:
    straight = encode_twin(fold(evs))
    assert encode_twin(fold(list(evs))) == straight
    if 0 < cut < len(evs):
        restored = decode_twin(encode_twin(fold(evs[:cut])))  # the changelog round trip
        assert encode_twin(fold(evs[cut:], restored)) == straight


@given(st.lists(st.builds(
    ev, st.integers(0, 2**63 - 1), st.floats(1e-3, 1e10, allow_nan=False), st.sampled_from(MODES),
    signal_sets,
), min_size=1, max_size=30))
def test_the_reducer_never_raises_on_valid_events(evs: list[Event]) -> None:
    twin = fold(evs)
    assert twin.counts.events + twin.counts.duplicates + twin.counts.stale == len(evs)
    assert twin.missing() >= 0
    assert 0 <= twin.window < 2**WINDOW


@given(event_sets())
def test_the_stored_twin_does_not_depend_on_the_order_of_signal_keys(evs: list[Event]) -> None:
    reversed_keys = [ev(e.seq, e.ts, e.mode, dict(reversed(list(e.signals.items()))),
                        ai_model_version=e.ai_model_version) for e in evs]
    assert encode_twin(fold(reversed_keys)) == encode_twin(fold(evs))

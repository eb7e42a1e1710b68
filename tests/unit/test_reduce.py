from __future__ import annotations

from functools import reduce as fold

from hypothesis import given
from hypothesis import strategies as st

from twin.reduce import reduce
from twin.schema import Event
from twin.state import Twin, decode_twin, encode_twin


def ev(seq: int, ts: float, mode: str = "working", soc: float = 50.0) -> Event:
    return Event(
        schema=1, robot_id="r-1", seq=seq, ts=ts, sector="mining", site="mining-pilbara-01",
        model="amr", mode=mode, signals={"battery_soc_pct": soc},  # type: ignore[arg-type]
    )


def apply_all(events: list[Event]) -> Twin | None:
    return fold(lambda twin, e: reduce(twin, e)[0], events, None)


def test_first_event_creates_the_twin() -> None:
    twin, outcome = reduce(None, ev(1, 10.0))
    assert outcome == "applied"
    assert (twin.seq, twin.ts, twin.first_ts, twin.applied) == (1, 10.0, 10.0, 1)


def test_a_newer_event_replaces_state_and_keeps_unreported_signals() -> None:
    twin, _ = reduce(None, ev(1, 10.0))
    twin = reduce(twin, ev(1, 10.0))[0]
    newer = Event(**{**{f: getattr(ev(2, 11.0, "charging"), f) for f in Event.__struct_fields__},
                     "signals": {"speed_mps": 0.0}})
    twin, outcome = reduce(twin, newer)
    assert outcome == "applied"
    assert twin.mode == "charging" and twin.signals == {"battery_soc_pct": 50.0, "speed_mps": 0.0}


def test_a_duplicate_changes_nothing_but_its_counter() -> None:
    twin, _ = reduce(None, ev(5, 10.0))
    again, outcome = reduce(twin, ev(5, 99.0, "fault", 1.0))
    assert outcome == "duplicate"
    assert again == Twin(**{**{f: getattr(twin, f) for f in Twin.__struct_fields__}, "duplicates": 1})


def test_a_late_event_moves_the_mark_but_not_the_state() -> None:
    twin, _ = reduce(None, ev(1, 10.0, "working", 50.0))
    late, outcome = reduce(twin, ev(2, 9.0, "fault", 10.0))
    assert outcome == "late"
    assert (late.seq, late.mode, late.signals, late.late) == (2, "working", {"battery_soc_pct": 50.0}, 1)


events = st.lists(
    st.builds(ev, st.integers(0, 50), st.floats(0, 1000, allow_nan=False)), min_size=1, max_size=40
)


@given(events)
def test_every_event_is_counted_exactly_once(evs: list[Event]) -> None:
    twin = apply_all(evs)
    assert twin is not None
    assert twin.applied + twin.late + twin.duplicates == len(evs)
    assert twin.seq == max(e.seq for e in evs)


@given(events)
def test_redelivering_the_whole_log_changes_only_the_duplicate_count(evs: list[Event]) -> None:
    once = apply_all(evs)
    twice = apply_all(evs + evs)
    assert once is not None and twice is not None
    assert twice.duplicates == once.duplicates + len(evs)
    assert encode_twin(twice).replace(b'"duplicates":%d' % twice.duplicates, b"") == encode_twin(
        once
    ).replace(b'"duplicates":%d' % once.duplicates, b"")


@given(events)
def test_folding_is_deterministic_and_survives_the_changelog_codec(evs: list[Event]) -> None:
    a, b = apply_all(evs), apply_all(list(evs))
    assert a is not None and b is not None
    assert encode_twin(a) == encode_twin(b)
    assert decode_twin(encode_twin(a)) == a

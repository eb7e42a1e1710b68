from __future__ import annotations

import pytest

from tests.support.cases import NOW, Bad, bad_cases, raw
from twin import gateway
from twin.exceptions import InvalidEvent
from twin.fleet import Fleet
from twin.schema import Event, encode
from twin.validate import Policy, decode, parse


def test_a_good_event_round_trips(fleet: Fleet) -> None:
    ev = parse(raw(), fleet, key=b"r-1", received_ts=NOW)
    assert ev.robot_id == "r-1" and ev.signals["speed_mps"] == 1.2
    assert decode(encode(ev)) == ev


def test_unknown_fields_are_ignored_and_location_is_optional(fleet: Fleet) -> None:
    ev = parse(raw(colour="blue", location={"lat": 52.1, "lon": 4.3, "floor": 2}), fleet,
               key=b"r-1", received_ts=NOW)
    assert isinstance(ev, Event) and ev.location is not None and ev.location.floor == 2


def test_anomalous_but_possible_values_are_accepted(fleet: Fleet) -> None:
    # speed 9 m/s is far outside the AMR's nominal band [0, 2] but within limits [0, 10]
    assert parse(raw(signals={"speed_mps": 9.0}), fleet, key=b"r-1").signals["speed_mps"] == 9.0


@pytest.mark.parametrize("case", bad_cases(), ids=lambda c: c.reason)
def test_each_kind_of_bad_input_has_its_own_reason(case: Bad, fleet: Fleet) -> None:
    received = NOW - case.ts_offset
    with pytest.raises(InvalidEvent) as err:
        parse(case.value, fleet, key=case.key, received_ts=received)
    assert err.value.reason == case.reason
    assert err.value.detail


def test_every_reason_has_a_case() -> None:
    """Every reason but a gateway batch's own (tests/unit/test_gateway.py)."""
    assert {c.reason for c in bad_cases()} == InvalidEvent.REASONS - gateway.REASONS


def test_the_detail_says_where_the_problem_is(fleet: Fleet) -> None:
    with pytest.raises(InvalidEvent) as err:
        parse(raw(seq="three"), fleet, key=b"r-1")
    assert "$.seq" in err.value.detail


def test_the_clock_limit_is_a_policy(fleet: Fleet) -> None:
    late_clock = raw(ts=NOW + 100)
    with pytest.raises(InvalidEvent):
        parse(late_clock, fleet, key=b"r-1", received_ts=NOW, policy=Policy(max_future_s=10))
    assert parse(late_clock, fleet, key=b"r-1", received_ts=NOW).ts == NOW + 100


def test_an_unknown_reason_is_our_bug_not_theirs() -> None:
    from twin.exceptions import InvariantViolated

    with pytest.raises(InvariantViolated):
        InvalidEvent("made_up", "x")


def test_a_seq_a_twin_cannot_store_is_refused(fleet: Fleet) -> None:
    """JSON allows any integer; a seq past 2**64 - 1 got through and then failed to encode when the
    worker stored its twin. Seqs are signed 64-bit now."""
    from twin.reduce import apply
    from twin.schema import SEQ_MAX
    from twin.state import encode_twin

    with pytest.raises(InvalidEvent) as err:
        parse(raw(seq=2**64), fleet, key=b"r-1", received_ts=NOW)
    assert "$.seq" in err.value.detail
    with pytest.raises(InvalidEvent):
        parse(raw(seq=SEQ_MAX + 1), fleet, key=b"r-1", received_ts=NOW)
    largest = parse(raw(seq=SEQ_MAX), fleet, key=b"r-1", received_ts=NOW)
    assert encode_twin(apply(None, largest, received_ts=NOW)[0])

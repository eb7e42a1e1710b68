"""Hostile input: whatever the bytes, `parse` returns a checked event or names the specific reason.

Each class of hostile input has the one reason it must be rejected for; any
other exception fails the test (the ingest agent catches only `InvalidEvent`,
so anything else would stop a worker). The deterministic corpus that the e2e
tier sends (`tests/support/hostile.py`) is checked here first, then hypothesis draws
fresh inputs of each class. `TALLY` counts the inputs tried per class and
outcome; the last test prints it (`pytest -s`, or see docs/RELIABILITY.md, "Hostile input").
"""

from __future__ import annotations

import json
import timeit
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from tests.support.cases import NOW, event, raw
from tests.support.hostile import (FIELD_TYPES, HUGE_INT, INVALID_UTF8, NON_FINITE, corpus, dumps, json_type, not_utf8,
                                   numbers_at, wrong_type_reason)
from twin.exceptions import InvalidEvent
from twin.fleet import Fleet
from twin.schema import Event
from twin.validate import DEFAULT_POLICY, Policy, check, decode, parse

TALLY: Counter[tuple[str, str]] = Counter()
"""(class, outcome) -> inputs tried; the outcome is a reason or "accepted"."""

MAX = DEFAULT_POLICY.max_bytes
ROBOT = "r-1"
HYPOTHESIS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(kind: str, value: bytes, fleet: Fleet, key: bytes | None = ROBOT.encode(),
            policy: Policy = DEFAULT_POLICY) -> str:
    """Parse, tally, and return "accepted" or the reason; any other exception fails the test."""
    try:
        ev = parse(value, fleet, key=key, received_ts=NOW, policy=policy)
    except InvalidEvent as err:
        assert err.reason in InvalidEvent.REASONS and err.detail, err
        TALLY[kind, err.reason] += 1
        return err.reason
    assert isinstance(ev, Event) and check(ev, fleet, key=key, received_ts=NOW) is ev
    TALLY[kind, "accepted"] += 1
    return "accepted"


def test_the_e2e_corpus_gets_exactly_the_reasons_it_expects(fleet: Fleet) -> None:
    cases = corpus(ROBOT)
    wrong = [(h.kind, h.reason, got, h.value[:80]) for h in cases
             if (got := outcome(h.kind, h.value, fleet, h.key)) != h.reason]
    assert not wrong, wrong[:10]
    assert {h.kind for h in cases} >= {"random bytes", "truncated", "deep nesting", "NaN/Infinity/huge",
                                       "wrong type", "invalid UTF-8", "overlong strings", "duplicate keys",
                                       "oversize", "key mismatch"}


# --- random bytes -----------------------------------------------------------------------------

@HYPOTHESIS
@given(st.binary(max_size=2000))
def test_random_bytes_never_escape_as_another_exception(fleet: Fleet, value: bytes) -> None:
    # Some random bytes are JSON of the wrong shape ("7" is invalid_field, "{}" missing_field):
    # the property here is only that the reason is from the closed set.
    assert outcome("random bytes", value, fleet) != "accepted"


@HYPOTHESIS
@given(st.binary(min_size=1, max_size=2000), st.sampled_from(INVALID_UTF8), st.data())
def test_bytes_that_are_not_utf8_are_undecodable(fleet: Fleet, value: bytes, bad: bytes, data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(value)))
    value = value[:at] + bad + value[at:]
    assume(not_utf8(value))  # b"\xe2\x82" + b"\x80" is a valid euro sign
    assert outcome("random bytes", value, fleet) == "undecodable"


# --- truncation -------------------------------------------------------------------------------

VALID = [raw(), json.dumps(event(firmware="fw-ü-2", codes=["E-STOP"], location={"lat": -33.9, "lon": 151.2,
                                                                                  "floor": 3})).encode()]


@pytest.mark.parametrize("value", VALID, ids=["plain", "unicode-location-codes"])
def test_every_prefix_of_a_valid_event_is_undecodable(fleet: Fleet, value: bytes) -> None:
    assert outcome("valid (control)", value, fleet) == "accepted"
    assert {outcome("truncated", value[:cut], fleet) for cut in range(len(value))} == {"undecodable"}


def valid_events(fleet: Fleet) -> st.SearchStrategy[dict[str, Any]]:
    """Events that pass every check: values of the AMR's signals within their limits."""
    limits = {name: spec.limits for name, spec in fleet.models["amr"].signals.items()}
    signal = st.sampled_from(sorted(limits)).flatmap(
        lambda n: st.tuples(st.just(n), st.floats(*limits[n], allow_nan=False)))
    return st.builds(lambda sig, seq, fw: event(seq=seq, firmware=fw, signals=dict(sig)),
                     st.lists(signal, min_size=1, max_size=8), st.integers(0, 2**63 - 1),
                     st.text(max_size=64))


@HYPOTHESIS
@given(st.data())
def test_a_random_valid_event_is_accepted_and_every_cut_of_it_is_undecodable(fleet: Fleet,
                                                                              data: st.DataObject) -> None:
    value = json.dumps(data.draw(valid_events(fleet)), ensure_ascii=data.draw(st.booleans())).encode()
    assert outcome("valid (control)", value, fleet) == "accepted"
    cut = data.draw(st.integers(0, len(value) - 1))
    assert outcome("truncated", value[:cut], fleet) == "undecodable"


# --- nesting ----------------------------------------------------------------------------------

DEEP = 100_000
BIG = Policy(max_bytes=20 * 2**20)
"""Large enough that 100k levels reach the decoder instead of the size limit."""


@pytest.mark.parametrize("value", [
    b"[" * DEEP, b"[" * DEEP + b"]" * DEEP, b'{"a":' * DEEP, b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    raw(extra=None).replace(b'"extra": null', b'"extra": ' + b"[" * DEEP + b"]" * DEEP),
    raw(extra=None).replace(b'"extra": null', b'"extra": ' + b'{"a":' * DEEP + b"1" + b"}" * DEEP),
    raw().replace(b"1.2", b"[" * DEEP + b"]" * DEEP),
], ids=["open-arrays", "balanced-arrays", "open-objects", "balanced-objects", "unknown-field-arrays",
        "unknown-field-objects", "signal-value"])
def test_100k_levels_are_refused_by_depth_when_the_size_allows_and_by_size_otherwise(
    fleet: Fleet, value: bytes
) -> None:
    assert outcome("deep nesting", value, fleet, policy=BIG) == "undecodable"
    assert outcome("deep nesting", value, fleet) == "oversize"


def test_regression_deep_nesting_was_a_recursion_error(fleet: Fleet) -> None:
    # msgspec raised RecursionError (not an InvalidEvent) at about 1000 levels of
    # objects, or of anything inside an unknown field: 5 KB stopped the ingest agent.
    value = raw(extra=None).replace(b'"extra": null', b'"extra": ' + b"[" * 1000 + b"]" * 1000)
    with pytest.raises(InvalidEvent, match="nested 1001 levels deep") as err:
        parse(value, fleet, key=b"r-1")
    assert err.value.reason == "undecodable"


def nested(draw_depth: int) -> Any:
    value: Any = 1
    for level in range(draw_depth):
        value = [value] if level % 2 else {"k": value, "s": "[{["}
    return value


@HYPOTHESIS
@given(st.integers(0, 80))
def test_depth_is_judged_exactly_ignoring_brackets_in_strings(fleet: Fleet, depth: int) -> None:
    # the event object is level 1, so an unknown field may nest max_depth - 1 levels
    value = json.dumps(event(extra=nested(depth))).encode()
    expected = "accepted" if 1 + depth <= DEFAULT_POLICY.max_depth else "undecodable"
    assert outcome("deep nesting", value, fleet) == expected


def test_the_depth_scan_stays_linear_on_its_worst_inputs(fleet: Fleet) -> None:
    """A quadratic scan would take 16x as long on 4x the bytes; a linear one about 4x.

    Compared within the run (best of 5 each, so a busy machine slows both
    sides alike), never against a wall-clock limit.
    """
    shapes = [lambda n: b"[" * (n - 1), lambda n: b'"\\"' * (n // 3), lambda n: b'"[' * (n // 2),
              lambda n: b"[" + b'"' * (n - 1)]
    for shape in shapes:
        small, large = shape(MAX // 4), shape(MAX)
        took = [min(timeit.repeat(lambda v=v: outcome("depth scan worst case", v, fleet), number=1, repeat=5))  # type: ignore[misc]
                for v in (small, large)]
        assert took[1] / took[0] < 8.0, (large[:20], took)


# --- numbers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("literal", NON_FINITE + (HUGE_INT,), ids=lambda b: b[:24].decode())
def test_each_spelling_of_nan_infinity_or_overflow_is_non_finite(fleet: Fleet, literal: bytes) -> None:
    json_syntax = literal[-1:].isdigit() and b"#" not in literal
    for value in numbers_at(ROBOT, NOW, literal, unknown=False):
        assert outcome("NaN/Infinity/huge", value, fleet) == "non_finite"
    # an unknown field is skipped, not read: 1e400 there is valid JSON, NaN is not JSON at all
    unknown = numbers_at(ROBOT, NOW, literal)[-1]
    assert outcome("NaN/Infinity/huge", unknown, fleet) == ("accepted" if json_syntax else "non_finite")


def test_huge_integers_in_integer_fields_are_invalid_fields(fleet: Fleet) -> None:
    for field in (b'"seq": 1', b'"floor": 3'):
        for sign in (b"", b"-"):
            value = VALID[1].replace(field, field[:-1] + sign + HUGE_INT)
            assert outcome("NaN/Infinity/huge", value, fleet) == "invalid_field"


@pytest.mark.parametrize("literal,stored", [
    (b"-0", 0.0), (b"-0.0", 0.0), (b"0e0", 0.0), (b"5e-324", 5e-324), (b"2.2250738585072014e-308", 2.2250738585072014e-308),
    (b"1e-400", 0.0), (b"1.7976931348623157e-300", 1.7976931348623157e-300), (b"9.999999999999999", 9.999999999999999),
])
def test_negative_zero_denormals_and_underflow_are_accepted(fleet: Fleet, literal: bytes, stored: float) -> None:
    value = raw().replace(b'"speed_mps": 1.2', b'"speed_mps": ' + literal)
    assert outcome("-0/denormal (accepted)", value, fleet) == "accepted"
    assert parse(value, fleet, key=b"r-1").signals["speed_mps"] == stored


@HYPOTHESIS
@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10**300, 10**300))
def test_any_signal_value_is_accepted_within_limits_and_otherwise_named(fleet: Fleet, x: float | int) -> None:
    value = raw(signals={"battery_temp_c": x})  # json.dumps writes NaN and Infinity as Python does
    lo, hi = fleet.models["amr"].signals["battery_temp_c"].limits
    if x != x or abs(float(x)) == float("inf"):
        expected = "non_finite"
    else:
        expected = "accepted" if lo <= x <= hi else "out_of_limits"
    assert outcome("NaN/Infinity/huge" if expected == "non_finite" else "signal value", value, fleet) == expected


# --- wrong types ------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@HYPOTHESIS
@given(st.sampled_from(sorted(FIELD_TYPES)), JSON_VALUES)
def test_a_value_of_the_wrong_json_type_in_any_field_is_an_invalid_field(
    fleet: Fleet, field: str, value: Any
) -> None:
    assume(json_type(value) not in FIELD_TYPES[field])
    assert outcome("wrong type", dumps(ROBOT, NOW, **{field: value}), fleet) == wrong_type_reason(field)


@HYPOTHESIS
@given(st.sampled_from(["lat", "lon", "floor", "speed_mps", "battery_soc_pct"]), JSON_VALUES)
def test_a_wrong_type_inside_location_or_signals_is_an_invalid_field(fleet: Fleet, name: str, value: Any) -> None:
    if name in ("speed_mps", "battery_soc_pct"):
        assume(json_type(value) not in ("int", "float"))
        body = raw(signals={name: value})
    else:
        assume(json_type(value) not in ({"int", "null"} if name == "floor" else {"int", "float"}))
        body = raw(location={"lat": 1.0, "lon": 2.0, name: value})
    assert outcome("wrong type", body, fleet) == "invalid_field"


def test_regression_an_enum_value_cannot_pose_as_the_schema_path(fleet: Fleet) -> None:
    # msgspec quotes an unknown mode in its message; a substring test of "`$.schema`"
    # took mode "`$.schema`" for a version problem.
    assert outcome("wrong type", raw(mode="`$.schema`"), fleet) == "invalid_field"
    assert outcome("wrong type", raw(mode="Object missing required field"), fleet) == "invalid_field"


# --- UTF-8 ------------------------------------------------------------------------------------

@HYPOTHESIS
@given(st.sampled_from(["robot_id", "firmware", "signal name", "unknown key", "unknown value", "site"]),
       st.sampled_from(INVALID_UTF8), st.text(max_size=10))
def test_invalid_utf8_inside_any_string_or_key_is_undecodable(fleet: Fleet, where: str, bad: bytes,
                                                              text: str) -> None:
    mark = "\u2603MARK"  # a placeholder no other part of the event contains
    body = {"robot_id": raw(robot_id=mark), "firmware": raw(firmware=text + mark),
            "signal name": raw(signals={"speed" + mark: 1.0}), "unknown key": raw(**{text + mark: 1}),
            "unknown value": raw(extra=text + mark), "site": raw(site=mark + text)}[where]
    value = body.replace(json.dumps(mark)[1:-1].encode(), bad)
    assert outcome("invalid UTF-8", value, fleet) == "undecodable"


def test_regression_invalid_utf8_in_a_decoded_field_was_a_unicode_error(fleet: Fleet) -> None:
    # msgspec raises UnicodeDecodeError (a ValueError, not a DecodeError) for a
    # field it decodes into a str: one such message stopped the ingest agent.
    value = raw().replace(b'"robot_id": "r-1"', b'"robot_id": "r-\xff"')
    with pytest.raises(InvalidEvent, match="invalid UTF-8 at byte") as err:
        parse(value, fleet, key=b"r-1")
    assert err.value.reason == "undecodable"


def test_valid_non_ascii_is_accepted_and_escaped_surrogates_are_not(fleet: Fleet) -> None:
    assert outcome("valid (control)", raw(firmware="fw-\u00fc-\u4e2d-\U0001f916"), fleet) == "accepted"
    lone = raw(firmware="X").replace(b'"X"', b'"\\ud800"')
    assert outcome("invalid UTF-8", lone, fleet) == "undecodable"


# --- long strings -----------------------------------------------------------------------------

@HYPOTHESIS
@given(st.sampled_from(["robot_id", "sector", "site", "model", "mode", "firmware", "ai_model_version", "code"]),
       st.integers(129, MAX - 400))
def test_overlong_strings_are_invalid_fields(fleet: Fleet, field: str, n: int) -> None:
    long = "r" * n
    key = long.encode() if field == "robot_id" else ROBOT.encode()
    changes = {"codes": [long]} if field == "code" else {field: long}
    value = dumps(long, NOW) if field == "robot_id" else dumps(ROBOT, NOW, **changes)
    assert outcome("overlong strings", value, fleet, key=key) == "invalid_field"


def test_an_overlong_signal_name_is_unknown_and_the_detail_stays_short(fleet: Fleet) -> None:
    with pytest.raises(InvalidEvent) as err:
        parse(raw(signals={"s" * 60_000: 1.0}), fleet, key=b"r-1")
    TALLY["overlong strings", err.value.reason] += 1
    assert err.value.reason == "unknown_signal" and len(err.value.detail) < 200


# --- duplicate keys ---------------------------------------------------------------------------

@HYPOTHESIS
@given(st.sampled_from(sorted(FIELD_TYPES)), JSON_VALUES)
def test_a_duplicated_field_counts_as_its_last_value(fleet: Fleet, field: str, value: Any) -> None:
    # JSON leaves duplicates undefined. msgspec decodes every occurrence (so each
    # must be well typed) and keeps the last; every reader here (worker, replay,
    # archive) decodes through twin.validate, so none can see another value.
    only = dumps(ROBOT, NOW, **{field: value})
    again = f', "{field}": '.encode() + json.dumps(value).encode() + b"}"
    assert outcome("duplicate keys", raw()[:-1] + again, fleet) == outcome("duplicate keys (control)", only, fleet)
    first = b'{"' + field.encode() + b'": ' + json.dumps(value).encode() + b", " + raw()[1:]
    try:
        decode(only)
        typed = "accepted"
    except InvalidEvent as err:
        typed = err.reason
    assert outcome("duplicate keys", first, fleet) == typed


def test_a_duplicated_robot_id_is_judged_by_its_last_value_against_the_key(fleet: Fleet) -> None:
    value = raw().replace(b'"seq"', b'"robot_id": "someone-else", "seq"')
    assert outcome("duplicate keys", value, fleet) == "key_mismatch"
    assert outcome("duplicate keys", value, fleet, key=b"someone-else") == "accepted"


# --- size -------------------------------------------------------------------------------------

def test_a_10mb_message_is_refused_by_size_before_parsing(fleet: Fleet) -> None:
    # parsed first, these would be undecodable (blank, unclosed, not UTF-8) or accepted (a valid event padded)
    for value in (b" " * 10_000_000, b"[" * 10_000_000, b"\xff" * 10_000_000, raw() + b" " * 10_000_000):
        assert outcome("oversize", value, fleet) == "oversize"


@HYPOTHESIS
@given(st.integers(MAX + 1, 4 * MAX), st.binary(max_size=64))
def test_one_byte_over_the_limit_is_oversize_whatever_the_content(fleet: Fleet, size: int, seed: bytes) -> None:
    value = (seed + raw()) * (size // (len(seed) + len(raw())) + 1)
    assert outcome("oversize", value[:size], fleet) == "oversize"


def test_a_valid_event_padded_to_exactly_the_limit_is_accepted(fleet: Fleet) -> None:
    value = raw() + b" " * (MAX - len(raw()))
    assert len(value) == MAX and outcome("valid (control)", value, fleet) == "accepted"


# --- keys -------------------------------------------------------------------------------------

@HYPOTHESIS
@given(st.binary(max_size=200) | st.text(max_size=130).map(str.encode) | st.none())
def test_any_key_but_the_robot_id_is_a_key_mismatch(fleet: Fleet, key: bytes | None) -> None:
    assume(key != ROBOT.encode())
    assert outcome("key mismatch" if key is not None else "missing key", raw(), fleet, key=key) == "key_mismatch"


def test_a_missing_key_is_a_key_mismatch(fleet: Fleet) -> None:
    assert outcome("missing key", raw(), fleet, key=None) == "key_mismatch"


# --- the figures ------------------------------------------------------------------------------

def test_zz_print_the_tally() -> None:
    """Last in the file: the inputs tried per class and outcome (shown with `pytest -s`)."""
    by_class: dict[str, Counter[str]] = {}
    for (kind, result), n in TALLY.items():
        by_class.setdefault(kind, Counter())[result] += n
    lines = [f"{'class':28} {'tried':>7}  outcomes"]
    for kind in sorted(by_class):
        outcomes = ", ".join(f"{r} {n}" for r, n in by_class[kind].most_common())
        lines.append(f"{kind:28} {sum(by_class[kind].values()):>7}  {outcomes}")
    lines.append(f"{'total':28} {sum(TALLY.values()):>7}  (crashes: 0, else a test above failed)")
    print("\nhostile input tally\n" + "\n".join(lines))
    assert TALLY

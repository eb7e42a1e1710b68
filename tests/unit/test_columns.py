"""Columnar decode: every row of a batch gets exactly what `parse` gives it, event or error.

`parse` is the oracle. The fast path in `twin.columns` may only be stricter than it (and then
hand the row to `parse`), so the property is checked on the inputs where a batch check could
be more lenient than `parse`: duplicated keys, limits hit exactly, the clock at the limit,
unknown fields, non-ASCII text, and the rest of the hostile classes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from streams.seeds import read_scenario
from tests.support.cases import NOW, bad_cases, raw
from tests.support.hostile import INVALID_UTF8, corpus
from twin import gateway
from twin.columns import Columns, Message, decode_batch
from twin.exceptions import InvalidEvent
from twin.fleet import Fleet
from twin.schema import MODES, SEQ_MAX, Event, encode
from twin.sim import FleetSim
from twin.sim.scenario import load_scenario
from twin.validate import DEFAULT_POLICY, Policy, parse

SEEDS = Path(__file__).resolve().parents[2] / "seeds"
HYPOTHESIS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def chaos(fleet: Fleet, robots: int, ticks: int, seed: int = 3) -> list[Event]:
    """Events of the chaos scenario (every fault type) on a small fleet, `ticks` seconds of it."""
    doc = msgspec.to_builtins(read_scenario(SEEDS, "chaos"))
    sim = FleetSim(fleet, load_scenario({**doc, "robots": robots, "duration_s": ticks}, "chaos"), seed=seed)
    return [e for _ in range(sim.ticks) for e in sim.step()]


def wire(event: Event, delay: float = 0.02) -> Message:
    """As the worker receives it: keyed by robot, broker time in whole milliseconds after `ts`."""
    return event.robot_id.encode(), encode(event), round((event.ts + delay) * 1000) / 1000


@pytest.fixture(scope="module")
def pool(fleet: Fleet) -> list[Event]:
    return chaos(fleet, robots=40, ticks=30)


def assert_as_parse(columns: Columns, messages: list[Message], fleet: Fleet, policy: Policy = DEFAULT_POLICY) -> None:
    """Row by row: the same Event (and bytes, and column values) or the same reason and detail."""
    accepted = 0
    for i, (key, value, received) in enumerate(messages):
        try:
            want = parse(value, fleet, key=key, received_ts=received, policy=policy)
        except InvalidEvent as err:
            got = columns.rejected.get(i)
            assert got is not None, (i, err, value[:200])
            assert (got.reason, got.detail) == (err.reason, err.detail), (i, value[:200])
            with pytest.raises(KeyError):
                columns.event(i)
            continue
        assert i not in columns.rejected, (i, columns.rejected[i], value[:200])
        event = columns.event(i)
        assert event == want and encode(event) == encode(want), (i, value[:200])
        accepted += 1
        assert_row(columns, i, want, received)
    assert len(columns.row) == accepted
    assert accepted + len(columns.rejected) == len(messages)


def assert_row(columns: Columns, i: int, want: Event, received: float) -> None:
    at = int(np.searchsorted(columns.row, i))
    ix = columns.index
    assert columns.row[at] == i and columns.robot_id[at] == want.robot_id
    assert (int(columns.seq[at]), float(columns.ts[at]), float(columns.received_ts[at])) == (want.seq, want.ts, received)
    assert MODES[columns.mode[at]] == want.mode
    assert (ix.sectors[columns.sector[at]], ix.sites[columns.site[at]], ix.models[columns.model[at]]) == (
        want.sector, want.site, want.model)
    row = columns.signals[at]
    present = {ix.signals[c]: float(row[c]) for c in np.flatnonzero(~np.isnan(row))}
    assert present == want.signals


def test_clean_chaos_events_all_take_the_fast_path_and_equal_parse(fleet: Fleet) -> None:
    events = chaos(fleet, robots=150, ticks=25)
    assert len(events) > 3000
    messages = [wire(e) for e in events]
    for start in range(0, len(messages), 997):  # batches that do not divide the run
        batch = messages[start:start + 997]
        columns = decode_batch(batch, fleet)
        assert columns.parsed == 0 and not columns.rejected and len(columns.row) == len(batch)
        assert_as_parse(columns, batch, fleet)


def test_the_hostile_corpus_gets_parse_s_reasons_row_for_row(fleet: Fleet) -> None:
    messages = [(h.key, h.value, NOW) for h in corpus("r-1", big=70_000, big_count=1)]
    columns = decode_batch(messages, fleet)
    assert len(columns.rejected) > 1500
    assert_as_parse(columns, messages, fleet)


def test_one_case_per_reason_between_clean_rows(fleet: Fleet, pool: list[Event]) -> None:
    bad = [(b.key, b.value, NOW - b.ts_offset) for b in bad_cases()]
    bare = [raw(**{field: "nope"}, signals={}) for field in ("sector", "site", "model")]  # no signal to fail
    bad += [(b"r-1", value, NOW) for value in bare]
    messages = [m for pair in zip([wire(e) for e in pool], bad) for m in pair]
    columns = decode_batch(messages, fleet)
    assert set(columns.rejected) == set(range(1, 2 * len(bad), 2))
    assert {e.reason for e in columns.rejected.values()} == InvalidEvent.REASONS - gateway.REASONS
    assert_as_parse(columns, messages, fleet)


def test_values_on_the_limits_are_accepted_on_the_fast_path(fleet: Fleet, pool: list[Event]) -> None:
    event = next(e for e in pool if e.signals)
    name = sorted(event.signals)[0]
    lo, hi = fleet.models[event.model].signals[name].limits
    on_limits = [msgspec.structs.replace(event, signals={**event.signals, name: edge}) for edge in (lo, hi)]
    key, value, _ = wire(event)
    messages = [wire(e) for e in on_limits] + [(key, value, event.ts - DEFAULT_POLICY.max_future_s)]
    columns = decode_batch(messages, fleet)
    assert columns.parsed == 0 and list(columns.row) == [0, 1, 2]
    assert_as_parse(columns, messages, fleet)


BEYOND = [SEQ_MAX + 1, 2**64 - 1, 2**64, 10**40]
"""Seqs JSON can carry and `parse` refuses (`schema.SEQ_MAX` is the largest it takes)."""


def test_a_seq_beyond_int64_is_rejected_as_parse_rejects_it(fleet: Fleet, pool: list[Event]) -> None:
    """The largest seq takes the fast path into the int64 column; one past it goes to `parse`,
    whose rejection (reason and detail) the row gets, between clean rows; also when a valid seq
    follows it in the same object (msgspec keeps the last, but checks both)."""
    beyond = [wire(msgspec.structs.replace(pool[0], seq=seq)) for seq in BEYOND]
    key, value, received = wire(pool[0])
    twice = (key, value[:-1] + b', "seq": ' + str(2**64).encode() + b', "seq": 7}', received)
    largest = wire(msgspec.structs.replace(pool[1], seq=SEQ_MAX))
    messages = [wire(pool[2]), *beyond, twice, largest, wire(pool[3])]
    columns = decode_batch(messages, fleet)
    assert list(columns.row) == [0, 6, 7] and int(columns.seq[1]) == SEQ_MAX
    assert set(columns.rejected) == {1, 2, 3, 4, 5} and columns.parsed == 5
    assert {(e.reason, e.detail) for e in columns.rejected.values()} == {
        ("invalid_field", f"Expected `int` <= {SEQ_MAX} - at `$.seq`")}
    assert_as_parse(columns, messages, fleet)


def test_an_empty_batch(fleet: Fleet) -> None:
    columns = decode_batch([], fleet)
    assert len(columns.row) == 0 and columns.signals.shape == (0, len(columns.index.signals))


# --- the property ------------------------------------------------------------------------------

POLICIES = [DEFAULT_POLICY, Policy(max_bytes=900), Policy(max_future_s=0.0), Policy(max_depth=1),
            Policy(max_depth=2)]
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=6)
HUGE = "@huge@"
"""Stands for a number literal JSON or Python would not write (`LITERALS`)."""
LITERALS = [b"1e400", b"-1e999", b"9223372036854775807", b"9223372036854775808", b"18446744073709551615",
            b"18446744073709551616", b"1" + b"0" * 40, b"1" + b"0" * 400, b"NaN", b"Infinity", b"1.7976931348623157e308", b"-0.0",
            b"5e-324", b"0"]
FIELDS = ["schema", "robot_id", "seq", "ts", "sector", "site", "model", "mode", "signals", "ai_model_version",
          "firmware", "codes", "location", "config"]
BAD_VALUES = {"robot_id": ["a b", "", "r" * 129, "é"], "seq": [-1, 1.5, "1", *BEYOND], "schema": [2, 0], "ts": [0, -1.0],
              "mode": ["flying", ""], "site": ["", "x" * 65], "sector": ["x" * 65], "firmware": ["f" * 65],
              "codes": [["c"] * 33, [""]], "location": [{"lat": 91.0, "lon": 0.0}, {"lat": 1, "lon": 2, "x": 1}],
              "config": [{"Bad": "1"}, {"a" * 49: "1"}, {"ok": "v" * 65}]}


def mutate(data: st.DataObject, event: Event, fleet: Fleet) -> Message:
    """One message made from a valid event by one kind of change (or none)."""
    key, value, received = wire(event, delay=data.draw(st.sampled_from([0.02] * 5 + [-300.0, -299.999, -1e6])))
    doc: dict[str, Any] = msgspec.to_builtins(event)
    kind = data.draw(st.sampled_from([
        "clean", "key", "place", "mode", "limits", "clock", "cut", "extra", "missing", "huge", "utf8",
        "duplicate", "config", "signals", "type", "bytes", "location", "codes", "id"]))
    if kind == "key":
        key = data.draw(st.sampled_from([None, b"", key + b" ", key.upper(), b"someone-else"]))
    elif kind == "place":
        field = data.draw(st.sampled_from(["sector", "site", "model"]))
        known = {"sector": list(fleet.sectors), "model": list(fleet.models),
                 "site": [s for sec in fleet.sectors.values() for s in sec.sites]}[field]
        doc[field] = data.draw(st.sampled_from(known) | st.from_regex(r"[a-z0-9-]{1,70}", fullmatch=True)
                               | st.text(max_size=70))
        if data.draw(st.booleans()):
            doc["signals"] = {}  # no signal left to fail on an unknown model
    elif kind == "mode":
        doc["mode"] = data.draw(st.sampled_from(MODES) | st.text(max_size=10))
    elif kind == "limits":
        doc["signals"] = near_limits(data, doc["signals"], fleet.models[event.model].signals)
    elif kind == "clock":
        received = event.ts - data.draw(st.sampled_from([300.0, 299.999, 300.001, 0.0, -1.0, 1e9]))
        received = data.draw(st.sampled_from([received, float(np.nextafter(received, np.inf))]))
    elif kind == "extra":
        doc[data.draw(st.sampled_from(["extra", "Seq", "location_", "signal"]))] = data.draw(JSON)
    elif kind == "missing":
        doc.pop(data.draw(st.sampled_from(FIELDS)), None)
    elif kind == "duplicate":
        return key, duplicated(data, doc), received
    elif kind == "config":
        doc["config"] = data.draw(st.dictionaries(
            st.sampled_from(["ok", "a_1", "Bad", "", "ab\n", "a" * 48, "a" * 49, "é"]), st.text(max_size=66), max_size=4))
    elif kind == "signals":
        doc["signals"] = {**doc["signals"], **data.draw(st.dictionaries(
            st.sampled_from(["warp", "", *list(doc["signals"])]), st.floats(allow_nan=False), max_size=3))}
        if data.draw(st.booleans()):
            doc["signals"] = {}
    elif kind == "type":
        field = data.draw(st.sampled_from(FIELDS))
        doc[field] = data.draw(JSON | st.sampled_from(BAD_VALUES.get(field, [None])))
    elif kind == "location":
        doc["location"] = data.draw(st.none() | st.fixed_dictionaries(
            {"lat": st.floats(-91, 91), "lon": st.floats(-181, 181)}, optional={"floor": st.integers(-3, 3) | st.none()}))
    elif kind == "codes":
        doc["codes"] = data.draw(st.lists(st.text(max_size=66), max_size=34))
    elif kind == "id":
        doc["robot_id"] = event.robot_id + data.draw(st.sampled_from(["\n", "\n\n", ":x", "\x00"]))
        key = doc["robot_id"].encode()
    if kind == "huge":
        place = data.draw(st.sampled_from(["seq", "ts", "signal", "lat"]))
        if place == "lat":
            doc["location"] = {"lat": HUGE, "lon": 1.0}
        elif place == "signal" and doc["signals"]:
            doc["signals"] = {**doc["signals"], data.draw(st.sampled_from(sorted(doc["signals"]))): HUGE}
        else:
            doc[place] = HUGE
    raw = json.dumps(doc, ensure_ascii=data.draw(st.booleans())).encode()
    if kind == "cut":
        raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
    elif kind == "huge":
        raw = raw.replace(json.dumps(HUGE).encode(), data.draw(st.sampled_from(LITERALS)))
    elif kind == "utf8":
        at = data.draw(st.integers(0, len(raw)))
        raw = raw[:at] + data.draw(st.sampled_from([*INVALID_UTF8, "ü".encode()])) + raw[at:]
    elif kind == "bytes":
        raw = data.draw(st.binary(max_size=300))
    return key, raw, received


def near_limits(data: st.DataObject, signals: dict[str, float], catalogue: dict[str, Any]) -> dict[str, float]:
    """One signal set on, just inside or just outside a limit, or at a float extreme."""
    if not signals:
        return signals
    name = data.draw(st.sampled_from(sorted(signals)))
    lo, hi = catalogue[name].limits
    edge = data.draw(st.sampled_from([lo, hi]))
    value = data.draw(st.sampled_from([edge, float(np.nextafter(edge, np.inf)), float(np.nextafter(edge, -np.inf)),
                                       -0.0, 1.7976931348623157e308, -5e-324, edge - 1, edge + 1]))
    return {**signals, name: value}


def duplicated(data: st.DataObject, doc: dict[str, Any]) -> bytes:
    """The event with a field written twice, a bad value first or last (msgspec checks both)."""
    field = data.draw(st.sampled_from(sorted(BAD_VALUES)))
    bad = json.dumps({field: data.draw(st.sampled_from(BAD_VALUES[field]))})[1:-1].encode()
    raw = json.dumps(doc).encode()
    good = json.dumps({field: doc[field]})[1:-1].encode() if field in doc else bad
    if data.draw(st.booleans()):
        return raw[:-1] + b", " + bad + b", " + good + b"}"
    return raw[:-1] + b", " + good + b", " + bad + b"}"


@HYPOTHESIS
@given(st.data())
def test_every_row_of_a_mutated_batch_is_judged_as_parse_judges_it(fleet: Fleet, pool: list[Event],
                                                                  data: st.DataObject) -> None:
    events = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=12))
    messages = [mutate(data, e, fleet) for e in events]
    policy = data.draw(st.sampled_from(POLICIES))
    assert_as_parse(decode_batch(messages, fleet, policy), messages, fleet, policy)

"""twin.gateway: a site gateway's batch is judged and folded as the JSON reports it holds.

The oracle is the JSON path: each row renders to a report that decodes to the event the gateway
encoded, and a log of gateway records folds (on the batch engine and on the scalar `Fold`) to the
same twins, anomalies and rejections as the same events sent as JSON records at the same partitions,
offsets and broker times. Hostile batches: unreadable bytes, a robot twice, a row `parse` refuses, a
column missing or of another type: each refused with a reason, the other rows kept.
"""

from __future__ import annotations

import functools
import io
import random
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import polars as pl
import pyarrow as pa
import pyarrow.ipc as arrow_ipc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.seeds import read_detectors, read_fleet, read_scenario
from streams.worker.ingest import Held, LogMessage, changelog_items
from streams.worker.ingest import fold as worker_fold
from twin import gateway
from twin.batch_replay import BatchFold
from twin.exceptions import InvalidEvent
from twin.fleet_fold import Rules
from twin.record import Record
from twin.replay import Fold
from twin.schema import Event, Location
from twin.score.ground_truth import crc_partitions
from twin.sim import FleetSim, load_scenario
from twin.state import encode_twin
from twin.validate import decode

SEEDS = Path(__file__).resolve().parents[2] / "seeds"
PARTITIONS = 3


@functools.cache
def rules() -> Rules:
    return Rules(read_fleet(SEEDS), read_detectors(SEEDS))


@functools.cache
def chaos_ticks(robots: int = 400, seconds: int = 30) -> tuple[tuple[Event, ...], ...]:
    doc = msgspec.to_builtins(read_scenario(SEEDS, "chaos"))
    sim = FleetSim(rules().fleet, load_scenario({**doc, "robots": robots, "duration_s": seconds}, "chaos"), seed=5)
    return tuple(tuple(sim.step()) for _ in range(sim.ticks))


def logs() -> tuple[list[Record], list[Record]]:
    """The chaos run as gateway records, and as JSON records at each row's partition, offset and time."""
    offsets = [0] * PARTITIONS
    batched: list[Record] = []
    plain: list[Record] = []
    for k, tick in enumerate(chaos_ticks()):
        if k % 7 == 3:  # a report parse refuses, now and then
            tick = (msgspec.structs.replace(tick[k], signals={"no_such_signal": 1.0}), *tick[:k], *tick[k + 1:])
        for b in gateway.batches(list(tick), crc_partitions(PARTITIONS)):
            at, received = offsets[b.partition], round(max(e.ts for e in b.events) * 1000 + 50) / 1000
            offsets[b.partition] += 1
            batched.append(Record("telemetry", b.partition, at, received, b.site.encode(), gateway.encode(b.events)))
            plain += [Record("telemetry", b.partition, at, received, e.robot_id.encode(), msgspec.json.encode(e))
                      for e in b.events]
    return batched, plain


def record(value: bytes, received: float = 1.7e9) -> Record:
    return Record("telemetry", 2, 17, received, b"site-a", value)


def ipc(frame: pl.DataFrame) -> bytes:
    out = io.BytesIO()
    frame.write_ipc_stream(out)
    return out.getvalue()


def test_every_row_decodes_to_the_event_encoded() -> None:
    events = [e for tick in chaos_ticks()[:5] for e in tick]
    located = Event(schema=1, robot_id="r-1", seq=3, ts=1.7e9, sector=events[0].sector, site=events[0].site,
                    model=events[0].model, mode="working", signals={}, codes=("E-STOP", "F-1"),
                    location=Location(lat=1.5, lon=-2.25, floor=3), config={"speed_limit": "0.5"})
    for b in gateway.batches([*events, located], crc_partitions(PARTITIONS)):
        rows, rejected, indices = gateway.unpack(record(gateway.encode(b.events)))
        assert not rejected and indices == list(range(len(b.events)))
        assert [decode(r.value) for r in rows] == b.events
        assert [r.key for r in rows] == [e.robot_id.encode() for e in b.events]
        assert {(r.partition, r.offset, r.timestamp) for r in rows} == {(2, 17, 1.7e9)}


def test_batches_group_by_site_and_home_partition_one_report_per_robot() -> None:
    tick = list(chaos_ticks()[0])
    partition_of = crc_partitions(PARTITIONS)
    out = gateway.batches([*tick, *tick], partition_of)  # every robot twice: two records per group
    assert sorted(e.robot_id for b in out for e in b.events) == sorted(e.robot_id for e in [*tick, *tick])
    for b in out:
        assert {e.site for e in b.events} == {b.site}
        assert {partition_of(e.robot_id.encode()) for e in b.events} == {b.partition}
        assert len({e.robot_id for e in b.events}) == len(b.events)
    assert len(out) == 2 * len({(e.site, partition_of(e.robot_id.encode())) for e in tick})


def test_a_gateway_log_folds_as_the_same_reports_sent_as_json() -> None:
    batched, plain = logs()
    assert len(batched) < len(plain) / 2
    for fold_type in (BatchFold, Fold):
        a, b = fold_type(rules()), fold_type(rules())
        for r in batched:
            a.feed(r)
        for r in plain:
            b.feed(r)
        assert [encode_twin(t) for t in a.twins.values()] == [encode_twin(t) for t in b.twins.values()]
        assert a.anomalies == b.anomalies and len(a.anomalies) > 0
        assert a.rejected == b.rejected and {r.reason for r in a.rejected} == {"unknown_signal"}


def test_a_json_record_is_its_own_row() -> None:
    plain = Record("telemetry", 0, 5, 1.0, b"r-1", b'{"schema": 1}')
    assert gateway.unpack(plain) == ([plain], [], [0])
    check = Record("check", 0, 5, 1.0, b"r-1", gateway.MAGIC)
    assert gateway.unpack(check).rows == [check]


def test_unreadable_bytes_refuse_the_whole_batch() -> None:
    rows, rejected, _ = gateway.unpack(record(gateway.MAGIC + b"not arrow"))
    assert rows == [] and [(r.value, e.reason) for r, e in rejected] == [(gateway.MAGIC + b"not arrow", "undecodable")]
    whole = gateway.encode(list(chaos_ticks()[0][:3]))
    for cut in (whole[:-8], whole[:-300], whole[:len(whole) // 2]):
        rows, rejected, _ = gateway.unpack(record(cut))
        assert rows == [] and [e.reason for _, e in rejected] == ["undecodable"]


def test_a_robot_twice_keeps_its_first_row_and_refuses_the_next() -> None:
    first, second = chaos_ticks()[0][0], chaos_ticks()[1][0]
    other = chaos_ticks()[0][1]
    rows, rejected, indices = gateway.unpack(record(gateway.encode([first, other, second])))
    assert [decode(r.value) for r in rows] == [first, other] and indices == [0, 1]
    assert [(decode(r.value), e.reason) for r, e in rejected] == [(second, "repeated_robot")]
    assert "row 2" in rejected[0][1].detail


def test_rows_parse_refuses_are_rejected_with_its_reason_the_rest_folded() -> None:
    good = chaos_ticks()[0][0]
    bad = msgspec.structs.replace(chaos_ticks()[0][1], signals={"no_such_signal": 1.0})
    fold = BatchFold(rules())
    fold.feed(record(gateway.encode([good, bad]), received=good.ts + 0.05))
    assert list(fold.twins) == [good.robot_id]
    assert [(r.key, r.reason) for r in fold.rejected] == [(bad.robot_id.encode(), "unknown_signal")]


@pytest.mark.parametrize(("change", "reason"), [
    (lambda f: f.drop("mode"), "missing_field"),
    (lambda f: f.with_columns(pl.col("seq").cast(pl.String)), "invalid_field"),
    (lambda f: f.with_columns(pl.lit(None, pl.Float64).alias("ts")), "invalid_field"),
])
def test_a_column_missing_or_mistyped_is_judged_as_the_json_field(change, reason) -> None:  # type: ignore[no-untyped-def]
    events = list(chaos_ticks()[0][:2])
    frame = change(pl.read_ipc_stream(gateway.encode(events)))
    rows, rejected, _ = gateway.unpack(record(ipc(frame)))
    assert not rejected and len(rows) == 2
    fold = BatchFold(rules())
    for row in rows:
        fold.feed(row)
    assert [r.reason for r in fold.rejected] == [reason, reason] and not fold.twins


def test_a_row_that_cannot_be_rendered_refuses_that_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a row holds that JSON cannot (no case known with these column types), the guard
    refuses that row alone: one bad row must not fail the batch, which would be read again forever."""
    events = list(chaos_ticks()[0][:2])
    render = gateway._json

    def failing(report: dict[str, Any]) -> bytes:
        if report["robot_id"] == events[1].robot_id:
            raise TypeError("cannot render")
        return render(report)
    monkeypatch.setattr(gateway, "_json", failing)
    rows, rejected, indices = gateway.unpack(record(gateway.encode(events)))
    assert [decode(r.value) for r in rows] == events[:1] and indices == [0]
    assert [(r.key, e.reason) for r, e in rejected] == [(events[1].robot_id.encode(), "undecodable")]


def test_signals_are_columns_and_a_row_lacking_one_leaves_it_out() -> None:
    """The struct holds a field per signal of the batch; a row without it reports without it."""
    one, two = chaos_ticks()[0][0], chaos_ticks()[0][1]
    two = msgspec.structs.replace(two, signals={"made_up": 2.5})
    frame = pl.read_ipc_stream(gateway.encode([one, two]))
    signals = frame.schema["signals"]
    assert isinstance(signals, pl.Struct) and {f.name for f in signals.fields} == {*one.signals, "made_up"}
    assert [decode(r.value).signals for r in gateway.unpack(record(ipc(frame))).rows] == [one.signals, two.signals]



def worker(messages: list[LogMessage], seed: int) -> tuple[list[Any], Counter[str], list[Any], dict[str, bytes]]:
    """The worker's batch step (`streams.worker.ingest.fold`) over `messages` in drawn batch sizes: what
    it publishes, its outcome counts, its dead letters (key, value, reason, headers) and the twins."""
    held, rng, at = Held(rules()), random.Random(seed), 0
    found: list[Any] = []
    outcomes: Counter[str] = Counter()
    dead: list[Any] = []
    touched: dict[str, int] = {}
    while at < len(messages):
        size = rng.choice([1, 5, 60, 400])
        batch = worker_fold(held, rules(), {}, messages[at:at + size], "checks")
        at += size
        found += batch.found
        outcomes.update(batch.outcomes)
        dead += [(m.key, m.value, e.reason, m.headers) for m, e in batch.rejected]
        touched.update(batch.touched)
    return found, outcomes, dead, {r: raw for r, (_, raw) in changelog_items(held, touched).items()}


def as_messages(records: list[Record]) -> list[LogMessage]:
    return [LogMessage("telemetry", r.partition, r.offset, r.timestamp, r.key, r.value, (("via", b"x"),))
            for r in records]


def test_the_worker_folds_a_gateway_log_as_the_json_log() -> None:
    batched, plain = logs()
    found, outcomes, dead, twins = worker(as_messages(batched), 3)
    json_found, json_outcomes, json_dead, json_twins = worker(as_messages(plain), 4)
    assert (found, outcomes, twins) == (json_found, json_outcomes, json_twins)
    assert found and twins and outcomes["applied"] > 0 and outcomes["rejected"] > 0
    # the same dead letters, each with its row's number in the batch beside the record's own headers
    assert [(k, decode(v), why) for k, v, why, _ in dead] == [(k, decode(v), why) for k, v, why, _ in json_dead]
    assert all(h[0] == ("via", b"x") and h[1][0] == "gateway_row" for *_, h in dead)


def test_the_worker_dead_letters_a_repeated_robot_and_an_unreadable_batch() -> None:
    first, other, second = chaos_ticks()[0][0], chaos_ticks()[0][1], chaos_ticks()[1][0]
    unknown = msgspec.structs.replace(chaos_ticks()[0][2], signals={"no_such_signal": 1.0})
    good = Record("telemetry", 0, 0, second.ts + 0.05, b"site", gateway.encode([first, other, second, unknown]))
    bad = Record("telemetry", 0, 1, second.ts + 0.05, b"site", gateway.MAGIC + b"junk")
    _, outcomes, dead, twins = worker(as_messages([good, bad]), 5)
    assert sorted(twins) == sorted([first.robot_id, other.robot_id]) and outcomes["rejected"] == 3
    by_reason = {d[2]: d for d in dead}
    assert len(by_reason) == 3
    repeated, refused, whole = by_reason["repeated_robot"], by_reason["unknown_signal"], by_reason["undecodable"]
    key, value, reason, headers = repeated
    assert (key, decode(value), reason, headers) == (second.robot_id.encode(), second, "repeated_robot", (("via", b"x"),))
    key, value, reason, headers = refused
    assert (key, decode(value), reason) == (unknown.robot_id.encode(), unknown, "unknown_signal")
    assert headers == (("via", b"x"), ("gateway_row", b"3"))
    assert whole == (b"site", gateway.MAGIC + b"junk", "undecodable", (("via", b"x"),))


def test_a_batch_without_any_signal_or_setting_keeps_every_row() -> None:
    events = [msgspec.structs.replace(e, signals={}, config=msgspec.UNSET) for e in chaos_ticks()[0][:3]]
    rows, rejected, _ = gateway.unpack(record(gateway.encode(events)))
    assert [decode(r.value) for r in rows] == events and not rejected


def test_mutated_batches_never_raise_out_of_unpack() -> None:
    """Flipped bytes and cuts, as a broken or hostile gateway sends them: every one ends as rows or a
    refusal. (polars' IPC reader, used at first, aborted the process on one of these.)"""
    whole = gateway.encode(list(chaos_ticks()[0][:20]))
    rng, outcomes = random.Random(7), Counter[str]()
    for _ in range(3000):
        mutated = bytearray(whole)
        for _ in range(rng.choice([1, 2, 8, 32])):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        if rng.random() < 0.2:
            mutated = mutated[:rng.randrange(len(mutated))] + gateway.END
        rows, rejected, _ = gateway.unpack(record(bytes(mutated)))
        outcomes["rows" if rows else rejected[0][1].reason] += 1
    assert set(outcomes) == {"rows", "undecodable"} and min(outcomes.values()) > 300, outcomes


def test_compressed_or_oversized_batches_are_refused_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    events = list(chaos_ticks()[0][:5])
    out = io.BytesIO()
    pl.read_ipc_stream(gateway.encode(events)).write_ipc_stream(out, compression="zstd")
    rows, rejected, _ = gateway.unpack(record(out.getvalue()))
    assert rows == [] and "compressed" in rejected[0][1].detail
    monkeypatch.setattr(gateway, "MAX_ROWS", 4)
    rows, rejected, _ = gateway.unpack(record(gateway.encode(events)))
    assert rows == [] and "more than 4 rows" in rejected[0][1].detail
    assert len(gateway.unpack(record(gateway.encode(events[:4]))).rows) == 4


def test_a_robot_id_column_of_another_type_is_judged_not_raised() -> None:
    """Found in review: a list-typed `robot_id` made the repeated-robot check raise (unhashable), and a
    batch that raises is read again for ever. Its rows are now judged as the JSON they render to."""
    table = pa.table({"robot_id": pa.array([["a"], ["a"]], pa.list_(pa.string())), "seq": [1, 2]})
    out = pa.BufferOutputStream()
    with arrow_ipc.new_stream(out, table.schema) as writer:
        writer.write_table(table)
    rows, rejected, _ = gateway.unpack(record(out.getvalue().to_pybytes()))
    assert len(rows) == 2 and not rejected and {r.key for r in rows} == {None}
    fold = BatchFold(rules())
    for row in rows:
        fold.feed(row)
    assert [r.reason for r in fold.rejected] == ["invalid_field", "invalid_field"]


_VALUES: dict[str, Any] = {
    "int": (pa.int64(), st.integers(-2**63, 2**63 - 1)),
    "float": (pa.float64(), st.floats(allow_nan=True, allow_infinity=True)),
    "text": (pa.string(), st.text(max_size=8)),
    "bytes": (pa.binary(), st.binary(max_size=8)),
    "bool": (pa.bool_(), st.booleans()),
    "texts": (pa.list_(pa.string()), st.lists(st.text(max_size=4), max_size=3)),
    "numbers": (pa.struct([("speed_mps", pa.float64()), ("x", pa.int64())]),
                st.fixed_dictionaries({"speed_mps": st.floats(), "x": st.integers(-9, 9)})),
    "empty": (pa.struct([]), st.just({})),
    "time": (pa.timestamp("ms"), st.integers(0, 2**40)),
}
_NAMES = ["schema", "robot_id", "seq", "ts", "sector", "site", "model", "mode", "signals", "codes", "location",
          "config", "extra"]


@st.composite
def odd_batches(draw: st.DrawFn) -> bytes:
    """Arrow streams with any of `Event`'s columns (and one more), each of any of a few types, any values."""
    rows = draw(st.integers(1, 4))
    columns = {}
    for name in draw(st.lists(st.sampled_from(_NAMES), unique=True, min_size=1)):
        kind, values = _VALUES[draw(st.sampled_from(sorted(_VALUES)))]
        columns[name] = pa.array(draw(st.lists(st.none() | values, min_size=rows, max_size=rows)), kind)
    table = pa.table(columns)
    out = pa.BufferOutputStream()
    with arrow_ipc.new_stream(out, table.schema) as writer:
        writer.write_table(table)
    return bytes(out.getvalue().to_pybytes())


@settings(max_examples=300, deadline=None)
@given(odd_batches())
def test_any_columns_of_any_type_are_judged_never_raised(value: bytes) -> None:
    rows, rejected, indices = gateway.unpack(record(value))
    assert (rows or rejected) and len(rows) == len(indices)
    assert all(e.reason in InvalidEvent.REASONS for _, e in rejected)
    fold = BatchFold(rules())
    for row in rows:
        fold.feed(row)
    assert len(fold.rejected) + len(fold.twins) >= (1 if rows else 0)

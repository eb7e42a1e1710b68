"""Checkpoints: a state snapshotted in changed rows, encoded, decoded and merged gives every robot's twin
back byte for byte; chunks stay under their limit and decode alone; bad bytes fail with a named reason."""

from __future__ import annotations

import random
import zlib
from pathlib import Path
from typing import Any

import msgspec
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.seeds import read_scenario
from twin.batch_reduce import ReduceState, catalogues_of, from_twins, reduce_batch, to_twin
from tests.unit.test_batch_fold import chaos_log, cohorts_view, quick_rules, record_view, rules, seeded
from twin import batch_fold as bf
from twin.checkpoint import (LIMIT, MAGIC, VERSION, Checkpoint, CheckpointError, _Envelope, _ipc, complete, decode, encode,
                             merge, restore, snapshot, snapshot_fold)
from twin.desired import DesiredChange, DesiredRules, Selector, add_change
from twin.fleet_fold import FleetState, RecordOut, Rules, on_record
from twin.record import Record
from twin.detect.watch import Open, SignalWatch, Watch
from twin.fleet import Fleet
from twin.schema import MODES, SEQ_MAX, Event, Location
from twin.sim import FleetSim
from twin.sim.scenario import load_scenario
from twin.state import Twin, encode_twin

pytestmark = pytest.mark.usefixtures("join_every_batch")
SEEDS = Path(__file__).resolve().parents[2] / "seeds"


def same_twins(got: ReduceState, want: ReduceState) -> None:
    assert sorted(got.robot_ids) == sorted(want.robot_ids)
    for robot in want.robot_ids:
        assert encode_twin(to_twin(got, robot)) == encode_twin(to_twin(want, robot)), robot


def checkpointed(state: ReduceState, events: list[Event], received: list[float], cuts: list[int],
                 limit: int, rnd: random.Random) -> list[Checkpoint]:
    """Fold `events` in batches ending at `cuts`; after each, a checkpoint of the batch's robots, through
    bytes (its chunks decoded alone, in shuffled order: parts of one checkpoint are disjoint)."""
    out: list[Checkpoint] = []
    start = 0
    for end in [*cuts, len(events)]:
        if end <= start:
            continue
        reduce_batch(state, events[start:end], received[start:end])
        changed = [e.robot_id for e in events[start:end]]
        chunks = encode(snapshot(state, changed, partition=3, next_offset=end), limit=limit)
        assert all(len(chunk) <= limit for chunk in chunks)
        parts = [decode(chunk) for chunk in chunks]
        rnd.shuffle(parts)
        out.extend(parts)
        start = end
    return out


# -- chaos: the simulator's worst ------------------------------------------------------------------

@pytest.fixture(scope="module")
def chaos(fleet: Fleet) -> tuple[list[Event], list[float]]:
    scenario = read_scenario(SEEDS, "chaos")
    small = load_scenario({**msgspec.to_builtins(scenario), "robots": 80, "duration_s": 120}, "chaos")
    sim = FleetSim(fleet, small, seed=5)
    events = [e for _ in range(sim.ticks) for e in sim.step()]
    rnd = random.Random(3)
    return events, [e.ts + 0.05 + rnd.random() for e in events]


@pytest.mark.parametrize("limit", [LIMIT, 24 * 1024])
def test_chaos_checkpoints_merge_to_the_same_twins_and_fold_on_alike(
        chaos: tuple[list[Event], list[float]], fleet: Fleet, limit: int) -> None:
    events, received = chaos
    rnd = random.Random(limit)
    cut = len(events) * 2 // 3
    cuts = sorted(rnd.sample(range(1, cut), 6)) + [cut]
    state = ReduceState(catalogues_of(fleet))
    checkpoints = checkpointed(state, events[:cut], received[:cut], cuts, limit, rnd)
    assert len(checkpoints) > (7 if limit < LIMIT else 6)  # several checkpoints; small limits: several chunks
    signals = pl.concat([cp.groups["signals"] for cp in checkpoints])
    assert 0 < signals["ts"].null_count() < signals.height  # signals holding their own (ts, seq) travel too
    merged, offset = merge(checkpoints, catalogues_of(fleet))
    assert offset == cut
    same_twins(merged, state)
    for folded in (state, merged):  # recovery re-folds the log from the offset: the same twins again
        reduce_batch(folded, events[offset:], received[offset:])
    same_twins(merged, state)


def test_a_full_checkpoint_of_a_chaos_state_in_small_chunks_each_decodable_alone(
        chaos: tuple[list[Event], list[float]], fleet: Fleet) -> None:
    events, received = chaos
    state = ReduceState(catalogues_of(fleet))
    reduce_batch(state, events, received)
    limit = 16 * 1024
    chunks = encode(snapshot(state, state.robot_ids, partition=0, next_offset=len(events), full=True), limit=limit)
    assert len(chunks) > 3 and max(map(len, chunks)) <= limit
    parts = [decode(chunk) for chunk in chunks]
    assert [p.part for p in parts] == list(range(len(chunks))) and {p.parts for p in parts} == {len(chunks)}
    robots = [r for p in parts for r in p.robot_ids]
    assert sorted(robots) == sorted(state.robot_ids)  # each robot in exactly one chunk
    for part in parts[:2]:  # alone, a chunk is a state of its robots
        alone, _ = merge([Checkpoint(part.partition, part.next_offset, part.groups, part.full)])
        for robot in part.robot_ids:
            assert encode_twin(to_twin(alone, robot)) == encode_twin(to_twin(state, robot))


def test_a_robot_that_alone_exceeds_the_limit_is_refused(chaos: tuple[list[Event], list[float]]) -> None:
    events, received = chaos
    state = reduce_batch(ReduceState(), events[:50], received[:50])[0]
    with pytest.raises(ValueError, match="alone encodes to .* over the limit of 2000"):
        encode(snapshot(state, state.robot_ids, partition=0, next_offset=50), limit=2000)


# -- properties: new robots, signals added, values first seen after an earlier checkpoint ----------

NAMES = ("a_temp", "b_speed", "c_current", "d_pressure", "e_soc")
WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta")
CONFIGS: list[dict[str, str] | msgspec.UnsetType] = [msgspec.UNSET, {}, {"k": "1"}, {"k": "2", "j": "x"}]
floats = st.floats(allow_nan=False, width=64)


@st.composite
def histories(draw: st.DrawFn) -> list[Event]:
    """Events of a few robots whose labels, codes, configs and signals are drawn as the log goes, so
    later batches bring robots, signal names and interned values that earlier checkpoints never held."""
    events = []
    for _ in range(draw(st.integers(1, 40))):
        robot = draw(st.sampled_from(["r-1", "r-2", "r-3", "r-4", "r-5"]))
        word = st.sampled_from(WORDS)
        events.append(Event(
            schema=1, robot_id=robot, seq=draw(st.sampled_from([0, 1, 2, 3, 5, 8, 70, 200, SEQ_MAX])),
            ts=draw(st.sampled_from([1.0, 2.0, 2.5, 9.0])), sector=draw(word), site=draw(word), model=draw(word),
            mode=draw(st.sampled_from(MODES)), signals=draw(st.dictionaries(st.sampled_from(NAMES), floats)),
            ai_model_version=draw(word), firmware=draw(word),
            codes=draw(st.sampled_from([(), ("E-STOP",), ("A", "B"), ("B", "A")])),
            location=draw(st.sampled_from([None, Location(lat=1.5, lon=-2.0), Location(lat=0.0, lon=0.0, floor=-1)])),
            config=draw(st.sampled_from(CONFIGS)),
        ))
    return events


@given(histories(), st.randoms(use_true_random=False), st.sampled_from([12 * 1024, 16 * 1024, LIMIT]),
       st.booleans())
@settings(max_examples=60, deadline=None)
def test_checkpoints_of_any_history_merge_to_the_same_twins(
        events: list[Event], rnd: Any, limit: int, with_catalogue: bool) -> None:
    received = [rnd.choice([1.0, 5.0, 3.0]) for _ in events]
    catalogues = {"alpha": NAMES[:2]} if with_catalogue else None
    state = ReduceState(catalogues)
    cuts = sorted(rnd.sample(range(len(events) + 1), min(len(events) + 1, rnd.randint(0, 5))))
    checkpoints = checkpointed(state, events, received, cuts, limit, rnd)
    merged, offset = merge(checkpoints, catalogues)
    assert offset == len(events)
    same_twins(merged, state)


def test_a_checkpoint_carries_the_values_its_rows_use_and_no_other() -> None:
    """After a first checkpoint, r-1 reports a new signal, site, version and config and r-2 appears: the
    second checkpoint holds just their rows and the values they name, and decodes alone."""
    def event(robot: str, seq: int, site: str, version: str, signals: dict[str, float],
              config: dict[str, str] | msgspec.UnsetType = msgspec.UNSET) -> Event:
        return Event(schema=1, robot_id=robot, seq=seq, ts=float(seq), sector="logistics", site=site, model="amr",
                     mode="working", signals=signals, ai_model_version=version, firmware="fw-1", config=config)
    state = ReduceState()
    first = [event("r-0", 1, "s-old", "v-1", {"a_temp": 1.0}), event("r-1", 1, "s-old", "v-1", {"a_temp": 2.0})]
    reduce_batch(state, first, [1.0, 1.0])
    old = decode(encode(snapshot(state, ["r-0", "r-1"], partition=0, next_offset=2))[0])
    second = [event("r-1", 2, "s-new", "v-2", {"a_temp": 3.0, "b_speed": 0.5}, {"mode": "fast"}),
              event("r-2", 1, "s-new", "v-3", {"e_soc": 80.0})]
    reduce_batch(state, second, [2.0, 2.0])
    new = decode(encode(snapshot(state, ["r-1", "r-2", "r-1"], partition=0, next_offset=4))[0])
    assert sorted(new.robot_ids) == ["r-1", "r-2"]
    assert set(new.groups["strings"]["value"]) == {"logistics", "s-new", "amr", "v-2", "v-3", "fw-1", "working",
                                                   "a_temp", "b_speed", "e_soc"}  # no s-old, no v-1
    assert sorted(new.groups["configs"].rows()) == [([], []), (["mode"], ["fast"])]
    alone, _ = merge([new])
    assert encode_twin(to_twin(alone, "r-1")) == encode_twin(to_twin(state, "r-1"))
    merged, offset = merge([old, new])
    assert offset == 4
    same_twins(merged, state)


def test_fields_the_reducer_does_not_touch_travel_in_their_own_group(chaos: tuple[list[Event], list[float]]) -> None:
    events, received = chaos
    state = reduce_batch(ReduceState(), events[:400], received[:400])[0]
    twins = [to_twin(state, robot) for robot in state.robot_ids]
    watch = Watch(signals=[SignalWatch(out=2, hits=150)], interval=1.25,
                  open=[Open("band", "battery_temp_c", 12.5, 1.5, "warning")])
    twins[0] = msgspec.structs.replace(twins[0], watch=watch, partition=3, offset=41, check_offset=7)
    twins[1] = msgspec.structs.replace(twins[1], offset=9)
    loaded = from_twins(twins)
    checkpoint = snapshot(loaded, loaded.robot_ids, partition=3, next_offset=42)
    assert checkpoint.groups["extras"].height == 2
    merged, _ = merge([decode(chunk) for chunk in encode(checkpoint)])
    for twin in twins:
        assert encode_twin(to_twin(merged, twin.robot_id)) == encode_twin(twin)
    plain = snapshot(state, state.robot_ids, partition=3, next_offset=42)
    assert "extras" not in plain.groups and "extras" not in decode(encode(plain)[0]).groups


# -- merge order and completeness ------------------------------------------------------------------

@pytest.fixture
def two(chaos: tuple[list[Event], list[float]]) -> tuple[ReduceState, Checkpoint, Checkpoint]:
    """The same robots checkpointed at offset 300 and, after more events, at 600."""
    events, received = chaos
    state = reduce_batch(ReduceState(), events[:300], received[:300])[0]
    old = snapshot(state, state.robot_ids, partition=1, next_offset=300)
    reduce_batch(state, events[300:600], received[300:600])
    return state, old, snapshot(state, state.robot_ids, partition=1, next_offset=600)


def test_the_newest_row_of_a_robot_wins_and_the_offset_is_the_newest(
        two: tuple[ReduceState, Checkpoint, Checkpoint]) -> None:
    state, old, new = two
    merged, offset = merge([old, new])
    assert offset == 600
    same_twins(merged, state)
    older, _ = merge([old])
    robot = state.robot_ids[0]
    assert encode_twin(to_twin(older, robot)) != encode_twin(to_twin(state, robot))  # the order mattered


@pytest.mark.parametrize(("make", "error"), [
    (lambda old, new: [new, old], "offset 300 after one at 600: not oldest first"),
    (lambda old, new: [old, Checkpoint(2, 600, new.groups)], "several partitions"),
    (lambda old, new: [old, Checkpoint(1, 600, new.groups, part=0, parts=2)], r"parts \[0\] of 2"),
    (lambda old, new: [Checkpoint(1, 300, old.groups, part=1, parts=2)] * 2, r"parts \[1, 1\] of 2"),
    (lambda old, new: [], "no checkpoint"),
])
def test_checkpoints_out_of_order_or_incomplete_are_refused(
        two: tuple[ReduceState, Checkpoint, Checkpoint], make: Any, error: str) -> None:
    _, old, new = two
    with pytest.raises(CheckpointError, match=error):
        merge(make(old, new))


def test_a_checkpoint_broken_off_by_a_crash_is_left_out_and_its_rewrite_counts(
        chaos: tuple[list[Event], list[float]], fleet: Fleet) -> None:
    """Epoch 1 checkpoints at 300, then crashes after two of the three chunks of its checkpoint at 600
    reach the topic. Epoch 2 recovers from 300, re-folds to 600 and checkpoints every robot it
    touched, at 600 again, in a different number of chunks."""
    events, received = chaos
    state = reduce_batch(ReduceState(catalogues_of(fleet)), events[:300], received[:300])[0]
    base = [decode(c) for c in encode(snapshot(state, state.robot_ids, partition=0, next_offset=300, epoch=1))]
    reduce_batch(state, events[300:600], received[300:600])
    touched = {e.robot_id for e in events[300:600]}
    broken = encode(snapshot(state, touched, partition=0, next_offset=600, epoch=1), limit=24 * 1024)
    assert len(broken) >= 3
    rewrite = encode(snapshot(state, touched, partition=0, next_offset=600, epoch=2), limit=48 * 1024)
    assert len(rewrite) != len(broken)
    log = base + [decode(c) for c in broken[:2]] + [decode(c) for c in rewrite]
    with pytest.raises(CheckpointError, match=rf"offset 600 \(epoch 1\): parts \[0, 1\] of {len(broken)}"):
        merge(log)
    kept = complete(log)
    assert len(kept) == len(base) + len(rewrite) and all(cp.epoch == 2 for cp in kept[len(base):])
    merged, offset = merge(kept, catalogues_of(fleet))
    assert offset == 600
    same_twins(merged, state)


# -- bad bytes: a clear error naming what is wrong -------------------------------------------------

def rewrapped(chunk: bytes, **change: Any) -> bytes:
    """The chunk with envelope fields changed (and a correct CRC): damage the CRC does not catch."""
    env = msgspec.msgpack.decode(chunk[12:], type=_Envelope)
    body = msgspec.msgpack.encode(msgspec.structs.replace(env, **change))
    return MAGIC + zlib.crc32(body).to_bytes(4, "big") + body


@pytest.fixture
def chunk(two: tuple[ReduceState, Checkpoint, Checkpoint]) -> bytes:
    return encode(two[2])[0]


def test_truncated_or_corrupt_chunks_are_named(chunk: bytes) -> None:
    for cut in (len(chunk) - 1, len(chunk) // 2, 13):
        with pytest.raises(CheckpointError, match="corrupt or truncated: CRC-32"):
            decode(chunk[:cut])
    for at in (20, len(chunk) // 2, len(chunk) - 3):
        flipped = bytearray(chunk)
        flipped[at] ^= 0x10
        with pytest.raises(CheckpointError, match="corrupt or truncated"):
            decode(bytes(flipped))
    for wrong in (b"", chunk[:5], b"XXXXXXXX" + chunk[8:]):
        with pytest.raises(CheckpointError, match="not a checkpoint chunk"):
            decode(wrong)


def test_chunks_a_reader_cannot_understand_are_named(chunk: bytes) -> None:
    env = msgspec.msgpack.decode(chunk[12:], type=_Envelope)
    robots = pl.read_ipc_stream(env.groups["robots"])
    signals = pl.read_ipc_stream(env.groups["signals"])
    assert signals["robot"].n_unique() > 1 and signals["seq"].null_count()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"version": 99}, f"format version 99, this reader knows up to {VERSION}"),
        ({"groups": {**env.groups, "watches": env.groups["strings"]}}, "unknown column group 'watches'"),
        ({"groups": {k: v for k, v in env.groups.items() if k != "codes"}}, r"column groups \['codes'\] missing"),
        ({"groups": {**env.groups, "signals": env.groups["signals"][:-40]}},
         "group 'signals' is not a complete Arrow IPC stream: no end-of-stream marker"),
        ({"groups": {**env.groups, "signals": env.groups["signals"][:100] + env.groups["signals"][-8:]}},
         "group 'signals' is not a complete Arrow IPC stream: .*error"),
        ({"groups": {**env.groups, "robots": _ipc(robots.with_columns(pl.col("ts").cast(pl.Float32)))}},
         "group 'robots' columns differ from the format"),
        ({"groups": {**env.groups, "robots": _ipc(robots.with_columns(pl.col("site") + 10_000))}},
         "robots.site points outside its table"),
        ({"groups": {**env.groups, "robots": _ipc(pl.concat([robots, robots.head(1)]))}},
         "robots.robot_id names a robot twice"),
        ({"groups": {**env.groups, "robots": _ipc(robots.with_columns(pl.lit(3, pl.UInt8).alias("loc_kind")))}},
         "robots.loc_kind above 2"),
        ({"groups": {**env.groups, "robots": _ipc(robots.with_columns(pl.col("sector").alias("mode")))}},
         "robots.mode names an unknown mode"),
        ({"groups": {**env.groups, "signals": _ipc(signals.reverse())}}, "signals not ordered by robot"),
        ({"groups": {**env.groups, "signals": _ipc(signals.with_columns(pl.lit(1.0).alias("ts")))}},
         "a signal has only one of ts and seq"),
        ({"part": 4, "parts": 2}, "part number out of range"),
    ]
    for change, error in cases:
        with pytest.raises(CheckpointError, match=error) as caught:
            decode(rewrapped(chunk, **change))
        assert "checkpoint of partition 1 at offset 600" in str(caught.value) or "version" in str(change)
    decode(rewrapped(chunk))  # the rewrapping itself is harmless


# -- a whole fold: reducer rows, detector state and the fleet state -------------------------------

def through_bytes(checkpoint: Checkpoint, limit: int) -> list[Checkpoint]:
    chunks = encode(checkpoint, limit=limit)
    assert all(len(chunk) <= limit for chunk in chunks)
    return [decode(chunk) for chunk in chunks]


def fold(state: bf.FoldState, rules: Rules, records: tuple[Record, ...], size: int) -> list[RecordOut]:
    outs: list[RecordOut] = []
    for at in range(0, len(records), size):
        outs += bf.fold_batch(state, rules, list(records[at:at + size]))[1]
    return outs


def keyed(records: tuple[Record, ...], state: bf.FoldState) -> list[str]:
    """The robots the records name that have a twin: what a worker counts as changed by them."""
    return [rid for r in records if r.key and (rid := r.key.decode(errors="replace")) in state.red.slot_of]


def desired() -> FleetState:
    change = DesiredChange(change_id="c1", ts=0.0, principal="operator", reason="test", field="ai_model",
                           value="policy-9.9.9", selector=Selector(model="amr"))
    return FleetState(desired=add_change(DesiredRules(), change))


@pytest.mark.parametrize("case", ["plain", "cohorts", "desired"])
def test_a_fold_restored_from_checkpoints_folds_on_as_straight_through(case: str) -> None:
    """Fold records A, checkpoint (full), fold B, checkpoint (the robots B names), restore (into a fresh
    state, and the incremental one into the state restored from the full one), fold C: every record's
    outputs and every twin (watch included) as `on_record` over A+B+C, and the fleet state alike.
    Cases: from empty cohorts; from seeded ones that start to count within the run; with a desired
    change (every row through `feed`, its commands compared)."""
    records = chaos_log(24, 150, 5)
    start = {"plain": None, "cohorts": seeded(records, 1.0), "desired": desired()}[case]
    use = quick_rules() if case == "cohorts" else rules()
    limit = (52 if case == "cohorts" else 40) * 1024  # several chunks: the first holds the fleet state
    a, b = len(records) * 2 // 5, len(records) * 3 // 4  # B holds the redelivered stretch
    want: list[RecordOut] = []
    twins: dict[str, Twin] = {}
    fleet = start or FleetState()
    for record in records:
        fleet, out = on_record(fleet, twins.get, record, use)
        if out.step.twin is not None:
            twins[out.step.twin.robot_id] = out.step.twin
        want.append(out)
    state = bf.FoldState(use, start)
    fold(state, use, records[:a], 250)
    full = through_bytes(snapshot_fold(state, bf.robot_ids(state), partition=0, next_offset=a, full=True), limit)
    fold(state, use, records[a:b], 97)
    incremental = snapshot_fold(state, keyed(records[a:b], state), partition=0, next_offset=b, epoch=1)
    assert case != "desired" or any(o.step.commands for o in want)
    assert incremental.groups["open"].height and incremental.groups["cells"]["drift.has"].any()
    assert len(full) > 1
    fresh, offset = restore([*full, *through_bytes(incremental, LIMIT)], use)
    older, _ = restore(full, use)
    onto, offset_onto = restore(through_bytes(incremental, LIMIT), use, into=older)
    assert offset == offset_onto == b
    for restored in (fresh, onto):
        got = fold(restored, use, records[b:], 133)
        assert [record_view(g) for g in got] == [record_view(w) for w in want[b:]]
        assert bf.robot_ids(restored) == set(twins)
        for rid, twin in twins.items():
            assert encode_twin(bf.twin_of(restored, rid)) == encode_twin(twin), rid  # type: ignore[arg-type]
        assert cohorts_view(restored.fleet) == cohorts_view(fleet)
        assert msgspec.msgpack.encode(restored.fleet.versions) == msgspec.msgpack.encode(fleet.versions)
        assert restored.fleet.next_tick == fleet.next_tick
        assert msgspec.msgpack.encode(restored.fleet.desired) == msgspec.msgpack.encode(fleet.desired)


def test_the_fleet_state_travels_whole_and_other_partitions_cohorts_stay() -> None:
    records = chaos_log(24, 150, 5)
    start = seeded(records, 1.0)
    state = bf.FoldState(quick_rules(), start)
    fold(state, quick_rules(), records[:600], 600)
    checkpoint = through_bytes(snapshot_fold(state, bf.robot_ids(state), partition=0, next_offset=600), LIMIT)
    other = bf.FoldState(quick_rules(), FleetState(cohorts={5: start.cohorts[0]}))
    restored, _ = restore(checkpoint, quick_rules(), into=other)
    assert list(restored.fleet.cohorts) == [5, 0]
    assert cohorts_view(restored.fleet) == cohorts_view(FleetState(cohorts={5: start.cohorts[0],
                                                                            0: state.fleet.cohorts[0]}))
    assert restored.fleet.next_tick == state.fleet.next_tick
    assert msgspec.msgpack.encode(restored.fleet.versions) == msgspec.msgpack.encode(state.fleet.versions)


def test_corrupt_detector_chunks_are_named() -> None:
    records = chaos_log(24, 150, 5)
    state = bf.FoldState(rules())
    fold(state, rules(), records[:800], 400)
    chunk = encode(snapshot_fold(state, bf.robot_ids(state), partition=0, next_offset=800))[0]
    body = bytearray(chunk)
    body[len(body) // 2] ^= 0xFF
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        decode(bytes(body))
    env = msgspec.msgpack.decode(chunk[12:], type=_Envelope)
    cells = decode(chunk).groups["cells"]
    for group, frame, error in [
            ("cells", cells.with_columns(pl.col("name") + 10_000), "cells.name points outside"),
            ("cells", cells.reverse(), "cells not ordered by robot"),
            ("cells", pl.concat([cells, cells.head(1)]).sort("robot"), "two rows of one robot's signal"),
            ("fleet", pl.DataFrame({"state": [b"", b""]}), "fleet holds 2 rows")]:
        with pytest.raises(CheckpointError, match=error):
            decode(rewrapped(chunk, groups={**env.groups, group: _ipc(frame)}))


def test_unlisted_cells_of_older_checkpoints_read_as_none_and_a_cell_of_a_foreign_signal_is_refused() -> None:
    """Checkpoints before the cells became runs also wrote cells out of `Watch.signals` (always
    `SignalWatch()`, `listed` false): they restore as if absent. A listed cell of a signal its
    robot's twin lacks has no place in the robot's run: refused by name."""
    records = chaos_log(24, 150, 5)
    state = bf.FoldState(rules())
    fold(state, rules(), records[:800], 400)
    checkpoint = snapshot_fold(state, bf.robot_ids(state), partition=0, next_offset=800, full=True)
    cells, strings = checkpoint.groups["cells"], checkpoint.groups["strings"]["value"].to_list()
    robot0 = cells.filter(pl.col("robot") == 0)
    foreign = next(i for i, s in enumerate(strings) if i not in set(robot0["name"].to_list()) and s == "amr")
    zero = {k: pl.lit(0, t) for k, t in (("out", pl.Int32), ("same", pl.Int32), ("hits", pl.Int16))}
    extra = robot0.head(1).with_columns(pl.lit(foreign, pl.UInt32).alias("name"), pl.lit(False).alias("listed"),
                                        pl.lit(False).alias("drift.has"), **zero)
    want = {rid: encode_twin(bf.twin_of(state, rid)) for rid in bf.robot_ids(state)}  # type: ignore[arg-type]

    def with_cells(extra: pl.DataFrame) -> Checkpoint:
        together = pl.concat([cells, extra]).sort("robot", maintain_order=True)
        return Checkpoint(0, 800, {**checkpoint.groups, "cells": together}, full=True)

    restored, _ = restore([with_cells(extra)], rules())
    assert {rid: encode_twin(bf.twin_of(restored, rid)) for rid in want} == want  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match="cells names a signal its robot's twin lacks"):
        restore([with_cells(extra.with_columns(pl.lit(True).alias("listed")))], rules())

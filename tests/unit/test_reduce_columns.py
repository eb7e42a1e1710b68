"""Wire bytes to twin state without Event objects: `decode_batch` + `reduce_columns` against the scalar
pipeline's reduce step (`parse`, then `apply`, or `note_rejected` on the twin a rejected row's key
names), message by message. Every robot's twin bytes and every accepted row's Effects must be equal,
whatever the batch boundaries, with hostile rows mixed in: seqs up to `SEQ_MAX`, and past it (rejected)."""

from __future__ import annotations

import random

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_columns import BEYOND, assert_as_parse, chaos, mutate, wire
from twin.batch_reduce import NARROW, ReduceState, catalogues_of, from_twins, reduce_batch, reduce_columns, to_twin
from twin.columns import Message, decode_batch
from twin.effects import Effects
from twin.exceptions import InvalidEvent
from twin.fleet import Fleet
from twin.reduce import apply, note_rejected
from twin.schema import SEQ_MAX, Event, encode
from twin.state import Twin, encode_twin
from twin.validate import parse


def scalar(messages: list[Message], fleet: Fleet, twins: dict[str, Twin]) -> list[Effects | None]:
    """The reference: each message through `parse` and `apply`, a rejection counted as
    `twin.pipeline._reject` counts it. Updates `twins`."""
    effects: list[Effects | None] = []
    for key, value, received in messages:
        try:
            event = parse(value, fleet, key=key, received_ts=received)
        except InvalidEvent:
            try:
                robot = key.decode() if key else None
            except UnicodeDecodeError:
                robot = None
            if robot and robot in twins:
                twins[robot] = note_rejected(twins[robot])
            effects.append(None)
            continue
        twins[event.robot_id], effect = apply(twins.get(event.robot_id), event, received_ts=received)
        effects.append(effect)
    return effects


def batched(state: ReduceState, messages: list[Message], fleet: Fleet, sizes: list[int],
            narrow: int = NARROW) -> list[Effects | None]:
    """`decode_batch` + `reduce_columns` over consecutive batches of the given sizes (the last repeats)."""
    effects: list[Effects | None] = []
    start, k = 0, 0
    while start < len(messages):
        end = start + sizes[min(k, len(sizes) - 1)]
        found = reduce_columns(state, decode_batch(messages[start:end], fleet), narrow=narrow)[1]
        assert len(found) == len(messages[start:end])
        effects.extend(found)
        start, k = end, k + 1
    return effects


def assert_same(state: ReduceState, twins: dict[str, Twin], effects: list[Effects | None],
                expected: list[Effects | None]) -> None:
    assert effects == expected
    assert state.robots == len(twins)
    for robot, twin in twins.items():
        got = to_twin(state, robot)
        assert got == twin, robot
        assert encode_twin(got) == encode_twin(twin), robot


def hostile(events: list[Event], fleet: Fleet, seed: int) -> list[Message]:
    """The events on the wire with, between them, rejected rows keyed to robots that exist, do not
    exist yet (their first event comes later), never exist, or to no robot (no key, bad UTF-8), some
    of them for a seq past `SEQ_MAX`; and some robots' seqs lifted to end at `SEQ_MAX` from a point
    on, but for a fifth of their events (then far below the mark: stale)."""
    rnd = random.Random(seed)
    robots = sorted({e.robot_id for e in events})
    lifted = set(rnd.sample(robots, 3))
    top = max(e.seq for e in events)
    messages: list[Message] = []
    for n, event in enumerate(events):
        if event.robot_id in lifted and n > len(events) // 3 and rnd.random() < 0.8:  # the rest: stale
            event = msgspec.structs.replace(event, seq=event.seq + SEQ_MAX - top)
        if rnd.random() < 0.12:
            messages.append(bad(event, fleet, rnd.choice(robots), rnd))
        messages.append(wire(event))
    _, value, received = wire(events[0])
    late_robot = events[-1].robot_id  # a rejection keyed to a robot before its first event
    return [(late_robot.encode(), value, received), *messages]


def bad(event: Event, fleet: Fleet, other: str, rnd: random.Random) -> Message:
    key, value, received = wire(event)
    kind = rnd.choice(["limits", "key", "none", "utf8", "ghost", "garbage", "clock", "seq"])
    if kind == "limits" and event.signals:
        name = sorted(event.signals)[0]
        lo, _ = fleet.models[event.model].signals[name].limits
        value = encode(msgspec.structs.replace(event, signals={**event.signals, name: lo - 1}))
    elif kind == "key":
        key = other.encode()
    elif kind == "none":
        key = None
    elif kind == "utf8":
        key = b"\xff" + key
    elif kind == "ghost":
        key = b"ghost-robot"
    elif kind == "garbage":
        value = value[: len(value) // 2]
    elif kind == "seq":
        value = encode(msgspec.structs.replace(event, seq=rnd.choice(BEYOND)))
    else:
        received = event.ts - 1_000.0
    return key, value, received


@pytest.fixture(scope="module")
def messages(fleet: Fleet) -> list[Message]:
    events = chaos(fleet, robots=60, ticks=40, seed=5)
    return hostile(events, fleet, seed=5)


@pytest.fixture(scope="module")
def oracle(messages: list[Message], fleet: Fleet) -> tuple[dict[str, Twin], list[Effects | None]]:
    twins: dict[str, Twin] = {}
    return twins, scalar(messages, fleet, twins)


def test_the_mix_holds_every_kind_of_row(messages: list[Message], fleet: Fleet,
                                         oracle: tuple[dict[str, Twin], list[Effects | None]]) -> None:
    """The inputs exercise what they should: rejections counted, uncounted, seqs past `SEQ_MAX`
    rejected, and seqs up to it in the columns."""
    twins, expected = oracle
    columns = decode_batch(messages, fleet)
    assert len(columns.rejected) > 200
    assert sum("$.seq" in e.detail for e in columns.rejected.values()) > 20
    assert int(columns.seq.max()) == SEQ_MAX and (columns.seq > SEQ_MAX - 100).sum() > 50
    assert max(t.seq for t in twins.values()) == SEQ_MAX
    assert set(columns.rejected_keys) == set(columns.rejected)
    assert all(columns.rejected_keys[i] == messages[i][0] for i in columns.rejected)
    assert sum(t.counts.rejected for t in twins.values()) > 100
    assert sum(t.counts.rejected for t in twins.values()) < len(columns.rejected)
    assert {e.outcome for e in expected if e is not None} == {"applied", "late", "duplicate", "stale"}


@pytest.mark.parametrize("narrow", [NARROW, 0])
@pytest.mark.parametrize("seed", [1, 2])
def test_random_batches_give_the_scalar_pipeline_s_twins_and_effects(
        messages: list[Message], fleet: Fleet, oracle: tuple[dict[str, Twin], list[Effects | None]],
        narrow: int, seed: int) -> None:
    rnd = random.Random(seed)
    sizes = [rnd.choice([1, 7, 64, 333, 997, 2000]) for _ in range(40)]
    state = ReduceState(catalogues_of(fleet))
    assert_same(state, oracle[0], batched(state, messages, fleet, sizes, narrow), oracle[1])


def test_one_batch_of_everything(messages: list[Message], fleet: Fleet,
                                 oracle: tuple[dict[str, Twin], list[Effects | None]]) -> None:
    state = ReduceState(catalogues_of(fleet))
    assert_same(state, oracle[0], batched(state, messages, fleet, [len(messages)]), oracle[1])


def test_a_batch_of_only_rejected_rows_counts_on_existing_twins(messages: list[Message], fleet: Fleet) -> None:
    state = ReduceState(catalogues_of(fleet))
    twins: dict[str, Twin] = {}
    head = messages[:200]
    assert_same(state, twins, batched(state, head, fleet, [200]), scalar(head, fleet, twins))
    robot = next(iter(twins))
    rejected = [(robot.encode(), b"{", 1.0), (robot.encode(), b"not json", 2.0), (b"ghost-robot", b"{", 3.0)]
    assert_same(state, twins, batched(state, rejected, fleet, [3]), scalar(rejected, fleet, twins))
    assert to_twin(state, robot).counts.rejected >= 2


def test_an_empty_batch_changes_nothing(fleet: Fleet) -> None:
    state = ReduceState(catalogues_of(fleet))
    assert reduce_columns(state, decode_batch([], fleet)) == (state, [])
    assert state.robots == 0


@pytest.fixture(scope="module")
def pool(fleet: Fleet) -> list[Event]:
    return chaos(fleet, robots=12, ticks=30)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_batches_fold_as_the_scalar_pipeline(fleet: Fleet, pool: list[Event], data: st.DataObject) -> None:
    """Hostile rows of every kind `tests/unit/test_columns.py` makes, in random batches."""
    start = data.draw(st.integers(0, len(pool) - 60))
    events = pool[start:start + data.draw(st.integers(1, 60))]
    messages = [mutate(data, e, fleet) for e in events]
    sizes = data.draw(st.lists(st.integers(1, 40), min_size=1, max_size=6))
    narrow = data.draw(st.sampled_from([NARROW, 0]))
    twins: dict[str, Twin] = {}
    expected = scalar(messages, fleet, twins)
    state = ReduceState(catalogues_of(fleet))
    assert_same(state, twins, batched(state, messages, fleet, sizes, narrow), expected)


def test_seqs_past_seq_max_are_rejected_and_counted_as_the_scalar_pipeline_does(fleet: Fleet,
                                                                             pool: list[Event]) -> None:
    """Seqs up to `SEQ_MAX` fold in the columns; a row past it is rejected with `parse`'s reason and
    detail and counted on its robot's twin (once the twin exists), wherever it falls in the batches;
    through `reduce_columns`, `reduce_batch` and `from_twins`."""
    robots = sorted({e.robot_id for e in pool})[:3]
    events = [e for e in pool if e.robot_id in robots][:30]
    near = {3: SEQ_MAX - 70, 4: SEQ_MAX - 2, 8: SEQ_MAX, 14: SEQ_MAX - 1}
    events = [msgspec.structs.replace(e, seq=near[i]) if i in near else e for i, e in enumerate(events)]
    beyond = [wire(msgspec.structs.replace(events[i], seq=seq)) for i, seq in zip((0, 6, 12, 13), BEYOND)]
    messages = [wire(e) for e in events]
    for at, row in zip((0, 7, 14, 20), beyond):  # robots[0]'s first row is one past SEQ_MAX
        messages.insert(at, row)
    columns = decode_batch(messages, fleet)
    assert_as_parse(columns, messages, fleet)
    assert len(columns.rejected) == len(BEYOND) and int(columns.seq.max()) == SEQ_MAX
    for sizes, narrow in (([len(messages)], 0), ([1], NARROW), ([4, 7], 0), ([3], NARROW)):
        twins: dict[str, Twin] = {}
        expected = scalar(messages, fleet, twins)
        assert max(t.seq for t in twins.values()) == SEQ_MAX and sum(t.counts.rejected for t in twins.values()) >= 2
        state = ReduceState(catalogues_of(fleet))
        assert_same(state, twins, batched(state, messages, fleet, sizes, narrow), expected)
        loaded = from_twins(twins.values(), catalogues_of(fleet))
        more = [wire(msgspec.structs.replace(e, seq=SEQ_MAX - k, ts=e.ts + 100)) for k, e in enumerate(events[:5])]
        more.insert(2, beyond[1])
        assert_same(loaded, twins, batched(loaded, more, fleet, [2], narrow), scalar(more, fleet, twins))
    received = [wire(e)[2] for e in events]
    state = ReduceState(catalogues_of(fleet))
    want: dict[str, Twin] = {}
    effects = [apply_into(want, e, r) for e, r in zip(events, received)]
    assert reduce_batch(state, events, received, narrow=0)[1] == effects
    assert all(encode_twin(to_twin(state, robot)) == encode_twin(twin) for robot, twin in want.items())


def apply_into(twins: dict[str, Twin], event: Event, received: float) -> Effects:
    twins[event.robot_id], effects = apply(twins.get(event.robot_id), event, received_ts=received)
    return effects


@pytest.mark.parametrize("narrow", [NARROW, 0])
def test_a_rejection_counts_only_once_its_twin_exists(fleet: Fleet, pool: list[Event], narrow: int) -> None:
    """In one batch: a rejected row keyed to a robot before its first event does not count (no twin
    yet), one after it does, whatever else the batch holds."""
    robot = pool[0].robot_id
    first = wire(pool[0])
    refused = (robot.encode(), first[1][:-1], first[2])  # cut short: undecodable, keyed to the robot
    messages = [wire(e) for e in pool[1:40] if e.robot_id != robot]
    messages[5:5] = [refused, first, refused, refused]
    twins: dict[str, Twin] = {}
    expected = scalar(messages, fleet, twins)
    assert twins[robot].counts.rejected == 2
    state = ReduceState(catalogues_of(fleet))
    assert_same(state, twins, batched(state, messages, fleet, [len(messages)], narrow), expected)

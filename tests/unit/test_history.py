"""A robot's history: the pure shaping (`twin.history`), the query checks and the bounded read."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.worker.history import (
    DEFAULT_POINTS, MAX_WINDOW_S, BadHistoryQuery, parse_query, read_events,
)
from twin import gateway
from twin.fleet import Fleet
from twin.history import shape, thin
from twin.record import Record
from twin.schema import Event, encode
from twin.validate import DEFAULT_POLICY

T0 = 1_767_600_000.0
KNOWN = ("joint1_current_a", "battery_soc_pct", "speed_mps")


def event(robot: str, seq: int, **signals: float) -> Event:
    return Event(schema=1, robot_id=robot, seq=seq, ts=T0 + seq, sector="retail", site="retail-london-01",
                 model="amr", mode="working", signals=signals)


def test_shape_keeps_the_robots_values_in_the_window_in_time_order() -> None:
    samples = [(T0 + s, event("r-1", s, joint1_current_a=float(s), speed_mps=1.0)) for s in (5, 1, 3, 9)]
    samples.append((T0 + 2, event("r-2", 2, joint1_current_a=99.0)))
    found = shape("r-1", samples, ["joint1_current_a", "battery_soc_pct"], T0 + 1, T0 + 5, 100)
    assert [(p.ts, p.signal, p.value) for p in found.points] == [
        (T0 + 1, "joint1_current_a", 1.0), (T0 + 3, "joint1_current_a", 3.0), (T0 + 5, "joint1_current_a", 5.0)]
    assert found.events == 3 and not found.thinned and found.signals == ("joint1_current_a", "battery_soc_pct")


def test_thinning_averages_buckets_and_keeps_a_gap_a_gap() -> None:
    samples = [(T0 + t, float(t)) for t in range(0, 40)] + [(T0 + t, float(t)) for t in range(80, 100)]
    points = thin("x", samples, T0, T0 + 100, 10)
    assert [p.n for p in points] == [10, 10, 10, 10, 10, 10]  # buckets 4..7 held nothing
    assert points[0].ts == T0 + 4.5 and points[0].value == 4.5
    assert points[-1].ts == T0 + 94.5


@given(st.lists(st.floats(0, 1000, allow_nan=False), min_size=0, max_size=300), st.integers(1, 50))
def test_thinning_is_bounded_and_loses_no_sample(offsets: list[float], max_points: int) -> None:
    samples = [(T0 + t, t % 7) for t in sorted(offsets)]
    points = thin("x", samples, T0, T0 + 1000, max_points)
    assert len(points) <= max_points
    assert sum(p.n for p in points) == len(samples)
    assert [p.ts for p in points] == sorted(p.ts for p in points)
    assert sum(p.value * p.n for p in points) == pytest.approx(sum(v for _, v in samples))


def test_parse_query_defaults_to_the_last_hour_and_every_signal() -> None:
    query = parse_query({}, KNOWN, now=T0)
    assert (query.start, query.end, query.signals) == (T0 - 3600, T0, KNOWN)
    assert query.max_points == DEFAULT_POINTS and query.source == "kafka"
    picked = parse_query({"signal": "speed_mps, joint1_current_a,speed_mps", "from": "-15m",
                          "to": "2026-01-05T08:00:00Z", "max_points": "20", "source": "archive"}, KNOWN, now=T0)
    assert picked.signals == ("speed_mps", "joint1_current_a") and picked.max_points == 20
    assert (picked.start, picked.end) == (T0 - 900, T0) and picked.source == "archive"


@pytest.mark.parametrize(("params", "says"), [
    ({"from": "yesterday"}, "'from' must be"), ({"to": "nan"}, "'to' must be"), ({"from": "inf"}, "'from'"),
    ({"from": str(T0), "to": str(T0)}, "must be after"), ({"from": f"{T0 - MAX_WINDOW_S - 1}"}, "at most"),
    ({"signal": "speed_mps,warp"}, "unknown signal 'warp'"), ({"max_points": "5001"}, "max_points"),
    ({"source": "../secrets"}, "source must be"),
])
def test_parse_query_refuses_what_it_cannot_answer(params: dict[str, str], says: str) -> None:
    with pytest.raises(BadHistoryQuery, match=says):
        parse_query(params, KNOWN, now=T0)


def records(robot: str, n: int) -> Iterator[Record]:
    for seq in range(1, n + 1):
        yield Record("telemetry", 0, 3 * seq, T0 + seq, robot.encode(), encode(event(robot, seq, speed_mps=1.0)))
        yield Record("telemetry", 0, 3 * seq + 1, T0 + seq, b"other", encode(event("other", seq, speed_mps=2.0)))
        yield Record("check", 0, 3 * seq + 2, T0 + seq, robot.encode(), repr(T0 + seq).encode())


def test_read_events_takes_the_robots_valid_telemetry_only(fleet: Fleet) -> None:
    source = records("r-1", 10)
    bad = Record("telemetry", 0, 99, T0 + 11, b"r-1", b'{"schema": 1, oops}')
    read = read_events(iter([*source, bad]), "r-1", fleet, DEFAULT_POLICY)
    assert [e.seq for _, e in read.events] == list(range(1, 11))
    assert (read.scanned, read.first, read.last, read.stopped) == (21, T0 + 1, T0 + 11, False)  # checks not counted


def test_read_events_stops_at_its_budget_and_closes_the_source(fleet: Fleet) -> None:
    source = records("r-1", 100)
    read = read_events(source, "r-1", fleet, DEFAULT_POLICY, max_scan=20)
    assert read.stopped and read.scanned == 20 and len(read.events) == 10 and read.last == T0 + 10
    assert next(source, None) is None  # closed: a Kafka source's consumer stops with it


def test_read_events_takes_the_robots_reports_inside_site_gateway_records(fleet: Fleet) -> None:
    """A gateway record is keyed by its site: the robot's rows in it are its history too."""
    batches = [Record("telemetry", 0, seq, T0 + seq, b"retail-london-01",
                      gateway.encode([event("r-1", seq, speed_mps=1.0), event("other", seq, speed_mps=2.0)]))
               for seq in range(1, 6)]
    read = read_events(iter([*records("r-1", 3), *batches]), "r-1", fleet, DEFAULT_POLICY)
    assert [e.seq for _, e in read.events] == [1, 2, 3, 1, 2, 3, 4, 5]
    assert read.scanned == 6 + 5  # Kafka records, as the budget counts them

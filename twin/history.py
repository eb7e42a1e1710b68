"""A robot's signal history, shaped for the API: samples in, a bounded list of points out.

The shell reads the robot's events of a time window from the log or the
archive and hands them over with their broker times; this module keeps the
signals asked for and thins each one to at most `max_points` points, so an
answer stays small whatever the window holds. Thinning averages the samples
of equal time buckets (value and time alike): a point sits where the data
was, and a point that stands for several samples says how many (`n`).
No I/O and no clock here: the same samples give the same answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec

from twin.schema import Event


class Point(msgspec.Struct, frozen=True):
    """One value of one signal of the robot."""

    ts: float
    """Broker time, epoch seconds; a thinned point's is the mean of its samples' times."""
    signal: str
    value: float
    """The signal's value; a thinned point's is the mean of its samples' values."""
    n: int = 1
    """How many samples the point stands for (1 where nothing was thinned)."""


class History(msgspec.Struct, frozen=True, kw_only=True):
    """What `GET /twins/{id}/history` answers, before the shell adds its presentation."""

    robot_id: str
    start: float
    end: float
    signals: tuple[str, ...]
    events: int
    """The robot's valid events in the window that were read."""
    thinned: bool
    """Whether any signal had more samples than `max_points` and was averaged into buckets."""
    points: list[Point]
    """Grouped by signal (in the order asked), each signal's points in time order."""


def shape(robot_id: str, events: Iterable[tuple[float, Event]], signals: Sequence[str],
          start: float, end: float, max_points: int) -> History:
    """The robot's values of `signals` in [start, end], at most `max_points` per signal."""
    if max_points < 1 or end < start:
        raise ValueError(f"max_points {max_points} and window [{start}, {end}] leave nothing to show")
    series: dict[str, list[tuple[float, float]]] = {s: [] for s in signals}
    count = 0
    for received, event in sorted(events, key=lambda e: e[0]):
        if not start <= received <= end or event.robot_id != robot_id:
            continue
        count += 1
        for name, values in series.items():
            if name in event.signals:
                values.append((received, event.signals[name]))
    points = [p for name, values in series.items() for p in thin(name, values, start, end, max_points)]
    thinned = any(len(values) > max_points for values in series.values())
    return History(robot_id=robot_id, start=start, end=end, signals=tuple(signals), events=count,
                   thinned=thinned, points=points)


def thin(signal: str, samples: Sequence[tuple[float, float]], start: float, end: float,
         max_points: int) -> list[Point]:
    """`samples` (time order) as points; more than `max_points` of them are averaged per time bucket.

    Buckets are `max_points` equal slices of [start, end], so a window's
    points line up whatever the sampling rate; empty buckets give no point,
    which keeps a gap in the data a gap.
    """
    if len(samples) <= max_points:
        return [Point(t, signal, v) for t, v in samples]
    width = max(end - start, 1e-9) / max_points
    sums: dict[int, tuple[float, float, int]] = {}
    for t, v in samples:
        bucket = min(int((t - start) / width), max_points - 1)
        st, sv, n = sums.get(bucket, (0.0, 0.0, 0))
        sums[bucket] = (st + t, sv + v, n + 1)
    return [Point(st / n, signal, sv / n, n) for _, (st, sv, n) in sorted(sums.items())]

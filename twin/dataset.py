"""Labelled windows of fleet telemetry: the data flywheel's training set.

The next on-robot model learns from what the fleet saw. Each robot anomaly
episode becomes one "anomaly" window, and each anomaly window gets matched
"normal" windows of the same length from robots of the same model, so that a
model trained on them learns the fault and not the model, the site or the
window length. The rules:

- Time is event time (`ts`): anomalies and simulator labels are in it.
- An anomaly window runs from the episode's start minus `pre_s` to its
  resolution (or the robot's last report, if it never resolved) plus
  `post_s`, clipped to the robot's reports; an episode that falls wholly
  outside them (a robot that went silent for good) gives no window.
- Its `truth` is the fault of the label that overlaps it most: a label is
  about its robot, or about every robot of its site when its scope is "site".
  "normal" when labels are given and none overlaps (the detector cried wolf);
  null without labels.
- A normal window lies inside its robot's reports and crosses no anomaly
  window of that robot, no label of that robot or site (widened by the same
  margins) and no normal window already chosen, so no two windows share
  normal time. Robots at the anomaly's site are preferred; the anomalous
  robot itself qualifies, at a calm time.
- Choices come from a hash of (seed, anomaly window, draw) rather than a
  random stream, so they do not change with numpy's version.
- Windows are closed intervals; a normal window may touch, never cross, the
  edge of a margin.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, replace
from typing import Any

import polars as pl

FORMAT_VERSION = 1
"""Version of the windows/samples layout; bump when a column changes meaning."""

WINDOW_SCHEMA: dict[str, pl.DataType] = {
    "window_id": pl.String(), "kind": pl.String(), "robot_id": pl.String(), "sector": pl.String(),
    "site": pl.String(), "model": pl.String(), "start_ts": pl.Float64(), "end_ts": pl.Float64(),
    "anomaly_id": pl.String(), "detector": pl.String(), "signal": pl.String(), "severity": pl.String(),
    "opened_ts": pl.Float64(), "resolved_ts": pl.Float64(), "truth": pl.String(), "matched_to": pl.String(),
}

Interval = tuple[float, float]


@dataclass(frozen=True)
class Robot:
    """Where a robot is and when it reported, as far as the events show."""

    robot_id: str
    sector: str
    site: str
    model: str
    first: float
    last: float


@dataclass(frozen=True)
class Window:
    """One row of the windows table (`WINDOW_SCHEMA`)."""

    window_id: str
    kind: str
    robot_id: str
    sector: str
    site: str
    model: str
    start_ts: float
    end_ts: float
    anomaly_id: str | None = None
    detector: str | None = None
    signal: str | None = None
    severity: str | None = None
    opened_ts: float | None = None
    """When the episode started; inside an anomaly window, where the label's story begins."""
    resolved_ts: float | None = None
    truth: str | None = None
    matched_to: str | None = None
    """For a normal window, the anomaly window it is the control of."""


def windows(events: pl.DataFrame | pl.LazyFrame, anomalies: pl.DataFrame, labels: pl.DataFrame | None, *,
            pre_s: float = 60.0, post_s: float = 60.0, normal_per_anomaly: int = 1,
            seed: int = 0) -> pl.DataFrame:
    """Anomaly windows in the order their episodes started, then their normal matches.

    Of the events only each robot's place and first and last report are read,
    so `events` may be a lazy scan of files too large to load."""
    robots = _robots(events)
    label_rows = [] if labels is None else labels.to_dicts()
    found = [w for ep in episode_rows(anomalies).iter_rows(named=True)
             if (w := _anomaly_window(ep, robots.get(ep["robot_id"]), pre_s, post_s)) is not None]
    if labels is not None:
        found = [_with_truth(w, label_rows) for w in found]
    busy = _busy(robots, found, label_rows, pre_s, post_s)
    normal = "normal" if labels is not None else None
    matches = _match_all(found, robots, busy, normal_per_anomaly, seed, normal)
    return pl.DataFrame([asdict(w) for w in found + matches], schema=WINDOW_SCHEMA)


def episode_rows(anomalies: pl.DataFrame) -> pl.DataFrame:
    """Robot anomaly episodes, one row per id, in the order they started.

    Unlike `twin.compare.alert_episodes` this reads every message, not only the
    opening: a replay that begins mid-episode sees only its updates and
    resolution, and that time is still not normal. Severity only rises, so an
    episode is critical if any of its messages is.
    """
    resolved = pl.when(pl.col("status") == "resolved").then(pl.coalesce("end_ts", "ts"))
    critical = (pl.col("severity") == "critical").any()
    return (anomalies.filter(pl.col("robot_id") != "")
            .group_by("id", maintain_order=True)
            .agg(pl.col("robot_id", "sector", "site", "model", "detector", "signal").first(),
                 pl.when(critical).then(pl.lit("critical")).otherwise(pl.col("severity").first()).alias("severity"),
                 pl.col("start_ts").min().alias("opened_ts"), resolved.min().alias("resolved_ts"))
            .rename({"id": "anomaly_id"})
            .sort("opened_ts", "robot_id", "anomaly_id"))


def samples(events: pl.DataFrame, windows: pl.DataFrame) -> pl.DataFrame:
    """The events inside each window (bounds included), tagged with its id and kind.

    A range join on (robot, start <= ts <= end); rows come window by window,
    in log order within each, and an event in two windows appears twice.
    """
    return in_order(tagged(events, windows), events.columns)


def tagged(events: pl.DataFrame, windows: pl.DataFrame, first_row: int = 0) -> pl.DataFrame:
    """`samples` before sorting, with the keys that order them: `_window` (the window's row) and
    `_row` (the event's place in the log, counted from `first_row`), so the samples of a log
    read in chunks can be cut chunk by chunk and put in order at the end (`in_order`)."""
    bounds = windows.select("window_id", "kind", pl.col("robot_id").alias("_robot"),
                            pl.col("start_ts").alias("_start"), pl.col("end_ts").alias("_end")
                            ).with_row_index("_window")
    return events.with_row_index("_row", offset=first_row).join_where(
        bounds, pl.col("robot_id") == pl.col("_robot"), pl.col("ts") >= pl.col("_start"),
        pl.col("ts") <= pl.col("_end"))


def in_order(rows: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """`tagged` rows as `samples` returns them: window by window, in log order, the event `columns`."""
    return rows.sort("_window", "_row").select("window_id", "kind", *columns)


def tally(windows: pl.DataFrame, anomalies: pl.DataFrame, normal_per_anomaly: int) -> dict[str, Any]:
    """The counts a manifest reports: windows per kind, per detector, per truth, and what is missing.

    `skipped_matches` is the normal windows asked for and not found (no
    robot of the model had that much calm time left).
    """
    anomaly = windows.filter(pl.col("kind") == "anomaly")
    normal = windows.filter(pl.col("kind") == "normal")
    return {
        "windows": _count(windows, "kind"),
        "detector": _count(anomaly, "detector"),
        "truth": {"anomaly": _count(anomaly, "truth"), "normal": _count(normal, "truth")},
        "skipped_matches": anomaly.height * normal_per_anomaly - normal.height,
        "episodes_outside_events": episode_rows(anomalies).height - anomaly.height,
    }


def _count(frame: pl.DataFrame, column: str) -> dict[str, int]:
    counts = frame.group_by(column).len().sort(column, nulls_last=True)
    return {("unlabelled" if k is None else str(k)): int(n) for k, n in counts.iter_rows()}


def _robots(events: pl.DataFrame | pl.LazyFrame) -> dict[str, Robot]:
    spans = (events.lazy().group_by("robot_id")
             .agg(pl.col("sector", "site", "model").first(),
                  pl.col("ts").min().alias("first"), pl.col("ts").max().alias("last"))
             .sort("robot_id").collect(engine="streaming"))  # a lazy scan of a long log: in bounded memory
    return {row["robot_id"]: Robot(**row) for row in spans.iter_rows(named=True)}


def _anomaly_window(ep: dict[str, Any], robot: Robot | None, pre_s: float, post_s: float) -> Window | None:
    if robot is None:
        return None
    until = ep["resolved_ts"] if ep["resolved_ts"] is not None else robot.last
    start, end = max(robot.first, ep["opened_ts"] - pre_s), min(robot.last, until + post_s)
    if start > end:
        return None
    return Window(
        window_id=_window_id("anomaly", robot.robot_id, start, end, ep["anomaly_id"]), kind="anomaly",
        robot_id=robot.robot_id, sector=ep["sector"], site=ep["site"], model=ep["model"],
        start_ts=start, end_ts=end, anomaly_id=ep["anomaly_id"], detector=ep["detector"],
        signal=ep["signal"], severity=ep["severity"], opened_ts=ep["opened_ts"], resolved_ts=ep["resolved_ts"])


def _with_truth(w: Window, labels: list[dict[str, Any]]) -> Window:
    """The fault of the label overlapping `w` most (earliest, then by name, on a tie); else "normal".

    A label covers [start_ts, end_ts): the simulator's fault is off at its end.
    """
    hits = sorted((-(min(w.end_ts, lab["end_ts"]) - max(w.start_ts, lab["start_ts"])), lab["start_ts"], lab["fault"])
                  for lab in labels
                  if _about(lab, w.robot_id, w.site) and lab["start_ts"] <= w.end_ts and w.start_ts < lab["end_ts"])
    return replace(w, truth=hits[0][2] if hits else "normal")


def _about(label: dict[str, Any], robot_id: str, site: str) -> bool:
    return bool(label["site"] == site if label["scope"] == "site" else label["robot_id"] == robot_id)


def _busy(robots: dict[str, Robot], found: list[Window], labels: list[dict[str, Any]],
          pre_s: float, post_s: float) -> dict[str, list[Interval]]:
    """Per robot, the time no normal window may cross: its anomaly windows and its (or its site's) labels."""
    busy: dict[str, set[Interval]] = {rid: set() for rid in robots}
    for w in found:
        busy[w.robot_id].add((w.start_ts, w.end_ts))
    for lab in labels:
        for rid in [r.robot_id for r in robots.values() if _about(lab, r.robot_id, r.site)]:
            busy[rid].add((lab["start_ts"] - pre_s, lab["end_ts"] + post_s))
    return {rid: sorted(spans) for rid, spans in busy.items()}


def _match_all(found: list[Window], robots: dict[str, Robot], busy: dict[str, list[Interval]],
               per_anomaly: int, seed: int, truth: str | None) -> list[Window]:
    """Normal windows for each anomaly window in turn; each choice is then busy for the next."""
    out: list[Window] = []
    for w in found:
        for draw in range(per_anomaly):
            match = _match(w, draw, robots, busy, seed, truth)
            if match is None:
                break  # a later draw would find even less room
            busy[match.robot_id] = sorted([*busy[match.robot_id], (match.start_ts, match.end_ts)])
            out.append(match)
    return out


def _match(w: Window, draw: int, robots: dict[str, Robot], busy: dict[str, list[Interval]],
           seed: int, truth: str | None) -> Window | None:
    length = w.end_ts - w.start_ts
    room = {rid: free for rid, r in robots.items()
            if r.model == w.model and (free := _room(r, busy[rid], length))}
    pool = sorted(rid for rid in room if robots[rid].site == w.site) or sorted(room)
    if not pool:
        return None
    key = f"{seed}|{w.window_id}|{draw}"
    r = robots[pool[int(_uniform(key, "robot") * len(pool))]]
    start, end = _place(room[r.robot_id], length, _uniform(key, "interval"), _uniform(key, "start"))
    return Window(window_id=_window_id("normal", r.robot_id, start, end, w.window_id), kind="normal",
                  robot_id=r.robot_id, sector=r.sector, site=r.site, model=r.model,
                  start_ts=start, end_ts=end, truth=truth, matched_to=w.window_id)


def _room(robot: Robot, busy: list[Interval], length: float) -> list[Interval]:
    """The calm stretches of a robot's reports at least `length` long (busy sorted by start)."""
    free, cursor = [], robot.first
    for start, end in busy:
        if start > robot.last:
            break
        if start > cursor:
            free.append((cursor, start))
        cursor = max(cursor, end)
    if cursor <= robot.last:
        free.append((cursor, robot.last))
    return [(a, b) for a, b in free if b - a >= length]


def _place(room: list[Interval], length: float, u_interval: float, u_start: float) -> Interval:
    """A start uniform over every start that fits (stretches weighted by their slack)."""
    slack = [b - a - length for a, b in room]
    total = sum(slack)
    i, x = 0, u_interval * total
    if total > 0:
        while i < len(room) - 1 and x >= slack[i]:
            x -= slack[i]
            i += 1
    else:
        i = int(u_interval * len(room))
    a, b = room[i]
    start = a + u_start * slack[i]
    return start, min(start + length, b)


def _uniform(key: str, what: str) -> float:
    digest = hashlib.blake2b(f"{key}|{what}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def _window_id(kind: str, robot_id: str, start: float, end: float, ref: str) -> str:
    """Deterministic: the same kind, robot, bounds and anomaly (or matched window) give the same id."""
    return hashlib.blake2b(f"{kind}|{robot_id}|{start!r}|{end!r}|{ref}".encode(), digest_size=8).hexdigest()

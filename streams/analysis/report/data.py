"""A replay's output directory read back as the tables an investigation asks for.

The replay writes Parquet files in the shapes of `twin.frames` plus
`replay.json`; this module answers "which alert episodes, on which robots,
compared with which peers" with polars over those files. No drawing and no
HTML here, so the selection logic can be checked on its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import polars as pl

from streams.exceptions import ReportError
from twin import compare
from twin.detect.findings import Anomaly
from twin.frames import HEAD

KINDS: tuple[str, ...] = ("same", "gained", "lost", "earlier", "later")
REQUIRED = ("events.parquet", "anomalies.parquet", "snapshots.parquet")
SEVERITY_RANK: dict[str, int] = {"critical": 2, "warning": 1}
"""Worse is higher; a severity not listed ranks below warning."""
NOT_SIGNALS = frozenset({*HEAD, "codes", "received_ts", "partition", "offset"})
"""The columns of events.parquet that are not signals."""


@dataclass(frozen=True)
class ReplayDir:
    """Everything a replay wrote, and the window it covers (epoch seconds)."""

    path: Path
    meta: dict[str, Any]
    events: pl.DataFrame
    anomalies: pl.DataFrame
    snapshots: pl.DataFrame
    changes: pl.DataFrame | None
    start: float
    end: float


def load(out_dir: Path) -> ReplayDir:
    """Read a replay's directory; the window is `replay.json`'s, else what the data spans."""
    missing = [name for name in REQUIRED if not (out_dir / name).is_file()]
    if missing:
        raise ReportError(f"{out_dir}: not a replay's output, missing {', '.join(missing)}")
    meta = _meta(out_dir / "replay.json")
    events = pl.read_parquet(out_dir / "events.parquet")
    anomalies = pl.read_parquet(out_dir / "anomalies.parquet")
    changes_file = out_dir / "changes.parquet"
    changes = pl.read_parquet(changes_file) if changes_file.is_file() else None
    times = [*events["received_ts"].to_list(), *anomalies["ts"].to_list()]
    start = _number(meta.get("from"), min(times, default=0.0))
    end = _number(meta.get("to"), max(times, default=start))
    return ReplayDir(out_dir, meta, events, anomalies, pl.read_parquet(out_dir / "snapshots.parquet"),
                     changes, start, max(end, start + 1.0))


def _meta(path: Path) -> dict[str, Any]:
    # A report without replay.json still helps; one with a broken file should say so.
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ReportError(f"{path}: unreadable: {err}") from None
    if not isinstance(meta, dict):
        raise ReportError(f"{path}: expected a JSON object")
    return meta


def _number(value: Any, default: float) -> float:
    return float(value) if isinstance(value, int | float) else default


def messages(anomalies: pl.DataFrame) -> list[Anomaly]:
    """The anomaly messages of `anomalies.parquet`, as the core's structs (evidence decoded)."""
    return [msgspec.convert({**row, "evidence": json.loads(row["evidence"] or "{}")}, Anomaly)
            for row in anomalies.iter_rows(named=True)]


def episode_frame(run: ReplayDir) -> pl.DataFrame:
    """One row per alert episode (`twin.compare.alert_episodes`), with its peak severity and score.

    The core's episode keeps the severity it opened with; an investigation
    wants the worst it reached. Site-incident `update`s copy another
    anomaly's fields, so only a message's own rows count towards its peak.
    """
    alerts = [msgspec.structs.asdict(a) for a in compare.alert_episodes(messages(run.anomalies))]
    frame = pl.DataFrame(alerts, schema={**{k: pl.String() for k in ("id", "robot_id", "site", "model", "detector",
                                                                      "signal", "severity")},
                                         "opened": pl.Float64(), "resolved": pl.Float64()})
    own = run.anomalies.filter(pl.col("caused_by").is_null()).group_by("id").agg(
        peak_critical=(pl.col("severity") == "critical").any(), peak_score=pl.col("score").max())
    causes = run.anomalies.filter(pl.col("caused_by").is_not_null()).group_by("id").agg(
        caused_by=pl.col("caused_by").first())
    return (frame.join(own, on="id", how="left").join(causes, on="id", how="left")
            .with_columns(
                severity=pl.when(pl.col("peak_critical")).then(pl.lit("critical")).otherwise(pl.col("severity")),
                score=pl.col("peak_score"),
                end=pl.coalesce("resolved", pl.lit(run.end)),
                subject=_subject())
            .drop("peak_critical", "peak_score")
            .sort("opened", "subject", "detector"))


def _subject() -> pl.Expr:
    """Who an episode is about: the robot, else the site (incident), else the model (rollout)."""
    return (pl.when(pl.col("robot_id") != "").then(pl.col("robot_id"))
            .when(pl.col("site") != "").then(pl.lit("site ") + pl.col("site"))
            .otherwise(pl.lit("model ") + pl.col("model")))


def by_importance(episodes: pl.DataFrame) -> pl.DataFrame:
    """`episodes` grouped by site incident, the worst group first; adds `group` and `rank` (1 = top).

    A fleet window holds hundreds of episodes, most of them short warnings;
    in time or name order they bury the few that matter. A group is a site
    incident with the robot episodes it took in, or one episode on its own.
    Groups rank by their worst severity, then their longest episode (a
    fault that lasts beats a blip), then how many episodes they hold, then
    who opened first. Within a group the incident leads, then its members in
    the same order.
    """
    rows = episodes.with_columns(
        group=pl.coalesce("caused_by", "id"),
        sev=pl.col("severity").replace_strict(SEVERITY_RANK, default=0, return_dtype=pl.Int8),
        length=pl.col("end") - pl.col("opened"))
    groups = (rows.group_by("group").agg(g_sev=pl.col("sev").max(), g_len=pl.col("length").max(),
                                         g_size=pl.len(), g_opened=pl.col("opened").min())
              .sort(["g_sev", "g_len", "g_size", "g_opened", "group"], descending=[True, True, True, False, False])
              .with_row_index("rank", offset=1)
              .select("group", pl.col("rank").cast(pl.Int64)))
    return (rows.join(groups, on="group", how="left")
            .with_columns(lead=pl.col("id") == pl.col("group"))
            .sort(["rank", "lead", "sev", "length", "opened", "subject", "detector"],
                  descending=[False, True, True, True, False, False, False])
            .drop("sev", "length", "lead"))


def top_faults(ranked: pl.DataFrame, n: int = 10) -> pl.DataFrame:
    """The first `n` groups of `by_importance`, one row each: what leads it and what it spans."""
    return (ranked.filter(pl.col("rank") <= n)
            .group_by("rank", maintain_order=True)
            .agg(subject=pl.col("subject").first(), detector=pl.col("detector").first(),
                 signal=pl.col("signal").first(), site=pl.col("site").first(), model=pl.col("model").first(),
                 severity=pl.col("severity").sort_by(pl.col("severity").replace_strict(
                     SEVERITY_RANK, default=0, return_dtype=pl.Int8)).last(),
                 opened=pl.col("opened").min(), end=pl.col("end").max(),
                 still_open=pl.col("resolved").is_null().any(), episodes=pl.len(),
                 robots=pl.col("robot_id").filter(pl.col("robot_id") != "").n_unique(),
                 detectors=pl.col("detector").unique().sort().str.join(", ")))


def selected_robot(run: ReplayDir) -> str | None:
    """The robot a replay was asked about (`--robot`), if any."""
    selection = run.meta.get("selection")
    robot = selection.get("robot") if isinstance(selection, dict) else None
    return robot if isinstance(robot, str) and robot else None


def ranked_robots(episodes: pl.DataFrame) -> list[str]:
    """Robots with episodes, the most severe first.

    Critical episodes of the robot's own come first: a robot swept up in a
    site incident is told by the incident, while one failing alone is the
    lead. Then all critical episodes, episode count, peak score, first opening.
    """
    critical = pl.col("severity") == "critical"
    per_robot = episodes.filter(pl.col("robot_id") != "").group_by("robot_id").agg(
        own=(critical & pl.col("caused_by").is_null()).sum(), critical=critical.sum(), n=pl.len(),
        score=pl.col("score").max(), first=pl.col("opened").min())
    ranked = per_robot.sort(["own", "critical", "n", "score", "first", "robot_id"],
                            descending=[True, True, True, True, False, False], nulls_last=True)
    return ranked["robot_id"].to_list()


@dataclass(frozen=True)
class RobotView:
    """What the report shows of one affected robot."""

    robot_id: str
    model: str
    site: str
    events: pl.DataFrame
    """The robot's own events, in broker-time order."""
    peers: pl.DataFrame
    """Events of the other robots of the same model and site."""
    episodes: pl.DataFrame
    signals: list[str]
    """Signals with an episode and a column in events.parquet, in order of first opening."""
    incidents: pl.DataFrame
    """Site incidents any of the robot's episodes was part of."""


def robot_view(run: ReplayDir, episodes: pl.DataFrame, robot_id: str, max_signals: int = 6,
               every_signal: bool = False) -> RobotView:
    """Select a robot's events, its peers' and its episodes.

    The signals plotted are the alerted ones; with `every_signal` (the robot a
    replay was asked about) the robot's other signals follow, up to
    `max_signals` in all: its history is the point of such a report, alerts or not.
    """
    own = run.events.filter(pl.col("robot_id") == robot_id).sort("received_ts")
    mine = episodes.filter(pl.col("robot_id") == robot_id)
    model = own["model"][0] if own.height else mine["model"][0]
    site = own["site"][0] if own.height else mine["site"][0]
    peers = run.events.filter((pl.col("model") == model) & (pl.col("site") == site)
                              & (pl.col("robot_id") != robot_id))
    candidates = [*mine["signal"].to_list(), *(_signal_columns(run.events) if every_signal else [])]
    plotted = [s for s in dict.fromkeys(candidates)
               if s and s in run.events.columns and own[s].drop_nulls().len() > 0]
    linked = set(mine["caused_by"].drop_nulls().to_list())
    incidents = episodes.filter(pl.col("id").is_in(linked))
    return RobotView(robot_id, model, site, own, peers, mine, plotted[:max_signals], incidents)


def _signal_columns(events: pl.DataFrame) -> list[str]:
    return [c for c in events.columns if c not in NOT_SIGNALS and events.schema[c].is_numeric()]


def peer_band(peers: pl.DataFrame, signal: str, start: float, end: float, buckets: int = 240) -> pl.DataFrame:
    """Peers' min, median and max of `signal` per time bucket: the normal range to compare with.

    Buckets, not per-peer lines: a site may hold dozens of robots of a model,
    and a band stays readable where dozens of lines do not.
    """
    width = max((end - start) / buckets, 1.0)
    values = peers.select("received_ts", "robot_id", signal).drop_nulls(signal)
    return (values.with_columns(t=(((pl.col("received_ts") - start) / width).floor() + 0.5) * width + start)
            .group_by("t").agg(lo=pl.col(signal).min(), med=pl.col(signal).median(), hi=pl.col(signal).max())
            .sort("t"))


def mode_segments(events: pl.DataFrame) -> pl.DataFrame:
    """Runs of one mode (start, stop, mode) in broker time; a silence longer than
    five report intervals ends a run, so a gap in the data shows as a gap."""
    if events.height == 0:
        return pl.DataFrame(schema={"start": pl.Float64, "stop": pl.Float64, "mode": pl.String})
    t = pl.col("received_ts")
    step = events["received_ts"].diff().median()
    typical = float(step) if isinstance(step, int | float) and step > 0 else 1.0
    gap = 5 * typical
    rows = events.select("received_ts", "mode").with_columns(next=t.shift(-1))
    rows = rows.with_columns(
        stop=pl.when(pl.col("next") - t <= gap).then(pl.col("next")).otherwise(t + typical),
        new=((pl.col("mode") != pl.col("mode").shift(1)) | (t - t.shift(1) > gap)).fill_null(True))
    return (rows.with_columns(run=pl.col("new").cum_sum())
            .group_by("run", maintain_order=True)
            .agg(start=t.first(), stop=pl.col("stop").last(), mode=pl.col("mode").first())
            .drop("run"))


def snapshot_rows(run: ReplayDir, robots: list[str], limit: int = 200) -> tuple[list[dict[str, Any]], int]:
    """Selected fields of each twin snapshot, for the robots shown (all robots if none).

    Returns the rows (at most `limit`) and how many there were in all.
    """
    frame = run.snapshots
    if robots:
        frame = frame.filter(pl.col("robot_id").is_in(robots))
    rows = [_snapshot_fields(at, json.loads(view))
            for at, view in frame.sort("at", "robot_id").select("at", "view").iter_rows()]
    return rows[:limit], len(rows)


def _snapshot_fields(at: float, view: dict[str, Any]) -> dict[str, Any]:
    counts = view.get("counts", {})
    return {
        "at": at, "robot_id": view.get("robot_id", ""), "mode": view.get("mode", ""),
        "mode_since": view.get("mode_since"), "seq": view.get("seq"), "last_seen": view.get("last_seen"),
        "ai_model_version": view.get("ai_model_version", ""), "firmware": view.get("firmware", ""),
        "codes": ", ".join(view.get("codes", [])),
        "open": ", ".join(f"{a['detector']}{':' + a['signal'] if a['signal'] else ''} ({a['severity']})"
                          for a in view.get("anomalies", [])),
        "events": counts.get("events"), "duplicates": counts.get("duplicates"),
        "rejected": counts.get("rejected"), "missing": counts.get("missing"),
    }


def change_counts(changes: pl.DataFrame) -> dict[str, int]:
    """Changes per kind, every kind present (as `twin.compare.count_changes`)."""
    counts = dict.fromkeys(KINDS, 0)
    for kind, n in changes.group_by("kind").len().iter_rows():
        counts[kind] = n
    return counts

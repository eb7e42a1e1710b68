"""The report as one HTML file that opens anywhere, offline.

Pictures are PNG data URIs and the style sheet is inline: the file can be
mailed, attached to a ticket or archived and still show everything, with no
network and no JavaScript. Every piece of text from the data is escaped
(`html.escape`) because robot ids, commands and paths are input, not markup.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from streams.analysis.report import plots
from streams.analysis.report.data import (
    KINDS, ReplayDir, RobotView, by_importance, change_counts, episode_frame, load, ranked_robots, robot_view,
    selected_robot, snapshot_rows, top_faults,
)

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f; margin: 0;
       background: #f5f5f7; }
main { max-width: 1320px; margin: 0 auto; padding: 24px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 32px 0 8px;
     border-bottom: 1px solid #ddd; padding-bottom: 4px; } h3 { font-size: 15px; margin: 20px 0 6px; }
pre { background: #1e1e1e; color: #e8e8e8; padding: 10px 12px; border-radius: 4px; white-space: pre-wrap;
      word-break: break-all; }
table { border-collapse: collapse; font-size: 12px; margin: 6px 0 12px; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: left; vertical-align: top; }
.t { white-space: nowrap; }
.scroll { overflow-x: auto; }
th { background: #f0f0f0; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; display: block; margin: 6px 0; }
.sev-critical { color: #fff; background: #d62728; } .sev-warning { background: #f0a202; }
.muted { color: #6e6e73; } dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; }
dt { color: #6e6e73; } dd { margin: 0; }
"""


class Markup(str):
    """Text that is already HTML (built here from escaped parts); `_cell` leaves it alone."""


def esc(value: Any) -> str:
    """Any value as escaped HTML text; None shows as empty."""
    return "" if value is None else html.escape(str(value), quote=True)


def utc(ts: float | None) -> str:
    """Epoch seconds as an ISO-8601 UTC time to the second (the CLI's and the alerts' zone)."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def when(ts: float | None, empty: str = "") -> Markup:
    """A UTC time for a table cell, kept on one line (browsers break ISO times at the hyphens)."""
    return Markup(f'<span class="t">{esc(utc(ts) if ts is not None else empty)}</span>')


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def img(data: bytes, alt: str) -> Markup:
    return Markup(f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">')


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> Markup:
    """A plain table; cells are escaped unless they are `Markup`, numbers are right-aligned."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>\n" for row in rows)
    return Markup(f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table></div>')


def _cell(value: Any) -> str:
    if isinstance(value, Markup):
        return f"<td>{value}</td>"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f'<td class="num">{esc(round(value, 3) if isinstance(value, float) else value)}</td>'
    return f"<td>{esc(value)}</td>"


def severity(name: str) -> Markup:
    return Markup(f'<span class="sev-{esc(name)}">&nbsp;{esc(name)}&nbsp;</span>')


def write_report(out_dir: Path, *, max_robots: int = 8) -> Path:
    """Read a replay's directory and write `report.html` into it; returns its path."""
    run = load(out_dir)
    episodes = episode_frame(run)
    ranked = by_importance(episodes)
    robots = ranked_robots(episodes)
    chosen = selected_robot(run)
    shown = _shown(run, robots, chosen, max_robots)
    sections = [_header(run, episodes, robots), _top_faults(ranked, shown), _timeline(run, ranked, shown),
                _robots(run, episodes, shown, robots, chosen), _snapshots(run, shown), _what_if(run)]
    path = out_dir / "report.html"
    path.write_text(_page(f"Replay report {utc(run.start)} – {utc(run.end)}", sections), encoding="utf-8")
    return path


def _shown(run: ReplayDir, robots: list[str], chosen: str | None, max_robots: int) -> list[str]:
    """Robots that get plots: the one the replay selected (with or without alerts), then the most severe."""
    has_events = chosen is not None and run.events.filter(pl.col("robot_id") == chosen).height > 0
    first = [chosen] if chosen is not None and has_events else []
    return [*first, *(r for r in robots if r not in first)][:max_robots]


def _page(title: str, sections: list[str]) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head>\n"
            f"<body><main>\n<h1>{esc(title)}</h1>\n" + "\n".join(sections) + "\n</main></body></html>\n")


def _header(run: ReplayDir, episodes: pl.DataFrame, robots: list[str]) -> str:
    """Window, selection, source and counts, then the command that reproduces the report."""
    meta = run.meta
    selection = {k: v for k, v in (meta.get("selection") or {}).items() if v}
    facts = [
        ("window (UTC)", f"{utc(run.start)} – {utc(run.end)} ({duration(run.end - run.start)})"),
        ("selection", ", ".join(f"{k}={v}" for k, v in selection.items()) or "the whole fleet"),
        ("source", meta.get("source", "unknown")),
        ("detectors", meta.get("detectors", "unknown")),
        ("what-if configuration", meta.get("what_if") or "none"),
        ("records / events / rejected", " / ".join(str(meta.get(k, "?")) for k in ("records", "events", "rejected"))),
        ("anomaly messages / episodes", f"{meta.get('anomalies', run.anomalies.height)} / {episodes.height}"),
        ("robots with anomalies", str(len(robots))),
    ]
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts)
    command = meta.get("command") or f"fleet-twin report {run.path}"
    return (f"<section><dl>{dl}</dl>\n<h3>Reproduce</h3>\n<pre>{esc(command)}</pre>\n"
            f'<p class="muted">Regenerate this page: <code>fleet-twin report {esc(run.path)}</code></p></section>')


def _top_faults(ranked: pl.DataFrame, shown: list[str], n: int = 10) -> str:
    """The few groups to read first: a site incident with its robots, or a fault on its own."""
    if ranked.height == 0:
        return ""
    top = top_faults(ranked, n)
    rows = [(r["rank"], _about(r["subject"], r["subject"] in shown),
             " / ".join(p for p in (r["site"], r["model"]) if p), ":".join(p for p in (r["detector"], r["signal"]) if p),
             severity(r["severity"]), when(r["opened"]),
             duration(r["end"] - r["opened"]) + (" (still open)" if r["still_open"] else ""),
             r["robots"], r["episodes"], r["detectors"])
            for r in top.iter_rows(named=True)]
    groups = ranked["rank"].n_unique()
    return ("<section><h2>Top faults</h2>\n<p class=\"muted\">The " + f"{top.height} of {groups} "
            "fault groups to read first (a site incident with the robot episodes it took in, or one episode on "
            f"its own; {ranked.height} episodes in all), worst severity first, then the longest.</p>\n"
            + table(["#", "about", "site / model", "what", "severity", "opened", "for", "robots", "episodes",
                     "detectors"], rows) + "</section>")


def _timeline(run: ReplayDir, episodes: pl.DataFrame, shown: list[str], max_rows: int = 60,
              limit: int = 500) -> str:
    """Every alert episode as a bar, then as a table, in the order of `by_importance` (fault groups, worst first)."""
    if episodes.height == 0:
        return "<section><h2>Alert timeline</h2><p>No anomaly opened in this window.</p></section>"
    note = ('<p class="muted">Grouped by site incident (# is the group\'s place among the top faults), '
            "worst severity first, then the longest.</p>")
    note += (f'<p class="muted">The picture shows the first {max_rows} of {episodes.height} episodes.</p>'
             if episodes.height > max_rows else "")
    if episodes.height > limit:
        note += f'<p class="muted">The table shows the first {limit} of {episodes.height} episodes.</p>'
    incidents = dict(zip(episodes["id"].to_list(), episodes["subject"].to_list()))
    rows = [(r["rank"], when(r["opened"]), when(r["resolved"], "open"), duration(r["end"] - r["opened"]),
             _about(r["subject"], r["robot_id"] in shown), " / ".join(p for p in (r["site"], r["model"]) if p),
             r["detector"], r["signal"], severity(r["severity"]), r["score"],
             incidents.get(r["caused_by"], r["caused_by"]), r["id"])
            for r in episodes.head(limit).iter_rows(named=True)]
    headers = ["#", "opened", "resolved", "for", "about", "site / model", "detector", "signal", "severity",
               "peak score", "part of incident", "id"]
    return ("<section><h2>Alert timeline</h2>\n"
            + img(plots.timeline(episodes, run.start, run.end, max_rows), "alert timeline")
            + note + table(headers, rows) + "</section>")


def _about(subject: str, has_section: bool) -> Markup:
    """Who an episode is about, on one line; a link to the robot's plots when it has some."""
    text = f'<span class="t">{esc(subject)}</span>'
    return Markup(f'<a href="#robot-{esc(subject)}">{text}</a>' if has_section else text)


def _robots(run: ReplayDir, episodes: pl.DataFrame, shown: list[str], robots: list[str],
            chosen: str | None = None) -> str:
    """A panel per robot shown (the selected one first, then the most severe): modes, alerts and signals
    against peers; the selected robot's every signal, alerted or not."""
    if not shown:
        return ""
    rest = [r for r in robots if r not in shown]
    more = (f'<p class="muted">{len(rest)} more robots with anomalies are in the table above: '
            f"{esc(', '.join(rest))}</p>" if rest else "")
    parts = [_robot(run, robot_view(run, episodes, rid, every_signal=rid == chosen)) for rid in shown]
    also = " (for the robot the replay selected, every signal it reported)" if chosen in shown else ""
    return ("<section><h2>Affected robots</h2>\n<p class=\"muted\">Top band: the robot's mode over time (gaps: no "
            f"reports) and its alerts that have no single signal; below, each alerted signal{also} (blue) against the "
            "other robots of the same model and site (grey median and min–max band); shaded: the alert's "
            "open period.</p>\n" + "\n".join(parts) + more + "</section>")


def _robot(run: ReplayDir, view: RobotView) -> str:
    rows = [(when(r["opened"]), when(r["resolved"], "open"), r["detector"], r["signal"], severity(r["severity"]),
             r["score"]) for r in view.episodes.iter_rows(named=True)]
    peers = view.peers["robot_id"].n_unique()
    return (f'<h3 id="robot-{esc(view.robot_id)}">{esc(view.robot_id)} '
            f'<span class="muted">{esc(view.model)} at {esc(view.site)}, '
            f'{peers} {"peer" if peers == 1 else "peers"} in the data</span></h3>\n'
            + img(plots.robot(view, run.start, run.end),
                  f"signals of {view.robot_id}: {', '.join(view.signals) or 'none plotted'}")
            + table(["opened", "resolved", "detector", "signal", "severity", "peak score"], rows))


def _snapshots(run: ReplayDir, robots: list[str]) -> str:
    """The twins as they stood at each requested instant: what the API would have answered."""
    rows, total = snapshot_rows(run, robots)
    if not total:
        return "<section><h2>Twin snapshots</h2><p>No snapshot was requested.</p></section>"
    whose = "the robots above" if robots else "every selected robot"
    note = f" (first {len(rows)} of {total})" if total > len(rows) else ""
    headers = ["at", "robot", "mode", "mode since", "seq", "last seen", "AI model", "firmware", "codes",
               "open anomalies", "events", "duplicates", "rejected", "missing"]
    cells = [(when(r["at"]), r["robot_id"], r["mode"], when(r["mode_since"]), r["seq"], when(r["last_seen"]),
              r["ai_model_version"], r["firmware"], r["codes"], r["open"], r["events"], r["duplicates"],
              r["rejected"], r["missing"]) for r in rows]
    return (f"<section><h2>Twin snapshots</h2><p class=\"muted\">Of {whose}{esc(note)}.</p>\n"
            + table(headers, cells) + "</section>")


def _what_if(run: ReplayDir, limit: int = 300) -> str:
    """How the alternative detector configuration would have alerted, when the replay ran one."""
    if run.changes is None:
        return ""
    counts = change_counts(run.changes)
    changed = run.changes.filter(pl.col("kind") != "same").sort(
        pl.coalesce("base_opened", "other_opened"), "robot_id")
    rows = [(r["kind"], r["robot_id"] or r["site"] or r["model"], r["site"], r["model"], r["detector"],
             r["signal"], when(r["base_opened"]), when(r["other_opened"]), r["shift_s"])
            for r in changed.head(limit).iter_rows(named=True)]
    note = f" (first {limit} of {changed.height})" if changed.height > limit else ""
    what = run.meta.get("what_if") or "an alternative configuration"
    return (f"<section><h2>What if</h2><p>Alerts with <code>{esc(what)}</code> compared with "
            f"<code>{esc(run.meta.get('detectors', 'the base configuration'))}</code>.</p>\n"
            + table(KINDS, [[counts[k] for k in KINDS]])
            + f"<h3>Alerts that changed{esc(note)}</h3>"
            + (table(["kind", "about", "site", "model", "detector", "signal", "base opened", "other opened",
                      "shift (s)"], rows) if rows else "<p>None: both configurations alert alike.</p>")
            + "</section>")

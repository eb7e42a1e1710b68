"""The model audit as one HTML page that opens anywhere, offline, as the incident report does.

Built with the incident report's helpers (`streams.analysis.report.page`):
inline style, the figure as a PNG data URI, every piece of text from the log
escaped (principals and reasons are operator input, not markup).
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl
from matplotlib.figure import Figure

from streams.analysis.audit import Audit
from streams.analysis.report.page import Markup, _page, duration, esc, img, table, utc, when
from streams.analysis.report.plots import WIDTH_IN, png
from twin.kpi import KINDS

VERSION_COLOURS = ("#1f4e9c", "#8c8c8c")
"""The audited version, then its predecessor."""


def page(found: Audit) -> str:
    """The whole page: the question and the sources, the rates, the robots, the changes, the gate."""
    title = f"Model audit: {found.version}"
    sections = [_header(found), _rates(found), _robots(found), _changes(found), _gates(found), _undecodable(found)]
    return _page(title, [s for s in sections if s])


def _header(found: Audit) -> str:
    meta = found.meta
    on = found.robots.filter(pl.col("version") == found.version)
    facts = [
        ("version", found.version),
        ("compared with", found.predecessor or "nothing: the first release in the registry"),
        ("robot model", meta.get("model") or "every model that ran it"),
        ("window (UTC)", f"{utc(meta['from'])} – {utc(meta['to'])}"),
        ("telemetry from", meta.get("source", "")),
        ("changes / gate from", f"{meta.get('desired_topic', '')} / {meta.get('rollouts_topic', '')}"),
        ("records folded / rejected", f"{meta.get('records', 0):,} / {meta.get('rejected', 0):,}"),
        ("robots that ran it", f"{on.height:,}"),
        ("operating hours on it", f"{on['operating_h'].sum():,.2f}"),
    ]
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts)
    command = meta.get("command") or ""
    return (f"<section><dl>{dl}</dl>\n<h3>Reproduce</h3>\n<pre>{esc(command)}</pre>\n"
            '<p class="muted">Operating hours are working time between reports (twin.kpi.exposure); safety '
            "events are counted by twin.kpi.safety_events, the functions the worker's per-version counters "
            "use. Intervals are exact 95% intervals: Poisson (Garwood) for a rate, conditional binomial "
            "(Clopper-Pearson) for the ratio of the version's rate to its predecessor's: an interval wholly "
            "above 1 says the version has more of that kind of event.</p></section>")


def _rates(found: Audit) -> str:
    """Per kind: the version against its predecessor over every robot audited, then per robot model."""
    versions = [v for v in (found.version, found.predecessor) if v]
    parts = ["<section><h2>Safety events per 1,000 operating hours</h2>"]
    every = found.rates.filter(pl.col("scope") == "all")
    if every["operating_h"].sum() > 0:
        parts.append(img(_rate_plot(every, versions), "safety events per 1,000 h with 95% intervals"))
    for scope in found.rates["scope"].unique(maintain_order=True).to_list():
        rows = found.rates.filter(pl.col("scope") == scope)
        ratios = {r["kind"]: r for r in found.comparison.filter(pl.col("scope") == scope).iter_rows(named=True)}
        flat = [[kind, *(x for v in versions for x in _cells(rows, v, kind)), *_ratio(ratios.get(kind), versions)]
                for kind in KINDS]
        hours = " / ".join(f"{v}: {_hours(rows, v):,.2f} h" for v in versions)
        parts.append(f"<h3>{esc('all robots audited' if scope == 'all' else scope)} "
                     f'<span class="muted">({esc(hours)})</span></h3>')
        ratio_head = [f"{versions[0]} / {versions[1]}", "95% interval"] if len(versions) > 1 else []
        parts.append(table(["kind", *(f"{v} {h}" for v in versions for h in ("events", "per 1,000 h", "95% interval")),
                            *ratio_head], flat))
    parts.append("</section>")
    return "\n".join(parts)


def _ratio(row: dict[str, Any] | None, versions: list[str]) -> list[Any]:
    """The rate ratio and its interval, or why there is none."""
    if len(versions) < 2:
        return []
    if row is None or row["ratio"] is None:
        return ["no events or no exposure", ""]
    return [_number(row["ratio"]), f"{_number(row['lower_95'])} – {_number(row['upper_95'])}"]


def _number(value: float) -> str:
    return "∞" if math.isinf(value) else f"{value:.3g}"


def _hours(rows: pl.DataFrame, version: str) -> float:
    hours = rows.filter(pl.col("version") == version)["operating_h"].max()
    return float(hours) if isinstance(hours, int | float) else 0.0


def _cells(rows: pl.DataFrame, version: str, kind: str) -> tuple[Any, Any, Any]:
    row = rows.filter((pl.col("version") == version) & (pl.col("kind") == kind)).row(0, named=True)
    if row["rate_per_1000h"] is None:
        return row["events"], "no exposure", ""
    return row["events"], round(row["rate_per_1000h"], 3), f"{row['lower_95']:.3f} – {row['upper_95']:.3f}"


def _rate_plot(rates: pl.DataFrame, versions: list[str]) -> bytes:
    fig = Figure(figsize=(WIDTH_IN * 0.7, 3.2))
    ax = fig.add_subplot()
    width = 0.8 / len(versions)
    for i, (version, colour) in enumerate(zip(versions, VERSION_COLOURS)):
        rows = {r["kind"]: r for r in rates.filter(pl.col("version") == version).iter_rows(named=True)}
        xs = [k + (i - (len(versions) - 1) / 2) * width for k in range(len(KINDS))]
        mid = [rows[k]["rate_per_1000h"] or 0.0 for k in KINDS]
        low = [m - (rows[k]["lower_95"] or 0.0) for m, k in zip(mid, KINDS)]
        high = [(rows[k]["upper_95"] or 0.0) - m for m, k in zip(mid, KINDS)]
        ax.bar(xs, mid, width, yerr=[low, high], capsize=3, color=colour, label=version)
    ax.set_xticks(range(len(KINDS)), KINDS)
    ax.set_ylabel("per 1,000 operating h")
    ax.legend(loc="upper right")
    fig.tight_layout()
    return png(fig)


def _robots(found: Audit, limit: int = 500) -> str:
    on = found.robots.filter(pl.col("version") == found.version).sort("first_ts", "robot_id")
    if on.height == 0:
        return f"<section><h2>Robots that ran {esc(found.version)}</h2><p>None in this window.</p></section>"
    rows = [(r["robot_id"], r["sector"], r["site"], r["model"], when(r["first_ts"]), when(r["last_ts"]),
             duration(r["last_ts"] - r["first_ts"]), round(r["operating_h"], 3), *(r[k] for k in KINDS))
            for r in on.head(limit).iter_rows(named=True)]
    note = f'<p class="muted">The first {limit} of {on.height} (every one is in robots.parquet).</p>' \
        if on.height > limit else ""
    return (f"<section><h2>Robots that ran {esc(found.version)}</h2>\n"
            + table(["robot", "sector", "site", "model", "first event", "last event", "span", "operating h", *KINDS],
                    rows) + note + "</section>")


def _changes(found: Audit) -> str:
    head = f"<section><h2>Desired-state changes that touched {esc(found.version)}</h2>"
    if found.changes.height == 0:
        return head + "<p>None in this window.</p></section>"
    rows = [(when(r["ts"]), Markup(f"<b>{esc(r['principal'])}</b>"), r["reason"], r["selector"], r["field"],
             "(cleared)" if r["value"] is None else r["value"], r["how"],
             f"{r['plan']} wave {r['wave']}" if r["plan"] else "", r["change_id"])
            for r in found.changes.iter_rows(named=True)]
    return head + table(["when", "who", "why", "selector", "field", "value", "how", "plan", "change id"],
                        rows) + "</section>"


def _gates(found: Audit) -> str:
    head = "<section><h2>Gate decisions</h2>"
    if found.gates.height == 0:
        return head + "<p>None: no rollout plan that touched this version looked at its gate.</p></section>"
    rows = [(when(r["ts"]), r["plan"], r["wave"], r["share"], Markup(f"<b>{esc(r['decision'])}</b>"),
             r["statistic"], r["lower"], r["upper"], r["status"], r["evidence"])
            for r in found.gates.iter_rows(named=True)]
    return head + table(["when", "plan", "wave", "share", "decision", "statistic", "lower (advance)",
                         "upper (halt)", "plan status", "evidence"], rows) + "</section>"


def _undecodable(found: Audit) -> str:
    bad = found.meta.get("undecodable") or []
    if not bad:
        return ""
    return ("<section><h2>Records that did not decode</h2><p>Left out of the tables above:</p><ul>"
            + "".join(f"<li>{esc(line)}</li>" for line in bad) + "</ul></section>")

"""The report's pictures, as PNG bytes ready to embed.

Figures are built with matplotlib's object API on the Agg canvas, never
pyplot: no global figure registry to leak, no display backend to pick, so the
report renders the same on a server without a screen. Every time axis is in
UTC, the time the replay's command and the alerts are written in.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import matplotlib.dates as mdates
import numpy as np
import polars as pl
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from streams.analysis.report.data import RobotView, mode_segments, peer_band

DPI = 100
WIDTH_IN = 12.0
SEVERITY_COLOURS = {"warning": "#f0a202", "critical": "#d62728"}
MODE_COLOURS = {"idle": "#c9c9c9", "working": "#74c476", "charging": "#6baed6", "fault": "#8c510a",
                "estop": "#000000", "maintenance": "#9e9ac8", "offline": "#636363"}
"""Pale for the ordinary modes, dark for fault and e-stop; none shares a severity's colour."""
ROBOT_COLOUR, PEER_COLOUR = "#1f4e9c", "#8c8c8c"
_EPOCH = mdates.date2num(datetime(1970, 1, 1, tzinfo=UTC))  # type: ignore[no-untyped-call]  # matplotlib.dates ships no annotations


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes, drawn by Agg."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def num(ts: Any) -> Any:
    """Epoch seconds to matplotlib date numbers (whatever `date.epoch` is set to)."""
    return np.asarray(ts, dtype=float) / 86400.0 + _EPOCH


def _utc_axis(ax: Axes, start: float, end: float) -> None:
    locator = mdates.AutoDateLocator(tz=UTC, minticks=4, maxticks=10)  # type: ignore[no-untyped-call]  # matplotlib.dates ships no annotations
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))  # type: ignore[no-untyped-call]  # matplotlib.dates ships no annotations
    ax.set_xlim(num(start), num(end))
    ax.tick_params(labelsize=8)
    ax.grid(axis="x", color="#e5e5e5", linewidth=0.6)


def timeline(episodes: pl.DataFrame, start: float, end: float, max_rows: int = 60) -> bytes:
    """One bar per episode from opening to resolution (or the window's end), coloured by severity."""
    shown = episodes.head(max_rows)
    fig = Figure(figsize=(WIDTH_IN, 1.2 + 0.26 * max(shown.height, 1)), layout="constrained")
    ax = fig.add_subplot()
    for y, row in enumerate(shown.iter_rows(named=True)):
        left, right = num(row["opened"]), num(row["end"])
        ax.barh(y, max(right - left, 1.5 / 86400), left=left, height=0.7,
                color=SEVERITY_COLOURS.get(row["severity"], "#888888"))
        if row["resolved"] is None:  # still open at the window's end
            ax.plot(right, y, marker=">", color="black", markersize=4)
    ax.set_yticks(range(shown.height), [_label(r) for r in shown.iter_rows(named=True)], fontsize=8)
    ax.set_ylim(shown.height - 0.5, -0.5)
    _utc_axis(ax, start, end)
    ax.set_xlabel("time (UTC); ▸ = still open at the end of the window", fontsize=8)
    ax.legend(handles=_severity_legend(), loc="upper right", fontsize=8)
    return png(fig)


def _label(row: dict[str, Any]) -> str:
    return " · ".join(p for p in (row["subject"], row["detector"], row["signal"]) if p)


def _severity_legend() -> list[Patch]:
    return [Patch(color=c, label=s) for s, c in SEVERITY_COLOURS.items()]


def robot(view: RobotView, start: float, end: float) -> bytes:
    """The robot's modes and whole-robot alerts on top, then one panel per alerted signal."""
    lanes = _lanes(view)
    n = len(view.signals)
    panels = [0.3 * len(lanes) + 0.3] + [1.9] * n
    gap, height = 0.3, sum(panels) + 0.3 * n + 0.75
    fig = Figure(figsize=(WIDTH_IN, height))
    # Fixed margins, not a constrained layout: every robot's time axis then
    # spans the same pixels, so the robots line up when scrolled through.
    fig.subplots_adjust(left=0.11, right=0.83, top=1 - 0.15 / height, bottom=0.6 / height,
                        hspace=gap / (sum(panels) / len(panels)))
    axes = fig.subplots(1 + n, 1, sharex=True, squeeze=False, gridspec_kw={"height_ratios": panels})[:, 0]
    _mode_panel(axes[0], view, lanes)
    for ax, signal in zip(axes[1:], view.signals):
        _signal_panel(ax, view, signal, start, end)
    for ax in axes:
        _utc_axis(ax, start, end)
    axes[-1].set_xlabel("broker time (UTC)", fontsize=8)
    return png(fig)


def _lanes(view: RobotView) -> list[tuple[str, pl.DataFrame]]:
    """Rows under the mode band: alerts with no plotted signal, by detector, then linked site incidents."""
    whole = view.episodes.filter(~pl.col("signal").is_in(view.signals))
    lanes = [("mode", pl.DataFrame())]
    for (detector, signal), group in whole.group_by("detector", "signal", maintain_order=True):
        lanes.append((f"{detector}:{signal}" if signal else str(detector), group))
    if view.incidents.height:
        lanes.append(("site incident", view.incidents))
    return lanes


def _mode_panel(ax: Axes, view: RobotView, lanes: list[tuple[str, pl.DataFrame]]) -> None:
    segments = mode_segments(view.events)
    for start, stop, mode in segments.iter_rows():
        ax.broken_barh([(num(start), num(stop) - num(start))], (-0.4, 0.8), color=MODE_COLOURS.get(mode, "#000"))
    for y, (_, group) in enumerate(lanes[1:], start=1):
        for row in group.iter_rows(named=True):
            left, right = num(row["opened"]), num(row["end"])
            ax.broken_barh([(left, max(right - left, 1.5 / 86400))], (y - 0.3, 0.6),
                           color=SEVERITY_COLOURS.get(row["severity"], "#888888"))
    ax.set_yticks(range(len(lanes)), [name for name, _ in lanes], fontsize=8)
    ax.set_ylim(len(lanes) - 0.5, -0.5)
    seen = [m for m in MODE_COLOURS if m in set(segments["mode"].to_list())]
    handles = [Patch(color=MODE_COLOURS[m], label=m) for m in seen] + _severity_legend()
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)


def _signal_panel(ax: Axes, view: RobotView, signal: str, start: float, end: float) -> None:
    for row in view.episodes.filter(pl.col("signal") == signal).iter_rows(named=True):
        ax.axvspan(num(row["opened"]), num(row["end"]), color=SEVERITY_COLOURS.get(row["severity"], "#888"),
                   alpha=0.18, linewidth=0)
    band = peer_band(view.peers, signal, start, end)
    if band.height:
        t = num(band["t"].to_numpy())
        ax.fill_between(t, band["lo"].to_numpy(), band["hi"].to_numpy(), color=PEER_COLOUR, alpha=0.25,
                        linewidth=0, label=f"peers min–max ({view.peers.drop_nulls(signal)['robot_id'].n_unique()})")
        ax.plot(t, band["med"].to_numpy(), color=PEER_COLOUR, linewidth=0.9, label="peers median")
    own = view.events.select("received_ts", signal).drop_nulls(signal)
    ax.plot(num(own["received_ts"].to_numpy()), own[signal].to_numpy(), color=ROBOT_COLOUR, linewidth=0.9,
            label=view.robot_id)
    ax.set_ylabel(signal, fontsize=8)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)

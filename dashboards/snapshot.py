"""PNG pictures of the dashboards, drawn with matplotlib from Prometheus data.

No Grafana needed: each panel of a dashboard's JSON model is laid out on the
same 24-column grid, its PromQL (variables substituted) is run against the
Prometheus HTTP API, and it is drawn the way Grafana would show it: time
series as lines (stacked where the panel stacks), stats as a big number with a
sparkline, bar gauges as bars, tables as tables. A query without data shows
"No data", an erroring one its error, so the picture never hides a problem.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from dashboards.catalogue import is_prometheus  # noqa: E402
from dashboards.prom import Prometheus, QueryFailed, Series, duration, resolve, substitute  # noqa: E402

BG, PANEL, BORDER, TEXT, MUTED = "#111217", "#181b1f", "#2c3235", "#ccccdc", "#8e8e8e"
PALETTE = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#705da0",
           "#37872d", "#fade2a", "#447ebc", "#c15c17", "#890f02", "#0a437c", "#6d1f62", "#584477"]
COLOURS = {"green": "#73bf69", "yellow": "#fade2a", "orange": "#ff9830", "red": "#f2495c", "blue": "#5794f2"}
ROW_PX, COL_IN = 0.42, 0.8
"""Inches per grid row (Grafana: 30 px + margin) and per grid column."""
MAX_SERIES = 12


def fmt(value: float, unit: str, decimals: float | None = None) -> str:
    """A value the way Grafana's unit would print it."""
    if not math.isfinite(value):
        return "–"
    if unit == "percentunit":
        return f"{value * 100:.{1 if decimals is None else int(decimals)}f}%"
    if unit in ("s", "ms"):
        seconds = value / 1000 if unit == "ms" else value
        if abs(seconds) < 1:
            return f"{seconds * 1000:.{0 if abs(seconds) >= 0.1 else 1}f} ms"
        return f"{seconds:.2f} s" if seconds < 60 else f"{seconds / 60:.1f} min"
    if unit == "bytes":
        for scale, name in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if abs(value) >= scale:
                return f"{value / scale:.1f} {name}"
        return f"{value:.0f} B"
    suffix = "/s" if unit == "ops" else ""
    if decimals is not None:
        return f"{value:,.{int(decimals)}f}{suffix}"
    if abs(value) >= 1e6:
        return f"{value / 1e6:.2f}M{suffix}"
    if abs(value) >= 1e4:
        return f"{value / 1e3:.1f}K{suffix}"
    if value == int(value):
        return f"{int(value):,}{suffix}"
    return f"{value:.3g}{suffix}"


def legend(template: str, labels: dict[str, str]) -> str:
    """Grafana's legend format: `{{label}}` replaced by the series' label value."""
    if not template:
        return ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__") or "value"
    out = template
    for key, value in labels.items():
        out = out.replace(f"{{{{{key}}}}}", value).replace(f"{{{{ {key} }}}}", value)
    return out


def _peak(s: Series) -> float:
    return max((abs(v) for v in s.values if math.isfinite(v)), default=0.0)


def threshold_colour(panel: dict[str, Any], value: float) -> str:
    steps = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps", [])
    colour = "blue"
    for step in steps:
        if step.get("value") is None or (math.isfinite(value) and value >= step["value"]):
            colour = step["color"]
    return COLOURS.get(colour, colour)


class Renderer:
    """Draws dashboards from one Prometheus over one time window."""

    def __init__(self, prom: Prometheus, *, window_s: float = 3600, end: float | None = None,
                 scrape_s: float = 5.0) -> None:
        self.prom = prom
        self.window_s = window_s
        self.end = time.time() if end is None else end
        self.start = self.end - window_s
        self.step = max(scrape_s, round(window_s / 240))
        self.rate_s = max(60.0, 4 * scrape_s, 2 * self.step)

    def _expr(self, target: dict[str, Any], values: dict[str, str]) -> str:
        return substitute(target["expr"], values, range_s=self.window_s, rate_s=self.rate_s, interval_s=self.step)

    def _range(self, target: dict[str, Any], values: dict[str, str]) -> list[Series]:
        if not is_prometheus(target):  # a twin API panel: one robot's history, not drawn from Prometheus
            return []
        return self.prom.range(self._expr(target, values), self.start, self.end, self.step)

    def _instant(self, target: dict[str, Any], values: dict[str, str]) -> list[Series]:
        if not is_prometheus(target):
            return []
        return self.prom.instant(self._expr(target, values), self.end)

    def render(self, model: dict[str, Any], out: Path, given: dict[str, str] | None = None) -> Path:
        values = resolve(model, self.prom, given or {})
        panels = model.get("panels", [])
        rows = max((p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels), default=1)
        header = 1.0
        fig = plt.figure(figsize=(24 * COL_IN, rows * ROW_PX + header), facecolor=BG)
        height = rows * ROW_PX + header
        shown = {k: v for k, v in values.items() if v}
        subtitle = "   ".join(f"{k} = {v}" for k, v in shown.items())
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.end))
        fig.text(0.006, 1 - 0.38 / height, model.get("title", ""), color=TEXT, fontsize=17, weight="bold",
                 va="center")
        fig.text(0.994, 1 - 0.38 / height, f"last {duration(self.window_s)} to {when}   {subtitle}",
                 color=MUTED, fontsize=10, va="center", ha="right")
        fig.text(0.006, 1 - 0.75 / height, f"fleet-twin · data: Prometheus {self.prom.url}", color=MUTED,
                 fontsize=8, va="center")
        links = [f"{link['title']}: {link['url']}" for link in model.get("links", []) if link.get("type") == "link"]
        if links:
            fig.text(0.994, 1 - 0.75 / height, substitute("    ".join(links), values), color="#6e9fff",
                     fontsize=8, va="center", ha="right")
        for panel in panels:
            g = panel["gridPos"]
            box = (g["x"] / 24, 1 - (header + (g["y"] + g["h"]) * ROW_PX) / height,
                   g["w"] / 24, g["h"] * ROW_PX / height)
            if panel.get("type") == "row":
                fig.text(box[0] + 0.004, box[1] + box[3] / 2, panel.get("title", "").replace(
                    "$sector", values.get("sector", "")).replace("$site", values.get("site", "")),
                    color=TEXT, fontsize=12, weight="bold", va="center")
                continue
            self._panel(fig, box, panel, values)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=100, facecolor=BG, metadata={"Software": None})
        plt.close(fig)
        return out

    # -- panels ---------------------------------------------------------------------------------------
    def _panel(self, fig: Figure, box: tuple[float, float, float, float], panel: dict[str, Any],
               values: dict[str, str]) -> None:
        x, y, w, h = box
        pad_x, pad_y = 0.003, 0.004
        frame = fig.add_axes((x + pad_x, y + pad_y, w - 2 * pad_x, h - 2 * pad_y))
        frame.set_facecolor(PANEL)
        frame.set_xticks([])
        frame.set_yticks([])
        for spine in frame.spines.values():
            spine.set_color(BORDER)
        title = panel.get("title", "")
        for name, value in values.items():
            title = title.replace(f"${name}", value)
        frame.text(0.012, 1 - 0.02, title, transform=frame.transAxes, color=TEXT, fontsize=10, weight="bold",
                   va="top", ha="left")
        inner = (x + pad_x + 0.006, y + pad_y + 0.012, w - 2 * pad_x - 0.012, h - 2 * pad_y - 0.012)
        top_margin = 0.42 / (fig.get_figheight())
        inner = (inner[0], inner[1], inner[2], inner[3] - top_margin)
        kind = panel.get("type")
        try:
            if kind == "timeseries":
                self._timeseries(fig, inner, panel, values)
            elif kind == "stat":
                self._stat(fig, inner, panel, values, frame)
            elif kind == "bargauge":
                self._bargauge(fig, inner, panel, values, frame)
            elif kind == "table":
                self._table(fig, inner, panel, values, frame)
            else:
                frame.text(0.5, 0.5, f"({kind} panel)", transform=frame.transAxes, color=MUTED, ha="center")
        except QueryFailed as err:
            frame.text(0.5, 0.45, f"query error:\n{str(err)[:160]}", transform=frame.transAxes, color="#f2495c",
                       ha="center", va="center", fontsize=8, wrap=True)

    @staticmethod
    def _no_data(frame: Axes) -> None:
        frame.text(0.5, 0.45, "No data", transform=frame.transAxes, color=MUTED, ha="center", va="center",
                   fontsize=13)

    def _series(self, panel: dict[str, Any], values: dict[str, str]) -> list[tuple[str, Series]]:
        out = []
        for target in panel.get("targets", []):
            for s in self._range(target, values):
                out.append((legend(target.get("legendFormat", ""), s.labels), s))
        return out

    def _timeseries(self, fig: Figure, box: Sequence[float], panel: dict[str, Any], values: dict[str, str]) -> None:
        defaults = panel.get("fieldConfig", {}).get("defaults", {})
        unit = defaults.get("unit", "short")
        stacked = defaults.get("custom", {}).get("stacking", {}).get("mode") == "normal"
        series = [(name, s) for name, s in self._series(panel, values) if any(math.isfinite(v) for v in s.values)]
        right = panel.get("options", {}).get("legend", {}).get("placement") == "right"
        x, y, w, h = box
        legend_w = w * 0.3 if right else 0
        legend_h = 0 if right else min(h * 0.28, 0.022 * math.ceil(min(len(series), MAX_SERIES) / 4) + 0.01)
        ax = fig.add_axes((x + 0.03 * w + 0.012, y + legend_h + 0.02, w - legend_w - 0.03 * w - 0.014,
                           h - legend_h - 0.02))
        ax.set_facecolor(PANEL)
        ax.tick_params(colors=MUTED, labelsize=7)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        for side in ("left", "bottom"):
            ax.spines[side].set_color(BORDER)
        ax.grid(color=BORDER, linewidth=0.5)
        if not series:
            ax.set_xticks([])
            ax.set_yticks([])
            self._no_data(ax)
            return
        series.sort(key=lambda item: -_peak(item[1]))  # the series that moved most are the ones drawn
        hidden = len(series) - MAX_SERIES
        series = series[:MAX_SERIES]
        import numpy as np

        grid_t = np.arange(self.start, self.end + self.step / 2, self.step)
        dates = [mdates.date2num(np.datetime64(int(t), "s").astype(object))  # type: ignore[no-untyped-call]  # matplotlib.dates ships no annotations
                 for t in grid_t]
        matrix = np.full((len(series), len(grid_t)), np.nan)
        for i, (_name, s) in enumerate(series):
            index = {round(t): v for t, v in zip(s.times, s.values)}
            matrix[i] = [index.get(round(t), np.nan) for t in grid_t]
        present = ~np.all(np.isnan(matrix), axis=0)  # a time with no sample at all stays a gap, not a 0
        floor = np.where(present, 0.0, np.nan)
        for i, (name, _s) in enumerate(series):
            colour = PALETTE[i % len(PALETTE)]
            if stacked:
                top = floor + np.nan_to_num(matrix[i])
                ax.fill_between(dates, floor, top, color=colour, alpha=0.45, linewidth=0)
                ax.plot(dates, top, color=colour, linewidth=1, label=name)
                floor = top
            else:
                ax.plot(dates, matrix[i], color=colour, linewidth=1.2, label=name)
        highest = np.nanmax(floor if stacked else matrix) if np.any(present) else 0.0
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))  # type: ignore[no-untyped-call]  # matplotlib.dates ships no annotations
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _p: fmt(v, unit)))
        low = defaults.get("min")
        if low is not None:
            ax.set_ylim(bottom=low)
        high = defaults.get("max")
        if high is not None:
            ax.set_ylim(top=high)
        elif highest == 0 and low == 0:
            ax.set_ylim(top=1)  # all zero: a 0..1 axis, not matplotlib's 0..0.05
        ax.set_xlim(dates[0], dates[-1])
        handles, labels = ax.get_legend_handles_labels()
        if hidden > 0:
            labels[-1] = f"{labels[-1]}  (+{hidden} more)"
        if right:
            labels = [f"{name}  {fmt(s.last, unit)}" for (name, s) in series]
            labels[-1] += f"  (+{hidden} more)" if hidden > 0 else ""
            ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False,
                      labelcolor=TEXT, handlelength=1.2)
        else:
            ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(0, -0.12), ncol=4, fontsize=7,
                      frameon=False, labelcolor=TEXT, handlelength=1.2)

    def _stat(self, fig: Figure, box: Sequence[float], panel: dict[str, Any], values: dict[str, str],
              frame: Axes) -> None:
        defaults = panel.get("fieldConfig", {}).get("defaults", {})
        series = self._series(panel, values)
        points = [s for _n, s in series if any(math.isfinite(v) for v in s.values)]
        if not points:
            self._no_data(frame)
            return
        s = points[0]
        colour = threshold_colour(panel, s.last)
        x, y, w, h = box
        spark = fig.add_axes((x, y, w, h * 0.45))
        spark.axis("off")
        finite = [(t, v) for t, v in zip(s.times, s.values) if math.isfinite(v)]
        spark.fill_between([t for t, _ in finite], [v for _, v in finite], color=colour, alpha=0.18, linewidth=0)
        spark.plot([t for t, _ in finite], [v for _, v in finite], color=colour, linewidth=1)
        lo = min(v for _, v in finite)
        hi = max(v for _, v in finite)
        spark.set_ylim(min(0, lo), hi * 1.1 if hi > 0 else 1)
        frame.text(0.5, 0.42, fmt(s.last, defaults.get("unit", "short"), defaults.get("decimals")),
                   transform=frame.transAxes, color=colour, ha="center", va="center", fontsize=24, weight="bold")

    def _bargauge(self, fig: Figure, box: Sequence[float], panel: dict[str, Any], values: dict[str, str],
                  frame: Axes) -> None:
        defaults = panel.get("fieldConfig", {}).get("defaults", {})
        unit = defaults.get("unit", "short")
        rows: list[tuple[str, float]] = []
        for target in panel.get("targets", []):
            for s in self._instant(target, values):
                rows.append((legend(target.get("legendFormat", ""), s.labels), s.last))
        rows = [(n, v) for n, v in rows if math.isfinite(v)]
        if not rows:
            self._no_data(frame)
            return
        hidden = max(0, len(rows) - 20)
        rows = rows[:20]
        x, y, w, h = box
        ax = fig.add_axes((x + w * 0.28, y, w * 0.6, h))
        ax.set_facecolor(PANEL)
        ax.axis("off")
        top = defaults.get("max") or max(v for _, v in rows) or 1
        names = [n for n, _ in rows][::-1]
        vals = [v for _, v in rows][::-1]
        ax.barh(range(len(rows)), [top] * len(rows), color=BORDER, height=0.7)
        ax.barh(range(len(rows)), vals, color=[threshold_colour(panel, v) for v in vals], height=0.7)
        ax.set_xlim(0, top * 1.001)
        ax.set_ylim(-0.6, len(rows) - 0.4)
        size = max(6, min(9, int(140 / max(len(rows), 1))))
        for i, (name, v) in enumerate(zip(names, vals)):
            ax.text(-top * 0.02, i, name, color=TEXT, ha="right", va="center", fontsize=size)
            ax.text(top * 1.02, i, fmt(v, unit, defaults.get("decimals")), color=threshold_colour(panel, v),
                    ha="left", va="center", fontsize=size, weight="bold")
        if hidden:
            frame.text(0.99, 0.02, f"+{hidden} more", transform=frame.transAxes, color=MUTED, ha="right",
                       fontsize=7)

    def _table(self, fig: Figure, box: Sequence[float], panel: dict[str, Any], values: dict[str, str],
               frame: Axes) -> None:
        defaults = panel.get("fieldConfig", {}).get("defaults", {})
        names: dict[str, str] = {}
        styles: dict[str, tuple[str, float]] = {}
        for override in panel.get("fieldConfig", {}).get("overrides", []):
            props = {prop.get("id"): prop.get("value") for prop in override.get("properties", [])}
            field_name = override["matcher"]["options"]
            if "displayName" in props:
                names[field_name] = props["displayName"]
            styles[names.get(field_name, field_name)] = (props.get("unit", defaults.get("unit", "short")),
                                                          props.get("decimals", defaults.get("decimals", 2)))
        targets = panel.get("targets", [])
        merged: dict[tuple[tuple[str, str], ...], dict[str, float]] = {}
        columns: list[str] = []
        label_names: list[str] = []
        for target in targets:
            key = "Value" if len(targets) == 1 else f"Value #{target.get('refId', '')}"
            column = names.get(key, key)
            columns.append(column)
            for s in self._instant(target, values):
                labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "__name__"))
                for k, _v in labels:
                    if k not in label_names:
                        label_names.append(k)
                merged.setdefault(labels, {})[column] = s.last
        if not merged:
            self._no_data(frame)
            return
        decimals = defaults.get("decimals", 2)
        first = columns[0]
        body = sorted(merged.items(), key=lambda kv: (-kv[1].get(first, 0) if "opened" in first else 0, kv[0]))
        x, y, w, h = box
        ax = fig.add_axes((x, y, w, h))
        ax.axis("off")
        max_rows = max(3, int(h * fig.get_figheight() / 0.19) - 1)
        hidden = max(0, len(body) - max_rows)
        cells = [[dict(labels).get(k, "") for k in label_names] +
                 [fmt(row.get(c, math.nan), *styles.get(c, ("short", decimals))) for c in columns]
                 for labels, row in body[:max_rows]]
        table = ax.table(cellText=cells, colLabels=label_names + columns, loc="upper center", cellLoc="left",
                         colLoc="left", bbox=Bbox.from_bounds(0, 1 - min(1.0, (len(cells) + 1) / (max_rows + 1)), 1,
                                                              min(1.0, (len(cells) + 1) / (max_rows + 1))))
        table.auto_set_font_size(False)
        table.set_fontsize(7.5)
        for (r, _c), cell in table.get_celld().items():
            cell.set_edgecolor(BORDER)
            cell.set_facecolor(PANEL if r else "#22252b")
            cell.get_text().set_color(TEXT if r else MUTED)
        if hidden:
            frame.text(0.99, 0.01, f"+{hidden} more rows", transform=frame.transAxes, color=MUTED, ha="right",
                       fontsize=7)


def render_dashboards(prometheus_url: str, out_dir: Path, names: Sequence[str] | None = None, *,
                      window_s: float = 3600, given: dict[str, str] | None = None,
                      end: float | None = None) -> list[Path]:
    """Render `<out_dir>/<name>.png` for each named dashboard (default: all)."""
    from dashboards import render_all

    models = render_all()
    chosen = list(names) if names else list(models)
    unknown = sorted(set(chosen) - set(models))
    if unknown:
        raise KeyError(f"unknown dashboard(s): {', '.join(unknown)} (known: {', '.join(models)})")
    with Prometheus(prometheus_url) as prom:
        renderer = Renderer(prom, window_s=window_s, end=end)
        return [renderer.render(models[name], Path(out_dir) / f"{name}.png", given) for name in chosen]

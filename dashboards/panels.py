"""Shared pieces for the dashboards: the datasource, queries, panel shapes, links, variables.

Everything is built with grafana-foundation-sdk builders; the helpers only fix
this project's conventions (Prometheus datasource uid `prometheus`, units,
legends, colours) so each dashboard module reads as a list of panels.
"""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import bargauge, prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders.common import (
    ReduceDataOptions, StackingConfig, VizLegendOptions, VizTooltipOptions,
)
from grafana_foundation_sdk.builders.dashboard import (
    Dashboard, DashboardLink, QueryVariable, TextBoxVariable, ThresholdsConfig,
)
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="prometheus")
"""deploy/grafana/provisioning/datasources/prometheus.yml"""
TAG = "fleet-twin"
RATE = "$__rate_interval"

GREEN, YELLOW, ORANGE, RED, BLUE = "green", "yellow", "orange", "red", "blue"


def query(expr: str, legend: str = "", *, ref: str = "A", instant: bool = False,
          table_format: bool = False) -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    q = q.instant() if instant else q.range()
    if legend:
        q = q.legend_format(legend)
    if table_format:
        q = q.format(PromQueryFormat.TABLE)
    return q


def thresholds(*steps: tuple[float | None, str]) -> ThresholdsConfig:
    return ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(
        [model.Threshold(value=v, color=c) for v, c in steps])


def _colour(mode: model.FieldColorModeId) -> Builder[model.FieldColor]:
    from grafana_foundation_sdk.builders.dashboard import FieldColor

    return FieldColor().mode(mode)


def _links(links: Sequence[DashboardLink]) -> list[Builder[model.DashboardLink]]:
    return list(links)


def ts(title: str, description: str, targets: Sequence[prometheus.Dataquery], *, unit: str = "short",
       w: int = 12, h: int = 8, stack: bool = False, min_val: float | None = 0, max_val: float | None = None,
       links: Sequence[DashboardLink] = (), legend_right: bool = False) -> timeseries.Panel:
    """A time series panel; `stack` stacks the series (counts that add up, e.g. robots by mode)."""
    p = (timeseries.Panel().title(title).description(description).datasource(DATASOURCE)
         .targets(list(targets)).unit(unit).span(w).height(h)
         .line_width(1).fill_opacity(35 if stack else 8).show_points(common.VisibilityMode.NEVER)
         .tooltip(VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING))
         .legend(VizLegendOptions().show_legend(True)
                 .display_mode(common.LegendDisplayMode.TABLE if legend_right else common.LegendDisplayMode.LIST)
                 .placement(common.LegendPlacement.RIGHT if legend_right else common.LegendPlacement.BOTTOM)
                 .calcs(["lastNotNull"] if legend_right else []))
         .color_scheme(_colour(model.FieldColorModeId.PALETTE_CLASSIC)))
    if stack:
        p = p.stacking(StackingConfig().mode(common.StackingMode.NORMAL).group("A"))
    if min_val is not None:
        p = p.min(min_val)
    if max_val is not None:
        p = p.max(max_val)
    if links:
        p = p.links(_links(links))
    return p


def big(title: str, description: str, target: prometheus.Dataquery, *, unit: str = "short",
        steps: Sequence[tuple[float | None, str]] = ((None, BLUE),), w: int = 4, h: int = 4,
        decimals: float | None = None, links: Sequence[DashboardLink] = ()) -> stat.Panel:
    """A single number (the latest value), coloured by thresholds, with a sparkline."""
    p = (stat.Panel().title(title).description(description).datasource(DATASOURCE).with_target(target)
         .unit(unit).span(w).height(h).thresholds(thresholds(*steps))
         .color_scheme(_colour(model.FieldColorModeId.THRESHOLDS))
         .color_mode(common.BigValueColorMode.VALUE).graph_mode(common.BigValueGraphMode.AREA)
         .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False)))
    if decimals is not None:
        p = p.decimals(decimals)
    if links:
        p = p.links(_links(links))
    return p


def bars(title: str, description: str, target: prometheus.Dataquery, *, unit: str = "short",
         steps: Sequence[tuple[float | None, str]] = ((None, BLUE),), w: int = 12, h: int = 10,
         max_val: float | None = None, links: Sequence[DashboardLink] = ()) -> bargauge.Panel:
    """Horizontal bars, one per series, at its latest value."""
    p = (bargauge.Panel().title(title).description(description).datasource(DATASOURCE).with_target(target)
         .unit(unit).span(w).height(h).min(0).thresholds(thresholds(*steps))
         .color_scheme(_colour(model.FieldColorModeId.THRESHOLDS))
         .orientation(common.VizOrientation.HORIZONTAL).display_mode(common.BarGaugeDisplayMode.GRADIENT)
         .show_unfilled(True).reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False)))
    if max_val is not None:
        p = p.max(max_val)
    if links:
        p = p.links(_links(links))
    return p


Column = str | tuple[str, str, int]
"""A table column: its name, or (name, unit, decimals)."""


def grid(title: str, description: str, targets: Sequence[prometheus.Dataquery], columns: Sequence[Column], *,
         unit: str = "short", w: int = 24, h: int = 10, decimals: float = 2,
         links: Sequence[DashboardLink] = ()) -> table.Panel:
    """A table of instant queries joined on their labels: one column per target (named by `columns`)."""
    assert len(columns) == len(targets)
    p = (table.Panel().title(title).description(description).datasource(DATASOURCE).targets(list(targets))
         .unit(unit).decimals(decimals).span(w).height(h)
         .with_transformation(model.DataTransformerConfig(id_val="merge", options={}))
         .with_transformation(model.DataTransformerConfig(
             id_val="organize", options={"excludeByName": {"Time": True}, "renameByName": {}}))
         .cell_height(common.TableCellHeight.SM))
    for i, column in enumerate(columns):
        name = "Value" if len(columns) == 1 else f"Value #{chr(ord('A') + i)}"
        title_, *style = (column,) if isinstance(column, str) else column
        props = [model.DynamicConfigValue(id_val="displayName", value=title_)]
        if style:
            props += [model.DynamicConfigValue(id_val="unit", value=style[0]),
                      model.DynamicConfigValue(id_val="decimals", value=style[1])]
        p = p.override_by_name(name, props)
    if links:
        p = p.links(_links(links))
    return p


def label_variable(name: str, label: str, selector: str, *, all_values: bool = False,
                   description: str = "") -> QueryVariable:
    """A variable listing the values of `name` on `selector`, from Prometheus."""
    v = (QueryVariable(name).label(label).datasource(DATASOURCE)
         .query(f"label_values({selector}, {name})").refresh(model.VariableRefresh.ON_DASHBOARD_LOAD)
         .sort(model.VariableSort.ALPHABETICAL_ASC))
    if description:
        v = v.description(description)
    if all_values:
        v = v.multi(True).include_all(True).all_value(".*")
    return v


def textbox(name: str, label: str, default: str, description: str) -> TextBoxVariable:
    return TextBoxVariable(name).label(label).default_value(default).description(description).current(
        model.VariableOption(selected=True, text=default, value=default))


def link(title: str, url: str, tooltip: str = "", icon: str = "external link") -> DashboardLink:
    """A link to an external resource (e.g. the worker's twin API), opening in a new tab."""
    return (DashboardLink(title).type(model.DashboardLinkType.LINK).url(url).tooltip(tooltip or title)
            .icon(icon).target_blank(True).include_vars(False).keep_time(False).as_dropdown(False).tags([]))


def other_dashboards() -> DashboardLink:
    """The drop-down of every fleet-twin dashboard, keeping time range and variables."""
    return (DashboardLink("fleet-twin dashboards").type(model.DashboardLinkType.DASHBOARDS).tags([TAG])
            .as_dropdown(True).include_vars(True).keep_time(True).target_blank(False).icon("dashboard")
            .tooltip("").url(""))


def dashboard(uid: str, title: str, description: str, *, refresh: str = "30s",
              time_from: str = "now-1h") -> Dashboard:
    return (Dashboard(title).uid(uid).description(description).tags([TAG]).time(time_from, "now")
            .refresh(refresh).timezone("browser").tooltip(model.DashboardCursorSync.CROSSHAIR)
            .editable().version(1).link(other_dashboards()))


# -- PromQL fragments used by several dashboards ---------------------------------------------------
def sel(metric: str, matchers: str = "") -> str:
    """`metric{matchers}`, or the bare metric without matchers."""
    return f"{metric}{{{matchers}}}" if matchers else metric


def or_zero(expr: str, family: str) -> str:
    """`expr`, or 0 when it has no series but `family` has: "none of these happened" shows as 0.

    `family` is the same counter without the narrowing matcher, so a metric
    that does not exist at all still shows "No data" rather than a reassuring 0.
    """
    return f"{expr} or on () 0 * {family}"


def opened_in_range(matchers: str = "", window: str = "$__range") -> str:
    """Anomalies opened within `window`, per series of fleet_anomalies_opened_total.

    A counter series that first appears already at 1 (created by its first
    opening) is invisible to increase(), which only sees changes between
    samples: series that existed when the window began count their increase,
    series born inside it count their whole value (they started from 0).
    """
    x = sel("fleet_anomalies_opened_total", matchers)
    return f"((increase({x}[{window}]) and {x} offset {window}) or {x})"


def signal_mean(matchers: str, by: str) -> str:
    """Mean latest value in engineering units, weighted by robots across workers.

    Each worker exports the mean over its own robots; the weights are the
    robots counted in the same (sector, model, signal) histogram.
    """
    mean, count = sel("fleet_signal_mean", matchers), _count(matchers)
    return f"sum by ({by}) ({mean} * ignoring (le) ({count} > 0)) / sum by ({by}) ({count} > 0)"


def band_quantile(q: float, matchers: str, by: str) -> str:
    """A quantile of robots' positions in their nominal band (0 bottom, 1 top)."""
    return f"histogram_quantile({q}, sum by ({by}, le) ({sel('fleet_signal_band_bucket', matchers)}))"


COUNT = 'le="+Inf"'
"""Robots in a band histogram: its +Inf bucket. (prometheus_client exports no _count or _sum for a
histogram with a negative bucket bound, and the band histogram has le="-0.5".)"""
TOP = 'le=~"1|1.0"'
"""The histogram bucket at the top of the band (le is "1" or "1.0" depending on the exporter)."""
BOTTOM = 'le=~"0|0.0"'


def _and(matchers: str, extra: str) -> str:
    return ", ".join(m for m in (matchers, extra) if m)


def _count(matchers: str) -> str:
    return sel("fleet_signal_band_bucket", _and(matchers, COUNT))


def above_band(matchers: str, by: str, restrict: str = "") -> str:
    """Share of robots whose latest value is above the top of the nominal band."""
    total = f"sum by ({by}) (({_count(matchers)} > 0){restrict})"
    top = sel("fleet_signal_band_bucket", _and(matchers, TOP))
    return f"1 - sum by ({by}) ({top}{restrict}) / {total}"


def below_band(matchers: str, by: str, restrict: str = "") -> str:
    """Share of robots whose latest value is at or below the bottom of the nominal band."""
    total = f"sum by ({by}) (({_count(matchers)} > 0){restrict})"
    bottom = sel("fleet_signal_band_bucket", _and(matchers, BOTTOM))
    return f"sum by ({by}) ({bottom}{restrict}) / {total}"

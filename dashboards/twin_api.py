"""Panels over the worker's twin API: a robot's own history, which Prometheus does not hold.

Prometheus series carry no robot id (by design: they must not grow with the
fleet), so a robot's own signals come from `GET /twins/{robot_id}/history`,
which reads them back from the log. Grafana reaches it through a JSON data
source (the Infinity plugin, provisioned by
deploy/grafana/provisioning/datasources/twin-api.yml with the API token).
The API answers long rows (`ts`, `signal`, `value`); the panel splits them
into one series per signal with Grafana's "partition by values".
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.builders.common import VizLegendOptions, VizTooltipOptions
from grafana_foundation_sdk.builders.dashboard import DashboardLink
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.runtime import UnknownDataquery
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

PLUGIN = "yesoreyeram-infinity-datasource"
DATASOURCE = model.DataSourceRef(type_val=PLUGIN, uid="twin-api")
"""deploy/grafana/provisioning/datasources/twin-api.yml: its URL is a worker's, so queries give paths only."""
MAX_POINTS = 500
"""Per signal: about one point per pixel of a full-width panel."""


class HistoryQuery(Builder[cogvariants.Dataquery]):
    """An Infinity query of `/twins/${robot}/history` over the dashboard's time range.

    The SDK has no builder for this plugin's queries; its `UnknownDataquery`
    carries the JSON model as the plugin stores it.
    """

    def __init__(self, robot: str = "${robot}", signals: str = "${signals}", ref: str = "A") -> None:
        self.robot, self.signals, self.ref = robot, signals, ref

    def build(self) -> cogvariants.Dataquery:
        params = [("from", "${__from:date:seconds}"), ("to", "${__to:date:seconds}"),
                  ("signal", self.signals), ("max_points", str(MAX_POINTS))]
        return UnknownDataquery({
            "refId": self.ref, "datasource": DATASOURCE.to_json(),
            "type": "json", "source": "url", "parser": "backend", "format": "table",
            "url": f"/twins/{self.robot}/history",
            "url_options": {"method": "GET", "data": "", "params": [{"key": k, "value": v} for k, v in params]},
            "root_selector": "points",
            "columns": [{"selector": "ts", "text": "time", "type": "timestamp_epoch_s"},
                        {"selector": "signal", "text": "signal", "type": "string"},
                        {"selector": "value", "text": "value", "type": "number"}],
            "filters": [],
        })


def own_signals(title: str, description: str, *, w: int = 24, h: int = 10,
                links: list[DashboardLink] | None = None) -> timeseries.Panel:
    """The robot's signals from the twin API, one series per signal."""
    p = (timeseries.Panel().title(title).description(description).datasource(DATASOURCE)
         .targets([HistoryQuery()]).span(w).height(h).line_width(1).fill_opacity(0)
         .show_points(common.VisibilityMode.NEVER)
         .tooltip(VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.NONE))
         .legend(VizLegendOptions().show_legend(True).display_mode(common.LegendDisplayMode.TABLE)
                 .placement(common.LegendPlacement.RIGHT).calcs(["min", "max", "lastNotNull"]))
         .with_transformation(partition_by("signal")))
    if links:
        p = p.links(list(links))
    return p


def partition_by(field: str) -> model.DataTransformerConfig:
    """Grafana's "partition by values": long rows become one frame (one series) per value of `field`."""
    options: dict[str, Any] = {"fields": [field], "keepFields": False}
    return model.DataTransformerConfig(id_val="partitionByValues", options=options)

"""The metrics the dashboards may query, and a PromQL metric-name extractor.

The catalogue is the workers' exported metrics (every label bounded; never a
robot id) plus the Prometheus recording rules in deploy/prometheus/rules/.
The extractor is a small tokenizer, enough to check the dashboards' own
queries: it strips strings, label matchers, ranges and grouping clauses and
returns the remaining identifiers that are not functions or keywords.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

METRICS: frozenset[str] = frozenset({
    "fleet_robots",
    "fleet_robots_offline",
    "fleet_signal_band_bucket",
    "fleet_signal_band_sum",
    "fleet_signal_band_count",
    "fleet_signal_mean",
    "fleet_version_robots",
    "fleet_version_inference_ms",
    "fleet_version_anomalous_robots",
    "fleet_version_operating_seconds_total",
    "fleet_version_safety_events_total",
    "fleet_desired_robots",
    "fleet_desired_drift",
    "fleet_rollout_wave_reached_ratio",
    "fleet_rollout_wave_reached_robots",
    "fleet_rollout_wave_robots",
    "fleet_rollout_wave",
    "fleet_rollout_gate_statistic",
    "fleet_rollout_gate_boundary",
    "fleet_anomalies_opened_total",
    "fleet_anomalies_active",
    "twin_events_total",
    "twin_dlq_total",
    "twin_changes_total",
    "twin_processing_lag_seconds_bucket",
    "twin_processing_lag_seconds_sum",
    "twin_processing_lag_seconds_count",
    "twin_event_time_lag_seconds_bucket",
    "twin_event_time_lag_seconds_sum",
    "twin_event_time_lag_seconds_count",
    "twin_step_seconds_bucket",
    "twin_step_seconds_sum",
    "twin_step_seconds_count",
    "twin_table_robots",
    "twin_table_bytes",
    "twin_consumer_lag",
    "up",
})
"""Series the workers export (and Prometheus' own `up`)."""

RECORDING_RULES: frozenset[str] = frozenset({
    "sector:fleet_robots:sum",
    "sector:fleet_robots_offline:ratio",
    "site:fleet_robots_offline:ratio",
    "sector:fleet_anomalies_opened:rate5m",
})
"""Recording rules the dashboards use (deploy/prometheus/rules/)."""

ALLOWED: frozenset[str] = METRICS | RECORDING_RULES

_VARIABLE = re.compile(r"\$\{?\w+(?::\w+)?\}?")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_NUMBER = re.compile(r"(?<![\w:])(?:0x[0-9a-fA-F]+|\d[\w.]*|\.\d[\w.]*)")
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?")
_KEYWORDS = frozenset({
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
    "offset", "atan2", "inf", "nan", "Inf", "NaN",
})
_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(?P<selector>.+),\s*)?(?P<label>[a-zA-Z_]\w*)\s*\)\s*$")


def metric_names(expr: str) -> set[str]:
    """The metric (or recording rule) names a PromQL expression reads."""
    text = _STRING.sub(" ", expr)
    text = _VARIABLE.sub(" ", text)  # Grafana's $__range, $sector... outside strings
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        if match.group(1):  # a function or aggregation: name followed by "("
            continue
        name = match.group(0)
        if name not in _KEYWORDS:
            names.add(name)
    return names


def variable_selector(query: str) -> tuple[str | None, str]:
    """`label_values(selector, label)` of a Grafana Prometheus variable: (selector, label)."""
    match = _LABEL_VALUES.match(query)
    if not match:
        raise ValueError(f"not a label_values() query: {query!r}")
    return match.group("selector"), match.group("label")


def panels(model: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel of a dashboard JSON model, rows' nested panels included, rows excluded."""
    for panel in model.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def queries(model: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(panel title, refId, PromQL) of every Prometheus target of every panel (not the twin API's)."""
    for panel in panels(model):
        for target in panel.get("targets", []):
            if is_prometheus(target):
                yield panel.get("title", ""), target.get("refId", ""), target["expr"]


def is_prometheus(target: dict[str, Any]) -> bool:
    return bool(target.get("datasource", {}).get("type") == "prometheus")


def variables(model: dict[str, Any]) -> list[dict[str, Any]]:
    return list(model.get("templating", {}).get("list", []))

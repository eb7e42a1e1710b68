"""Run the dashboards' queries against a Prometheus HTTP API, as Grafana would.

Grafana substitutes template variables and its own `$__...` intervals before
sending a query; `substitute` does the same here, so the e2e test and the PNG
renderer execute exactly the PromQL of the committed dashboards.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import httpx

from dashboards.catalogue import variable_selector, variables
from twin.exceptions import FleetTwinError

RETRIABLE_ERROR_TYPES = frozenset({"timeout", "unavailable"})
"""Prometheus API `errorType`s that mean "not now" rather than "not this query"."""


class QueryFailed(FleetTwinError):
    """Prometheus refused the query (bad PromQL, say): the same query gets the same answer."""


class PrometheusUnavailable(QueryFailed):
    """Prometheus did not answer, not with its API's JSON, or timed out: it may later."""

    retriable = True


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    times: list[float]
    values: list[float]

    @property
    def last(self) -> float:
        finite = [v for v in self.values if math.isfinite(v)]
        return finite[-1] if finite else math.nan


def duration(seconds: float) -> str:
    """A PromQL duration ("90s") for a number of seconds."""
    return f"{max(1, round(seconds))}s"


def substitute(expr: str, values: dict[str, str], *, range_s: float = 3600, rate_s: float = 60,
               interval_s: float = 15) -> str:
    """`expr` with Grafana's built-in intervals and the template variables replaced."""
    text = (expr.replace("$__rate_interval", duration(rate_s)).replace("$__range", duration(range_s))
            .replace("$__interval", duration(interval_s)))
    for name in sorted(values, key=len, reverse=True):
        text = text.replace(f"${{{name}}}", values[name])
        value = values[name]  # a function, so re.sub does not read backslashes in the value as escapes
        text = re.sub(rf"\${re.escape(name)}\b", lambda _m: value, text)
    return text


class Prometheus:
    """A small client for the Prometheus HTTP API (instant, range, label values)."""

    def __init__(self, url: str, timeout_s: float = 15.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Prometheus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, params: dict[str, Any] | list[tuple[str, Any]]) -> Any:
        try:
            r = self._http.get(f"{self.url}{path}", params=params)
        except httpx.HTTPError as err:
            raise PrometheusUnavailable(f"{self.url}{path}: {err}") from None
        try:
            body = r.json()
        except ValueError:
            raise PrometheusUnavailable(f"{self.url}{path}: HTTP {r.status_code}, not JSON") from None
        if body.get("status") != "success":
            kind = body.get("errorType", r.status_code)
            error = PrometheusUnavailable if kind in RETRIABLE_ERROR_TYPES else QueryFailed
            raise error(f"{kind}: {body.get('error', r.text[:200])}")
        return body["data"]

    def instant(self, expr: str, at: float | None = None) -> list[Series]:
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = at
        data = self._get("/api/v1/query", params)
        if data["resultType"] == "scalar":
            t, v = data["result"]
            return [Series({}, [float(t)], [float(v)])]
        return [Series(s["metric"], [float(s["value"][0])], [float(s["value"][1])]) for s in data["result"]]

    def range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        data = self._get("/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step})
        return [Series(s["metric"], [float(t) for t, _ in s["values"]], [float(v) for _, v in s["values"]])
                for s in data["result"]]

    def label_values(self, label: str, selector: str | None = None) -> list[str]:
        params = [("match[]", selector)] if selector else []
        return sorted(self._get(f"/api/v1/label/{label}/values", params))


def resolve(model: dict[str, Any], prom: Prometheus | None, given: dict[str, str]) -> dict[str, str]:
    """A value for each template variable, in order: `given`, else the default, else the first known value.

    Query variables list `label_values(...)` from Prometheus (their selector with
    the earlier variables substituted); an "All" variable without a given value
    takes its all-value (".*"). Text boxes take their default.
    """
    values: dict[str, str] = {}
    for var in variables(model):
        name = var["name"]
        if name in given:
            values[name] = given[name]
        elif var.get("type") == "query":
            if var.get("includeAll") and var.get("allValue"):
                values[name] = var["allValue"]
                continue
            selector, label = variable_selector(var["query"])
            found = prom.label_values(label, substitute(selector, values) if selector else None) if prom else []
            values[name] = found[0] if found else ""
        else:
            values[name] = str(var.get("query", ""))
    return values

"""Grafana dashboards as code (grafana-foundation-sdk builders).

`render_all()` builds every dashboard's JSON model; `write_all(out_dir)` writes
them as `<name>.json` with sorted keys and fixed indentation, so regenerating
is byte-identical (tests/unit/test_dashboards.py checks the committed files).
deploy/grafana provisions `dashboards/json/`; `fleet-twin dashboards push`
uploads them to any Grafana.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders.dashboard import Dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards import control, fleet, operations

JSON_DIR = Path(__file__).resolve().parent / "json"

BUILDERS: dict[str, Callable[[], Dashboard]] = {
    "fleet-overview": fleet.overview,
    "sector": fleet.sector,
    "site": fleet.site,
    "robot": fleet.robot,
    "rollout": operations.rollout,
    "anomalies": operations.anomalies,
    "pipeline": operations.pipeline,
    "rollouts-drift": control.rollouts_and_drift,
}
"""File name (without .json) -> builder, in the order operators drill down."""


def _panel_ids(model: dict[str, Any]) -> dict[str, Any]:
    """Number panels and rows 1..n in layout order (Grafana needs ids unique within a dashboard)."""
    n = 0
    for panel in model.get("panels", []):
        n += 1
        panel["id"] = n
        for inner in panel.get("panels", []):
            n += 1
            inner["id"] = n
    return model


def render(name: str) -> dict[str, Any]:
    """One dashboard's JSON model, as Grafana's import/provisioning takes it."""
    built = BUILDERS[name]().build()
    model: dict[str, Any] = json.loads(json.dumps(built, cls=JSONEncoder))
    return _panel_ids(model)


def render_all() -> dict[str, dict[str, Any]]:
    """Every dashboard's JSON model, by file name."""
    return {name: render(name) for name in BUILDERS}


def dumps(model: dict[str, Any]) -> str:
    """The stable text form: sorted keys, two-space indent, trailing newline."""
    return json.dumps(model, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def write_all(out_dir: Path = JSON_DIR) -> list[Path]:
    """Write `<out_dir>/<name>.json` for every dashboard; return the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in render_all().items():
        path = out_dir / f"{name}.json"
        path.write_text(dumps(model), encoding="utf-8")
        written.append(path)
    return written

"""The fleet report's order: fault groups (a site incident and its robots), the worst and longest first."""

from __future__ import annotations

from typing import Any

import polars as pl

from streams.analysis.report.data import by_importance, top_faults

T0 = 1_767_600_000.0


def episode(id_: str, robot: str, severity: str, opened: float, length: float, *, detector: str = "band",
            caused_by: str | None = None, site: str = "mfg-osaka-01") -> dict[str, Any]:
    return {"id": id_, "robot_id": robot, "site": site, "model": "amr", "detector": detector, "signal": "",
            "severity": severity, "opened": T0 + opened, "resolved": T0 + opened + length, "caused_by": caused_by,
            "score": 1.0, "end": T0 + opened + length, "subject": robot or f"site {site}"}


def frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema_overrides={"caused_by": pl.String()})


def test_noise_sorts_after_the_faults_whatever_the_names_and_times() -> None:
    episodes = frame([
        *(episode(f"n{i}", f"aaa-{i:02d}", "warning", i, 3) for i in range(20)),  # early, short, first by name
        episode("long-warning", "mmm", "warning", 50, 600),
        episode("short-critical", "zzz-1", "critical", 400, 30),
        episode("long-critical", "zzz-2", "critical", 500, 300),
    ])
    order = by_importance(episodes)["id"].to_list()
    assert order[:3] == ["long-critical", "short-critical", "long-warning"]
    assert set(order[3:]) == {f"n{i}" for i in range(20)}
    assert by_importance(episodes)["rank"].to_list() == list(range(1, 24))


def test_a_site_incident_leads_its_robots_and_ranks_as_its_worst_member() -> None:
    episodes = frame([
        episode("alone", "r-9", "critical", 0, 100),
        episode("m1", "r-1", "warning", 10, 50, caused_by="inc"),
        episode("m2", "r-2", "critical", 12, 200, caused_by="inc"),
        episode("inc", "", "warning", 15, 20, detector="site_incident"),
        episode("later", "r-3", "warning", 30, 500),
    ])
    ranked = by_importance(episodes)
    assert ranked["id"].to_list() == ["inc", "m2", "m1", "alone", "later"]
    assert ranked["rank"].to_list() == [1, 1, 1, 2, 3]
    top = top_faults(ranked, n=2)
    first = top.row(0, named=True)
    assert (first["subject"], first["severity"], first["episodes"], first["robots"]) == (
        "site mfg-osaka-01", "critical", 3, 2)
    assert first["opened"] == T0 + 10 and first["end"] == T0 + 212 and top.height == 2


def test_an_empty_window_ranks_nothing() -> None:
    empty = frame([episode("x", "r", "warning", 0, 1)]).clear()
    assert by_importance(empty).height == 0 and top_faults(by_importance(empty)).height == 0

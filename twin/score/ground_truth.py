"""Score detectors on a simulated scenario against its ground truth.

`run` folds the scenario through exactly the live code path (`twin.pipeline`
per event, silence checks and the rollout detector on a clock, site
correlation on every opening) with the broker's clock played by the
simulator's true time. `score` matches anomaly openings to labels: an opening
detects a label when it is about the labelled robot (or its site's incident,
or its robot model's rollout) and starts between `early_s` before the fault
and `late_s` after it ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twin.detect import incidents, rollout
from twin.detect.cohort import Cohorts
from twin.detect.findings import Anomaly
from twin.detect.params import DetectorConfig
from twin.detect.robot import silence
from twin.fleet import Fleet
from twin.pipeline import ingest
from twin.sim import FleetSim, Scenario
from twin.state import Twin


@dataclass
class Run:
    anomalies: list[Anomaly]
    labels: list[dict[str, Any]]
    robots: int
    duration_s: float
    events: int
    twins: dict[str, Twin] = field(default_factory=dict)


def run(fleet: Fleet, scenario: Scenario, seed: int, config: DetectorConfig, check_every_s: float = 5.0) -> Run:
    sim = FleetSim(fleet, scenario, seed=seed)
    twins: dict[str, Twin] = {}
    sites: dict[str, incidents.SiteState] = {}
    versions = rollout.RolloutState()
    cohorts = Cohorts()
    out: list[Anomaly] = []
    events = 0
    next_check = sim.start_ts + check_every_s
    for tick in range(sim.ticks):
        now = sim.start_ts + tick * sim.dt
        batch = sim.step()
        events += len(batch)
        opened: list[Anomaly] = []
        for event in batch:
            twin, effects, found = ingest(twins.get(event.robot_id), event, now, fleet, config, cohorts)
            twins[event.robot_id] = twin
            if effects.outcome == "applied":
                versions = rollout.observe(versions, event)
            opened += found
        if now >= next_check:
            next_check += check_every_s
            for robot_id, twin in twins.items():
                twins[robot_id], found = silence(twin, now, config.for_model(twin.model))
                opened += found
            versions, found = rollout.judge(versions, now)
            opened += found
        for a in opened:
            sites[a.site], extra = incidents.correlate(sites.get(a.site, incidents.SiteState()), a)
            out += [a, *extra]
    return Run(out, sim.labels(), len(sim.roster), scenario.duration_s, events, twins)


def score(result: Run, early_s: float = 5.0, late_s: float = 120.0) -> list[dict[str, Any]]:
    """Per fault type: labels, detected, recall, median and p90 delay (s); then totals."""
    opens = [a for a in result.anomalies if a.status == "open"]
    used: set[str] = set()
    rows: dict[str, dict[str, Any]] = {}
    for label in result.labels:
        hits = [a for a in opens if _matches(a, label, early_s, late_s)]
        row = rows.setdefault(label["fault"], {"fault": label["fault"], "labels": 0, "detected": 0, "delays": []})
        row["labels"] += 1
        if hits:
            row["detected"] += 1
            row["delays"].append(max(0.0, min(a.ts for a in hits) - label["start_ts"]))
            used.update(a.id for a in hits)
    table = [_summary(row) for row in sorted(rows.values(), key=lambda r: r["fault"])]
    false = [a for a in opens if a.id not in used and a.detector != "site_incident" or
             (a.detector == "site_incident" and a.id not in used)]
    robot_days = result.robots * result.duration_s / 86400.0
    table.append({
        "fault": "(all)", "labels": sum(r["labels"] for r in table), "detected": sum(r["detected"] for r in table),
        "recall": _ratio(sum(r["detected"] for r in table), sum(r["labels"] for r in table)),
        "precision": _ratio(len(opens) - len(false), len(opens)),
        "false_alarms": len(false), "false_per_robot_day": round(len(false) / robot_days, 4) if robot_days else 0.0,
        "median_delay_s": None, "p90_delay_s": None,
    })
    return table


def false_alarms_by_detector(result: Run) -> dict[str, int]:
    """On a scenario without faults every opening is a false alarm: which detectors cry wolf."""
    counts: dict[str, int] = {}
    for a in result.anomalies:
        if a.status == "open":
            counts[a.detector] = counts.get(a.detector, 0) + 1
    return counts


def _matches(a: Anomaly, label: dict[str, Any], early_s: float, late_s: float) -> bool:
    if a.detector == "rollout":
        # One fleet-level finding covers every robot that runs (or later gets) the flagged version.
        return bool(label["fault"] == "latency_regression" and a.model == label["model"]
                    and a.ts <= label["end_ts"] + late_s)
    if not label["start_ts"] - early_s <= a.ts <= label["end_ts"] + late_s:
        return False
    if a.detector == "site_incident":
        return bool(label["fault"] == "site_power_dip" and a.site == label["site"])
    return bool(a.robot_id == label["robot_id"])


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    delays = row.pop("delays")
    return {
        **row, "recall": _ratio(row["detected"], row["labels"]),
        "median_delay_s": round(float(np.median(delays)), 1) if delays else None,
        "p90_delay_s": round(float(np.percentile(delays, 90)), 1) if delays else None,
    }


def _ratio(a: int, b: int) -> float:
    return round(a / b, 4) if b else 0.0

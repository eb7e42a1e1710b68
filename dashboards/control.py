"""Rollouts and drift: the control surface as operators watch it.

Rollout progress per plan and wave, the safety gate's statistic against its
boundaries, robots whose reported state differs from the desired one, and
safety events per operating hour of each AI-model version (the rates the gate
compares). Every metric is the workers' (docs/CONTROL.md).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from dashboards.panels import GREEN, RATE, bars, dashboard, grid, label_variable, query, ts

PLAN = 'plan=~"$plan"'
PLACE = 'sector=~"$sector", model=~"$model"'


def _per_operating_hour(by: str, window: str = RATE) -> str:
    """Safety events per operating hour of each `by` group over `window` (no exposure: no value, never a 0)."""
    events = f"sum by ({by}) (increase(fleet_version_safety_events_total{{{PLACE}}}[{window}]))"
    hours = f"sum by (model, version) (increase(fleet_version_operating_seconds_total{{{PLACE}}}[{window}])) / 3600"
    return f"{events} / on (model, version) group_left () ({hours} > 0)"


def rollouts_and_drift() -> Dashboard:
    drift = f"fleet_desired_drift{{{PLACE}}}"
    desired = f"fleet_desired_robots{{{PLACE}}}"
    return (
        dashboard("fleet-twin-rollouts-drift", "Rollouts and drift",
                  "Staged rollouts of AI-model versions and the desired state: how far each plan's waves have "
                  "got, the safety gate's sequential statistic against its halt and advance boundaries, robots "
                  "that do not report what is desired, and safety events per operating hour of each version "
                  "(docs/CONTROL.md).", time_from="now-3h")
        .with_variable(label_variable("plan", "Rollout plan", "fleet_rollout_wave", all_values=True))
        .with_variable(label_variable("sector", "Sector", "fleet_desired_robots", all_values=True))
        .with_variable(label_variable("model", "Robot model", "fleet_desired_robots", all_values=True))
        .with_row(Row("Rollout progress"))
        .with_panel(ts("Share of desired reached, per wave",
                       "Robots of each wave's selector that report the wave's version, over the robots of it, "
                       "across workers (each worker's own share is fleet_rollout_wave_reached_ratio).",
                       [query(f"sum by (plan, wave) (fleet_rollout_wave_reached_robots{{{PLAN}}}) / clamp_min("
                              f"sum by (plan, wave) (fleet_rollout_wave_robots{{{PLAN}}}), 1)",
                              "{{plan}} wave {{wave}}")], unit="percentunit", max_val=1, legend_right=True))
        .with_panel(bars("Current wave, per plan", "The wave each plan has reached (0 is the canary).",
                         query(f"max by (plan) (fleet_rollout_wave{{{PLAN}}})", "{{plan}}", instant=True),
                         steps=((None, GREEN),), h=8))
        .with_row(Row("Safety gate"))
        .with_panel(ts("Gate statistic against its boundaries",
                       "The sequential test's log-likelihood ratio of each plan at each look: crossing the upper "
                       "boundary halts the plan and reverts the wave, crossing the lower one advances it.",
                       [query(f"max by (plan) (fleet_rollout_gate_statistic{{{PLAN}}})", "{{plan}} statistic",
                              ref="A"),
                        query(f"max by (plan, side) (fleet_rollout_gate_boundary{{{PLAN}}})",
                              "{{plan}} {{side}} boundary", ref="B")], min_val=None, w=24))
        .with_row(Row("Drift"))
        .with_panel(ts("Robots drifting, by sector and model",
                       "Robots with a desire whose reported value differs from it (any field).",
                       [query(f"sum by (sector, model) ({drift})", "{{sector}} {{model}}")], stack=True,
                       legend_right=True))
        .with_panel(ts("Share drifting, by field",
                       "Robots drifting over robots with a desire, per desired field.",
                       [query(f"sum by (field) ({drift}) / sum by (field) ({desired} > 0)", "{{field}}")],
                       unit="percentunit", max_val=1, legend_right=True))
        .with_panel(grid("Drift now, by sector, model and field", "Largest drift first.",
                         [query(f"sort_desc(sum by (sector, model, field) ({drift}))", ref="A", instant=True,
                                table_format=True),
                          query(f"sum by (sector, model, field) ({desired})", ref="B", instant=True,
                                table_format=True)],
                         [("robots drifting", "short", 0), ("robots with a desire", "short", 0)], h=8))
        .with_row(Row("Safety per version"))
        .with_panel(ts("Safety events per operating hour, by version",
                       "Every safety-event kind of twin.kpi per working hour of the robots on each version; the "
                       "rates the gate compares.",
                       [query(_per_operating_hour("model, version"), "{{model}} {{version}}")], legend_right=True))
        .with_panel(grid("Safety events per 1,000 operating hours in range, by version and kind",
                         "Over the dashboard's time range; `fleet-twin audit` gives exact intervals.",
                         [query(f"sort_desc(1000 * {_per_operating_hour('model, version, kind', '$__range')})",
                                instant=True, table_format=True)],
                         [("per 1,000 h", "short", 2)], decimals=2, w=12, h=8))
        .with_panel(bars("Operating hours in range, by version", "Working hours of the robots on each version.",
                         query("sum by (model, version) (increase(fleet_version_operating_seconds_total"
                               f"{{{PLACE}}}[$__range])) / 3600", "{{model}} {{version}}", instant=True),
                         w=24, h=8))
    )

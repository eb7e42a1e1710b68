"""AI-model rollout, anomalies and pipeline health."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from dashboards.panels import (
    GREEN, ORANGE, RATE, RED, YELLOW, bars, big, dashboard, grid, label_variable, opened_in_range, or_zero, query,
    ts,
)

VERSION = 'model=~"$model"'
ROLLOUT = 'detector="rollout"'
CRITICAL = ', severity="critical"'


def _version_latency(matchers: str) -> str:
    """Mean latest inference latency per (model, version), weighted by robots across workers."""
    ms, robots = f"fleet_version_inference_ms{{{matchers}}}", f"fleet_version_robots{{{matchers}}}"
    return (f"sum by (model, version) ({ms} * ({robots} > 0) and {ms} > 0) "
            f"/ sum by (model, version) ({robots} > 0 and {ms} > 0)")


def rollout() -> Dashboard:
    robots = f"sum by (model, version) (fleet_version_robots{{{VERSION}}}) > 0"
    running = f"and on (model, version) ({robots})"
    anomalous = f"sum by (model, version) (fleet_version_anomalous_robots{{{VERSION}}}) {running}"
    return (
        dashboard("fleet-twin-rollout", "AI-model rollout",
                  "AI-model versions side by side, per robot model: how many robots run each version, their "
                  "inference latency and how many have an open anomaly. The rollout detector compares each "
                  "version with the most-used earlier one (docs/ANOMALY.md).", time_from="now-3h")
        .with_variable(label_variable("model", "Robot model", "fleet_version_robots", all_values=True))
        .with_row(Row("Versions side by side"))
        .with_panel(grid("Versions", "Latest values per robot model and AI-model version.",
                         [query(robots, ref="A", instant=True, table_format=True),
                          query(_version_latency(VERSION), ref="B", instant=True, table_format=True),
                          query(anomalous, ref="C", instant=True, table_format=True),
                          query(f"({anomalous}) / ({robots})", ref="D", instant=True, table_format=True)],
                         [("robots", "short", 0), ("inference ms (mean)", "ms", 1),
                          ("robots with an open anomaly", "short", 0), ("anomalous share", "percentunit", 1)],
                         h=9))
        .with_panel(ts("Robots per version", "Robots running each version, stacked per robot model.",
                       [query(robots, "{{model}} {{version}}")], stack=True, legend_right=True))
        .with_panel(ts("Inference latency per version", "Mean latest inference_ms of the robots on each version.",
                       [query(_version_latency(VERSION), "{{model}} {{version}}")], unit="ms", legend_right=True))
        .with_panel(ts("Share of robots with an open anomaly, per version",
                       "A version whose share rises above its predecessor's is suspect.",
                       [query(f"({anomalous}) / ({robots})", "{{model}} {{version}}")], unit="percentunit",
                       max_val=1, legend_right=True))
        .with_panel(bars("Rollout regressions opened in range",
                         "Latency regressions the rollout detector opened (fleet-level: sector \"fleet\"), by "
                         "severity; 0 while other detectors open anomalies and this one does not.",
                         query(or_zero(f"sum by (severity) {opened_in_range(ROLLOUT)}", f"sum {opened_in_range()}"),
                               "{{severity}}", instant=True),
                         steps=((None, GREEN), (1, ORANGE)), h=8))
    )


def anomalies() -> Dashboard:
    f = 'sector=~"$sector", detector=~"$detector"'
    in_range = f"sum {opened_in_range(f)}"
    return (
        dashboard("fleet-twin-anomalies", "Anomalies",
                  "What the detectors found: anomalies open now and opened over time, by detector, sector and "
                  "severity. Each anomaly's evidence and links are on fleet.anomalies and in GET /twins/{id}.")
        .with_variable(label_variable("sector", "Sector", "fleet_robots", all_values=True))
        .with_variable(label_variable("detector", "Detector", "fleet_anomalies_active", all_values=True))
        .with_row(Row("Now"))
        .with_panel(big("Open anomalies", "Robot anomalies open now.",
                        query(f"sum(fleet_anomalies_active{{{f}}})"), w=6,
                        steps=((None, GREEN), (1, YELLOW), (20, ORANGE), (100, RED))))
        .with_panel(big("Opened in range", "Anomalies opened over the dashboard's time range.",
                        query(or_zero(in_range, f"sum {opened_in_range()}")),
                        decimals=0, w=6))
        .with_panel(big("Critical opened in range", "Score at 3x the threshold, or open 30 minutes.",
                        query(or_zero(f"sum {opened_in_range(f + CRITICAL)}", in_range)),
                        decimals=0, steps=((None, GREEN), (1, RED)), w=6))
        .with_panel(big("Opened per hour", "Openings in the last 5 minutes, as an hourly rate.",
                        query(or_zero(f"12 * sum {opened_in_range(f, '5m')}", f"sum {opened_in_range('', '5m')}")),
                        decimals=0, w=6))
        .with_row(Row("By detector"))
        .with_panel(ts("Open anomalies by detector", "Robot anomalies open, stacked.",
                       [query(f"sum by (detector) (fleet_anomalies_active{{{f}}})", "{{detector}}")],
                       stack=True, legend_right=True))
        .with_panel(ts("Opened per hour, by detector", "Openings in the last 5 minutes, as an hourly rate.",
                       [query(f"12 * sum by (detector) {opened_in_range(f, '5m')}",
                              "{{detector}}")], legend_right=True))
        .with_row(Row("By sector and severity"))
        .with_panel(bars("Open anomalies by sector", "Robot anomalies open now, per sector.",
                         query(f"sort_desc(sum by (sector) (fleet_anomalies_active{{{f}}}))", "{{sector}}",
                               instant=True), steps=((None, GREEN), (1, YELLOW), (20, RED)), w=8, h=12))
        .with_panel(ts("Opened per hour, by sector", "Recording rule sector:fleet_anomalies_opened:rate5m.",
                       [query('3600 * sector:fleet_anomalies_opened:rate5m{sector=~"$sector"}', "{{sector}}")],
                       w=8, h=12, legend_right=True))
        .with_panel(ts("Opened per hour, by severity", "warning or critical; last 5 minutes, as an hourly rate.",
                       [query(f"12 * sum by (severity) {opened_in_range(f, '5m')}",
                              "{{severity}}")], w=8, h=12))
        .with_panel(grid("Opened in range, by sector, detector and severity",
                         "Counts over the dashboard's time range, largest first.",
                         [query(f"sort_desc(sum by (sector, detector, severity) {opened_in_range(f)})",
                                instant=True, table_format=True)],
                         [("opened", "short", 0)], decimals=0))
    )


def pipeline() -> Dashboard:
    events = f"sum(rate(twin_events_total[{RATE}]))"
    return (
        dashboard("fleet-twin-pipeline", "Pipeline health",
                  "The stream workers: what happens to each telemetry message, dead letters, lags, "
                  "consumer backlog and twin table size.", refresh="10s", time_from="now-30m")
        .with_row(Row("Now"))
        .with_panel(big("Workers up", "Stream workers Prometheus scrapes successfully.",
                        query('sum(up{job="fleet-twin-workers"})'), steps=((None, RED), (1, GREEN)), w=3))
        .with_panel(big("Events / s", "Telemetry messages processed per second (every result).",
                        query(events), unit="ops", decimals=0, w=3))
        .with_panel(big("Applied", "Share of messages applied to a twin (the rest: late, duplicate, stale, rejected).",
                        query(f'sum(rate(twin_events_total{{result="applied"}}[{RATE}])) / {events}'),
                        unit="percentunit", decimals=1, steps=((None, RED), (0.9, YELLOW), (0.98, GREEN)), w=3))
        .with_panel(big("Dead letters / s", "Messages sent to fleet.telemetry.dlq per second.",
                        query(f"sum(rate(twin_dlq_total[{RATE}]))"), unit="ops", decimals=2,
                        steps=((None, GREEN), (0.1, YELLOW), (1, RED)), w=3))
        .with_panel(big("Consumer lag", "Telemetry messages not yet read, every partition.",
                        query("sum(twin_consumer_lag)"), steps=((None, GREEN), (1000, YELLOW), (100000, RED)), w=3))
        .with_panel(big("Twins held", "Robots in the workers' twin tables.", query("sum(twin_table_robots)"), w=3))
        .with_panel(big("Bytes per twin", "Stored size of a twin (state, statistics, detector state).",
                        query("sum(twin_table_bytes) / sum(twin_table_robots)"), unit="bytes", w=3))
        .with_panel(big("Processing lag p99", "Broker receipt to processed, 99th percentile.",
                        query(f"histogram_quantile(0.99, sum by (le) (rate(twin_processing_lag_seconds_bucket[{RATE}])))"),
                        unit="s", steps=((None, GREEN), (1, YELLOW), (10, RED)), w=3))
        .with_row(Row("Messages"))
        .with_panel(ts("Events by result", "applied, late, duplicate, stale, rejected; stacked.",
                       [query(f"sum by (result) (rate(twin_events_total[{RATE}]))", "{{result}}")],
                       unit="ops", stack=True))
        .with_panel(ts("Dead letters by reason", "Why messages went to fleet.telemetry.dlq (docs/TWIN.md).",
                       [query(f"sum by (reason) (rate(twin_dlq_total[{RATE}]))", "{{reason}}")], unit="ops",
                       legend_right=True))
        .with_panel(ts("Twin changes by kind", "Mode and version changes, seq gaps the reducer reported.",
                       [query(f"sum by (kind) (rate(twin_changes_total[{RATE}]))", "{{kind}}")], unit="ops"))
        .with_panel(ts("Workers", "1 when Prometheus scraped the worker, 0 when it could not.",
                       [query('up{job="fleet-twin-workers"}', "{{instance}}")], max_val=1))
        .with_row(Row("Lag"))
        .with_panel(ts("Processing lag", "From the broker receiving a message to a worker processing it.",
                       [query(f"histogram_quantile({q}, sum by (le) (rate(twin_processing_lag_seconds_bucket[{RATE}])))",
                              f"p{round(q * 100)}", ref=ref) for q, ref in ((0.5, "A"), (0.9, "B"), (0.99, "C"))],
                       unit="s"))
        .with_panel(ts("Event-time lag", "From a robot's event time to the broker receiving it "
                       "(network, buffering, robot clocks).",
                       [query(f"histogram_quantile({q}, sum by (le) (rate(twin_event_time_lag_seconds_bucket[{RATE}])))",
                              f"p{round(q * 100)}", ref=ref) for q, ref in ((0.5, "A"), (0.99, "B"))],
                       unit="s"))
        .with_panel(ts("Consumer lag by partition", "Telemetry messages not yet read.",
                       [query("sum by (partition) (twin_consumer_lag)", "partition {{partition}}")], legend_right=True))
        .with_panel(ts("Twin table size", "Stored bytes of the twins each worker holds.",
                       [query("twin_table_bytes", "{{instance}}")], unit="bytes"))
        .with_panel(ts("Ingest's time by step", "Share of a worker's time (the workers' average) in each step "
                       "of ingest: fold, publish, a checkpoint's encode and store, silence checks, the gauges' "
                       "summary at a scrape, the heap's trim. Stacked; no batch is read during the first four, so "
                       "near 100% a lag grows.",
                       [query(f"avg by (step) (rate(twin_step_seconds_sum[{RATE}]))", "{{step}}")],
                       unit="percentunit", stack=True))
        .with_panel(ts("Slowest steps", "99th percentile of each step's duration, every worker: one step holds "
                       "up every record fetched behind it.",
                       [query(f"histogram_quantile(0.99, sum by (step, le) (rate(twin_step_seconds_bucket[{RATE}])))",
                              "{{step}}")], unit="s", legend_right=True))
    )

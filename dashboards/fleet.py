"""The fleet views: overview by sector, one sector, one site, one robot beside its peers."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from dashboards.panels import (
    BLUE, GREEN, ORANGE, RED, YELLOW, above_band, band_quantile, bars, below_band, big, dashboard, grid,
    label_variable, link, opened_in_range, or_zero, query, signal_mean, textbox, ts,
)
from dashboards.twin_api import MAX_POINTS as HISTORY_POINTS
from dashboards.twin_api import own_signals

FAULTED = 'mode=~"fault|estop"'
OFFLINE_STEPS = ((None, GREEN), (0.02, YELLOW), (0.1, RED))
ANOMALY_STEPS = ((None, GREEN), (1, YELLOW), (20, ORANGE), (100, RED))
BAND_NOTE = ("Position of each robot's latest value in its model's nominal band "
             "(seeds/models.yaml): 0 is the bottom, 1 the top.")


def overview() -> Dashboard:
    return (
        dashboard("fleet-twin-overview", "Fleet overview",
                  "The whole fleet at a glance, by sector: robots, who is offline, faults, anomalies, "
                  "and how far signals sit from their nominal bands.")
        .with_row(Row("Fleet now"))
        .with_panel(big("Robots", "Robots known to the twins (every sector).",
                        query("sum(sector:fleet_robots:sum)")))
        .with_panel(big("Offline", "Robots silent beyond their own expected report cadence.",
                        query("sum(fleet_robots_offline)"), steps=((None, GREEN), (1, YELLOW), (50, RED))))
        .with_panel(big("Offline share", "Offline robots over robots known.",
                        query("sum(fleet_robots_offline) / sum(fleet_robots)"), unit="percentunit",
                        steps=OFFLINE_STEPS, decimals=1))
        .with_panel(big("Faulted or e-stopped", "Robots reporting mode fault or estop.",
                        query(f"sum(fleet_robots{{{FAULTED}}})"), steps=((None, GREEN), (1, YELLOW), (20, RED))))
        .with_panel(big("Open anomalies", "Robot anomalies open now (every detector).",
                        query("sum(fleet_anomalies_active)"), steps=ANOMALY_STEPS))
        .with_panel(big("Workers up", "Stream workers Prometheus scrapes successfully.",
                        query('sum(up{job="fleet-twin-workers"})'), steps=((None, RED), (1, GREEN))))
        .with_row(Row("By sector"))
        .with_panel(bars("Robots by sector", "Robots known per sector (recording rule sector:fleet_robots:sum).",
                         query("sort_desc(sector:fleet_robots:sum)", "{{sector}}", instant=True), h=12))
        .with_panel(bars("Offline share by sector",
                         "Share of each sector's robots silent beyond their cadence "
                         "(recording rule sector:fleet_robots_offline:ratio).",
                         query("sort_desc(sector:fleet_robots_offline:ratio)", "{{sector}}", instant=True),
                         unit="percentunit", steps=OFFLINE_STEPS, max_val=1, h=12))
        .with_panel(ts("Robots by mode", "Reported mode of every robot, stacked.",
                       [query("sum by (mode) (fleet_robots)", "{{mode}}")], stack=True))
        .with_panel(ts("Anomalies opened per hour, by sector",
                       "Openings over the last 5 minutes as an hourly rate "
                       "(recording rule sector:fleet_anomalies_opened:rate5m; fleet-level ones under 'fleet').",
                       [query("3600 * sector:fleet_anomalies_opened:rate5m", "{{sector}}")], legend_right=True))
        .with_panel(ts("Faulted or e-stopped robots, by sector", "Robots reporting mode fault or estop.",
                       [query(f"sum by (sector) (fleet_robots{{{FAULTED}}})", "{{sector}}")],
                       legend_right=True, w=24))
        .with_row(Row("Signals against their nominal bands"))
        .with_panel(ts("Above the nominal band", f"Share of robots above the top of their band. {BAND_NOTE}",
                       [query(above_band("", "signal"), "{{signal}}")], unit="percentunit", w=8))
        .with_panel(ts("At or below the nominal band",
                       f"Share of robots at or below the bottom of their band (idle joints draw no current; "
                       f"a flat battery sits here). {BAND_NOTE}",
                       [query(below_band("", "signal"), "{{signal}}")], unit="percentunit", w=8))
        .with_panel(ts("Median band position", f"Median over robots, per signal. {BAND_NOTE}",
                       [query(band_quantile(0.5, "", "signal"), "{{signal}}")], unit="none", min_val=None, w=8))
    )


def sector() -> Dashboard:
    s = 'sector="$sector"'
    return (
        dashboard("fleet-twin-sector", "Sector",
                  "One sector: its sites and robot models, modes, offline robots, signals and anomalies.")
        .with_variable(label_variable("sector", "Sector", "fleet_robots"))
        .with_row(Row("$sector now"))
        .with_panel(big("Robots", "Robots known in the sector.", query(f"sum(sector:fleet_robots:sum{{{s}}})")))
        .with_panel(big("Offline share", "Recording rule sector:fleet_robots_offline:ratio.",
                        query(f"sector:fleet_robots_offline:ratio{{{s}}}"), unit="percentunit",
                        steps=OFFLINE_STEPS, decimals=1))
        .with_panel(big("Offline", "Robots silent beyond their cadence.",
                        query(f"sum(fleet_robots_offline{{{s}}})"), steps=((None, GREEN), (1, YELLOW), (20, RED))))
        .with_panel(big("Faulted or e-stopped", "Robots reporting mode fault or estop.",
                        query(f"sum(fleet_robots{{{s}, {FAULTED}}})"), steps=((None, GREEN), (1, YELLOW), (10, RED))))
        .with_panel(big("Open anomalies", "Robot anomalies open now.",
                        query(f"sum(fleet_anomalies_active{{{s}}})"), steps=ANOMALY_STEPS))
        .with_panel(big("Anomalies opened / h", "Openings in the last 5 minutes, as an hourly rate.",
                        query(or_zero(f"12 * sum {opened_in_range(s, '5m')}", f"sum {opened_in_range('', '5m')}")),
                        decimals=0))
        .with_row(Row("Robots"))
        .with_panel(ts("Robots by mode", "Reported mode, stacked.",
                       [query(f"sum by (mode) (fleet_robots{{{s}}})", "{{mode}}")], stack=True))
        .with_panel(bars("Robots by site and model", "Robots known per site and robot model.",
                         query(f"sort_desc(sum by (site, model) (fleet_robots{{{s}}}))", "{{site}} {{model}}",
                               instant=True)))
        .with_panel(ts("Offline share by site", "Recording rule site:fleet_robots_offline:ratio, this sector's sites.",
                       [query(f"site:fleet_robots_offline:ratio and on (site) group by (site) (fleet_robots{{{s}}})",
                              "{{site}}")], unit="percentunit", max_val=1))
        .with_panel(ts("Offline robots by model", "Robots silent beyond their cadence, per robot model.",
                       [query(f"sum by (model) (fleet_robots_offline{{{s}}})", "{{model}}")]))
        .with_row(Row("Signals"))
        .with_panel(ts("Above the nominal band", f"Share of robots above the top of their band. {BAND_NOTE}",
                       [query(above_band(s, "model, signal"), "{{model}} {{signal}}")], unit="percentunit"))
        .with_panel(ts("Median band position", f"Median over the sector's robots. {BAND_NOTE}",
                       [query(band_quantile(0.5, s, "model, signal"), "{{model}} {{signal}}")],
                       unit="none", min_val=None))
        .with_panel(grid("Signals by model", f"Latest values of the sector's robots, per model. {BAND_NOTE}",
                         [query(signal_mean(s, "model, signal"), ref="A", instant=True, table_format=True),
                          query(band_quantile(0.1, s, "model, signal"), ref="B", instant=True, table_format=True),
                          query(band_quantile(0.5, s, "model, signal"), ref="C", instant=True, table_format=True),
                          query(band_quantile(0.9, s, "model, signal"), ref="D", instant=True, table_format=True)],
                         [("mean value", "short", 2), ("band p10", "none", 2), ("band p50", "none", 2),
                          ("band p90", "none", 2)]))
        .with_row(Row("Anomalies"))
        .with_panel(ts("Open anomalies by detector", "Robot anomalies open now, stacked.",
                       [query(f"sum by (detector) (fleet_anomalies_active{{{s}}})", "{{detector}}")], stack=True))
        .with_panel(ts("Anomalies opened per hour, by detector and severity",
                       "Openings in the last 5 minutes, as an hourly rate.",
                       [query(f"12 * sum by (detector, severity) {opened_in_range(s, '5m')}",
                              "{{detector}} {{severity}}")]))
    )


def site() -> Dashboard:
    s = 'site="$site"'
    in_site = f"group by (sector) (fleet_robots{{{s}}})"
    models_at_site = f" and on (sector, model) group by (sector, model) (fleet_robots{{{s}}})"
    return (
        dashboard("fleet-twin-site", "Site",
                  "One site: robots by mode and model, who is offline; the signals and anomalies of the robot "
                  "models working there (fleet_signal_* and anomalies are kept per sector, not per site).")
        .with_variable(label_variable("site", "Site", "fleet_robots"))
        .with_row(Row("$site now"))
        .with_panel(big("Robots", "Robots known at the site.", query(f"sum(fleet_robots{{{s}}})")))
        .with_panel(big("Working", "Share of the site's robots reporting mode working.",
                        query(f'sum(fleet_robots{{{s}, mode="working"}}) / sum(fleet_robots{{{s}}})'),
                        unit="percentunit", decimals=0))
        .with_panel(big("Offline", "Robots silent beyond their cadence.",
                        query(f"sum(fleet_robots_offline{{{s}}})"), steps=((None, GREEN), (1, YELLOW), (10, RED))))
        .with_panel(big("Offline share", "Recording rule site:fleet_robots_offline:ratio.",
                        query(f"site:fleet_robots_offline:ratio{{{s}}}"), unit="percentunit",
                        steps=OFFLINE_STEPS, decimals=1))
        .with_panel(big("Faulted or e-stopped", "Robots reporting mode fault or estop.",
                        query(f"sum(fleet_robots{{{s}, {FAULTED}}})"), steps=((None, GREEN), (1, YELLOW), (5, RED))))
        .with_panel(big("Open anomalies (sector)", "Robot anomalies open in the site's sector.",
                        query(f"sum(fleet_anomalies_active and on (sector) {in_site})"), steps=ANOMALY_STEPS))
        .with_row(Row("Robots"))
        .with_panel(ts("Robots by mode", "Reported mode, stacked.",
                       [query(f"sum by (mode) (fleet_robots{{{s}}})", "{{mode}}")], stack=True))
        .with_panel(bars("Robots by model", "Robots known per robot model.",
                         query(f"sort_desc(sum by (model) (fleet_robots{{{s}}}))", "{{model}}", instant=True), h=8))
        .with_panel(ts("Offline robots by model", "Robots silent beyond their cadence, per model.",
                       [query(f"sum by (model) (fleet_robots_offline{{{s}}})", "{{model}}")]))
        .with_panel(ts("Offline share", "Recording rule site:fleet_robots_offline:ratio.",
                       [query(f"site:fleet_robots_offline:ratio{{{s}}}", "{{site}}")], unit="percentunit", max_val=1))
        .with_row(Row("The site's robot models across its sector"))
        .with_panel(ts("Above the nominal band", f"Robot models present at the site, sector-wide. {BAND_NOTE}",
                       [query(above_band("", "model, signal", models_at_site), "{{model}} {{signal}}")],
                       unit="percentunit"))
        .with_panel(ts("Open anomalies by detector (sector)", "Robot anomalies open in the site's sector.",
                       [query(f"sum by (detector) (fleet_anomalies_active and on (sector) {in_site})", "{{detector}}")],
                       stack=True))
    )


TWIN_API = "http://${worker}"
ROBOT_LINKS = (
    link("Twin of ${robot} (worker twin API)", f"{TWIN_API}/twins/${{robot}}",
         "GET /twins/{robot_id}: the robot's latest signals, mode, version, counters and open anomalies (JSON)."),
    link("Robots at ${site} (worker twin API)", f"{TWIN_API}/twins?sector=${{sector}}&site=${{site}}&limit=100",
         "GET /twins?sector=&site=&limit=: ids of the robots this worker holds at the site."),
)


def robot() -> Dashboard:
    s = 'sector="$sector", site="$site"'
    sec = 'sector="$sector"'
    return (
        dashboard("fleet-twin-robot", "Robot drill-down",
                  "One robot against its peers. A robot's own values are not Prometheus series (no robot_id "
                  "label, by design): its signals come from the worker's twin API "
                  "(GET /twins/{robot_id}/history, read back from the log, through the Twin API data source), "
                  "its peers' from Prometheus.")
        .with_variable(label_variable("sector", "Sector", "fleet_robots"))
        .with_variable(label_variable("site", "Site", 'fleet_robots{sector="$sector"}'))
        .with_variable(textbox("robot", "Robot id", "agri-fresno-01-0000000",
                               "The robot whose own signals the twin API shows (never in a Prometheus query)."))
        .with_variable(textbox("signals", "Signals", "",
                               "The robot's signals to plot, separated by commas; empty: all of its model's."))
        .with_variable(textbox("worker", "Worker", "127.0.0.1:6066",
                               "host:port of a worker's web API; any worker answers for any robot."))
        .links(list(ROBOT_LINKS))
        .with_row(Row("$robot's own signals"))
        .with_panel(own_signals("Signals of $robot",
                                "The robot's own reports over the dashboard's time range, from the twin API "
                                "(GET /twins/$robot/history: its Kafka partition, read back; at most "
                                f"{HISTORY_POINTS} points per signal, averaged when the range holds more). "
                                "Its peers are below.", links=list(ROBOT_LINKS)))
        .with_row(Row("Peers at $site"))
        .with_panel(big("Robots at the site", "Robots known at the site.",
                        query(f"sum(fleet_robots{{{s}}})"), links=ROBOT_LINKS))
        .with_panel(big("Offline at the site", "Peers silent beyond their cadence.",
                        query(f"sum(fleet_robots_offline{{{s}}})"), steps=((None, GREEN), (1, YELLOW), (10, RED)),
                        links=ROBOT_LINKS))
        .with_panel(big("Faulted or e-stopped", "Peers reporting mode fault or estop.",
                        query(f"sum(fleet_robots{{{s}, {FAULTED}}})"), steps=((None, GREEN), (1, RED)),
                        links=ROBOT_LINKS))
        .with_panel(big("Open anomalies (sector)", "Robot anomalies open in the sector.",
                        query(f"sum(fleet_anomalies_active{{{sec}}})"), steps=ANOMALY_STEPS, links=ROBOT_LINKS))
        .with_panel(big("Offline share (site)", "Recording rule site:fleet_robots_offline:ratio.",
                        query('site:fleet_robots_offline:ratio{site="$site"}'), unit="percentunit",
                        steps=OFFLINE_STEPS, decimals=1, links=ROBOT_LINKS))
        .with_panel(big("Workers up", "A robot's twin is served by whichever worker owns its partition.",
                        query('sum(up{job="fleet-twin-workers"})'), steps=((None, RED), (1, GREEN)),
                        links=ROBOT_LINKS))
        .with_panel(ts("Peers by mode", "Reported mode of the robots at the site, stacked.",
                       [query(f"sum by (mode) (fleet_robots{{{s}}})", "{{mode}}")], stack=True, links=ROBOT_LINKS))
        .with_panel(ts("Offline peers by model", "Robots at the site silent beyond their cadence.",
                       [query(f"sum by (model) (fleet_robots_offline{{{s}}})", "{{model}}")], links=ROBOT_LINKS))
        .with_row(Row("What normal looks like for the robot's model ($sector)"))
        .with_panel(grid("Peer signals by model",
                         "Compare the robot's signals (twin API) with its model's peers in the sector: "
                         f"mean latest value and band quantiles. {BAND_NOTE}",
                         [query(signal_mean(sec, "model, signal"), ref="A", instant=True, table_format=True),
                          query(band_quantile(0.1, sec, "model, signal"), ref="B", instant=True, table_format=True),
                          query(band_quantile(0.5, sec, "model, signal"), ref="C", instant=True, table_format=True),
                          query(band_quantile(0.9, sec, "model, signal"), ref="D", instant=True, table_format=True)],
                         [("mean value", "short", 2), ("band p10", "none", 2), ("band p50", "none", 2),
                          ("band p90", "none", 2)], w=14, h=12, links=ROBOT_LINKS))
        .with_panel(ts("Open anomalies by detector (sector)", "Robot anomalies open in the sector.",
                       [query(f"sum by (detector) (fleet_anomalies_active{{{sec}}})", "{{detector}}")],
                       stack=True, w=10, h=12, links=ROBOT_LINKS))
    )

"""Where an anomaly points people: its robot's twin and the command that replays it.

The core decides the facts (robot, start, the message's event time); the
links are rendered from them here, in the shell: into every message the worker
publishes to `fleet.anomalies` (`with_links`, the anomaly contract), into the
Alertmanager alert (`streams.worker.alerting.to_alert`), and into a replay's
results, so a replay still gives the worker's message bytes.
"""

from __future__ import annotations

from msgspec.structs import replace

from twin.detect.findings import Anomaly

REPLAY_BEFORE_S = 600.0
"""The replay starts this long before the anomaly opened: the run-up an investigation wants."""
REPLAY_AFTER_S = 60.0
"""... and ends this long after the message's event time."""


def twin_url(base_url: str, robot_id: str) -> str:
    """The robot's twin in the worker API (`GET /twins/{robot_id}`); "" for fleet-level anomalies."""
    return f"{base_url}/twins/{robot_id}" if robot_id else ""


def replay_command(anomaly: Anomaly) -> str:
    """The `fleet-twin replay` of the robot's log around the anomaly; "" for fleet-level anomalies."""
    if not anomaly.robot_id:
        return ""
    return (f"fleet-twin replay --robot {anomaly.robot_id} --from {anomaly.start_ts - REPLAY_BEFORE_S:.0f}"
            f" --to {anomaly.ts + REPLAY_AFTER_S:.0f}")


def with_links(anomaly: Anomaly) -> Anomaly:
    """The message as published: with the twin's path and the replay command for a robot's anomaly."""
    if not anomaly.robot_id:
        return anomaly
    return replace(anomaly, links={"twin": f"/twins/{anomaly.robot_id}", "replay": replay_command(anomaly)})

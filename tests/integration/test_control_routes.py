"""Where Alertmanager sends the control surface's alerts: drift and a halted rollout, by the committed config."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy/alertmanager/alertmanager.yml"


def route_of(*labels: str) -> str:
    """The receiver `amtool config routes test` picks for an alert with these labels."""
    amtool = shutil.which("amtool")
    assert amtool, "amtool is installed by `make test` (Debian package prometheus-alertmanager)"
    result = subprocess.run([amtool, "config", "routes", "test", f"--config.file={CONFIG}", *labels],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def routes_tree() -> str:
    amtool = shutil.which("amtool")
    assert amtool
    return subprocess.run([amtool, "config", "routes", "show", f"--config.file={CONFIG}"],
                          capture_output=True, text=True, timeout=60, check=True).stdout


@pytest.mark.parametrize("labels", [
    ("alertname=FleetRolloutHalted", "detector=rollout_gate", "severity=critical", "sector=fleet", "model=amr"),
    ("alertname=FleetRobotAnomaly", "detector=desired_drift", "severity=warning", "sector=logistics",
     "model=amr", "signal=ai_model"),
])
def test_control_alerts_reach_maintenance(labels: tuple[str, ...]) -> None:
    assert route_of(*labels) == "maintenance"


def test_drift_and_gate_have_routes_of_their_own() -> None:
    tree = routes_tree()
    assert '{detector="rollout_gate"}' in tree and '{detector="desired_drift"}' in tree
    # the gate's route comes before the care sectors' and the severities': a halt is never grouped away
    assert tree.index('{detector="rollout_gate"}') < tree.index('{sector=~"medical|nursing_care"}')

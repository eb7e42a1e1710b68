"""`fleet-twin up` / `status` / `down`: the README's first command, on its own ports and state."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from streams.settings import Settings
from streams.local.stack import settings_env
from tests.support.net import auth, free_port
from tests.support.waiting import eventually


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams", *args], env={**os.environ, **env},
        capture_output=True, text=True, timeout=300,
    )


def test_up_serves_twins_and_18_sectors_then_down_stops_everything(
    broker: str, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    settings = Settings(
        app_id=f"fleet-twin-up-{run}", topic_prefix=f"up-{run}.", state_dir=tmp_path,
        web_port=free_port(), prometheus_port=free_port(), alertmanager_port=free_port(),
        scrape_interval="1s", partitions=2, sim_robots=36,
    )
    env = settings_env(settings)
    try:
        up = cli(env, "up")
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"{settings.web_url()}/twins/" in up.stdout
        robot = up.stdout.split(f"{settings.web_url()}/twins/")[1].split()[0]
        # no token was configured: `up` made one, owner-only, and says how to send it
        token_file = tmp_path / "secrets" / "api-token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        assert f'curl -H "Authorization: Bearer $(cat {token_file})" {settings.web_url()}/twins/' in up.stdout
        assert token_file.read_text().strip() not in up.stdout

        def twin() -> dict[str, Any] | None:
            r = httpx.get(f"{settings.web_url()}/twins/{robot}", headers=auth(settings))
            return r.json() if r.status_code == 200 else None

        assert eventually(twin)["robot_id"] == robot
        assert httpx.get(f"{settings.web_url()}/twins/{robot}").status_code == 401

        def sectors() -> list[Any] | None:
            r = httpx.get(f"http://127.0.0.1:{settings.prometheus_port}/api/v1/query",
                          params={"query": "sum by (sector) (fleet_robots) > 0"})
            result = r.json()["data"]["result"]
            return result if len(result) == 18 else None

        assert len(eventually(sectors, timeout_s=60)) == 18
        status = cli({**env, "COLUMNS": "250"}, "status")  # wide: no cell wraps
        assert status.stdout.count("not running") == 0, status.stdout
        rows = {line.split()[1]: line for line in status.stdout.splitlines() if line.startswith("│")}
        assert "ok, " in rows["worker"] and " partitions, lag " in rows["worker"], status.stdout
        assert "ready" in rows["prometheus"] and "ready" in rows["alertmanager"], status.stdout
    finally:
        down = cli(env, "down")
    assert down.returncode == 0
    for name in ("prometheus", "alertmanager", "worker", "simulator"):
        assert not (tmp_path / "run" / f"{name}.pid").exists()
        assert name in down.stdout
    time.sleep(0.5)
    assert "not running" in cli(env, "status").stdout

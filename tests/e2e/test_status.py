"""`fleet-twin status` shows what the services say, not only that their pids exist: the
worker's /healthz verdict, partitions and consumer lag (issue 17: a worker with a pid answered
500 for every twin)."""

from __future__ import annotations

import os
import subprocess
import sys

from streams.local.health import consumer_lag, service_health
from streams.local.stack import settings_env
from streams.settings import Settings


def test_the_worker_s_health_is_what_its_healthz_and_metrics_say(worker: str, settings: Settings) -> None:
    health = service_health("worker", settings)
    assert health.ok is True, health
    assert health.text.startswith("ok, ") and " partitions, lag " in health.text, health


def test_status_prints_health_beside_the_pids(worker: str, settings: Settings) -> None:
    # wide, so that no table cell wraps whatever the terminal
    env = {**os.environ, **settings_env(settings), "COLUMNS": "250"}
    out = subprocess.run([sys.executable, "-m", "streams", "status"], env=env, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    row = next(line for line in out.splitlines() if " worker " in line)
    assert settings.web_url() in row and "ok, " in row and " partitions, lag " in row, out
    assert "answers" in next(line for line in out.splitlines() if " kafka " in line), out


def test_a_worker_that_does_not_answer_is_not_healthy(settings: Settings) -> None:
    closed = settings.model_copy(update={"web_port": 1})
    health = service_health("worker", closed)
    assert health.ok is False and "does not answer" in health.text


def test_consumer_lag_sums_the_partitions() -> None:
    text = 'twin_consumer_lag{partition="0"} 5.0\ntwin_consumer_lag{partition="1"} 7.0\n'
    assert consumer_lag(text) == 12.0
    assert consumer_lag("twin_table_robots 3.0\n") is None
    assert consumer_lag("# HELP twin_consumer_lag waiting\n# TYPE twin_consumer_lag gauge\n") == 0

"""Prometheus series must not grow with the fleet: the same label sets at 100 and 10,000 robots."""

from __future__ import annotations

import time

import httpx

from streams.settings import Settings
from tests.support.cli import simulate
from tests.support.waiting import eventually


def series(worker: str) -> set[str]:
    """Every exported series (name and labels), values dropped."""
    lines = httpx.get(f"{worker}/metrics", timeout=30).text.splitlines()
    return {line.rsplit(" ", 1)[0] for line in lines if line and not line.startswith("#")}


def robots_known(worker: str, at_least: int) -> int | None:
    text = httpx.get(f"{worker}/metrics", timeout=30).text
    held = next(float(line.split()[-1]) for line in text.splitlines() if line.startswith("twin_table_robots "))
    return int(held) if held >= at_least else None


def test_series_are_the_same_at_100_and_10000_robots(worker: str, settings: Settings) -> None:
    # Simulated robot ids depend on their index only: other tests may have made some already.
    simulate(settings, "--robots", "100", "--duration", "3", "--seed", "11")
    eventually(lambda: robots_known(worker, 100), timeout_s=120)
    small = series(worker)
    simulate(settings, "--robots", "10000", "--duration", "2", "--seed", "11")
    eventually(lambda: robots_known(worker, 10_000), timeout_s=300)
    time.sleep(1)
    large = series(worker)
    assert large == small, f"new series: {sorted(large - small)[:10]}, gone: {sorted(small - large)[:10]}"
    assert not any("robot_id" in s for s in large)
    assert len(large) > 1000  # the fleet model's full label space is exported from the start

"""The twin API on a real worker: a query that can match nothing is a 400 with a JSON reason,
and every time it answers has an ISO 8601 sibling."""

from __future__ import annotations

import uuid
from datetime import datetime

import httpx
import pytest

from streams.settings import Settings
from tests.e2e.test_pipeline import get_twin
from tests.support.telemetry import kcat_produce, telemetry
from tests.support.waiting import eventually


@pytest.mark.parametrize(("params", "says"), [
    ({"sector": "nope", "limit": "-5"}, "unknown sector 'nope'"),
    ({"sector": "mining", "limit": "-5"}, "limit must be a positive whole number"),
    ({"limit": "0"}, "limit must be a positive whole number"),
    ({"limit": "1.5"}, "not '1.5'"),
    ({"site": "nowhere-01"}, "unknown site 'nowhere-01'"),
    ({"sector": "retail", "site": "mining-atacama-01"}, "is in sector 'mining', not 'retail'"),
    ({"sectr": "mining"}, "unknown query parameter(s) sectr"),
])
def test_a_query_that_can_match_nothing_is_a_400_with_the_reason(
        api: httpx.Client, params: dict[str, str], says: str) -> None:
    r = api.get("/twins", params=params)
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/json")
    assert says in r.json()["error"], r.json()


def test_a_good_query_still_lists_and_times_come_with_iso_8601(api: httpx.Client, settings: Settings) -> None:
    robot = f"iso-{uuid.uuid4().hex[:8]}"
    kcat_produce(settings, robot, telemetry(robot, sector="mining", site="mining-atacama-01"))
    twin = eventually(get_twin(api, robot))
    listed = api.get("/twins", params={"sector": "mining", "site": "mining-atacama-01", "limit": 10_000}).json()
    assert robot in listed["robots"]
    for name in ("ts", "mode_since", "first_seen", "last_seen"):
        assert datetime.fromisoformat(twin[f"{name}_iso"]).timestamp() == pytest.approx(twin[name], abs=1e-3)
    signal = next(iter(twin["signals"].values()))
    assert signal["ts_iso"].endswith("Z") and isinstance(signal["ts"], float)

from __future__ import annotations

import json
from typing import Any

import pytest

from twin.exceptions import InvalidEvent
from twin.fleet import Fleet
from twin.schema import Event, encode
from twin.validate import decode, parse


def event(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "schema": 1, "robot_id": "r-1", "seq": 1, "ts": 1_764_000_000.0,
        "sector": "mining", "site": "mining-pilbara-01", "model": "amr", "mode": "working",
        "signals": {"battery_soc_pct": 80.0, "speed_mps": 1.2},
    }
    base.update(changes)
    return base


def raw(**changes: Any) -> bytes:
    return json.dumps(event(**changes)).encode()


def reason_of(data: bytes, fleet: Fleet, key: bytes | None = b"r-1") -> str:
    with pytest.raises(InvalidEvent) as err:
        parse(data, fleet, key=key)
    return err.value.reason


def test_a_good_event_round_trips(fleet: Fleet) -> None:
    ev = parse(raw(), fleet, key=b"r-1")
    assert ev.robot_id == "r-1" and ev.signals["speed_mps"] == 1.2
    assert decode(encode(ev)) == ev


def test_unknown_fields_are_ignored(fleet: Fleet) -> None:
    ev = parse(raw(colour="blue", location={"lat": 1}), fleet, key=b"r-1")
    assert isinstance(ev, Event)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not json", "undecodable"),
        (b"\xff\xfe\x00", "undecodable"),
        (b'{"schema": 1, "robot_id": "r-1"', "undecodable"),
        (json.dumps({k: v for k, v in event().items() if k != "seq"}).encode(), "schema"),
        (raw(seq="three"), "schema"),
        (raw(seq=-1), "schema"),
        (raw(mode="dancing"), "schema"),
        (raw(robot_id=""), "schema"),
        (raw(signals={"speed_mps": "fast"}), "schema"),
        (raw(schema=2), "unsupported_version"),
        (json.dumps({k: v for k, v in event().items() if k != "schema"}).encode(), "schema"),
        (raw().replace(b"1.2", b"1e999"), "schema"),
        (raw(sector="space"), "unknown_sector"),
        (raw(site="mfg-osaka-01"), "unknown_site"),
        (raw(model="excavator-9000"), "unknown_model"),
        (raw(signals={"warp_factor": 1.0}), "unknown_signal"),
        (raw(signals={"battery_soc_pct": 140.0}), "out_of_limits"),
        (raw(signals={"speed_mps": -0.5}), "out_of_limits"),
    ],
)
def test_each_kind_of_bad_input_has_its_own_reason(data: bytes, reason: str, fleet: Fleet) -> None:
    assert reason_of(data, fleet) == reason


def test_the_key_must_be_the_robot_id(fleet: Fleet) -> None:
    assert reason_of(raw(), fleet, key=None) == "key_mismatch"
    assert reason_of(raw(), fleet, key=b"r-2") == "key_mismatch"


def test_oversize_is_refused_before_parsing(fleet: Fleet) -> None:
    with pytest.raises(InvalidEvent) as err:
        parse(b" " * 70_000 + raw(), fleet, key=b"r-1")
    assert err.value.reason == "oversize"


def test_the_detail_says_where_the_problem_is(fleet: Fleet) -> None:
    with pytest.raises(InvalidEvent) as err:
        parse(raw(seq="three"), fleet, key=b"r-1")
    assert "$.seq" in err.value.detail

"""Bad telemetry, one case per rejection reason: shared by the unit and e2e tiers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

NOW = 1_790_000_000.0


def event(robot_id: str = "r-1", **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "schema": 1, "robot_id": robot_id, "seq": 1, "ts": NOW,
        "sector": "mining", "site": "mining-pilbara-01", "model": "amr", "mode": "working",
        "ai_model_version": "nav-3.2.0", "firmware": "fw-2.1",
        "signals": {"battery_soc_pct": 80.0, "speed_mps": 1.2},
    }
    base.update(changes)
    return base


def raw(robot_id: str = "r-1", **changes: Any) -> bytes:
    return json.dumps(event(robot_id, **changes)).encode()


def without(field: str, robot_id: str = "r-1") -> bytes:
    return json.dumps({k: v for k, v in event(robot_id).items() if k != field}).encode()


@dataclass(frozen=True)
class Bad:
    reason: str
    value: bytes
    key: bytes | None
    ts_offset: float = 0.0
    """Event time minus broker time, for the clock checks."""


def bad_cases(robot_id: str = "r-1") -> list[Bad]:
    """At least one message per rejection reason, keyed to `robot_id`."""
    k = robot_id.encode()
    return [
        Bad("oversize", b" " * 70_000 + raw(robot_id), k),
        Bad("undecodable", b"not json at all", k),
        Bad("undecodable", b"\xff\xfe\x00 invalid utf-8", k),
        Bad("undecodable", raw(robot_id)[:-5], k),
        Bad("missing_field", without("seq", robot_id), k),
        Bad("missing_field", without("schema", robot_id), k),
        Bad("invalid_field", raw(robot_id, seq="three"), k),
        Bad("invalid_field", raw(robot_id, seq=-1), k),
        Bad("invalid_field", raw(robot_id, mode="dancing"), k),
        Bad("invalid_field", raw(robot_id, signals={"speed_mps": "fast"}), k),
        Bad("invalid_field", raw(robot_id, location={"lat": 95.0, "lon": 0.0}), k),
        Bad("unsupported_version", raw(robot_id, schema=2), k),
        Bad("non_finite", raw(robot_id).replace(b"1.2", b"NaN"), k),
        Bad("non_finite", raw(robot_id).replace(b"1.2", b"1e999"), k),
        Bad("key_mismatch", raw(robot_id), None),
        Bad("key_mismatch", raw(robot_id), k + b"-other"),
        Bad("future_ts", raw(robot_id), k, ts_offset=3600.0),
        Bad("unknown_sector", raw(robot_id, sector="space"), k),
        Bad("unknown_site", raw(robot_id, site="mfg-osaka-01"), k),
        Bad("unknown_model", raw(robot_id, model="excavator-9000"), k),
        Bad("unknown_signal", raw(robot_id, signals={"warp_factor": 1.0}), k),
        Bad("out_of_limits", raw(robot_id, signals={"battery_soc_pct": 140.0}), k),
        Bad("out_of_limits", raw(robot_id, signals={"speed_mps": -0.5}), k),
    ]

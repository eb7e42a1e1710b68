"""The twin as people read it: the HTTP view, differences between two views, snapshots of views.

`to_view` is the JSON of `GET /twins/{robot_id}` (a stable shape with names,
documented in docs/TWIN.md); the worker's views, `fleet-twin twin-at` and a
replay's `snapshots.parquet` all show it, so an instant replayed shows what the
API showed then. The stored form of a twin is the core's (`twin.state`).
"""

from __future__ import annotations

from typing import Any

import msgspec
import polars as pl

from twin.schema import MODES
from twin.state import Twin, encode_twin


def to_view(twin: Twin) -> dict[str, Any]:
    """The twin as the HTTP API shows it: named fields, a stable shape (docs/TWIN.md)."""
    counts = twin.counts
    return {
        "robot_id": twin.robot_id,
        "sector": twin.sector,
        "site": twin.site,
        "model": twin.model,
        "mode": twin.mode,
        "mode_since": twin.mode_since,
        "ai_model_version": twin.ai_model_version,
        "ai_model_since": twin.ai_model_since,
        "firmware": twin.firmware,
        "firmware_since": twin.firmware_since,
        "codes": list(twin.codes),
        "location": msgspec.to_builtins(twin.location),
        "ts": twin.ts,
        "seq": twin.seq,
        "first_seen": twin.first_seen,
        "last_seen": twin.last_seen,
        "signals": {
            name: {"value": s.value, "ts": twin.signal_time(s)[0], "n": s.n, "mean": s.mean, "std": s.var**0.5}
            for name, s in sorted(twin.signals.items())
        },
        "anomalies": [
            {"detector": o.detector, "signal": o.signal, "since": o.start, "severity": o.severity,
             "score": round(o.peak, 4)}
            for o in (twin.watch.open if twin.watch else [])
        ],
        "counts": {
            "events": counts.events,
            "duplicates": counts.duplicates,
            "stale": counts.stale,
            "late": twin.late,
            "rejected": counts.rejected,
            "missing": twin.missing(),
            "version_changes": twin.version_changes,
            "modes": dict(zip(MODES, counts.modes)),
        },
    }


class FieldChange(msgspec.Struct, frozen=True):
    path: str
    """Dotted path in the twin's view (docs/TWIN.md), e.g. `signals.motor_temp_c.value`."""
    before: Any
    after: Any


def diff_twins(before: Twin | None, after: Twin | None) -> list[FieldChange]:
    """Every field of the view whose value differs, in path order."""
    a = _flatten(to_view(before)) if before else {}
    b = _flatten(to_view(after)) if after else {}
    return [FieldChange(k, a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]


def _flatten(view: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in view.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, path + "."))
        else:
            out[path] = value
    return out


SNAPSHOT_SCHEMA: dict[str, pl.DataType] = {
    "at": pl.Float64(), "robot_id": pl.String(), "view": pl.String(), "twin": pl.Binary(),
}


def snapshots_to_frame(snapshots: dict[float, dict[str, Twin]]) -> pl.DataFrame:
    """A replay's `snapshots.parquet`: one row per (instant, robot), the API's JSON view and the stored bytes."""
    rows = [{"at": at, "robot_id": rid, "view": _json.encode(to_view(t)).decode(), "twin": encode_twin(t)}
            for at, twins in sorted(snapshots.items()) for rid, t in sorted(twins.items())]
    return pl.DataFrame(rows, schema=SNAPSHOT_SCHEMA)


_json = msgspec.json.Encoder()

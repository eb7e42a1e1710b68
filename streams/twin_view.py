"""The twin as people read it: the HTTP view, differences between two views, snapshots of views.

`to_view` is the JSON of `GET /twins/{robot_id}` (a stable shape with names,
documented in docs/TWIN.md); the worker's views, `fleet-twin twin-at` and a
replay's `snapshots.parquet` all show it, so an instant replayed shows what the
API showed then. The stored form of a twin is the core's (`twin.state`).

Times: every field that holds epoch seconds (`ts`, `since`, `first_seen`, ...)
has a sibling with the same name plus `_iso`, the same instant as ISO 8601 in
UTC: programs keep the float, people and log searches read the string.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import msgspec
import polars as pl

from twin.desired import DesiredRules, deltas, reported, resolve
from twin.schema import MODES
from twin.state import Twin, encode_twin


ISO_SUFFIX = "_iso"
"""Appended to the name of an epoch-seconds field for its ISO 8601 sibling."""


def iso(ts: float) -> str:
    """Epoch seconds as ISO 8601 in UTC, to the millisecond, with a `Z`."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def with_iso(**times: float) -> dict[str, float | str]:
    """Each epoch-seconds field, followed by its `_iso` sibling."""
    return {k: v for name, ts in times.items() for k, v in ((name, ts), (name + ISO_SUFFIX, iso(ts)))}


NO_RULES = DesiredRules()


def to_view(twin: Twin, desired: DesiredRules = NO_RULES) -> dict[str, Any]:
    """The twin as the HTTP API shows it: named fields, a stable shape (docs/TWIN.md).

    `desired` are the desired-state rules the worker (or a replay, at the instant) holds:
    the robot's desire is resolved from them, never stored in the twin.
    """
    return {**_twin_view(twin), **desired_view(twin, desired)}


def desired_view(twin: Twin, rules: DesiredRules) -> dict[str, Any]:
    """`desired`, `reported` and `delta` (with each difference's age against the twin's time)."""
    wants = resolve(rules, twin)
    return {
        "desired": {field: {"value": d.value, **with_iso(ts=d.ts), "change_id": d.change_id,
                            "principal": d.principal, "reason": d.reason}
                    for field, d in sorted(wants.items())},
        "reported": reported(twin),
        "delta": [{"field": d.field, "desired": d.desired, "reported": d.reported, **with_iso(since=d.since),
                   "age_s": round(max(twin.ts - d.since, 0.0), 3)}
                  for d in deltas(twin, wants)],
    }


def _twin_view(twin: Twin) -> dict[str, Any]:
    counts = twin.counts
    return {
        "robot_id": twin.robot_id,
        "sector": twin.sector,
        "site": twin.site,
        "model": twin.model,
        "mode": twin.mode,
        **with_iso(mode_since=twin.mode_since),
        "ai_model_version": twin.ai_model_version,
        **with_iso(ai_model_since=twin.ai_model_since),
        "firmware": twin.firmware,
        **with_iso(firmware_since=twin.firmware_since),
        "codes": list(twin.codes),
        "location": msgspec.to_builtins(twin.location),
        **with_iso(ts=twin.ts),
        "seq": twin.seq,
        **with_iso(first_seen=twin.first_seen, last_seen=twin.last_seen),
        "signals": {
            name: {"value": s.value, **with_iso(ts=twin.signal_time(s)[0]), "n": twin.signal_count(s), "mean": s.mean,
                   "std": s.var**0.5}
            for name, s in sorted(twin.signals.items())
        },
        "anomalies": [
            {"detector": o.detector, "signal": o.signal, **with_iso(since=o.start), "severity": o.severity,
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
    """Every field of the view whose value differs, in path order; each time once (as epoch
    seconds: its `_iso` sibling says nothing new)."""
    a = _flatten(to_view(before)) if before else {}
    b = _flatten(to_view(after)) if after else {}
    a, b = ({k: v for k, v in view.items() if not k.endswith(ISO_SUFFIX)} for view in (a, b))
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


def snapshots_to_frame(snapshots: dict[float, dict[str, Twin]],
                       desired_at: dict[float, DesiredRules] | None = None) -> pl.DataFrame:
    """A replay's `snapshots.parquet`: one row per (instant, robot), the API's JSON view (with the desired
    state known at the instant) and the stored bytes."""
    rules = desired_at or {}
    rows = [{"at": at, "robot_id": rid, "view": _json.encode(to_view(t, rules.get(at, NO_RULES))).decode(),
             "twin": encode_twin(t)}
            for at, twins in sorted(snapshots.items()) for rid, t in sorted(twins.items())]
    return pl.DataFrame(rows, schema=SNAPSHOT_SCHEMA)


_json = msgspec.json.Encoder()

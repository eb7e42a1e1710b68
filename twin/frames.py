"""Events and labels as tables (polars), for Parquet files and analysis.

One row per event, one column per signal (null where a robot's model has no
such signal or the report lacked it), so the files read naturally in polars,
DuckDB or Spark.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
import polars as pl

from twin.compare import AlertChange
from twin.detect.findings import Anomaly
from twin.replay import Seen
from twin.schema import Event

HEAD = ("robot_id", "seq", "ts", "sector", "site", "model", "mode", "ai_model_version", "firmware")
LABEL_SCHEMA: dict[str, pl.DataType] = {
    "robot_id": pl.String(), "fault": pl.String(), "start_ts": pl.Float64(), "end_ts": pl.Float64(),
    "signals": pl.List(pl.String()), "sector": pl.String(), "site": pl.String(), "model": pl.String(),
    "scope": pl.String(), "group": pl.Int64(),
}


def events_to_frame(events: Iterable[Event]) -> pl.DataFrame:
    """Events as a wide table: the head columns, `codes`, then one Float64 column per signal."""
    rows = list(events)
    head = pl.DataFrame(
        {name: [getattr(e, name) for e in rows] for name in HEAD}
        | {"codes": [list(e.codes) for e in rows]},
        schema_overrides={"seq": pl.Int64, "ts": pl.Float64, "codes": pl.List(pl.String)},
    )
    signals = pl.from_dicts([e.signals for e in rows], infer_schema_length=None)
    signals = signals.select(pl.col(c).cast(pl.Float64) for c in sorted(signals.columns))
    return pl.concat([head, signals], how="horizontal") if signals.width else head


def labels_to_frame(labels: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(labels, schema=LABEL_SCHEMA)


def seen_to_frame(seen: list[Seen]) -> pl.DataFrame:
    """Replayed events as `events_to_frame`, plus where each sat in the log and when the broker got it."""
    if not seen:
        return pl.DataFrame(schema={**dict.fromkeys(HEAD, pl.String()), "seq": pl.Int64(), "ts": pl.Float64(),
                                    "codes": pl.List(pl.String()), "received_ts": pl.Float64(),
                                    "partition": pl.Int32(), "offset": pl.Int64()})
    frame = events_to_frame(s.event for s in seen)
    return frame.with_columns(
        pl.Series("received_ts", [s.received_ts for s in seen], dtype=pl.Float64),
        pl.Series("partition", [s.partition for s in seen], dtype=pl.Int32),
        pl.Series("offset", [s.offset for s in seen], dtype=pl.Int64),
    )


ANOMALY_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.String(), "status": pl.String(), "robot_id": pl.String(), "sector": pl.String(),
    "site": pl.String(), "model": pl.String(), "detector": pl.String(), "signal": pl.String(),
    "severity": pl.String(), "score": pl.Float64(), "start_ts": pl.Float64(), "ts": pl.Float64(),
    "end_ts": pl.Float64(), "caused_by": pl.String(), "evidence": pl.String(),
}


def anomalies_to_frame(anomalies: Iterable[Anomaly]) -> pl.DataFrame:
    """Anomaly messages in order; `evidence` as a JSON string (its keys vary by detector)."""
    rows = [{**{k: getattr(a, k) for k in ANOMALY_SCHEMA if k != "evidence"},
             "evidence": _json.encode(a.evidence).decode()} for a in anomalies]
    return pl.DataFrame(rows, schema=ANOMALY_SCHEMA)


CHANGE_SCHEMA: dict[str, pl.DataType] = {
    "kind": pl.String(), "robot_id": pl.String(), "site": pl.String(), "model": pl.String(),
    "detector": pl.String(), "signal": pl.String(), "base_opened": pl.Float64(),
    "other_opened": pl.Float64(), "shift_s": pl.Float64(),
}


def changes_to_frame(changes: Iterable[AlertChange]) -> pl.DataFrame:
    """What-if changes as `changes.parquet` holds them: one row per `twin.compare.AlertChange`."""
    return pl.DataFrame([msgspec.structs.asdict(c) for c in changes], schema=CHANGE_SCHEMA)


_json = msgspec.json.Encoder()

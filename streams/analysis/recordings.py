"""Read a folder of labelled multivariate recordings ("format (b)").

A user scores the detectors on their own robots' logs before trusting them,
so the format is the smallest one a log export can reach:

    my-robots/
      manifest.yaml
      runs/healthy-1.csv        one file per run, CSV or Parquet
      runs/healthy-2.parquet
      runs/bearing-fault.csv

Every run has a `timestamp` column (ISO 8601 text, naive = UTC, or epoch
seconds), numeric signal columns and a 0/1 `anomaly` column (a normal-only
run may leave it out: it is all 0). `manifest.yaml`:

    normal: [runs/healthy-1.csv, runs/healthy-2.parquet]   # the only runs a baseline may be fitted on
    condition: mode          # optional: the column naming the operating condition
    signals: [a, b, c]       # optional: default every numeric column but timestamp/anomaly/condition
    normal_head: 400         # optional: every run starts with 400 normal rows (a warm-up, SKAB's protocol);
                             # each run is then scored against its own first rows, and `normal` may be empty

Every `*.csv` and `*.parquet` file under the folder is a run (hidden files
and folders aside); a CSV may be separated by `,` or `;`. In Parquet the
timestamp may also be a datetime column (naive = UTC). Anything the scorer cannot use is refused here with
one line naming the file and the problem (`RecordingError`), before any
scoring starts: a figure from a half-read folder would mislead.

Used by `streams.analysis.eval.recordings` (the `eval --data PATH` scores) and
by `fleet-twin import` (turning a recording into schema-v1 events).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from twin.exceptions import FleetTwinError

MANIFEST = "manifest.yaml"
TIMESTAMP = "timestamp"
ANOMALY = "anomaly"
SUFFIXES = (".csv", ".parquet")
MANIFEST_KEYS = frozenset({"normal", "condition", "signals", "normal_head"})


class RecordingError(FleetTwinError, ValueError):
    """A recordings folder the scorer cannot use; the message is one line: `<file>: <problem>`."""


@dataclass(frozen=True)
class Recording:
    """One run: its rows in time order."""

    name: str
    """Path of the file relative to the folder, with `/` (as the manifest names it)."""
    normal: bool
    """Named under `normal:` in the manifest: a baseline may be fitted on it."""
    frame: pl.DataFrame
    """`timestamp` (Float64 epoch seconds, UTC), the signals (Float64, null as NaN), `anomaly`
    (Int8 0/1) and the condition column if the manifest names one; sorted by time."""


@dataclass(frozen=True)
class RecordingSet:
    """A folder of runs as the manifest describes them."""

    root: Path
    runs: tuple[Recording, ...]
    """Every run, in the order of their names."""
    signals: tuple[str, ...]
    """The signal columns, in the order of the manifest or of the first normal run."""
    condition: str | None
    """The column naming the operating condition, if any."""
    normal_head: int | None = None
    """Rows at the start of every run that are its own normal-only part (SKAB's first 400):
    the run's baseline is fitted on them, whatever their labels, and they are not scored."""

    @property
    def normal(self) -> tuple[Recording, ...]:
        return tuple(r for r in self.runs if r.normal)


def load_recordings(root: Path) -> RecordingSet:
    """Read and check every run of the folder `root`; raise `RecordingError` on the first problem."""
    manifest = _manifest(root)
    paths = sorted(
        (p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file()
         and not any(part.startswith(".") for part in p.relative_to(root).parts)),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    names = [p.relative_to(root).as_posix() for p in paths]
    normal = manifest["normal"]
    for name in normal:
        if name not in names:
            raise RecordingError(f"{root / MANIFEST}: names a normal run {name!r} that is not a CSV or Parquet file under {root}")
    condition: str | None = manifest.get("condition")
    head: int | None = manifest.get("normal_head")
    if not names:
        raise RecordingError(f"{root}: no run (a CSV or Parquet file) in the folder")
    raw = {name: _read(path) for name, path in zip(names, paths, strict=True)}
    first = normal[0] if normal else names[0]
    signals = tuple(manifest.get("signals") or _numeric_columns(raw[first], condition))
    if not signals:
        raise RecordingError(f"{root / first}: no numeric signal column (besides {TIMESTAMP}, {ANOMALY}, condition)")
    runs = tuple(
        Recording(name, name in normal, _checked(root / name, frame, signals, condition, name in normal))
        for name, frame in raw.items()
    )
    if head is not None:
        for run in runs:
            if run.frame.height <= head:
                raise RecordingError(f"{root / run.name}: {run.frame.height} rows, none left to score after "
                                     f"normal_head ({head})")
    return RecordingSet(root=root, runs=runs, signals=signals, condition=condition, normal_head=head)


def _manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not root.is_dir():
        raise RecordingError(f"{root}: not a folder")
    if not path.is_file():
        raise RecordingError(f"{path}: no manifest (it names the normal-only runs: `normal: [runs/a.csv, ...]`)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RecordingError(f"{path}: not YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise RecordingError(f"{path}: must be a mapping with at least `normal: [...]`")
    if unknown := sorted(set(map(str, data)) - MANIFEST_KEYS):
        raise RecordingError(f"{path}: unknown key(s) {unknown}; known: {sorted(MANIFEST_KEYS)}")
    normal = data.get("normal")
    if isinstance(normal, str):
        normal = [normal]
    head = data.get("normal_head")
    if head is not None and (isinstance(head, bool) or not isinstance(head, int) or head < 1):
        raise RecordingError(f"{path}: `normal_head:` must be a number of rows (1 or more), not {head!r}")
    if head is not None and normal is None:
        normal = []
    if normal is None or (not normal and head is None) or not (normal == [] or _strings(normal)):
        raise RecordingError(f"{path}: no normal run (`normal:` must list at least one run file, "
                             "or `normal_head:` say how many rows each run starts normal)")
    if (condition := data.get("condition")) is not None and not isinstance(condition, str):
        raise RecordingError(f"{path}: `condition:` must be one column name")
    if condition in (TIMESTAMP, ANOMALY):
        raise RecordingError(f"{path}: `condition:` cannot be the {condition!r} column")
    signals = data.get("signals")
    if signals is not None and (not signals or not _strings(signals)):
        raise RecordingError(f"{path}: `signals:` must list at least one column name")
    if signals and (clash := {TIMESTAMP, ANOMALY, condition} & set(signals)):
        raise RecordingError(f"{path}: `signals:` names {sorted(map(str, clash))}, which are not signals")
    return {"normal": [n.removeprefix("./") for n in normal],
            "condition": condition, "signals": signals, "normal_head": head}


def _strings(values: object) -> bool:
    return isinstance(values, list) and all(isinstance(v, str) and v for v in values)


def _read(path: Path) -> pl.DataFrame:
    try:
        if path.suffix.lower() == ".parquet":
            return pl.read_parquet(path)
        with path.open() as f:
            head = f.readline()
        separator = ";" if head.count(";") > head.count(",") else ","
        return pl.read_csv(path, separator=separator, infer_schema_length=None)
    except (OSError, pl.exceptions.PolarsError, UnicodeDecodeError) as exc:
        raise RecordingError(f"{path}: cannot be read ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


def _numeric_columns(frame: pl.DataFrame, condition: str | None) -> list[str]:
    skip = {TIMESTAMP, ANOMALY, condition}
    return [c for c, t in frame.schema.items() if c not in skip and (t.is_numeric() or t == pl.Boolean)]


def _checked(path: Path, frame: pl.DataFrame, signals: Sequence[str], condition: str | None,
             normal: bool) -> pl.DataFrame:
    if frame.height == 0:
        raise RecordingError(f"{path}: no rows")
    if missing := [c for c in (TIMESTAMP, *signals, *([condition] if condition else [])) if c not in frame.columns]:
        raise RecordingError(f"{path}: missing column(s) {missing}")
    columns = [_timestamps(path, frame[TIMESTAMP])]
    for name in signals:
        column = frame[name]
        if not (column.dtype.is_numeric() or column.dtype == pl.Boolean or column.dtype == pl.Null):
            raise RecordingError(f"{path}: signal {name!r} is not numeric ({column.dtype})")
        columns.append(column.cast(pl.Float64).fill_null(float("nan")).alias(name))
    columns.append(_labels(path, frame[ANOMALY] if ANOMALY in frame.columns else None, frame.height, normal))
    if condition:
        column = frame[condition]
        if column.null_count():
            raise RecordingError(f"{path}: condition column {condition!r} has {column.null_count()} empty value(s)")
        columns.append(column.cast(pl.Float64) if column.dtype.is_numeric() else column.cast(pl.String))
    return pl.DataFrame(columns).sort(TIMESTAMP, maintain_order=True)


def _timestamps(path: Path, column: pl.Series) -> pl.Series:
    """Epoch seconds (float, UTC) from epoch numbers, ISO 8601 text or a datetime column."""
    if column.dtype.is_numeric():
        out = column.cast(pl.Float64)
    elif isinstance(column.dtype, pl.Datetime):
        zoned = column if column.dtype.time_zone else column.dt.replace_time_zone("UTC")
        out = zoned.dt.epoch("us").cast(pl.Float64) / 1e6
    elif column.dtype == pl.String:
        out = _iso(path, column)
    else:
        raise RecordingError(f"{path}: `{TIMESTAMP}` is neither ISO 8601 text nor epoch seconds ({column.dtype})")
    bad = out.is_null() | out.is_nan() | out.is_infinite()
    if bad.any():
        row = int(bad.arg_true()[0])
        raise RecordingError(f"{path}: `{TIMESTAMP}` cannot be sorted: row {row + 1} is {column[row]!r}")
    return out.alias(TIMESTAMP)


def _iso(path: Path, column: pl.Series) -> pl.Series:
    values: list[float | None] = []
    for i, text in enumerate(column):
        if text is None:
            values.append(None)
            continue
        try:
            stamp = datetime.fromisoformat(text.strip())
        except ValueError:
            try:
                values.append(float(text))
                continue
            except ValueError:
                raise RecordingError(f"{path}: `{TIMESTAMP}` row {i + 1} is {text!r}, neither ISO 8601 nor epoch seconds") from None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=timezone.utc)
        values.append(stamp.timestamp())
    return pl.Series(TIMESTAMP, values, dtype=pl.Float64)


def _labels(path: Path, column: pl.Series | None, height: int, normal: bool) -> pl.Series:
    if column is None:
        if not normal:
            raise RecordingError(f"{path}: no `{ANOMALY}` column (0/1 per row; only a normal run may leave it out)")
        return pl.Series(ANOMALY, [0] * height, dtype=pl.Int8)
    if column.null_count():
        raise RecordingError(f"{path}: `{ANOMALY}` has {column.null_count()} empty value(s); it must be 0 or 1 on every row")
    if not (column.dtype.is_numeric() or column.dtype == pl.Boolean):
        raise RecordingError(f"{path}: `{ANOMALY}` must be 0 or 1, not {column.dtype}")
    values = column.cast(pl.Float64)
    if bad := sorted(set(values.filter(~values.is_in([0.0, 1.0])).to_list()))[:3]:
        raise RecordingError(f"{path}: `{ANOMALY}` must be 0 or 1, found {bad}")
    if normal and values.sum() > 0:
        raise RecordingError(f"{path}: named normal-only in the manifest but has {int(values.sum())} anomalous row(s)")
    return values.cast(pl.Int8).alias(ANOMALY)

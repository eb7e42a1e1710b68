"""`fleet-twin import`: a folder of labelled recordings (format (b)) as a robot fleet's log.

A fleet with robot models of its own starts here: declare the model in
`seeds/models.yaml` (its signals, units, bands and limits), export a few runs
of its logs as format (b) (`streams.analysis.recordings`), import them and
score the detectors that run in the worker on them (`production_table`)
before trusting an alert.

What a recording becomes:

* each run is one robot (id: the run's file stem, or `--robot-id`); runs are
  separate sessions (a rig restarted, another day), and gluing them into one
  robot would put restarts and day-long gaps inside one twin;
* each row is one schema-v1 event: `seq` the row number, `ts` the row's
  timestamp, `mode` the condition column where its values are robot modes
  (`working` otherwise), the row's signals renamed to the model's catalogue
  (blank values left out, as a robot that did not measure them would);
* each event is a telemetry record keyed by its robot, stamped at its event
  time (to the millisecond, as Kafka stamps), in the partition Kafka's
  partitioner gives the key; the silence checks a worker's timer would write
  are added where `twin.fleet_fold.silence_check_due` says, so the log read
  back by `fleet-twin replay --source DIR` gives the anomalies scored here;
* each run of `anomaly == 1` rows is one labelled episode (`labels.parquet`).

The log is written in the project's own Parquet archive layout
(`streams.analysis.archive_layout`), not as JSON lines: `replay --source DIR`,
`twin-at` and `export-dataset` then read it as they read an archived fleet,
with no second reader to keep in step.
"""

from __future__ import annotations

import math
import re
import shlex
from fnmatch import fnmatchcase
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import polars as pl
import yaml

from streams.analysis.recordings import ANOMALY, TIMESTAMP, RecordingSet
from streams.kafka_client import partitioner
from twin.detect import stall
from twin.detect.findings import Anomaly
from twin.detect.params import DEFAULT, DetectorConfig
from twin.detect.stall import StallParams
from twin.exceptions import FleetTwinError
from twin.fleet import Fleet, RobotModel, Signal
from twin.fleet_fold import Rules, silence_check_due
from twin.frames import labels_to_frame
from twin.record import Kind, Record
from twin.batch_replay import BatchFold
from twin.replay import in_log_order
from twin.schema import MODES, Event

CHECK_EVERY_S = 5.0
"""How often the worker's timer looks for silent robots (`fleet-twin eval --scenario` uses the same)."""
EPOCH_FLOOR = 946_684_800.0
"""2000-01-01: a recording whose clock starts before this counts time from its own start; its
rows are shifted to start here (event time must be epoch seconds)."""
BAND_QUANTILES = (0.005, 0.995)
"""Learned band: the 0.5 % and 99.5 % quantiles of the normal-only runs (robust: a few spikes in
a healthy log do not widen it); the band detector's margin (15 % of the width) is on top."""
MAX_STEP_S = 5.0
"""A step between two rows longer than this is a gap, not observed time."""
QUIET_CHECKS_S = 3600.0
"""In a gap of the whole log (between two sessions, two runs on other days), the timer's checks
are folded for its first hour only, then from the hour before the next record: an hour is
hundreds of silence periods of any robot reporting at least once a minute, so every quiet
robot has been flagged by then, and a gap of weeks costs no millions of empty checks."""
_ID = re.compile(r"[^A-Za-z0-9._:-]+")


class ImportProblem(FleetTwinError, ValueError):
    """A recording that cannot become events for the model asked for; the message is one line."""


@dataclass(frozen=True)
class Imported:
    """A recording set as a fleet's log, folded once through the worker's rules."""

    model: str
    mapping: dict[str, str]
    """Recording column -> model signal."""
    robots: dict[str, str]
    """Run name -> robot id."""
    telemetry: list[Record]
    checks: list[Record]
    labels: pl.DataFrame
    """One row per labelled episode (`twin.frames.LABEL_SCHEMA`), `fault` = the label column."""
    anomalies: list[Anomaly]
    rejected: int
    """Records the fold refused (a value outside the model's physical limits, ...)."""
    observed_s: dict[str, float] = field(default_factory=dict)
    """Per robot: seconds covered by its rows (steps of at most `MAX_STEP_S`)."""
    timestamps: dict[str, np.ndarray] = field(default_factory=dict)
    """Per robot: its rows' event times, in order."""




# -- signals and places -------------------------------------------------------------


def model_of(fleet: Fleet, name: str) -> RobotModel:
    if name not in fleet.models:
        raise ImportProblem(f"unknown robot model {name!r}; declared in seeds/models.yaml: {', '.join(sorted(fleet.models))}")
    return fleet.models[name]


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def resolve_signals(columns: Sequence[str], model_name: str, model: RobotModel,
                    mapping: Mapping[str, str] | None = None) -> dict[str, str]:
    """Recording column -> model signal: as `mapping` says (an empty target drops the column),
    else the same name, else the same name up to case and punctuation (`Tool current` ->
    `tool_current`). A column that maps to nothing is an error: a signal silently left out
    would never be judged."""
    mapping = dict(mapping or {})
    if unknown := sorted(set(mapping) - set(columns)):
        raise ImportProblem(f"--map names column(s) {unknown} that the recordings do not have; they have {list(columns)}")
    by_norm = {_norm(s): s for s in model.signals}
    out: dict[str, str] = {}
    for col in columns:
        target = mapping.get(col, col if col in model.signals else by_norm.get(_norm(col)))
        if target == "":
            continue
        if target is None or target not in model.signals:
            raise ImportProblem(
                f"signal {col!r} maps to nothing in model {model_name!r} (its signals: "
                f"{', '.join(model.signals)}); map it with --map {shlex.quote(col + '=SIGNAL')} or drop it with "
                f"--map {shlex.quote(col + '=')}")
        out[col] = target
    if len(set(out.values())) < len(out):
        twice = sorted({s for s in out.values() if list(out.values()).count(s) > 1})
        raise ImportProblem(f"several columns map to the same signal(s) {twice}")
    return out


def parse_mapping(items: Iterable[str]) -> dict[str, str]:
    """`COL=SIGNAL` pairs (as `--map` takes them) as a dict."""
    out = {}
    for item in items:
        col, sep, signal = item.partition("=")
        if not sep or not col:
            raise ImportProblem(f"--map {item!r}: expected COLUMN=SIGNAL (or COLUMN= to leave the column out)")
        out[col] = signal
    return out


def place(fleet: Fleet, model: str, sector: str | None = None, site: str | None = None) -> tuple[str, str]:
    """The sector and site the imported robots report from: given, or the first sector that
    deploys the model (else the first sector) and its first site."""
    if sector is None:
        sector = next((n for n, s in fleet.sectors.items() if model in s.models), next(iter(fleet.sectors)))
    if sector not in fleet.sectors:
        raise ImportProblem(f"unknown sector {sector!r}; known: {', '.join(fleet.sectors)}")
    sites = fleet.sectors[sector].sites
    if site is None:
        site = sites[0]
    if site not in sites:
        raise ImportProblem(f"site {site!r} is not a site of sector {sector!r} ({', '.join(sites)})")
    return sector, site


def robot_ids(names: Sequence[str], robot_id: str | None = None) -> dict[str, str]:
    """Run name -> robot id: the file stem (`runs/pump-3.csv` -> `pump-3`; the whole path,
    `valve1-3`, where two runs share a stem); `robot_id` names the robot of a single run, and
    prefixes the ids of several."""
    stems = {n: Path(n).stem for n in names}
    if len(set(stems.values())) < len(stems):
        stems = {n: Path(n).with_suffix("").as_posix() for n in names}
    stems = {n: _ID.sub("-", s.replace("/", "-")).strip("-") or "run" for n, s in stems.items()}
    if robot_id is not None and not re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", robot_id):
        raise ImportProblem(f"--robot-id {robot_id!r}: 1 to 64 of A-Z a-z 0-9 . _ : -")
    if robot_id is not None:
        stems = {n: robot_id for n in names} if len(names) == 1 else {n: f"{robot_id}-{s}" for n, s in stems.items()}
    ids = {n: s[:128] for n, s in stems.items()}
    if len(set(ids.values())) < len(ids):
        raise ImportProblem("two runs give the same robot id; rename one file")
    return ids


# -- events, labels, log ----------------------------------------------------------


def run_events(frame: pl.DataFrame, mapping: Mapping[str, str], robot_id: str, sector: str, site: str,
               model: str, condition: str | None = None, shift_s: float = 0.0) -> list[Event]:
    """One schema-v1 event per row (blank values left out)."""
    ts = frame[TIMESTAMP].to_numpy() + shift_s
    columns = {sig: frame[col].to_numpy() for col, sig in mapping.items()}
    modes = frame[condition].cast(pl.String).to_list() if condition else None
    events = []
    for i in range(frame.height):
        signals = {sig: float(v[i]) for sig, v in columns.items() if math.isfinite(v[i])}
        mode = modes[i] if modes is not None and modes[i] in MODES else "working"
        events.append(Event(schema=1, robot_id=robot_id, seq=i, ts=round(float(ts[i]), 3), sector=sector,
                            site=site, model=model, mode=mode, signals=signals))  # type: ignore[arg-type]  # mode checked against MODES
    return events


def episodes(frame: pl.DataFrame, robot_id: str, sector: str, site: str, model: str, column: str = ANOMALY,
             shift_s: float = 0.0) -> list[dict[str, Any]]:
    """Each run of `column == 1` rows as a label: from its first row's time to its last row's."""
    flags = frame[column].fill_null(0).to_numpy().astype(bool)
    ts = frame[TIMESTAMP].to_numpy() + shift_s
    edges = np.diff(np.r_[0, flags.astype(np.int8), 0])
    return [{"robot_id": robot_id, "fault": column, "start_ts": round(float(ts[a]), 3),
             "end_ts": round(float(ts[b - 1]), 3), "signals": [], "sector": sector, "site": site,
             "model": model, "scope": "robot", "group": None}
            for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1))]


def clock_shift(frames: Iterable[pl.DataFrame]) -> float:
    """Seconds to add to every timestamp: 0 for epoch clocks, else what moves the earliest row to 2000-01-01."""
    first = min(float(f[TIMESTAMP].min()) for f in frames)  # type: ignore[arg-type]  # a Float64 column's min
    return 0.0 if first >= EPOCH_FLOOR else EPOCH_FLOOR - first


def fold_events(events: Iterable[Event], fleet: Fleet, config: DetectorConfig, *, partitions: int = 8,
                check_every_s: float = CHECK_EVERY_S) -> tuple[list[Record], list[Record], BatchFold]:
    """The events as the log a worker would read (keyed telemetry in time order, and its silence
    checks), folded with `twin.batch_replay.BatchFold` (`twin.replay.Fold` on the batch engine): the
    telemetry, the checks and the fold. Each check is decided from the twins folded up to it.

    A robot is checked only until its run's last row: a recording that ends is not a robot
    that went quiet (a gap inside a run is, and is checked as the worker would)."""
    encode = msgspec.json.Encoder().encode
    part_of = partitioner(partitions)
    fold = BatchFold(Rules(fleet, config))
    offsets: dict[tuple[int, str], int] = {}
    telemetry: list[Record] = []
    checks: list[Record] = []

    def record(kind: Kind, key: bytes, value: bytes, now: float) -> Record:
        p = part_of(key)
        offsets[(p, kind)] = offset = offsets.get((p, kind), -1) + 1
        return Record(kind, p, offset, now, key, value)

    ordered = sorted(events, key=lambda e: (e.ts, e.robot_id, e.seq))
    ends = {e.robot_id: e.ts for e in ordered}  # a run's last row: after it the recording, not the robot, stops
    next_check: float | None = None
    last = -math.inf
    for e in ordered:
        now = round(e.ts * 1000) / 1000.0
        next_check = now + check_every_s if next_check is None else next_check
        while now >= next_check:  # the timer's checks at its own instants, before this record
            for rid, twin in fold.twins.items():  # a copy, read once: the checks fed below fold later
                if next_check <= ends[rid] and silence_check_due(twin, next_check, config):
                    checks.append(r := record("check", rid.encode(), repr(next_check).encode(), next_check))
                    fold.feed(r)
            next_check += check_every_s
            if last + QUIET_CHECKS_S < next_check < now - QUIET_CHECKS_S:  # see QUIET_CHECKS_S
                next_check += (now - next_check) // check_every_s * check_every_s
        telemetry.append(r := record("telemetry", e.robot_id.encode(), encode(e), now))
        fold.feed(r)
        last = now
    return telemetry, checks, fold


def import_set(recs: RecordingSet, fleet: Fleet, config: DetectorConfig, model: str, *,
               mapping: Mapping[str, str] | None = None, robot_id: str | None = None,
               sector: str | None = None, site: str | None = None, label_columns: Sequence[str] = (ANOMALY,),
               runs: Sequence[str] | None = None, partitions: int = 8) -> Imported:
    """Every run of `recs` (or those named in `runs`) as robots of `model`, folded as the worker would.

    `label_columns` are 0/1 columns whose runs of 1 become labelled episodes
    (`anomaly`, and for a data set with several kinds, one column per kind)."""
    spec = model_of(fleet, model)
    cols = resolve_signals(recs.signals, model, spec, mapping)
    chosen = [r for r in recs.runs if runs is None or r.name in runs]
    ids = robot_ids([r.name for r in chosen], robot_id)
    sector, site = place(fleet, model, sector, site)
    shift = clock_shift(r.frame for r in chosen)
    events: list[Event] = []
    labels: list[dict[str, Any]] = []
    observed: dict[str, float] = {}
    stamps: dict[str, np.ndarray] = {}
    for r in chosen:
        rid = ids[r.name]
        events += run_events(r.frame, cols, rid, sector, site, model, recs.condition, shift)
        for column in label_columns:
            if column in r.frame.columns:
                labels += episodes(r.frame, rid, sector, site, model, column, shift)
        ts = r.frame[TIMESTAMP].to_numpy() + shift
        steps = np.diff(ts)
        observed[rid] = float(steps[steps <= MAX_STEP_S].sum())
        stamps[rid] = ts
    telemetry, checks, fold = fold_events(events, fleet, config, partitions=partitions)
    return Imported(model, cols, ids, telemetry, checks, labels_to_frame(labels), fold.anomalies,
                    len(fold.rejected), observed, stamps)


def write_archive(out: Path, imported: Imported, about: Mapping[str, Any]) -> dict[str, int]:
    """The log as a Parquet archive under `out` (telemetry/, checks/), `labels.parquet` and
    `import.yaml` (what was imported, how): files written per dataset."""
    from streams.analysis.archive import write_parts
    from streams.analysis.archive_layout import Dataset, to_parts

    out.mkdir(parents=True, exist_ok=True)
    sets: tuple[tuple[Dataset, list[Record]], ...] = (("telemetry", imported.telemetry), ("checks", imported.checks))
    written: dict[str, int] = {dataset: write_parts(out, to_parts(dataset, list(in_log_order(_by_partition(records)))))
               for dataset, records in sets}
    imported.labels.write_parquet(out / "labels.parquet")
    (out / "import.yaml").write_text(yaml.safe_dump({
        **about, "model": imported.model, "mapping": imported.mapping, "robots": imported.robots,
        "events": len(imported.telemetry), "checks": len(imported.checks), "episodes": imported.labels.height,
        "from": min((r.timestamp for r in imported.telemetry), default=None),
        "to": max((r.timestamp for r in imported.telemetry), default=None),
    }, sort_keys=False))
    return written


def _by_partition(records: list[Record]) -> list[list[Record]]:
    parts: dict[int, list[Record]] = {}
    for r in records:
        parts.setdefault(r.partition, []).append(r)
    return [parts[p] for p in sorted(parts)]


# -- learned bands -----------------------------------------------------------------


def learn_bands(frames: Iterable[pl.DataFrame], mapping: Mapping[str, str],
                quantiles: tuple[float, float] = BAND_QUANTILES) -> dict[str, tuple[float, float]]:
    """Per model signal, the band [q_lo, q_hi] of its values in `frames` (the normal-only rows)."""
    data = pl.concat([f.select(list(mapping)) for f in frames], how="vertical_relaxed")
    bands = {}
    for col, sig in mapping.items():
        v = data[col].to_numpy()
        v = v[np.isfinite(v)]
        if len(v):
            lo, hi = np.quantile(v, quantiles)
            bands[sig] = (float(lo), float(hi) if hi > lo else float(lo) + max(abs(lo) * 1e-3, 1e-6))
    return bands


def learn_stuck_reports(frames: Iterable[pl.DataFrame], columns: Iterable[str],
                        default: int = DEFAULT.stuck_reports) -> int:
    """Twice the longest run of identical consecutive values of any signal in the normal-only
    rows (at least the default): a slow, coarsely quantised signal (a temperature in 1/16 degC
    steps) repeats itself for a minute in normal work, and the stuck-sensor detector must not
    call that frozen."""
    longest = 0
    for frame in frames:
        for col in columns:
            v = frame[col].to_numpy()
            same = np.r_[False, (v[1:] == v[:-1]) & np.isfinite(v[1:])]
            starts = np.flatnonzero(np.diff(np.r_[0, same.astype(np.int8), 0]) == 1)
            ends = np.flatnonzero(np.diff(np.r_[0, same.astype(np.int8), 0]) == -1)
            longest = max(longest, int((ends - starts).max(initial=0)))
    return max(default, 2 * longest)


def learn_stall_profile(frames: Iterable[pl.DataFrame], mapping: Mapping[str, str],
                        stall_params: StallParams) -> tuple[float, ...]:
    """The stall detector's work-cycle profile (`twin.detect.stall.profile`) of the normal-only
    rows: per second of the cycle, the share of readings whose joints moved. `mapping` is
    recording column -> model signal; the frames must hold the cycle counter and the speeds."""
    by_signal = {sig: col for col, sig in mapping.items()}
    cycle = by_signal.get(stall_params.cycle)
    speeds = [col for sig, col in by_signal.items() if any(fnmatchcase(sig, pat) for pat in stall_params.speeds)]
    if cycle is None or not speeds:
        raise ImportProblem(f"the stall detector needs the cycle counter {stall_params.cycle!r} and speeds "
                            f"{list(stall_params.speeds)} among the recordings' signals")
    runs = []
    for frame in frames:
        speed = frame.select(pl.max_horizontal(pl.col(c).abs() for c in speeds)).to_series().to_numpy().astype(np.float64)
        speed[~np.isfinite(frame.select(speeds).to_numpy().astype(np.float64)).all(axis=1)] = np.nan
        runs.append((frame[TIMESTAMP].to_numpy().astype(np.float64),
                     frame[cycle].cast(pl.Float64).fill_null(np.nan).to_numpy(), speed))
    return stall.profile(runs, stall_params.still)


def with_params(config: DetectorConfig, model: str, **overrides: Any) -> DetectorConfig:
    """The detector configuration with `model`'s parameters overridden (a what-if, never written back)."""
    params = msgspec.structs.replace(config.for_model(model), **overrides)
    return msgspec.structs.replace(config, models={**config.models, model: params})


def with_bands(fleet: Fleet, model: str, bands: Mapping[str, tuple[float, float]]) -> Fleet:
    """The fleet with `model`'s nominal bands replaced (limits widened where a band would cross them)."""
    spec = model_of(fleet, model)
    signals = dict(spec.signals)
    for name, (lo, hi) in bands.items():
        old = signals[name]
        signals[name] = Signal(old.unit, (lo, hi), (min(old.limits[0], lo), max(old.limits[1], hi)))
    models = {**fleet.models, model: msgspec.structs.replace(spec, signals=signals)}
    return msgspec.structs.replace(fleet, models=models)


def _nice(x: float) -> float:
    return float(f"{x:.4g}")


def bands_yaml(fleet: Fleet, model: str, bands: Mapping[str, tuple[float, float]], source: str,
               stuck_reports: int | None = None) -> str:
    """A `seeds/models.yaml` snippet of `model` with the learned bands (and, as a comment, the
    `seeds/detectors.yaml` entry for the learned stuck-sensor length), for review: never applied by itself."""
    spec = with_bands(fleet, model, {k: (_nice(lo), _nice(hi)) for k, (lo, hi) in bands.items()}).models[model]
    body = {"description": spec.description, "period_s": spec.period_s,
            "ai_model_versions": list(spec.ai_model_versions),
            "signals": {name: {"unit": s.unit, "nominal": [_nice(v) for v in s.nominal],
                               "limits": [_nice(v) for v in s.limits]} for name, s in spec.signals.items()}}
    head = (f"# Bands learned by `fleet-twin import --learn-bands` from the normal-only runs of {source}\n"
            f"# ({BAND_QUANTILES[0]:g} and {BAND_QUANTILES[1]:g} quantiles). Review before you paste them into\n"
            "# seeds/models.yaml: a band learned from a short or unusual log alarms on normal work.\n")
    tail = "" if stuck_reports is None or stuck_reports == DEFAULT.stuck_reports else (
        f"# and in seeds/detectors.yaml, under models: (twice the longest run of identical values seen)\n"
        f"#   {model}: {{stuck_reports: {stuck_reports}}}\n")
    return head + yaml.safe_dump({"models": {model: body}}, sort_keys=False, default_flow_style=None) + tail

"""The detectors that run in the worker, scored on imported recordings.

`fleet-twin import` (`streams.analysis.importing`) turns a format-(b) folder
into a fleet's log and folds it with `twin.replay.Fold`, the driver the
worker, `replay` and `eval --scenario` share; here the anomaly openings of
that fold are matched to the labelled episodes with
`twin.score.ground_truth.score` (the matcher of `eval --scenario`), with the
event rule of the UR3 data README:

* an episode is detected if an anomaly about its robot opens from `PRE_S`
  before to `POST_S` after its onset; delay = first such opening - onset
  (an opening before the onset counts as 0);
* a false alarm is an opening outside every episode's window [onset - PRE_S,
  max(onset + POST_S, end)] of its robot (an opening on another kind of
  episode is not false); the rate is per robot-hour of observed time
  (row steps of at most `importing.MAX_STEP_S`) outside those windows;
* `chance` is the recall of the same openings shifted in time, circularly
  within each robot's recording, by 30 fixed offsets: where episodes are
  dense, alerts at random times hit some of them.

`write_ur3` and `write_skab` write the two public robot data sets as
format-(b) folders (to a folder of the caller's, never into the repository).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import polars as pl
import yaml

from streams.analysis.importing import MAX_STEP_S, Imported, import_set
from streams.analysis.recordings import ANOMALY, RecordingSet, load_recordings
from streams.seeds import read_detectors, read_fleet
from twin.detect.findings import Anomaly
from twin.fleet import Fleet
from twin.score.ground_truth import Run, score

PRE_S, POST_S = 5.0, 10.0
"""Detection window around an episode's onset (the UR3 data README's)."""
SHIFTS = 30


def openings(imp: Imported) -> list[Anomaly]:
    """The anomalies opened about the imported robots (robot-level findings: that is what alerts)."""
    robots = set(imp.robots.values())
    return [a for a in imp.anomalies if a.status == "open" and a.robot_id in robots]


def _onsets(labels: pl.DataFrame, fault: str | None) -> list[dict[str, Any]]:
    """Labels reduced to their onset, so the matcher's [start - early, end + late] is the README's window."""
    rows = labels.filter(pl.col("fault") == fault) if fault is not None else labels
    return [{**r, "end_ts": r["start_ts"]} for r in rows.to_dicts()]


def _recall(opened: list[Anomaly], onsets: list[dict[str, Any]]) -> tuple[int, float | None]:
    """Episodes detected and the median delay, by `twin.score.ground_truth.score` (one kind at a time)."""
    if not onsets:
        return 0, None
    run = Run(opened, [{**o, "fault": "episode"} for o in onsets], robots=1, duration_s=1.0, events=0)
    row = score(run, early_s=PRE_S, late_s=POST_S)[0]
    return int(row["detected"]), row["median_delay_s"]


def _windows(labels: pl.DataFrame) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    for r in labels.iter_rows(named=True):
        out.setdefault(r["robot_id"], []).append((r["start_ts"] - PRE_S, max(r["start_ts"] + POST_S, r["end_ts"])))
    return out


def _outside(times: np.ndarray, windows: list[tuple[float, float]]) -> np.ndarray:
    inside = np.zeros(len(times), dtype=bool)
    for lo, hi in windows:
        inside |= (times >= lo) & (times <= hi)
    return ~inside


def outside_hours(imp: Imported) -> float:
    """Observed robot-hours outside every episode window."""
    windows = _windows(imp.labels)
    total = 0.0
    for rid, ts in imp.timestamps.items():
        steps = np.diff(ts)
        keep = (steps <= MAX_STEP_S) & _outside(ts[:-1], windows.get(rid, []))
        total += float(steps[keep].sum())
    return total / 3600.0


def false_alarms(imp: Imported, opened: list[Anomaly]) -> list[Anomaly]:
    windows = _windows(imp.labels)
    return [a for a in opened if _outside(np.array([a.ts]), windows.get(a.robot_id, []))[0]]


def _shifted(imp: Imported, opened: list[Anomaly], k: int) -> list[Anomaly]:
    out = []
    for a in opened:
        ts = imp.timestamps[a.robot_id]
        start, span = float(ts[0]), float(ts[-1] - ts[0]) or 1.0
        out.append(msgspec.structs.replace(a, ts=start + (a.ts - start + span * k / (SHIFTS + 1)) % span))
    return out


def score_import(imp: Imported, faults: Sequence[str] | None = None) -> pl.DataFrame:
    """Per labelled kind (and all together): episodes, recall, chance recall, median delay,
    false alarms per robot-hour, and which detectors raised them."""
    opened = openings(imp)
    false = false_alarms(imp, opened)
    hours = outside_hours(imp)
    kinds = list(faults) if faults is not None else sorted(set(imp.labels["fault"].to_list()))
    rows = []
    for kind in [*kinds, None] if len(kinds) > 1 else kinds:
        onsets = _onsets(imp.labels, kind)
        detected, delay = _recall(opened, onsets)
        chance = np.mean([_recall(_shifted(imp, opened, k), onsets)[0] for k in range(1, SHIFTS + 1)]) \
            if onsets else float("nan")
        rows.append({
            "episodes": kind or "(all)", "count": len(onsets), "detected": detected,
            "recall": round(detected / len(onsets), 3) if onsets else None,
            "chance recall": round(float(chance) / len(onsets), 3) if onsets else None,
            "median delay s": delay,
            "false alarms": len(false), "robot-hours": round(hours, 2),
            "false / robot-hour": round(len(false) / hours, 2) if hours else None,
            "false by detector": _by_detector(false),
        })
    return pl.DataFrame(rows)


def _by_detector(found: Iterable[Anomaly]) -> str:
    counts: dict[str, int] = {}
    for a in found:
        name = f"{a.detector}:{a.signal}" if a.signal else a.detector
        counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:4])


def production_table(root: Path, model: str, seeds_dir: Path, *, mapping: dict[str, str] | None = None,
                     fleet: Fleet | None = None) -> pl.DataFrame:
    """`fleet-twin eval --data ROOT --model MODEL`: import the folder in memory (every run one
    robot of `model`, the bands of seeds/models.yaml, the parameters of seeds/detectors.yaml) and
    score the worker's detectors on its labelled episodes."""
    recs = load_recordings(root)
    imp = import_set(recs, fleet or read_fleet(seeds_dir), read_detectors(seeds_dir), model, mapping=mapping)
    return score_import(imp)


# -- the public robot data sets as format-(b) folders --------------------------------


def write_folder(out: Path, runs: dict[str, pl.DataFrame], normal: Sequence[str], signals: Sequence[str],
                 note: str) -> Path:
    """Runs as CSV files under `out` with a manifest naming the normal-only ones and the signals."""
    for name, frame in runs.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        frame.write_csv(out / name)
    (out / "manifest.yaml").write_text(f"# {note}\n" + yaml.safe_dump(
        {"normal": list(normal), "signals": list(signals)}, sort_keys=False))
    return out


SKAB_SIGNALS = {
    "Accelerometer1RMS": "accel1_rms_g", "Accelerometer2RMS": "accel2_rms_g", "Current": "current_a",
    "Pressure": "pressure_bar", "Temperature": "motor_temp_c", "Thermocouple": "fluid_temp_c",
    "Voltage": "voltage_v", "Volume Flow RateRMS": "flow_rate_lpm",
}
"""SKAB's channels and the `skab-pump` model's signals they are."""


def skab_runs(data_dir: Path) -> dict[str, pl.DataFrame]:
    """Every SKAB file (anomaly-free, valve1, valve2, other) in format (b), signals named as `skab-pump`'s."""
    runs = {}
    for path in sorted((data_dir / "skab" / "data").glob("*/*.csv")):
        raw = pl.read_csv(path, separator=";", infer_schema_length=None)
        frame = raw.select(
            (pl.col("datetime").str.to_datetime("%Y-%m-%d %H:%M:%S").dt.epoch("ms") / 1000.0).alias("timestamp"),
            *(pl.col(c).cast(pl.Float64).alias(s) for c, s in SKAB_SIGNALS.items()),
            (pl.col("anomaly").cast(pl.Int8) if "anomaly" in raw.columns else pl.lit(0, pl.Int8)).alias(ANOMALY))
        runs[f"{path.parent.name}/{path.name}"] = frame
    return runs


def write_skab(data_dir: Path, out: Path) -> Path:
    """SKAB as a format-(b) folder: the anomaly-free run is the normal-only one."""
    return write_folder(out, skab_runs(data_dir), ["anomaly-free/anomaly-free.csv"], list(SKAB_SIGNALS.values()),
                        "SKAB (github.com/waico/SKAB, GPL-3.0), written by streams.analysis.eval.production.write_skab")


def recording_set(root: Path, runs: dict[str, pl.DataFrame], normal: Sequence[str], signals: Sequence[str]) -> RecordingSet:
    """Frames already in format (b) as a `RecordingSet` (in memory, extra 0/1 label columns kept)."""
    from streams.analysis.recordings import Recording

    return RecordingSet(root, tuple(Recording(n, n in normal, f) for n, f in runs.items()), tuple(signals), None)

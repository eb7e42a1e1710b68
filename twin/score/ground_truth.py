"""Score detectors on a simulated scenario against its ground truth.

`fold_scenario` turns the scenario into the log a worker would read (each
event a telemetry record timed at the simulator's true time, in the
partition its key hashes to; a silence check every `check_every_s` for the
robots `fleet_fold.silence_check_due` picks, as the worker's timer does) and
folds that log with `twin.batch_replay.BatchFold`: the same driver of
`twin.fleet_fold` as a replay (on the batch engine, equal to `twin.replay.Fold`
record by record), so eval, replay and the worker apply the same rules at the
same log-defined ticks. `score` matches anomaly openings to labels: an opening
detects a label when it is about the labelled robot (or its site's incident,
or its robot model's rollout) and starts between `early_s` before the fault
and `late_s` after it ends.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from twin.batch_replay import BatchFold
from twin.detect.findings import Anomaly
from twin.detect.params import DetectorConfig
from twin.fleet import Fleet
from twin.fleet_fold import Rules, silence_check_due
from twin.record import Record
from twin.schema import Event
from twin.sim import FleetSim, Scenario
from twin.state import Twin

PartitionOf = Callable[[bytes], int]
"""The partition a key goes to (the shell passes Kafka's own partitioner)."""


@dataclass
class Run:
    anomalies: list[Anomaly]
    labels: list[dict[str, Any]]
    robots: int
    duration_s: float
    events: int
    twins: dict[str, Twin] = field(default_factory=dict)


def crc_partitions(partitions: int) -> PartitionOf:
    """A stable stand-in for Kafka's partitioner where the shell gives none (pure tests)."""
    return lambda key: zlib.crc32(key) % partitions


def fold_scenario(fleet: Fleet, scenario: Scenario, seed: int, config: DetectorConfig, *,
                  partition_of: PartitionOf = crc_partitions(8), check_every_s: float = 5.0,
                  on_tick: Callable[[int, int], None] | None = None,
                  on_record: Callable[[Record], None] | None = None,
                  start_ts: float | None = None, time_scale: float = 1.0) -> Run:
    """Fold the scenario's log through `BatchFold`; `on_tick(done, total)` reports progress,
    `on_record` sees each record of the log as it is written (before it is folded). `start_ts` and
    `time_scale` are the simulator's: a live run at `--speed S` is the same scenario with
    `time_scale` 1/S."""
    sim = FleetSim(fleet, scenario, seed=seed, start_ts=start_ts, time_scale=time_scale)
    fold = BatchFold(Rules(fleet, config))
    events = 0
    for tick, records in scenario_log(sim, fold, config, partition_of, check_every_s):
        for record in records:
            fold.feed(record)
            events += record.kind == "telemetry"
            if on_record is not None:
                on_record(record)
        if on_tick is not None:
            on_tick(tick + 1, sim.ticks)
    return Run(fold.anomalies, sim.labels(), len(sim.roster), scenario.duration_s, events, fold.twins)


def scenario_log(sim: FleetSim, fold: BatchFold, config: DetectorConfig, partition_of: PartitionOf,
                 check_every_s: float) -> Iterator[tuple[int, list[Record]]]:
    """(tick, records) of each simulator tick, as a worker would read them: its telemetry,
    then, when due, the silence checks.

    The checks are picked from `fold.twins` (which folds what was fed) once the tick's
    telemetry is fed, so the caller must feed each list before taking the next.
    """
    encode = msgspec.json.Encoder().encode
    offsets: dict[int, int] = {}

    def record(kind: str, key: bytes, value: bytes, now: float) -> Record:
        partition = partition_of(key)
        offsets[partition] = offset = offsets.get(partition, -1) + 1
        return Record("check" if kind == "check" else "telemetry", partition, offset, now, key, value)

    next_check = sim.start_ts + check_every_s
    for tick in range(sim.ticks):
        now = sim.start_ts + tick * sim.dt * sim.time_scale
        batch: list[Event] = sim.step()
        yield tick, [record("telemetry", e.robot_id.encode(), encode(e), now) for e in batch]
        if now >= next_check:
            next_check += check_every_s
            yield tick, [record("check", rid.encode(), repr(now).encode(), now)
                         for rid, twin in fold.twins.items() if silence_check_due(twin, now, config)]


def score(result: Run, early_s: float = 5.0, late_s: float = 120.0) -> list[dict[str, Any]]:
    """Per fault type: labels, detected, recall, median and p90 delay (s); then totals."""
    opens = [a for a in result.anomalies if a.status == "open"]
    used: set[str] = set()
    rows: dict[str, dict[str, Any]] = {}
    for label in result.labels:
        hits = [a for a in opens if _matches(a, label, early_s, late_s)]
        row = rows.setdefault(label["fault"], {"fault": label["fault"], "labels": 0, "detected": 0, "delays": []})
        row["labels"] += 1
        if hits:
            row["detected"] += 1
            row["delays"].append(max(0.0, min(a.ts for a in hits) - label["start_ts"]))
            used.update(a.id for a in hits)
    table = [_summary(row) for row in sorted(rows.values(), key=lambda r: r["fault"])]
    false = [a for a in opens if a.id not in used and a.detector != "site_incident" or
             (a.detector == "site_incident" and a.id not in used)]
    robot_days = result.robots * result.duration_s / 86400.0
    table.append({
        "fault": "(all)", "labels": sum(r["labels"] for r in table), "detected": sum(r["detected"] for r in table),
        "recall": _ratio(sum(r["detected"] for r in table), sum(r["labels"] for r in table)),
        "precision": _ratio(len(opens) - len(false), len(opens)),
        "false_alarms": len(false), "false_per_robot_day": round(len(false) / robot_days, 4) if robot_days else 0.0,
        "median_delay_s": None, "p90_delay_s": None,
    })
    return table


def false_alarms_by_detector(result: Run) -> dict[str, int]:
    """On a scenario without faults every opening is a false alarm: which detectors cry wolf."""
    counts: dict[str, int] = {}
    for a in result.anomalies:
        if a.status == "open":
            counts[a.detector] = counts.get(a.detector, 0) + 1
    return counts


def _matches(a: Anomaly, label: dict[str, Any], early_s: float, late_s: float) -> bool:
    if a.detector == "rollout":
        # One fleet-level finding covers every robot that runs (or later gets) the flagged version.
        return bool(label["fault"] == "latency_regression" and a.model == label["model"]
                    and a.ts <= label["end_ts"] + late_s)
    if not label["start_ts"] - early_s <= a.ts <= label["end_ts"] + late_s:
        return False
    if a.detector == "site_incident":
        return bool(label["fault"] == "site_power_dip" and a.site == label["site"])
    return bool(a.robot_id == label["robot_id"])


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    delays = row.pop("delays")
    return {
        **row, "recall": _ratio(row["detected"], row["labels"]),
        "median_delay_s": round(float(np.median(delays)), 1) if delays else None,
        "p90_delay_s": round(float(np.percentile(delays, 90)), 1) if delays else None,
    }


def _ratio(a: int, b: int) -> float:
    return round(a / b, 4) if b else 0.0

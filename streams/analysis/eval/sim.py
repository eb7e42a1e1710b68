"""Detectors against simulator ground truth: the table behind `fleet-twin eval --scenario`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import msgspec
import polars as pl

from streams.seeds import read_detectors, read_fleet, read_scenario
from streams.kafka_client import partitioner
from twin.score.ground_truth import false_alarms_by_detector, fold_scenario, score


def sim_table(seeds_dir: Path, scenario: str, *, robots: int | None = None, duration_s: float | None = None,
              seed: int = 1, partitions: int = 8,
              on_tick: Callable[[int, int], None] | None = None) -> tuple[str, pl.DataFrame, dict[str, int]]:
    """A one-line description of the run, per fault type recall and delays (plus totals),
    and the anomalies opened per detector.

    The scenario is folded as the log a worker with `partitions` telemetry
    partitions would read (cohort baselines are kept per partition)."""
    spec = read_scenario(seeds_dir, scenario)
    overrides = {k: v for k, v in (("robots", robots), ("duration_s", duration_s)) if v}
    spec = msgspec.structs.replace(spec, **overrides)
    result = fold_scenario(read_fleet(seeds_dir), spec, seed, read_detectors(seeds_dir),
                           partition_of=partitioner(partitions), on_tick=on_tick)
    table = pl.DataFrame(score(result), infer_schema_length=None).rename({
        "median_delay_s": "median delay s", "p90_delay_s": "p90 delay s",
        "false_alarms": "false alarms", "false_per_robot_day": "false / robot-day"})
    about = (f"{spec.name}: {result.robots} robots x {spec.duration_s / 3600:g} h at {spec.rate_hz:g} Hz, "
             f"seed {seed}, {result.events:,} events ({result.robots * spec.duration_s / 86400:.2f} robot-days)")
    return about, table, false_alarms_by_detector(result)

"""`fleet-twin audit`: a model version's safety record, read from the log and written as Parquet and HTML.

The shell around `twin.audit`: it reads the window's telemetry and silence
checks from the replay's own source (`streams.analysis.replay_window.records`:
Kafka, or the Parquet archive), the desired-state changes from `fleet.desired`
and the gate's looks from `fleet.rollouts` (the archive keeps neither, so those
two always come from Kafka), and writes into the output directory:

    robots.parquet   robot, place, version, first/last event time, operating hours, events by kind
    rates.parquet    per scope (all, each model), version and kind: events, hours, rate per 1,000 h, 95% interval
    comparison.parquet  per scope and kind: the rate ratio over the predecessor and its exact 95% interval
    changes.parquet  the desired-state changes that touched the version: who, when, why, selector, value
    gates.parquet    the gate decisions of the plans that did
    audit.json       the question, the window, the sources, the counts and the command that reproduces it
    audit.html       all of it on one self-contained page (`streams.analysis.report.page`'s helpers)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import polars as pl

from streams.analysis.replay_window import Window, policy, records
from streams.exceptions import ReportError
from streams.kafka_client import read_topic
from streams.seeds import read_detectors, read_fleet
from streams.settings import Settings
from twin import audit, kpi
from twin.desired import DesiredChange, decode_change
from twin.exceptions import InvalidEvent
from twin.plan import GateRecord
from twin.record import Record
from twin.replay import Selection

ROBOT_SCHEMA: dict[str, pl.DataType] = {
    "robot_id": pl.String(), "sector": pl.String(), "site": pl.String(), "model": pl.String(),
    "version": pl.String(), "first_ts": pl.Float64(), "last_ts": pl.Float64(), "operating_h": pl.Float64(),
    **{kind: pl.Int64() for kind in kpi.KINDS}}
RATE_SCHEMA: dict[str, pl.DataType] = {
    "scope": pl.String(), "version": pl.String(), "kind": pl.String(), "events": pl.Int64(),
    "operating_h": pl.Float64(), "rate_per_1000h": pl.Float64(), "lower_95": pl.Float64(), "upper_95": pl.Float64()}
CHANGE_SCHEMA: dict[str, pl.DataType] = {
    "ts": pl.Float64(), "change_id": pl.String(), "principal": pl.String(), "reason": pl.String(),
    "selector": pl.String(), "field": pl.String(), "value": pl.String(), "plan": pl.String(), "wave": pl.Int64(),
    "how": pl.String()}
COMPARISON_SCHEMA: dict[str, pl.DataType] = {
    "scope": pl.String(), "kind": pl.String(), "ratio": pl.Float64(), "lower_95": pl.Float64(),
    "upper_95": pl.Float64()}
GATE_SCHEMA: dict[str, pl.DataType] = {
    "ts": pl.Float64(), "plan": pl.String(), "wave": pl.Int64(), "decision": pl.String(),
    "statistic": pl.Float64(), "lower": pl.Float64(), "upper": pl.Float64(), "status": pl.String(),
    "share": pl.Float64(), "evidence": pl.String()}


@dataclass
class Side:
    """Records of a side topic (desired changes, gate looks): the decoded ones and those that were not."""

    topic: str
    items: list[Any] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    """One line per record that did not decode: where it sat and why (shown in the report, never dropped silently)."""


@dataclass(frozen=True)
class Audit:
    """Everything an audit found, as tables."""

    version: str
    predecessor: str | None
    robots: pl.DataFrame
    rates: pl.DataFrame
    comparison: pl.DataFrame
    """The version's rate over its predecessor's, per scope and kind (empty for a first release)."""
    changes: pl.DataFrame
    gates: pl.DataFrame
    meta: dict[str, Any]


def run(settings: Settings, window: Window, version: str, *, model: str | None = None,
        on_record: Callable[[Record], None] | None = None, command: str = "") -> Audit:
    """Fold the window and read the side topics; the tables of the audit of `version`."""
    fleet = read_fleet(settings.seeds_dir)
    try:
        before = audit.predecessor(fleet, version, model)
    except ValueError as err:
        raise ReportError(str(err)) from None
    versions = (version,) if before is None else (version, before)
    tally, fold = audit.fold(_counted(records(settings, window, Selection()), on_record), fleet,
                             read_detectors(settings.seeds_dir), versions,
                             models=None if model is None else [model], policy=policy(settings))
    changes, gates = read_side(settings, settings.desired_topic, _change), read_side(
        settings, settings.rollouts_topic, _gate)
    touched = audit.touching([c for c in changes.items if window.start <= c.ts <= window.end], version)
    plans = {t.change.plan for t in touched if t.change.plan}
    decisions = audit.gate_decisions([g for g in gates.items if window.start <= g.ts <= window.end], plans)
    meta = {
        "version": version, "predecessor": before, "model": model, "from": window.start, "to": window.end,
        "source": window.source, "desired_topic": changes.topic, "rollouts_topic": gates.topic,
        "records": fold.records, "rejected": len(fold.rejected), "undecodable": changes.bad + gates.bad,
        "command": command}
    rates = audit.rates(tally)
    compared = [] if before is None else audit.compare(rates, version, before)
    return Audit(version, before, robots_frame(tally), rates_frame(rates), comparison_frame(compared),
                 changes_frame(touched), gates_frame(decisions), meta)


def _counted(source: Iterator[Record], on_record: Callable[[Record], None] | None) -> Iterator[Record]:
    for record in source:
        if on_record is not None:
            on_record(record)
        yield record


def robots_frame(tally: audit.Tally) -> pl.DataFrame:
    rows = [{"robot_id": u.robot_id, "sector": u.sector, "site": u.site, "model": u.model, "version": u.version,
             "first_ts": u.first_ts, "last_ts": u.last_ts, "operating_h": u.operating_s / 3600,
             **{kind: u.events.get(kind, 0) for kind in kpi.KINDS}}
            for version in tally.versions for u in audit.robots(tally, version)]
    return pl.DataFrame(rows, schema=ROBOT_SCHEMA)


def rates_frame(rates: list[audit.Rate]) -> pl.DataFrame:
    return pl.DataFrame([{"scope": r.scope, "version": r.version, "kind": r.kind, "events": r.events,
                          "operating_h": r.operating_h, "rate_per_1000h": r.rate, "lower_95": r.lower,
                          "upper_95": r.upper} for r in rates], schema=RATE_SCHEMA)


def comparison_frame(compared: list[audit.Comparison]) -> pl.DataFrame:
    return pl.DataFrame([{"scope": c.scope, "kind": c.kind, "ratio": c.ratio, "lower_95": c.lower,
                          "upper_95": c.upper} for c in compared], schema=COMPARISON_SCHEMA)


def changes_frame(touched: list[audit.Touch]) -> pl.DataFrame:
    return pl.DataFrame([{"ts": t.change.ts, "change_id": t.change.change_id, "principal": t.change.principal,
                          "reason": t.change.reason, "selector": selector_text(t.change),
                          "field": t.change.field, "value": t.change.value, "plan": t.change.plan,
                          "wave": t.change.wave, "how": t.how} for t in touched], schema=CHANGE_SCHEMA)


def selector_text(change: DesiredChange) -> str:
    """The selector as `key=value` pairs (`any robot` when empty): what the reviewer reads."""
    fields = msgspec.structs.asdict(change.selector)
    parts = [f"{k}={','.join(v) if isinstance(v, tuple) else v}" for k, v in fields.items() if v not in (None, ())]
    return " ".join(parts) or "any robot"


def gates_frame(decisions: list[GateRecord]) -> pl.DataFrame:
    return pl.DataFrame([{"ts": d.ts, "plan": d.plan, "wave": d.wave, "decision": d.decision,
                          "statistic": d.statistic, "lower": d.lower, "upper": d.upper, "status": d.status,
                          "share": d.share, "evidence": json.dumps(d.evidence, sort_keys=True)} for d in decisions],
                        schema=GATE_SCHEMA)


# ---------------------------------------------------------------- the side topics


def read_side(settings: Settings, topic: str, decode: Callable[[bytes], Any]) -> Side:
    """Every record of `topic` as it is now, decoded; records that do not decode are listed, not lost."""
    side = Side(topic)
    for record in asyncio.run(read_topic(settings, topic)):
        try:
            side.items.append(decode(record.value or b""))
        except (InvalidEvent, ValueError) as err:
            side.bad.append(f"{topic}[{record.partition}]@{record.offset}: {err}")
    return side


def _change(raw: bytes) -> DesiredChange:
    return decode_change(raw)


_gate_decoder = msgspec.json.Decoder(GateRecord)


def _gate(raw: bytes) -> GateRecord:
    try:
        return _gate_decoder.decode(raw)
    except msgspec.DecodeError as err:
        raise ValueError(f"not a gate record: {err}") from None


# ---------------------------------------------------------------- writing


def write(out: Path, found: Audit) -> Path:
    """The Parquet files, `audit.json` and `audit.html` in `out`; returns the page's path."""
    from streams.analysis.audit_page import page

    out.mkdir(parents=True, exist_ok=True)
    found.robots.write_parquet(out / "robots.parquet")
    found.rates.write_parquet(out / "rates.parquet")
    found.comparison.write_parquet(out / "comparison.parquet")
    found.changes.write_parquet(out / "changes.parquet")
    found.gates.write_parquet(out / "gates.parquet")
    (out / "audit.json").write_text(json.dumps(found.meta, indent=2) + "\n")
    path = out / "audit.html"
    path.write_text(page(found), encoding="utf-8")
    return path

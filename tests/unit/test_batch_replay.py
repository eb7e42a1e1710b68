"""twin.batch_replay.BatchFold against twin.replay.Fold folded record by record (the oracle).

The log: a scenario with a finding of every fleet-level kind (a rollout, a site incident: ticks judge
and expire them from the anomalies correlated before), on three partitions, as `fold_scenario`
writes it (telemetry and silence checks), plus malformed records, duplicated reports, a stretch
of one partition redelivered with its old offsets, a robot moved to another partition half way
(a repartitioned topic) and desired-state changes (one of them malformed). Compared: the anomaly
messages in order, every record's event, the rejections, every twin's `encode_twin` bytes (in
`Fold.twins`' order) and the fleet state, at drawn stretch sizes and drawn reads of the state in
between (a read folds what was fed). Then the drivers that run on it: `replay`, `fold_scenario`
and `fold_events`, each against itself with `Fold` in place of `BatchFold`.
"""

from __future__ import annotations

import functools
import random
from pathlib import Path
from typing import Any

import msgspec
from msgspec.structs import replace
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from streams.analysis import importing
from streams.seeds import read_detectors, read_fleet
from tests.support.noise import with_noise
from twin import replay as replay_module
from twin.batch_replay import BatchFold
from twin.desired import DesiredChange, Selector, change_key, encode_change
from twin.detect import incidents
from twin.detect.findings import Anomaly
from twin.detect.params import DetectorConfig
from twin.fleet_fold import FleetState, Rules
from twin.record import Record
from twin.replay import Fold, Selection, replay
from twin.schema import Event
from twin.schema import encode as schema_encode
from twin.score import ground_truth
from twin.score.ground_truth import crc_partitions, fold_scenario
from twin.sim import FleetSim, load_scenario
from twin.state import encode_twin

pytestmark = pytest.mark.usefixtures("join_every_batch")
SEEDS = Path(__file__).resolve().parents[2] / "seeds"
PARTITIONS = 3
encode = msgspec.msgpack.encode
SCENARIO = load_scenario({
    "name": "batch-replay", "robots": 30, "duration_s": 300, "sectors": ["manufacturing", "logistics"],
    "faults": [
        {"type": "rollout", "where": {"model": "humanoid"}, "version": "policy-2.5.0", "share": 0.5,
         "start": "10%", "spread": 60, "latency_factor": 1.8},
        {"type": "site_power_dip", "where": {"sector": "manufacturing"}, "start": "30%", "duration": 30},
        {"type": "comm_loss", "robots": 2, "start": "50%", "duration": 60},
        {"type": "stuck_sensor", "robots": 2, "start": "40%", "duration": 100},
        {"type": "duplicate_delivery", "robots": 2, "start": "20%", "duration": 100, "rate": 0.3},
        {"type": "out_of_order", "robots": 2, "start": "20%", "duration": 100, "rate": 0.3},
    ],
}, "test")


@functools.cache
def rules() -> Rules:
    return Rules(read_fleet(SEEDS), read_detectors(SEEDS))


@functools.cache
def scenario_records() -> tuple[Record, ...]:
    records: list[Record] = []
    fold_scenario(rules().fleet, SCENARIO, 1, rules().config, partition_of=crc_partitions(PARTITIONS),
                  on_record=records.append, check_every_s=3.0)
    return tuple(records)


def desired(offset: int, ts: float, value: str, cid: str) -> Record:
    c = DesiredChange(change_id=cid, ts=ts, principal="operator", reason="test", field="ai_model", value=value,
                      selector=Selector(model="humanoid"))
    return Record("desired", 0, offset, ts, change_key(c), encode_change(c))


@functools.cache
def chaos_log(seed: int) -> tuple[Record, ...]:
    """The scenario's log with bad, duplicated, redelivered, moved and desired records added."""
    rng = random.Random(seed)
    base = scenario_records()
    moved = next(r.key for r in base if r.kind == "telemetry")
    out: list[Record] = []
    for i, r in enumerate(base):
        if r.key == moved and i > len(base) // 2:
            r = msgspec.structs.replace(r, partition=(r.partition + 1) % PARTITIONS)
        out += with_noise(r, rng)
        if i in (len(base) // 3, len(base) * 3 // 4):
            out.append(desired(len(out), r.timestamp, f"policy-9.{i}.0", f"c{i}"))
        if i == len(base) // 2:
            out.append(Record("desired", 0, len(out), r.timestamp, b"k", b"[]"))  # malformed
    offsets: dict[int, int] = {}
    renumbered = []
    for r in out:
        if r.kind != "desired":
            offsets[r.partition] = offsets.get(r.partition, -1) + 1
            r = msgspec.structs.replace(r, offset=offsets[r.partition])
        renumbered.append(r)
    cut = len(renumbered) * 2 // 3
    redelivered = [r for r in renumbered[cut - 400: cut] if r.partition == 0 and r.kind != "desired"]
    return tuple([*renumbered[:cut], *redelivered, *renumbered[cut:]])


def fleet_view(state: FleetState) -> bytes:
    """The fleet state, cohorts as sorted views (`batch_fold`: a model's dict keys may come in another order)."""
    cohorts = {p: (sorted((m, n, s1.tolist(), s2.tolist()) for m, (n, s1, s2) in c.sums.items()),
                   sorted((m, repr(b)) for m, b in c.baselines.items()),
                   sorted(c.fitted_at.items()), sorted((m, sorted(r.items())) for m, r in c.rates.items()))
               for p, c in state.cohorts.items()}
    return encode((cohorts, state.versions, state.sites, state.next_tick, state.desired))


def view(fold: Fold | BatchFold, events: list[tuple[int, Event | None]]) -> dict[str, Any]:
    twins = fold.twins
    return {"anomalies": encode(fold.anomalies), "events": encode(events), "rejected": encode(fold.rejected),
            "robots": list(twins), "twins": [encode_twin(t) for t in twins.values()],
            "fleet": fleet_view(fold.state), "records": fold.records}


@functools.cache
def scalar_fold(seed: int) -> tuple[Fold, list[tuple[int, Event | None]]]:
    fold = Fold(rules())
    return fold, [(r.offset, fold.feed(r)) for r in chaos_log(seed)]


@functools.cache
def oracle(seed: int) -> dict[str, Any]:
    return view(*scalar_fold(seed))


def batched(records: tuple[Record, ...], stretch: int, reads: set[int]) -> dict[str, Any]:
    events: list[tuple[int, Event | None]] = []
    fold = BatchFold(rules(), stretch=stretch, after=lambda r, e: events.append((r.offset, e)))
    for i, record in enumerate(records):
        fold.feed(record)
        if i in reads:
            _ = fold.twins  # a caller reading the twins (a silence check's decision) folds what was fed
    return view(fold, events)


def test_the_log_has_what_the_drivers_must_agree_on() -> None:
    records = chaos_log(1)
    fold, _ = scalar_fold(1)
    found = {(a.detector, a.status) for a in fold.anomalies}
    assert {("rollout", "open"), ("site_incident", "open"), ("silence", "open")} <= found, found
    assert {r.reason for r in fold.rejected} >= {"undecodable", "schema"}
    assert {r.kind for r in records} == {"telemetry", "check", "desired"}
    assert fold.state.desired.changes and len({r.partition for r in records}) == PARTITIONS


@pytest.mark.parametrize("stretch", [1, 97, 6000])
def test_batch_fold_equals_fold(stretch: int) -> None:
    assert batched(chaos_log(1), stretch, set()) == oracle(1)


@settings(max_examples=4, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate])
@given(st.integers(1, 3000), st.lists(st.integers(0, 12_000), max_size=30), st.sampled_from([1, 2]))
def test_batch_fold_equals_fold_at_drawn_stretches_and_reads(stretch: int, reads: list[int], seed: int) -> None:
    assert batched(chaos_log(seed), stretch, set(reads)) == oracle(seed)


def scalar(monkeypatch: pytest.MonkeyPatch, module: Any, run: Any) -> Any:
    """`run()` with `Fold` in place of `BatchFold` in `module` (the record-by-record oracle)."""
    with monkeypatch.context() as m:
        m.setattr(module, "BatchFold", lambda rules, **kw: ScalarFold(rules, **kw))
        return run()


class ScalarFold(Fold):
    """`Fold` with `BatchFold`'s constructor and per-record hook, to run `replay` on the oracle."""

    def __init__(self, rules: Rules, after: Any = None) -> None:
        super().__init__(rules)
        self.after = after

    def feed(self, record: Record) -> Event | None:
        event = super().feed(record)
        if self.after is not None:
            self.after(record, event)
        return event


def result_view(result: replay_module.Result) -> bytes:
    return encode((result.anomalies, [(k, encode_twin(t)) for k, t in result.twins.items()],
                   {at: [(k, encode_twin(t)) for k, t in s.items()] for at, s in result.snapshots.items()},
                   result.events, result.rejected, result.records, result.what_if, result.desired,
                   result.desired_at))


def test_replay_equals_a_replay_on_fold(monkeypatch: pytest.MonkeyPatch) -> None:
    records = chaos_log(1)
    at = [records[len(records) // k].timestamp for k in (5, 3, 2)]
    robot = records[0].key.decode()  # type: ignore[union-attr]
    seen: list[Record] = []
    base = rules().config
    what_if = DetectorConfig(msgspec.structs.replace(base.defaults, stuck_reports=15),
                             {m: msgspec.structs.replace(p, stuck_reports=15) for m, p in base.models.items()})
    for kw in [dict(at=at, what_if=what_if), dict(at=at[:1], selection=Selection(robot=robot))]:
        def run() -> replay_module.Result:
            return replay(records, rules().fleet, rules().config, on_record=seen.append, **kw)  # type: ignore[arg-type]
        got = run()
        assert seen == list(records)
        seen.clear()
        assert result_view(got) == result_view(scalar(monkeypatch, replay_module, run))
        seen.clear()
        assert got.snapshots and got.events and got.anomalies


def test_fold_scenario_equals_it_on_fold(monkeypatch: pytest.MonkeyPatch) -> None:
    """The silence checks are decided from the same twins: the same log, anomalies and twins."""
    def run() -> tuple[ground_truth.Run, list[Record]]:
        records: list[Record] = []
        out = fold_scenario(rules().fleet, SCENARIO, 2, rules().config, partition_of=crc_partitions(PARTITIONS),
                            on_record=records.append, check_every_s=3.0)
        return out, records
    (got, log), (want, want_log) = run(), scalar(monkeypatch, ground_truth, run)
    assert log == want_log and any(r.kind == "check" for r in log)
    assert encode(got.anomalies) == encode(want.anomalies)
    assert list(got.twins) == list(want.twins)
    assert [encode_twin(t) for t in got.twins.values()] == [encode_twin(t) for t in want.twins.values()]
    assert got.events == want.events


def test_fold_events_equals_it_on_fold(monkeypatch: pytest.MonkeyPatch) -> None:
    sim = FleetSim(rules().fleet, SCENARIO, seed=3)
    events = [e for _ in range(sim.ticks) for e in sim.step()]

    def run() -> tuple[list[Record], list[Record], Any]:
        return importing.fold_events(events, rules().fleet, rules().config, partitions=PARTITIONS)
    (tele, checks, got), (want_tele, want_checks, want) = run(), scalar(monkeypatch, importing, run)
    assert tele == want_tele and checks == want_checks and checks
    assert encode(got.anomalies) == encode(want.anomalies)
    assert encode(got.rejected) == encode(want.rejected)
    assert [encode_twin(t) for t in got.twins.values()] == [encode_twin(t) for t in want.twins.values()]


def test_a_tick_expires_site_incidents_after_the_anomalies_correlated_before_it() -> None:
    """A site incident quiet for just under `quiet_s`; a robot's silence opens at the site after it
    (resolving the incident, as `correlate` expires first); a tick after that finds nothing to
    expire. Folded in one stretch with the tick judged before the correlation, the tick would
    resolve the incident at its own time instead."""
    quiet = incidents.IncidentParams().quiet_s
    t0 = 1.7e9 + 1.0  # one second past a tick boundary (a multiple of `TICK_S`)
    site = "log-memphis-01"
    opened = Anomaly(id="inc", status="open", robot_id="", sector="logistics", site=site, model="",
                     detector="site_incident", signal="", severity="critical", score=4.0, start_ts=t0 - 260,
                     ts=t0 - 260)
    start = FleetState(sites={site: incidents.SiteState([], "inc", t0 - 260, t0 - 260, opened)})
    reports = [Event(schema=1, robot_id="r-1", seq=i + 1, ts=t0 - 10 + i, sector="logistics", site=site,
                     model="amr", mode="working", signals={"battery_soc_pct": 50.0}) for i in range(11)]
    log = [Record("telemetry", 0, i, e.ts, b"r-1", schema_encode(e)) for i, e in enumerate(reports)]
    now = t0 + quiet - 255  # past the incident's quiet spell, before the next tick at t0 + 59
    log += [Record("check", 0, 0, now, b"r-1", repr(now).encode()),
            Record("telemetry", 0, 11, t0 + 70, b"r-1", schema_encode(replace(reports[-1], seq=12, ts=t0 + 70)))]
    fold = Fold(rules(), state=start)
    for r in log:
        fold.feed(r)
    resolved = [a for a in fold.anomalies if a.detector == "site_incident"]
    assert [(a.status, a.ts) for a in resolved] == [("resolved", now)]
    batch = BatchFold(rules(), fleet=start)
    for r in log:
        batch.feed(r)
    assert encode(batch.anomalies) == encode(fold.anomalies)
    assert fleet_view(batch.state) == fleet_view(fold.state)

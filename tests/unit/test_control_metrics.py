"""The worker's control metrics: drift and waves from twins and desired rules, the gate's gauges,
and the per-version safety KPIs counted once per batch (the pure parts, no broker)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from streams.seeds import read_detectors, read_fleet
from streams.worker.control_metrics import GATE_DECODER, ControlCollector, desire_space
from streams.settings import Settings
from streams.worker import ingest as ingest_module
from streams.worker.ingest import Held, Ingest, LogMessage, changelog_items, fold
from streams.worker.metrics import STEPS, PipelineMetrics, sector_version_space
from twin.desired import DesiredChange, DesiredRules, Selector, add_change, robot_share
from twin.desired_summary import DesiredSummary, summarize_desired
from twin.fleet_fold import FleetState, Rules
from twin.kpi import KINDS
from twin.plan import GateRecord
from twin.record import Record
from twin.reduce import apply
from twin.schema import Event
from twin.state import Twin, decode_twin, encode_twin

SEEDS = Path(__file__).resolve().parents[2] / "seeds"
FLEET = read_fleet(SEEDS)
OLD, NEW = "policy-2.4.0", "policy-2.5.0"


def twin(robot: str, version: str = OLD, sector: str = "logistics", site: str = "log-memphis-01",
         **more: Any) -> Twin:
    event = Event(schema=1, robot_id=robot, seq=1, ts=100.0, sector=sector, site=site, model="amr",
                  mode="working", signals={"battery_soc_pct": 50.0}, ai_model_version=version,
                  firmware="fw-1.8.2", **more)
    out, _ = apply(None, event, received_ts=100.5)
    assert out is not None
    return out


def change(value: str | None = NEW, field: str = "ai_model", cid: str = "c1", ts: float = 50.0, plan: str = "",
           wave: int = -1, **selector: Any) -> DesiredChange:
    return DesiredChange(change_id=cid, ts=ts, principal="operator", reason="test", field=field, value=value,
                         selector=Selector(**selector), plan=plan, wave=wave)


def rules(*changes: DesiredChange) -> DesiredRules:
    out = DesiredRules()
    for c in changes:
        out = add_change(out, c)
    return out


def samples(registry: CollectorRegistry, name: str) -> dict[tuple[str, ...], float]:
    return {tuple(s.labels.values()): s.value for m in registry.collect() for s in m.samples if s.name == name}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def collector(twins: list[Twin], held: list[DesiredRules], gates: dict[str, GateRecord] | None = None,
              clock: Clock | None = None) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(ControlCollector(FLEET, lambda r: summarize_desired(twins, r), lambda: held[-1],
                                       lambda: gates or {}, clock=clock or Clock()))
    return registry


def test_drift_counts_robots_with_a_desire_and_those_off_it() -> None:
    twins = [twin("r-1"), twin("r-2", version=NEW), twin("r-3", sector="mining", site="mine-pilbara-01")]
    registry = collector(twins, [rules(change(sector="logistics"))])
    robots, drift = samples(registry, "fleet_desired_robots"), samples(registry, "fleet_desired_drift")
    assert robots[("logistics", "amr", "ai_model")] == 2
    assert drift[("logistics", "amr", "ai_model")] == 1  # r-2 already runs it
    assert robots[("mining", "amr", "ai_model")] == 0  # not selected: exported at zero all the same


def test_every_desirable_field_of_the_fleet_model_is_exported_from_the_start() -> None:
    registry = collector([], [DesiredRules()])
    robots = samples(registry, "fleet_desired_robots")
    assert set(robots) == set(desire_space(FLEET)) and not any(robots.values())
    assert ("logistics", "amr", "config.max_speed_mps") in robots and ("logistics", "amr", "firmware") in robots
    assert not any(key[1] == "amr" for key in robots if key[0] not in {n for n, s in FLEET.sectors.items()
                                                                       if "amr" in s.models})


def test_a_cleared_desire_drifts_no_more() -> None:
    registry = collector([twin("r-1")], [rules(change(sector="logistics"),
                                               change(value=None, cid="c2", ts=60.0, sector="logistics"))])
    assert samples(registry, "fleet_desired_drift")[("logistics", "amr", "ai_model")] == 0


def test_config_drift_compares_the_reported_configuration() -> None:
    twins = [twin("r-1", config={"max_speed_mps": "1.2"}), twin("r-2", config={"max_speed_mps": "1.5"}), twin("r-3")]
    registry = collector(twins, [rules(change(value="1.5", field="config.max_speed_mps", model="amr"))])
    assert samples(registry, "fleet_desired_robots")[("logistics", "amr", "config.max_speed_mps")] == 3
    assert samples(registry, "fleet_desired_drift")[("logistics", "amr", "config.max_speed_mps")] == 2


def test_a_wave_counts_its_own_robots_and_those_that_reached_its_value() -> None:
    ids = [f"r-{i}" for i in range(40)]
    small = [r for r in ids if robot_share(r) < 0.3]
    big = [r for r in ids if robot_share(r) < 0.7]
    assert 0 < len(small) < len(big) < len(ids)
    reached = set(small[:1])  # one canary reports the new version
    twins = [twin(r, version=NEW if r in reached else OLD) for r in ids]
    plan = rules(change(cid="w0", plan="p", wave=0, share=0.3, model="amr"),
                 change(cid="w1", ts=60.0, plan="p", wave=1, share=0.7, model="amr"))
    s = summarize_desired(twins, plan)
    # the later, bigger wave covers the canaries too: they still count in wave 0
    assert (s.waves[("p", 0)].robots, s.waves[("p", 0)].reached) == (len(small), 1)
    assert (s.waves[("p", 1)].robots, s.waves[("p", 1)].reached) == (len(big), 1)
    ratio = samples(collector(twins, [plan]), "fleet_rollout_wave_reached_ratio")
    assert ratio[("p", "0")] == 1 / len(small) and ratio[("p", "1")] == 1 / len(big)


def test_a_version_selected_wave_keeps_robots_that_converged() -> None:
    twins = [twin("r-1", version=NEW), twin("r-2"), twin("r-3", version="policy-2.3.1")]
    s = summarize_desired(twins, rules(change(cid="w0", plan="p", wave=0, version=OLD)))
    assert (s.waves[("p", 0)].robots, s.waves[("p", 0)].reached) == (2, 1)  # r-3 runs neither


def test_a_wave_without_robots_here_reads_zero_not_nan() -> None:
    ratio = samples(collector([], [rules(change(cid="w0", plan="p", wave=0, share=0.1))]),
                    "fleet_rollout_wave_reached_ratio")
    assert ratio == {("p", "0"): 0.0}


def test_gate_gauges_show_the_latest_look_per_plan() -> None:
    raw = json.dumps({"plan": "p", "wave": 2, "ts": 5.0, "decision": "continue", "statistic": 1.5,
                      "upper": 2.9, "lower": -2.2, "evidence": {"estop": [3, 1]}}).encode()
    look = GATE_DECODER.decode(raw)  # unknown fields (evidence) are ignored
    registry = collector([], [DesiredRules()], gates={"p": look})
    assert samples(registry, "fleet_rollout_gate_statistic") == {("p",): 1.5}
    assert samples(registry, "fleet_rollout_gate_boundary") == {("p", "upper"): 2.9, ("p", "lower"): -2.2}
    assert samples(registry, "fleet_rollout_wave") == {("p",): 2}


def test_the_summary_is_reused_while_young_but_not_across_a_new_change() -> None:
    clock, reads, held = Clock(), [], [DesiredRules()]
    registry = CollectorRegistry()

    def summarise(r: DesiredRules) -> DesiredSummary:
        reads.append(1)
        return summarize_desired([twin("r-1")], r)

    registry.register(ControlCollector(FLEET, summarise, lambda: held[-1], dict, clock=clock))
    samples(registry, "fleet_desired_drift")
    clock.now += 1
    samples(registry, "fleet_desired_drift")
    assert len(reads) == 1
    held.append(rules(change(sector="logistics")))
    assert samples(registry, "fleet_desired_drift")[("logistics", "amr", "ai_model")] == 1
    assert len(reads) == 2


def report(seq: int, ts: float, version: str = OLD, codes: tuple[str, ...] = (), robot: str = "r-1",
           mode: str = "working", signals: dict[str, float] | None = None) -> Record:
    body = {"schema": 1, "robot_id": robot, "seq": seq, "ts": ts, "sector": "logistics", "site": "log-memphis-01",
            "model": "amr", "mode": mode, "ai_model_version": version, "firmware": "fw-1.8.2",
            "codes": list(codes), "signals": signals or {"battery_soc_pct": 50.0}}
    return Record("telemetry", 0, seq, ts + 0.1, robot.encode(), json.dumps(body).encode())


def message(r: Record) -> LogMessage:
    return LogMessage("telemetry", r.partition, r.offset, r.timestamp, r.key, r.value)


def test_safety_kpis_are_credited_per_version_and_counted_once_per_batch() -> None:
    records = [report(1, 100.0), report(2, 101.0), report(3, 102.0, codes=("E-STOP",)),
               report(4, 103.0, version="policy-9.9"), report(4, 103.0)]  # an unknown version; a duplicate
    rules_ = Rules(FLEET, read_detectors(SEEDS))
    events = [message(r) for r in records]
    batch = fold(Held(rules_), rules_, {}, events, "checks")
    assert dict(batch.operating) == {("logistics", "amr", OLD): 2.0, ("logistics", "amr", "other"): 1.0}
    assert dict(batch.safety) == {("logistics", "amr", OLD, "estop"): 1}
    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry, versions=sector_version_space(FLEET))
    incs: list[Any] = []
    real = metrics.operating.labels

    def counting(*labels: str) -> Any:
        child = real(*labels)
        incs.append(labels)
        return child

    metrics.operating.labels = counting  # type: ignore[method-assign,assignment]
    batch.count(metrics)
    assert sorted(incs) == sorted({("logistics", "amr", OLD), ("logistics", "amr", "other")})  # one inc each
    assert samples(registry, "fleet_version_operating_seconds_total")[("logistics", "amr", OLD)] == 2.0
    assert samples(registry, "fleet_version_safety_events_total")[("logistics", "amr", OLD, "estop")] == 1


def test_safety_kpis_are_the_same_whatever_the_batches_and_across_a_reload_from_the_table() -> None:
    """A batch reads what the KPIs need of each twin from the fold (`Batch.priors`): an interval that
    spans two batches is credited, a slow inference already slow in the batch before is no onset,
    and after a rebalance (the fold starts over from the table) the same holds."""
    def slow(seq: int, ts: float, ms: float, mode: str = "working") -> LogMessage:
        return message(report(seq, ts, mode=mode, signals={"inference_ms": ms}))

    log = [slow(1, 100.0, 10.0), slow(2, 101.0, 90.0), slow(3, 102.0, 95.0), slow(4, 103.0, 10.0, "idle"),
           slow(5, 104.0, 99.0), slow(6, 105.0, 98.0)]
    rules_ = Rules(FLEET, read_detectors(SEEDS))

    def kpis(cuts: list[int], reload_at: int | None = None) -> tuple[dict[Any, float], dict[Any, int]]:
        held, table = Held(rules_), {}
        operating: Counter[Any] = Counter()
        safety: Counter[Any] = Counter()
        for start, end in zip([0, *cuts], [*cuts, len(log)]):
            if start == reload_at:  # a rebalance: the fold starts over from the table
                table = {r: raw for r, (_, raw) in changelog_items(held, {"r-1": 0}).items()}
                held = Held(rules_, held.fold.fleet)
            batch = fold(held, rules_, table, log[start:end], "checks")
            operating.update(batch.operating)
            safety.update(batch.safety)
        return dict(operating), dict(safety)

    whole = kpis([])
    assert whole == ({("logistics", "amr", OLD): 4.0},  # every interval after a working report
                     {("logistics", "amr", OLD, "slow_inference"): 2})  # onsets at seq 2 and 5; seq 4 was idle
    for cuts in ([1], [2], [1, 2, 3, 4, 5], [3, 5]):
        assert kpis(cuts) == whole, cuts
    assert kpis([2, 4], reload_at=2) == whole and kpis([1, 5], reload_at=5) == whole


def test_per_version_counters_are_born_at_zero_over_a_bounded_space() -> None:
    registry = CollectorRegistry()
    PipelineMetrics(registry, versions=sector_version_space(FLEET))
    safety = samples(registry, "fleet_version_safety_events_total")
    assert {k[3] for k in safety} == set(KINDS) and not any(safety.values())
    assert ("logistics", "amr", "other", "estop") in safety
    assert FLEET.version_label("amr", "policy-9.9") == "other" and FLEET.version_label("amr", OLD) == OLD


def test_a_robot_connecting_with_a_delta_gets_its_command_from_the_batch() -> None:
    state = FleetState(desired=rules(change(sector="logistics")))
    events = [message(r) for r in (report(1, 100.0), report(2, 101.0), report(1, 100.0, robot="r-2", version=NEW))]
    rules_ = Rules(FLEET, read_detectors(SEEDS))
    batch = fold(Held(rules_, state), rules_, {}, events, "checks")
    # r-1 on its first report only (not again on the next); r-2 already runs what is desired
    assert [(c.robot_id, c.fields) for c in batch.commands] == [("r-1", {"ai_model": NEW})]


def test_one_scrape_decodes_the_table_s_unheld_twins_once(monkeypatch: Any) -> None:
    """After a rebalance the fold holds no robot and the table's twins are all decoded for the gauges:
    the fleet and the desired-state summaries of one scrape share one decode."""
    table = {r: encode_twin(twin(r)) for r in ("r-1", "r-2", "r-3")}
    ingest = Ingest(Settings(), Rules(FLEET, read_detectors(SEEDS)), table, None, None, None,  # type: ignore[arg-type]
                    PipelineMetrics(CollectorRegistry()))
    decoded: list[bytes] = []
    real = decode_twin

    def counting(raw: bytes) -> Twin:
        decoded.append(raw)
        return real(raw)

    monkeypatch.setattr(ingest_module, "decode_twin", counting)
    assert ingest.summary().robots == 3
    ingest.desired_summary(rules())
    assert len(decoded) == 3
    table["r-4"] = encode_twin(twin("r-4"))  # the table changed: decoded afresh
    assert ingest.summary().robots == 4 and len(decoded) == 7
    ingest.assigned({})  # a rebalance: decoded afresh
    ingest.summary()
    assert len(decoded) == 11


def test_a_scrape_s_summaries_are_timed_as_a_step_of_ingest() -> None:
    """The gauges' passes over the twins run on ingest's event loop: `twin_step_seconds` shows them."""
    registry = CollectorRegistry()
    table = {r: encode_twin(twin(r)) for r in ("r-1", "r-2")}
    ingest = Ingest(Settings(), Rules(FLEET, read_detectors(SEEDS)), table, None, None, None,  # type: ignore[arg-type]
                    PipelineMetrics(registry))
    assert samples(registry, "twin_step_seconds_count") == dict.fromkeys([(s,) for s in STEPS], 0.0)
    ingest.summary()
    ingest.desired_summary(rules())
    counts = samples(registry, "twin_step_seconds_count")
    assert counts[("summary",)] == 2 and counts[("fold",)] == 0

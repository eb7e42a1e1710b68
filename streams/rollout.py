"""The rollout controller: runs a plan's waves against the live fleet, behind the safety gate.

The decisions are the core's (`twin.plan` says which change to make and what a
gate decision leads to, `twin.gate` decides); this module does the I/O:

* publishes each wave's `DesiredChange` to `fleet.desired` (the API's publisher:
  keyed by `change_key`, acked by the broker) as principal `rollout:<plan id>`;
* every `look_s` asks Prometheus for the workers' per-version KPI counters
  (`fleet_version_operating_seconds_total`, `fleet_version_safety_events_total`,
  written through `twin.kpi`) by sector, model, version and worker, each series'
  last sample of the past minute, and feeds the gate what they grew by
  (`twin.gate.read`: a worker's restart or missed scrape neither erases nor
  repeats counts);
* publishes every look as a `GateRecord` on `fleet.rollouts` (key: plan id), so the
  worker's gauges, `fleet-twin rollout status` and audits see the same decisions;
* on a halt publishes the revert and a critical fleet-level `rollout_gate` anomaly on
  `fleet.anomalies`, which the worker's alert agent takes to Alertmanager.

Both queries of a look are evaluated at one instant, so exposure and events agree.
A look Prometheus cannot answer is skipped (logged; counted in the record's
evidence): a rollout that cannot see its safety KPIs never advances, it times out.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import msgspec
from aiokafka import AIOKafkaProducer

from streams.desired_log import DesiredPublisher
from streams.kafka_client import client_kwargs
from streams.settings import Settings
from twin import gate as g
from twin.desired import DesiredChange, check_change
from twin.detect.findings import Anomaly
from twin.fleet import Fleet
from twin.plan import (
    GateRecord, Outcome, Plan, Status, begin, halt_anomaly, halt_reason, on_decision, revert_change, wave_change,
)

log = logging.getLogger(__name__)

EXPOSURE = "fleet_version_operating_seconds_total"
EVENTS = "fleet_version_safety_events_total"
QUERY_TIMEOUT_S = 10.0
EXIT_CODES: dict[str, int] = {"done": 0, "halted": 3, "timeout": 4}

_json = msgspec.json.Encoder()


class PrometheusUnavailable(Exception):
    """Prometheus did not answer a query (or answered with an error)."""


def check_plan(plan: Plan, fleet: Fleet) -> None:
    """Every change the plan can make passes the same check the API applies (`InvalidChange` if not)."""
    for i in range(len(plan.waves)):
        check_change(wave_change(plan, i, 1.0, "check"), fleet)
        check_change(revert_change(plan, i, 1.0, "check", "check"), fleet)


def selector_matchers(plan: Plan) -> str:
    """PromQL label matchers of the plan's strata and versions (site: not a counter label)."""
    parts = [f'version=~"{_re(plan.from_)}|{_re(plan.to)}"']
    if plan.selector.model:
        parts.append(f'model="{plan.selector.model}"')
    if plan.selector.sector:
        parts.append(f'sector="{plan.selector.sector}"')
    return ",".join(parts)


def _re(value: str) -> str:
    return "".join("\\\\" + c if c in r".^$*+?()[]{}|\\" else c for c in value)


LAST_S = 60
"""A series' last sample within this many seconds stands for it: one missed scrape is not a gap."""


async def query_counts(client: httpx.AsyncClient, plan: Plan, at: float) -> dict[g.Series, g.Tally]:
    """The cumulative exposure and events per stratum, version and worker (Prometheus' `instance`) at `at`."""
    matchers = selector_matchers(plan)
    kinds = "|".join(plan.gate.kinds)
    by = "sum by (sector, model, version, instance)"
    exposure = await _query(client, f"{by} (last_over_time({EXPOSURE}{{{matchers}}}[{LAST_S}s]))", at)
    events = await _query(client, f'{by} (last_over_time({EVENTS}{{{matchers},kind=~"{kinds}"}}[{LAST_S}s]))', at)
    if not exposure:  # workers export every label set from their start: none is no worker scraped
        raise PrometheusUnavailable(f"no {EXPOSURE} series of {matchers} in the past {LAST_S} s")
    tallies: dict[g.Series, dict[str, float]] = {}
    for series, field in ((exposure, "exposure_s"), (events, "events")):
        for item in series:
            labels, value = item["metric"], float(item["value"][1])
            key = (g.stratum(labels.get("model", ""), labels.get("sector", "")), labels.get("version", ""),
                   labels.get("instance", ""))
            tallies.setdefault(key, {})[field] = value
    return {key: g.Tally(exposure_s=t.get("exposure_s", 0.0), events=t.get("events", 0.0))
            for key, t in tallies.items()}


async def _query(client: httpx.AsyncClient, promql: str, at: float) -> list[dict[str, Any]]:
    try:
        answer = await client.get("/api/v1/query", params={"query": promql, "time": f"{at:.3f}"},
                                  timeout=QUERY_TIMEOUT_S)
        body = answer.json()
    except (httpx.HTTPError, ValueError) as err:
        raise PrometheusUnavailable(f"{client.base_url}: {err!r}") from None
    if answer.status_code != 200 or body.get("status") != "success":
        raise PrometheusUnavailable(f"{client.base_url} refused {promql!r}: {body.get('error', answer.status_code)}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


class Controller:
    """One run of one plan: the publisher, the producer and Prometheus, and where the plan stands."""

    def __init__(self, settings: Settings, plan: Plan, *, clock: Callable[[], float] = time.time,
                 on_look: Callable[[GateRecord], None] = lambda record: None) -> None:
        self.settings, self.plan, self.clock, self.on_look = settings, plan, clock, on_look
        self.publisher = DesiredPublisher(settings)
        self.wave = 0
        self.wave_started = 0.0
        self.gate = g.start(plan.gate, {})
        self.readings = g.Readings()
        self.skipped = 0

    async def run(self, max_s: float | None = None, look_s: float | None = None) -> Status:
        """Run the plan to its end ("done" or "halted"), or until `max_s` seconds pass ("timeout")."""
        # made here: aiokafka's clients belong to the running event loop
        self.producer = AIOKafkaProducer(**client_kwargs(self.settings), acks="all", linger_ms=0)
        self.prometheus = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.settings.prometheus_port}")
        try:
            await self.producer.start()
            return await self._run(max_s, look_s or self.plan.look_s)
        finally:
            await self.publisher.stop()
            await self.producer.stop()
            await self.prometheus.aclose()

    async def _run(self, max_s: float | None, look_s: float) -> Status:
        started = time.monotonic()
        now = self.clock()
        baseline = await self._counts(now)  # PrometheusUnavailable: nothing published
        outcome = begin(self.plan, now, _id())
        await self._enter(outcome, baseline, now)
        if outcome.status != "running":
            await self._record(now, "advance", outcome.status)
            return outcome.status
        while True:
            await asyncio.sleep(look_s)
            now = self.clock()
            if max_s is not None and time.monotonic() - started >= max_s:
                await self._record(now, "continue", "timeout")
                return "timeout"
            try:
                counts = await self._counts(now)
            except PrometheusUnavailable as err:
                self.skipped += 1
                log.warning("rollout %s: look skipped, %s", self.plan.id, err)
                continue
            status = await self._look(counts, now)
            if status != "running":
                return status

    async def _counts(self, now: float) -> dict[str, g.Pair]:
        """The gate's counts at `now`: what each stratum's groups added since the rollout's first look."""
        self.readings = g.read(self.readings, await query_counts(self.prometheus, self.plan, now))
        return g.pairs(self.readings, self.plan.to)

    async def _look(self, counts: dict[str, g.Pair], now: float) -> Status:
        self.gate, decision = g.look(self.gate, counts)
        why = halt_reason(self.gate) if decision == "halt" else ""
        outcome = on_decision(self.plan, self.wave, decision, now, _id(), why)
        if outcome.status == "halted":  # the revert and the alarm are out before the record says so
            await self.publisher.publish(outcome.changes)
            await self._raise_alarm(outcome.changes[0], now)
            await self._record(now, decision, "halted")
        elif outcome.changes:  # the next wave: this look advanced the one before it
            await self._record(now, decision, "running")
            await self._enter(outcome, counts, now)
            if outcome.status == "done":  # the last wave has no controls left: published is finished
                await self._record(now, "advance", "done")
        else:
            await self._record(now, decision, outcome.status)
        return outcome.status

    async def _enter(self, outcome: Outcome, baseline: g.Counts, now: float) -> None:
        """Publish the wave's change and start its gate from the counts at its start."""
        await self.publisher.publish(outcome.changes)
        self.wave, self.wave_started = outcome.wave, now
        wave = self.plan.waves[outcome.wave]
        self.gate = g.start(self.plan.gate, baseline, wave.min_hours, wave.max_hours)
        log.info("rollout %s: wave %d (%.0f%%) published", self.plan.id, outcome.wave + 1, 100 * wave.share)

    async def _record(self, now: float, decision: str, status: str) -> None:
        ev = g.evidence(self.gate)
        record = GateRecord(plan=self.plan.id, wave=self.wave, ts=now, decision=decision,
                            statistic=ev["statistic"], upper=ev["upper"], lower=ev["lower"],
                            evidence={**ev, "skipped_looks": self.skipped, "wave_started": self.wave_started},
                            status=status, share=self.plan.waves[self.wave].share)
        await self.producer.send_and_wait(self.settings.rollouts_topic, _json.encode(record),
                                          key=self.plan.id.encode(), timestamp_ms=round(now * 1000))
        self.on_look(record)

    async def _raise_alarm(self, revert: DesiredChange, now: float) -> None:
        anomaly: Anomaly = halt_anomaly(self.plan, self.wave, self.gate, self.wave_started, now, revert)
        key = (anomaly.site or anomaly.model or self.plan.id).encode()
        await self.producer.send_and_wait(self.settings.anomalies_topic, _json.encode(anomaly), key=key,
                                          timestamp_ms=round(now * 1000))


def _id() -> str:
    return uuid.uuid4().hex


async def gate_records(settings: Settings, plan_id: str) -> list[GateRecord]:
    """Every look of a plan on `fleet.rollouts`, oldest first (undecodable records are skipped)."""
    from streams.kafka_client import read_topic

    out: list[GateRecord] = []
    decoder = msgspec.json.Decoder(GateRecord)
    for message in await read_topic(settings, settings.rollouts_topic):
        if message.key != plan_id.encode() or message.value is None:
            continue
        try:
            out.append(decoder.decode(message.value))
        except msgspec.DecodeError:
            log.warning("fleet.rollouts@%s: not a gate record", message.offset)
    return sorted(out, key=lambda r: r.ts)

"""Ten times the sustainable rate through the real broker, worker and Prometheus: the backlog
grows, the lag metric and an alert say so, nothing is dropped, and the worker lives on.

The test first measures what this worker sustains (a probe batch published at once, timed
until the worker has applied it), then offers ten times that for BURST_S seconds from a
simulated fleet of its own (robot ids carry this run's prefix, so no other test's robot is
touched), and watches the session's Prometheus while the backlog builds and drains. An alert
in `pending` state is enough: the lag rules wait 5 minutes before firing, longer than a test
should run.

Progress is read from a few twins (the last robot of each partition), not from /metrics:
a scrape summarizes every twin of the worker, and polling it often would slow the very
worker being measured.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from dashboards.prom import Prometheus
from streams.settings import Settings
from streams.local.simulator import KafkaSink
from streams.local.stack import Stack
from twin.fleet import Fleet
from twin.sim import FleetSim, Scenario

ROBOTS, RATE_HZ, SEED = 400, 50.0, 7
"""The test's fleet: 400 robots stamped 50 reports a second apart (the pace on the wire is the test's;
event time then runs a few seconds ahead of the broker's, well inside the 30 s the skew detector allows)."""
SECTORS = ["food_manufacturing"]
"""Arms only (16 and 17 signals, no battery): at 50+ reports a second a battery's charge repeats
itself 30 times and the stuck-sensor detector would open anomalies on half the fleet."""
PROBE_TICKS = 40
"""The probe batch: ROBOTS x PROBE_TICKS = 16,000 events at once, to time the worker on."""
OVERLOAD, BURST_S = 10, 6.0
"""Offer OVERLOAD x the measured rate for BURST_S seconds: OVERLOAD x BURST_S seconds of the worker's work."""
SLOT_S = 0.05
"""How often the paced publisher sends what is due."""
BUDGET_S = 170.0
"""Until the burst begins; every wait takes what is left of it."""
DRAIN_BY = 3.0
"""From the burst's start, the rest of the test has DRAIN_BY x the work offered: the burst itself (at most
OVERLOAD / 2 x BURST_S at the 2x asserted), then the drain, which may go at well under the probe's rate
(15,009 events/s drained against 15,665 probed here). A fixed budget for the whole test failed once in CI:
the probe said 23,276 events/s, and of the 80 s of work then offered some was still waiting when it ran out."""
LAG_ALERTS = 'ALERTS{alertname=~"FleetTwin.*Lag"}'
BACKLOG_S = 'sum by (instance) (twin_consumer_lag) / sum by (instance) (rate(twin_events_total[1m]))'
"""FleetTwinConsumerLag's measure: seconds of the worker's own work waiting (it alerts over 60 s)."""
P99 = 'histogram_quantile(0.99, sum by (le) (rate(twin_processing_lag_seconds_bucket[1m])))'


@dataclass(frozen=True)
class Sample:
    """One look at Prometheus, `t` seconds after the burst began."""

    t: float
    lag: float
    """sum(twin_consumer_lag): messages waiting."""
    backlog_s: float
    """FleetTwinConsumerLag's measure (NaN before there is a rate)."""
    p99: float
    alerts: dict[str, str]
    """Lag alerts active, by name: pending or firing."""


def look(prom: Prometheus, t: float) -> Sample:
    def value(expr: str) -> float:
        found = [s.last for s in prom.instant(expr)]
        return found[0] if found else math.nan

    alerts = {s.labels["alertname"]: s.labels["alertstate"] for s in prom.instant(LAG_ALERTS)}
    return Sample(round(t, 1), value("sum(twin_consumer_lag)"), value(BACKLOG_S), value(P99), alerts)


def peak(samples: list[Sample], attr: str) -> Sample:
    return max(samples, key=lambda s: getattr(s, attr) if math.isfinite(getattr(s, attr)) else -1.0)


def first_seen(samples: list[Sample]) -> dict[str, tuple[str, float, float]]:
    """Each lag alert's first state, when (s after the burst began) and the lag then."""
    seen: dict[str, tuple[str, float, float]] = {}
    for s in samples:
        for name, state in s.alerts.items():
            seen.setdefault(name, (state, s.t, s.lag))
    return seen


def processed_and_lag(worker: str, settings: Settings) -> tuple[float, float]:
    """The worker's own count of telemetry messages handled, and its consumer lag, from /metrics."""
    token = settings.metrics_token
    headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
    text = httpx.get(f"{worker}/metrics", headers=headers, timeout=5).text
    done = lag = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == "twin_events":
            done = sum(s.value for s in family.samples if s.name == "twin_events_total")
        elif family.name == "twin_consumer_lag":
            lag = sum(s.value for s in family.samples)
    return done, lag


def wait_quiet(worker: str, settings: Settings, deadline: float) -> None:
    """Wait for what earlier tests left in the topic to drain (no lag, the count standing still)."""
    last = (-1.0, -1.0)
    while time.monotonic() < deadline:
        now = processed_and_lag(worker, settings)
        if now[1] == 0 and now[0] == last[0]:
            return
        last = now
        time.sleep(1.0)
    raise AssertionError(f"the worker never went quiet before the test: (processed, lag) = {last}")


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (0 if it is gone)."""
    try:
        status = open(f"/proc/{pid}/status").read()
    except FileNotFoundError:
        return 0.0
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def lookup(api: httpx.Client, robot: str, deadline: float) -> httpx.Response:
    """GET the robot's twin; a worker still joining its group answers 503 for a while: ask again."""
    while (r := api.get(f"/twins/{robot}")).status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.5)
    return r


def applied_through(api: httpx.Client, last_robots: list[str], seq: int) -> bool:
    """Whether each partition's last robot has its twin at `seq`: the partition is processed up to there."""
    for robot in last_robots:
        r = api.get(f"/twins/{robot}")
        if r.status_code != 200 or r.json()["seq"] < seq:
            return False
    return True


async def publish(settings: Settings, sim: FleetSim, ticks: int, pace_hz: float | None,
                  on_start: Callable[[], object] = lambda: None) -> int:
    """Send `ticks` ticks of `sim`, `pace_hz` ticks per wall second (None: at once); wait for the acks.

    Every tick is encoded before the clock starts (`on_start` then): a publisher that encodes as it
    goes tops out near 25k events/s on the test's 2 cores, less than three times the worker it is
    to overload. The ticks due are sent together every SLOT_S: the producer holds one batch per
    partition at a time and lingers on it, so a send per tick would cap the pace at about 20k events/s.
    """
    deliveries: list[asyncio.Future[object]] = []
    async with KafkaSink(settings) as sink:
        wire = [sink.encoded(sim.step()) for _ in range(ticks)]
        sent, tick, start = 0, 0, time.monotonic()
        on_start()
        while tick < ticks:
            due = ticks if pace_hz is None else min(ticks, math.floor((time.monotonic() - start) * pace_hz) + 1)
            records = [r for t in range(tick, due) for r in wire[t]]
            deliveries += await sink.enqueue_encoded(records)  # a future per partition batch, not per event
            sent, tick = sent + len(records), due
            if tick < ticks:
                await asyncio.sleep(SLOT_S)
        await asyncio.gather(*deliveries)
    return sent


def last_per_partition(settings: Settings, robots: list[str]) -> list[str]:
    """The robot whose report comes last in its partition within a tick (ticks go in roster order)."""

    async def partitions() -> list[str]:
        async with KafkaSink(settings) as sink:
            last = {sink.partitioner(r.encode(), sink.partitions, sink.partitions): r for r in robots}
            return list(last.values())

    return asyncio.run(partitions())


def test_ten_times_the_sustainable_rate_lags_alerts_and_loses_nothing(
        settings: Settings, worker: str, api: httpx.Client, prometheus: str, stack: Stack, fleet: Fleet) -> None:
    deadline = time.monotonic() + BUDGET_S
    sim = FleetSim(fleet, Scenario(name="backpressure", robots=ROBOTS, rate_hz=RATE_HZ, sectors=SECTORS),
                   seed=SEED, start_ts=time.time())
    # The simulator's ids depend only on the sectors and the count: this run's prefix makes them ours.
    prefix = f"bp{uuid.uuid4().hex[:6]}-"
    sim.roster = dataclasses.replace(sim.roster, robot_ids=[prefix + r for r in sim.roster.robot_ids])
    robots = sim.roster.robot_ids
    assert all(lookup(api, r, deadline).status_code == 404 for r in robots), "the test's robots must be new"
    last = last_per_partition(settings, robots)
    pid = stack.procs.pid("worker")
    assert pid is not None

    # 1. The sustainable rate: a probe batch at once, timed until the worker has applied all of it.
    wait_quiet(worker, settings, deadline)
    clock: dict[str, float] = {}
    probe = asyncio.run(publish(settings, sim, PROBE_TICKS, None, lambda: clock.setdefault("started", time.monotonic())))
    started = clock["started"]
    while not applied_through(api, last, PROBE_TICKS):
        assert time.monotonic() < deadline, "the probe batch was not applied before the deadline"
        time.sleep(0.05)
    sustainable = probe / (time.monotonic() - started)

    # 2. Ten times that for BURST_S seconds, published from a thread while Prometheus is watched.
    pace_hz = OVERLOAD * sustainable / ROBOTS
    ticks = PROBE_TICKS + max(1, round(pace_hz * BURST_S))
    burst: dict[str, float] = {}
    failed: list[BaseException] = []

    sending = threading.Event()

    def offer() -> None:
        try:
            burst["sent"] = asyncio.run(publish(settings, sim, ticks - PROBE_TICKS, pace_hz, on_start))
        except BaseException as err:  # re-raised in the test's own thread below
            failed.append(err)
        burst["seconds"] = time.monotonic() - burst.get("began", time.monotonic())
        sending.set()

    def on_start() -> None:
        burst["began"] = time.monotonic()
        sending.set()

    samples: list[Sample] = []
    pids, rss = set(), [rss_mb(pid)]
    producer = threading.Thread(target=offer, daemon=True)
    encoding = time.monotonic()
    producer.start()
    sending.wait(max(0.0, deadline - time.monotonic()))  # the burst is encoded first
    began = burst.get("began", time.monotonic())
    into_test = began - (deadline - BUDGET_S)
    deadline = began + DRAIN_BY * OVERLOAD * BURST_S
    drained_at = cleared_at = None
    try:
        with Prometheus(prometheus) as prom:
            # until drained, and then until the consumer-lag alert has cleared
            while cleared_at is None and time.monotonic() < deadline:
                samples.append(look(prom, time.monotonic() - began))
                pids.add(stack.procs.pid("worker"))
                rss.append(rss_mb(pid))
                if drained_at is None and not producer.is_alive() and applied_through(api, last, ticks):
                    drained_at = time.monotonic()
                if drained_at is not None and "FleetTwinConsumerLag" not in samples[-1].alerts:
                    cleared_at = time.monotonic()
                time.sleep(1.0)
            window = math.ceil(time.monotonic() - began) + 5
            top = prom.instant(f"max_over_time(sum(twin_consumer_lag)[{window}s:1s])")
    finally:
        producer.join(max(0.0, deadline - time.monotonic()) + 5)
    if failed:
        raise failed[0]

    offered = burst["sent"] / burst["seconds"]
    peak_lag = top[0].last if top else 0.0
    drain_s = drained_at - began - burst["seconds"] if drained_at else math.nan
    at_peak = peak(samples, "lag")
    print(f"\nsustainable {sustainable:,.0f} events/s (probe: {probe:,} events at once); "
          f"offered {offered:,.0f} events/s ({offered / sustainable:.1f}x) for {burst['seconds']:.1f} s "
          f"({burst['sent']:,.0f} events, {ROBOTS} robots, {pace_hz:.1f} reports/s each); "
          f"peak sum(twin_consumer_lag) {peak_lag:,.0f} ({peak_lag / sustainable:.0f} s of work at the "
          f"sustainable rate; {peak(samples, 'backlog_s').backlog_s:.0f} s by FleetTwinConsumerLag's measure); "
          f"peak p99 processing lag {peak(samples, 'p99').p99:.1f} s; drained {drain_s:.1f} s after the burst "
          f"({burst['sent'] / (burst['seconds'] + drain_s):,.0f} events/s applied while overloaded); "
          f"lag alerts first seen (state, s after the burst began, lag then): {first_seen(samples)}, "
          f"at the peak {at_peak.alerts}; FleetTwinConsumerLag cleared "
          f"{cleared_at - drained_at if cleared_at and drained_at else math.nan:.1f} s after the drain; "
          f"worker RSS {rss[0]:.0f} MB before, {max(rss):.0f} MB at most; the burst was encoded in "
          f"{began - encoding:.1f} s and began {into_test:.1f} s into the test; "
          f"last look: {samples[-1] if samples else None}")

    # the burst really was an overload, and the worker never restarted or died. The aim is OVERLOAD x; the
    # pre-encoded publisher has offered 5.8-9.1x (135-143k events/s), but a slower machine may give less.
    # The events go out all the same, over a longer burst: the backlog (and the lag asserted below) is what
    # the test is about, and at 2x it still reaches 30 s of work (OVERLOAD x BURST_S of work are sent).
    assert offered >= 2 * sustainable, f"the producer offered only {offered / sustainable:.1f}x"
    assert pids == {pid}, f"the worker changed or died: pids seen {pids}, started as {pid}"
    # the lag grew, and Prometheus saw it: beyond 20 s of the worker's work (about (1 - 1/x) x OVERLOAD x BURST_S at x offered)
    assert peak_lag >= 20 * sustainable, f"peak lag {peak_lag:,.0f} is under 20 s of work"
    assert peak(samples, "p99").p99 > 5, f"p99 processing lag peaked at {peak(samples, 'p99').p99:.2f} s"
    # an alert says so, at the worst of it (pending is enough: the rules want 5 minutes before firing)
    assert "FleetTwinConsumerLag" in at_peak.alerts, f"at the peak lag, lag alerts were {at_peak.alerts}"
    # nothing was dropped: every robot's twin has every seq sent, the last one on top
    assert drained_at is not None, "the backlog did not drain before the deadline"
    wrong = {}
    for robot in robots:
        twin = lookup(api, robot, deadline + 30).json()
        counts = twin["counts"]
        if (counts["events"], twin["seq"], counts["duplicates"], counts["stale"], counts["rejected"]) \
                != (ticks, ticks, 0, 0, 0):
            wrong[robot] = (twin["seq"], counts)
    assert not wrong, f"{len(wrong)} of {ROBOTS} twins miss events (want {ticks}): {list(wrong.items())[:3]}"
    # and once the backlog is gone, so is the alert
    assert cleared_at is not None, "FleetTwinConsumerLag was still active when the time was up"

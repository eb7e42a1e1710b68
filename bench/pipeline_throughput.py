"""How close the worker comes to the broker's limit, and what it costs at scale.

Measured in one run against the real local broker (each figure the median of --repeat):

  1. bare consumer (baseline): aiokafka `getmany` draining a pre-filled topic of --events
     simulator events (`twin.sim.FleetSim`, --robots x events/robots ticks, produced once with
     `KafkaSink`, each record stamped with its event's time, as if it had reached the broker
     when it was made), decoding nothing: what the broker and the client deliver on this machine;
  2. decode + validate: the same drain with `twin.validate.parse` per message;
  3. full worker: `fleet-twin worker` processes (`Stack.start_worker`, a fresh app id, so a
     fresh consumer group and fresh tables, each repetition) drain the same topic, 1 and then
     2 of them in one consumer group. Timed from the first twin written to the last, by the
     timestamps of the twins changelog (one record per robot changed, at each checkpoint of
     FLEET_TWIN_CHECKPOINT_S, and (3b) the same with a checkpoint after every batch; the broker is polled
     for its end offsets, the worker's /metrics is not: a scrape decodes every twin); start-up
     (spawn to the first twin) apart; CPU seconds of workers and broker from /proc; the
     events each worker counted (`twin_events_total`) read once at the end; (3c) the same
     events stamped when produced: the log is sent in seconds, so the robots' clocks look up to
     the run's ticks behind the broker's and clock_skew opens on most robots (an anomaly storm;
     every figure before the eighth session's was measured so); (3g) the same events sent as
     site gateways send them (`twin.gateway`: one Arrow record per site and home partition; the
     changelog's progress, read in records, scaled to events), with the value bytes per event of
     one tick both ways; (3z) the same events with the twins changelog uncompressed
     (FLEET_TWIN_CHANGELOG_COMPRESSION=none against the worker's default), with the changelog's
     bytes on the broker's disk per twin written both ways;
  4. latency, produce -> twin updated, at a fixed offered load (--rate events/s for --seconds,
     one report per robot per second, in 10 ms slices): each event's `ts` is the wall-clock
     instant it is handed to the producer; a reader of the worker's changelog
     (`<app_id>-twins-changelog`) takes the first record holding that (robot, seq) or a later one:
     "updated" = the record's timestamp (stamped by the worker's producer at the checkpoint that
     stores the twin: --checkpoint-s 0 for one per batch) - ts, "visible" = its arrival at the
     reader - ts. Then the same at --high-rate;
  5. memory: worker VmRSS (/proc/<pid>/status) and stored twin bytes (the changelog's newest
     value per robot) with 0, then 10k, then 100k robots reported (--reports each), read
     from the broker so that /metrics (which decodes every twin) does not touch the worker's
     heap before its RSS is read; read 1 s after each drain and again `SETTLE_S` later, once the
     worker has trimmed its heap (`streams.worker.memory`);
  6. recovery: SIGTERM that worker, start it again with the same app id and state folder, and
     time until the newest changelog record of every partition is served by `GET /twins/{id}`;
     then every robot reports once more (each is taken from the table into the fold), and the
     RSS is read once that is drained and settled.
Also (1) and (2) against `getmany(max_records=...)` and the full worker against its micro-batch
size (FLEET_TWIN_BATCH_MAX), plotted with the 1- and 2-worker figures (--plot), and, with
--profile, a py-spy profile of one more worker while it drains; with --profile-rate R, one of
the worker at steady load (the first window of (4) at R events/s). With --scrape-s and
--silence-check-s, (4) runs the worker's periodic passes over its robots (gauges, silence) beside
ingest, as in production.

Silence checks are off in (4) to (6) (`silence_check_s` = 1 h) unless --silence-check-s says
otherwise for (4): a finished benchmark fleet goes quiet, and its offline anomalies would
otherwise land in the latency and memory figures.

    .venv/bin/python bench/pipeline_throughput.py [--quick] [--events 200000] [--robots 2000] [--repeat 3]
        [--rates 1000,2000,4000] [--seconds 30] [--high-rate 20000] [--high-seconds 10] [--plot PNG]
        [--batches 10,100,500,2000,4000,8000] [--profile] [--profile-rate R] [--scrape-s S]
        [--silence-check-s S] [--skip-sweep] [--skip-batches] [--skip-workers]
        [--skip-latency] [--skip-memory] [--skip-gateway] [--skip-codec]

Everything it writes goes to a temporary folder, removed at the end, also after an error
(--keep-temp keeps it); on a broker it did not start, it deletes the topics it created.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.kafka_client import client_kwargs, read_topic  # noqa: E402
from streams.seeds import read_fleet  # noqa: E402
from streams.settings import Settings  # noqa: E402
from streams.local.simulator import KafkaSink, wire  # noqa: E402
from streams.local.stack import Stack  # noqa: E402
from streams.topics import ensure_topics  # noqa: E402
from streams.worker.memory import TRIM_S  # noqa: E402
from twin.schema import Event  # noqa: E402
from twin.sim import FleetSim, Scenario  # noqa: E402
from twin.state import decode_twin  # noqa: E402
from twin.validate import Policy, parse  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FLEET = read_fleet(ROOT / "seeds")
SWEEP = (1, 10, 100, 1_000, 10_000)
BATCHES = "10,100,500,2000,4000,8000"
"""Worker micro-batch sizes (FLEET_TWIN_BATCH_MAX) swept by default (--batches). Not 1: each batch
awaits its broker round trips (anomaly and changelog acks, the offset commit), so one record per
batch drained ~110 events/s and did not finish 200,000 events in the drain's time limit."""
POLL_S = 0.2
SLICE_S = 0.01
QUIET = 3600.0
"""silence_check_s for (4) to (6): no silence checks within a run."""
CLK = os.sysconf("SC_CLK_TCK")
ENCODE = msgspec.json.Encoder().encode


# -- the machine and its processes --------------------------------------------------------------

def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return (f"{os.cpu_count()} cores ({model}), {mem_kib / 2**20:.0f} GiB, Python {platform.python_version()}, "
            f"load average {os.getloadavg()[0]:.2f} (machine shared with other work)")


def code_version() -> str:
    """The commit the workers run, and whether streams/ or twin/ differ from it in the working tree."""
    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD")
    if not head:
        return f"{ROOT} is not a git checkout"
    dirty = git("status", "--porcelain", "--", "streams", "twin")
    return head + (f" + local changes:\n{dirty}" if dirty else " (clean)")


def cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (0 if unknown)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_sample(pids: list[int | None], broker: int | None) -> tuple[float, float, float]:
    """(monotonic time, the workers' CPU seconds so far, the broker's)."""
    return time.monotonic(), sum(cpu_s(p) for p in pids), cpu_s(broker)


def broker_pid(settings: Settings) -> int | None:
    """The pid of the process listening on the broker's port (for its CPU time), from /proc."""
    port = f"{settings.kafka_port:04X}"
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            cols = row.split()
            if cols[1].endswith(f":{port}") and cols[3] == "0A":  # 0A: LISTEN
                inodes.add(f"socket:[{cols[9]}]")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# -- producing -----------------------------------------------------------------------------------

def simulate(robots: int, ticks: int, seed: int = 1, start_ts: float | None = None) -> FleetSim:
    # Event time ends now: every event is in the past when it reaches the broker (no future_ts).
    return FleetSim(FLEET, Scenario(name="bench", robots=robots, duration_s=ticks), seed=seed,
                    start_ts=round(time.time() - ticks, 3) if start_ts is None else start_ts)


@dataclass(frozen=True)
class Load:
    """The events every throughput figure reads: the same seed and start, so the same bytes."""

    robots: int
    ticks: int
    start_ts: float
    event_time: bool = True
    """Records stamped with their event's time, as if each had reached the broker when it was made.
    False: stamped when produced, so the first events look ~`ticks` seconds late and the robots'
    clocks that far behind the broker's (`clock_skew` opens on most rows: an anomaly storm)."""
    gateway: bool = False
    """Sent as site gateways send (`twin.gateway`: one Arrow record per site and home partition)."""


class AlertSink:
    """Stands in for Alertmanager (answers 200 and counts the alerts): the workers' alerts agent
    posts every anomaly, and an unreachable Alertmanager holds it (and a rebalance) up."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        sink = self
        self.alerts = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                sink.alerts += len(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


async def send_all(settings: Settings, events: list[Event], chunk: int = 5000) -> int:
    async with KafkaSink(settings) as sink:
        for lo in range(0, len(events), chunk):
            await sink.send(events[lo:lo + chunk])
    return len(events)


async def prefill(settings: Settings, load: Load) -> int:
    await ensure_topics(settings)
    sim = simulate(load.robots, load.ticks, start_ts=load.start_ts)
    sent = 0
    async with KafkaSink(settings, event_time=load.event_time, gateway=load.gateway) as sink:
        for _ in range(sim.ticks):
            events = sim.step()
            await sink.send(events)
            sent += len(events)
    return sent


# -- (1), (2): a bare consumer -------------------------------------------------------------------

async def bare_drain(settings: Settings, n: int, max_records: int | None, decode: bool) -> float:
    """Events/s of one aiokafka consumer reading the topic's first `n` records (all partitions)."""
    consumer = AIOKafkaConsumer(**client_kwargs(settings), enable_auto_commit=False)
    policy = Policy(max_bytes=settings.max_event_bytes, max_future_s=settings.max_future_s)
    await consumer.start()
    try:
        tps = [TopicPartition(settings.telemetry_topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        count, started = 0, time.perf_counter()
        while count < n:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=max_records)).values():
                if decode:
                    for m in records:
                        parse(m.value, FLEET, key=m.key, received_ts=m.timestamp / 1000, policy=policy)
                count += len(records)
            if time.perf_counter() - started > 600:
                raise TimeoutError(f"bare consumer read {count} of {n} in 600 s")
        return count / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def bare_rate(settings: Settings, n: int, repeat: int, max_records: int | None, decode: bool) -> float:
    return median([asyncio.run(bare_drain(settings, n, max_records, decode)) for _ in range(repeat)])


# -- worker processes ----------------------------------------------------------------------------

@dataclass
class Worker:
    settings: Settings

    def __post_init__(self) -> None:
        self.stack = Stack(self.settings)

    @property
    def url(self) -> str:
        return self.settings.web_url()

    @property
    def pid(self) -> int | None:
        return self.stack.procs.pid("worker")

    def start(self) -> None:
        self.stack.start_worker()

    def stop(self) -> float:
        """SIGTERM (SIGKILL after 20 s, by pid); seconds it took."""
        began = time.monotonic()
        self.stack.procs.stop("worker")
        return time.monotonic() - began


def worker_settings(base: Settings, app_id: str, tmp: Path, **update: Any) -> Settings:
    port = free_port()
    return base.model_copy(update={"app_id": app_id, "web_port": port,
                                   "state_dir": tmp / f"{app_id}-{port}", **update})


def start_all(workers: list[Worker], faust_env: dict[str, str] | None = None) -> None:
    """Spawn the workers at once (each waits for its own /healthz), so they join one rebalance.

    `faust_env`: Faust settings for a what-if run. Faust reads its own settings (PRODUCER_LINGER,
    ...) from the environment, which a spawned worker inherits from this process."""
    saved = {k: os.environ.get(k) for k in faust_env or {}}
    os.environ.update(faust_env or {})
    try:
        with ThreadPoolExecutor(len(workers)) as pool:
            list(pool.map(Worker.start, workers))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def metric_sums(client: httpx.Client, url: str, names: tuple[str, ...]) -> dict[str, float]:
    """Sums of the named samples on a worker's /metrics (a line scan: cheap on our side)."""
    out = dict.fromkeys(names, 0.0)
    for line in client.get(f"{url}/metrics", timeout=30).text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in out:
            out[name] += float(line.rsplit(" ", 1)[1])
    return out


def processed(client: httpx.Client, url: str) -> float:
    return metric_sums(client, url, ("twin_events_total",))["twin_events_total"]


@dataclass
class Drain:
    workers: int
    rate: float
    """Events/s from the first twin write to the last (changelog record timestamps)."""
    steady: float
    """Events/s between the 20th and the 90th percentile of the writes: no start-up, no rebalance."""
    startup_s: float
    """Spawn to the first twin written."""
    total_s: float
    """Spawn to the last twin written."""
    worker_cpu: float
    """Worker CPU seconds per wall second during the drain (summed over workers)."""
    broker_cpu: float
    shares: list[float]
    """Each worker's share of the events (its twin_events_total, scraped once at the end)."""
    anomalies: int = 0
    """Anomaly messages the run published (fleet.anomalies)."""
    changelog_bytes: float = 0.0
    """Bytes of twins changelog on the broker's disk per twin written (0: not a broker of this run's)."""
    per_cpu_s: float = 0.0
    """Events per second of worker CPU over the drain (all workers' CPU summed): what a worker does with
    a core, whatever share of one the machine gave it."""


def drain_workers(base: Settings, load: Load, count: int, tmp: Path, on_first: Callable[[Worker], None] | None = None,
                  faust_env: dict[str, str] | None = None, settle: bool = False, **worker: Any) -> Drain:
    """Start `count` fresh workers in one group, time them through the events of `load`, stop them.

    `worker`: settings of the workers (`batch_max=...`). The events go to topics of the run's own (its anomalies, checks and DLQ too): before the
    workers start (a pre-filled topic), or with `settle` once the group has settled (every
    worker holds partitions and none is rebalancing), so that no rebalance falls in the drain.
    Progress is read from the broker (the twins changelog: see `watch_changelog`), never
    from /metrics: a scrape makes the worker decode every twin (~76 ms at 2,000 twins)."""
    tag = f"w{count}{'s' if settle else ''}{''.join(f'-{v}' for v in worker.values())}-{uuid.uuid4().hex[:6]}"
    topics = base.model_copy(update={"topic_prefix": f"{base.topic_prefix}{tag}."})
    asyncio.run(ensure_topics(topics))
    n = load.robots * load.ticks if settle else asyncio.run(prefill(topics, load))
    workers = [Worker(worker_settings(topics, f"{base.app_id}-{tag}", tmp, silence_check_s=QUIET, **worker))
               for _ in range(count)]
    spawned = time.time()
    try:
        start_all(workers, faust_env)
        pids, broker = [w.pid for w in workers], broker_pid(base)
        since = None
        if settle:
            wait_settled(workers, 180)
            spawned = time.time()  # start-up is then spawn -> settled, printed apart
            since = cpu_sample(pids, broker)  # workers that keep up are done before the watch starts
            n = asyncio.run(prefill(topics, load))
        watched = asyncio.run(watch_changelog(workers[0].settings, pids, broker,
                                              lambda: on_first(workers[0]) if on_first else None, since=since))
        with httpx.Client() as client:
            counts = [processed(client, w.url) for w in workers]
    finally:
        for w in workers:
            w.stop()
    first, last = watched.progress[0][0], watched.progress[-1][0]
    records = watched.n
    if not (load.gateway or records == n) or n != sum(counts):
        print(f"  ! {records:,} records to apply and {sum(counts):,.0f} events counted for {n:,} events sent")
    per_record = n / records  # a gateway record holds many events; progress is read in records
    watched.progress = [(t, round(k * per_record)) for t, k in watched.progress]
    watched.n = n
    rate, steady = watched.rate(), watched.rate(0.2, 0.9)
    print(f"  . {tag}{' ' + str(faust_env) if faust_env else ''}: {rate:,.0f} events/s first to "
          f"last write, steady {steady:,.0f}/s, {last - first:.1f} s, {len(watched.progress):,} twin writes")
    cpu = watched.cpu_per_s()
    stored = changelog_on_disk(base, workers[0].settings)
    return Drain(count, rate, steady, first - spawned, last - spawned, cpu[0], cpu[1], [c / n for c in counts],
                 asyncio.run(end_offsets(topics, topics.anomalies_topic)), stored / len(watched.progress),
                 n / (watched.cpu_s()[1] or math.inf))


def changelog_on_disk(base: Settings, worker: Settings) -> int:
    """Bytes of the worker's twins changelog in the segment files of the broker this run started (its
    data folder is under the run's state folder; 0 for a broker of someone else's): what the broker
    stores and would replicate, record batches as the worker's producer built and compressed them."""
    return sum(f.stat().st_size for f in Stack(base).kafka_data.glob(f"{worker.app_id}-twins-changelog-*/*.log"))


def wait_settled(workers: list[Worker], limit_s: float) -> float:
    """Wait until each worker holds partitions and none is rebalancing, three polls in a row."""
    started, calm = time.monotonic(), 0
    while calm < 3:
        health = [httpx.get(f"{w.url}/healthz", timeout=10).json() for w in workers]
        calm = calm + 1 if all(h["status"] == "ok" and h["partitions"] > 0 for h in health) else 0
        if time.monotonic() - started > limit_s:
            raise TimeoutError(f"group not settled in {limit_s:.0f} s: {health}")
        time.sleep(0.5)
    return time.monotonic() - started


async def end_offsets(settings: Settings, topic: str) -> int:
    consumer = AIOKafkaConsumer(**client_kwargs(settings))
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


async def watch_changelog(settings: Settings, pids: list[int | None], broker: int | None,
                          on_first: Callable[[], None], limit_s: float = 900.0,
                          since: tuple[float, float, float] | None = None) -> Watched:
    """Follow the twins changelog until every telemetry record sent so far is applied. CPU is sampled
    from the first write seen, or from `since` (a `cpu_sample` taken before the events were sent).

    A worker stores each twin changed at each checkpoint, with the offset of the newest
    telemetry record applied to it (`Twin.offset`): a partition is done when a twin
    holding its last offset is written. Progress is the sum over partitions of the
    offsets reached, stamped with the changelog record's timestamp (the worker's write)."""
    consumer = AIOKafkaConsumer(**client_kwargs(settings), enable_auto_commit=False)
    await consumer.start()
    telemetry = [TopicPartition(settings.telemetry_topic, p) for p in range(settings.partitions)]
    tps = [TopicPartition(f"{settings.app_id}-twins-changelog", p) for p in range(settings.partitions)]
    ends = {tp.partition: end for tp, end in (await consumer.end_offsets(telemetry)).items()}
    reached = {p: 0 for p in ends}  # records applied per partition (newest offset + 1)
    watched = Watched(sum(ends.values()), cpu=[since] if since else [])
    first = True
    deadline = time.monotonic() + limit_s
    try:
        while tps[0].topic not in await consumer.topics():  # Faust declares it as it starts
            if time.monotonic() > deadline:
                raise TimeoutError(f"no topic {tps[0].topic} after {limit_s:.0f} s")
            await asyncio.sleep(POLL_S)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while any(reached[p] < ends[p] for p in ends):
            for tp, messages in (await consumer.getmany(timeout_ms=int(POLL_S * 1000))).items():
                for m in messages:
                    twin = decode_twin(m.value)
                    reached[twin.partition] = max(reached[twin.partition], twin.offset + 1)
                    watched.progress.append((m.timestamp / 1000, sum(reached.values())))
            if watched.progress:
                if first:
                    on_first()
                    first = False
                watched.cpu.append(cpu_sample(pids, broker))
            if time.monotonic() > deadline:
                raise TimeoutError(f"{sum(reached.values())} of {watched.n} records applied in {limit_s:.0f} s")
    finally:
        await consumer.stop()
    return watched


@dataclass
class Watched:
    n: int
    """Telemetry records to apply."""
    progress: list[tuple[float, int]] = field(default_factory=list)
    """(changelog record timestamp, records applied by then)."""
    cpu: list[tuple[float, float, float]] = field(default_factory=list)
    """(monotonic, worker CPU s, broker CPU s) while the workers drained (settled: from before the
    events were sent, as workers that keep up are done by the time the watch starts)."""

    def rate(self, lo: float = 0.0, hi: float = 1.0) -> float:
        """Records/s between the writes that reached `lo` and `hi` of the records (0-1: first to last)."""
        def at(share: float) -> tuple[float, int]:
            return next((t, k) for t, k in self.progress if k >= max(share * self.n, 1))
        (t1, k1), (t2, k2) = at(lo), at(hi)
        return (k2 - k1) / ((t2 - t1) or 1e-9)

    def cpu_s(self) -> tuple[float, float, float]:
        """Wall, worker and broker CPU seconds from the first sample to the last."""
        (t1, w1, b1), (t2, w2, b2) = self.cpu[0], self.cpu[-1]
        return t2 - t1, w2 - w1, b2 - b1

    def cpu_per_s(self) -> tuple[float, float]:
        wall, worker, broker = self.cpu_s()
        return worker / (wall or 1.0), broker / (wall or 1.0)


def wire_bytes(load: Load, partitions: int) -> tuple[float, float]:
    """Record value bytes per event of one tick of `load` over `partitions`, as JSON records and as
    gateway records."""
    events = simulate(load.robots, 1, start_ts=load.start_ts).step()
    parts = list(range(partitions))
    return (sum(len(w[2]) for w in wire(events, parts)) / len(events),
            sum(len(w[2]) for w in wire(events, parts, gateway=True)) / len(events))


def median_drain(runs: list[Drain]) -> Drain:
    def m(get: Callable[[Drain], float]) -> float:
        return median([get(r) for r in runs])

    last = runs[-1]
    return Drain(last.workers, m(lambda r: r.rate), m(lambda r: r.steady), m(lambda r: r.startup_s), m(lambda r: r.total_s),
                 m(lambda r: r.worker_cpu), m(lambda r: r.broker_cpu), last.shares,
                 int(m(lambda r: r.anomalies)), m(lambda r: r.changelog_bytes), m(lambda r: r.per_cpu_s))


# -- profile -------------------------------------------------------------------------------------

@dataclass
class Profiler:
    out: Path
    seconds: float
    proc: subprocess.Popen[bytes] | None = None

    def attach(self, worker: Worker) -> None:
        spy = py_spy()
        assert spy is not None, "arguments() checks for py-spy when --profile is given"
        self.proc = subprocess.Popen(
            [str(spy), "record", "--pid", str(worker.pid), "-d", str(int(self.seconds)), "-r", "100",
             "--threads", "--native", "--format", "raw", "-o", str(self.out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait(self) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(timeout=self.seconds + 30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


INGEST_PARTS = (
    # ingest's batch step (the worker's own consumer, `ingest_reader`, calling `streams.worker.ingest`),
    # by the first of these functions found in the stack, outermost first
    ("Ingest.checkpoint", "ingest: checkpoints (twins_of, encode_twin, changelog write)"),
    ("Outbox.", "ingest: anomaly, command and dead-letter sends"),
    ("fold_log", "ingest: the fold (twin.batch_fold.fold_log)"),
    ("Batch.add", "ingest: per-record bookkeeping (Batch.add: KPIs, outcomes)"),
    ("Batch.count", "ingest: metrics, once per batch (Batch.count)"),
    ("_load_missing", "ingest: twins loaded from the table"),
)
INGEST_FILES = ("streams/worker/ingest.py", "streams/worker/ingest_reader.py")
AGENTS = {"take_anomalies": "anomaly intake (fleet.anomalies -> Alertmanager)", "site_incidents": "incidents agent",
          "look_for_silence": "timers", "judge_rollouts": "timers", "keep_alerts_alive": "timers"}
OUTSIDE = (
    # samples outside the agents, by the first of these found anywhere in the stack
    (("streams/worker/views.py", "streams/worker/metrics.py", "prometheus_client/"), "/metrics and other web views"),
    (("aiokafka/producer", "faust/transport/producer.py"), "Kafka producer (changelog records, anomalies)"),
    (("faust/transport/consumer.py", "aiokafka/consumer", "faust/transport/drivers/aiokafka.py"),
     "Kafka consumer (fetch, commit, Faust's consumer thread)"),
    (("aiokafka/",), "Kafka client, other"),
    (("faust/transport/conductor.py",), "Faust conductor (message -> stream queues)"),
    (("httpx/", "httpcore/", "h11/", "anyio/"), "HTTP client (alerts to Alertmanager)"),
    (("faust/tables/",), "Faust tables (outside the agent)"),
    (("aiohttp/", "faust/web/"), "web server"),
    (("faust/", "mode/"), "Faust other (monitor, timers, services)"),
)
GENERIC = ("asyncio/", "selectors.py", "threading.py", "mode/worker.py", "mode/threads.py", "mode/services.py",
           "streams/cli/main.py", "typer/", "click/", "streams/__main__.py", "<frozen", "runpy.py")


def frames_of(line: str) -> tuple[str, list[str], int]:
    """(thread, frames root first, samples) of one line of py-spy's raw output (--threads)."""
    stack, _, count = line.rpartition(" ")
    frames = stack.split(";")
    thread = frames.pop(0) if frames and frames[0].startswith("thread (") else "thread"
    return thread.split(": ", 1)[-1], frames, int(count)


def function(frame: str) -> str:
    return frame.split(" (")[0].rsplit(".", 1)[-1]


def classify(frames: list[str]) -> str:
    """Where a sample's time goes: in ingest's batch step by what it called, else by agent or component."""
    names = [f.split(" (")[0] for f in frames]
    if any(p in f for f in frames for p in INGEST_FILES):
        return next((part for name in names for key, part in INGEST_PARTS if key in name),
                    "ingest: the rest (fetch, records, offsets, commits)")
    agent = next((AGENTS[function(f)] for f in frames if function(f) in AGENTS), None)
    if agent is not None:
        return agent
    specific = [f for f in frames if not any(g in f for g in GENERIC)]
    for paths, name in OUTSIDE:
        if any(p in f for f in specific for p in paths):
            return name
    return "event loop (asyncio callbacks, select)" if not specific else "other"


@dataclass
class Profile:
    seconds: float
    busy: dict[str, float]
    """Per thread: samples / (seconds x rate): the share of wall time it was on a CPU (or runnable)."""
    parts: list[tuple[str, float]]
    """Share of the main thread's samples per component."""
    leaves: list[tuple[str, float]]
    """Share of the main thread's samples per Python function, by own time (native code it called included)."""
    gc: float
    """Share of the main thread's samples inside CPython's cyclic garbage collector (`gc_collect_main`)."""
    gc_fold: float
    """Share of the fold's samples (`fold_log`) inside the collector."""


GC_FRAME = "gc_collect_main"
MAIN = "MainThread"
"""The thread whose samples are classified: the event loop's, where ingest and the agents run. With
--native, py-spy counts a thread waiting in epoll as busy (Faust's consumer thread, mostly idle)."""


def summarise_profile(path: Path, seconds: float, rate: int = 100) -> Profile:
    by_part: Counter[str] = Counter()
    by_leaf: Counter[str] = Counter()
    by_thread: Counter[str] = Counter()
    gc, fold, gc_fold = 0, 0, 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        thread, frames, count = frames_of(line)
        by_thread[thread] += count
        if thread != MAIN:
            continue
        by_part[classify([f for f in frames if ".py:" in f])] += count  # native frames: their caller's
        in_gc, in_fold = any(GC_FRAME in f for f in frames), any(f.startswith("fold_log ") for f in frames)
        gc, fold, gc_fold = gc + in_gc * count, fold + in_fold * count, gc_fold + (in_gc and in_fold) * count
        leaf = next((f for f in reversed(frames) if ".py:" in f), "?")
        name, _, where = leaf.partition(" (")
        by_leaf[f"{name} ({where.rsplit('/', 1)[-1].split(':')[0]})"] += count
    total = sum(by_part.values()) or 1
    return Profile(seconds, {t: n / (seconds * rate) for t, n in by_thread.most_common()},
                   [(k, v / total) for k, v in by_part.most_common()],
                   [(k, v / total) for k, v in by_leaf.most_common(15)], gc / total, gc_fold / (fold or 1))


# -- (4) latency ---------------------------------------------------------------------------------

@dataclass
class Latency:
    offered: float
    """Events/s actually handed to the producer over the window."""
    sent: int
    seen: int
    updated: list[float] = field(default_factory=list)
    """Changelog record timestamp - event ts, seconds."""
    visible: list[float] = field(default_factory=list)
    """Arrival of that record at the reader - event ts, seconds."""
    last_update_s: float = 0.0
    """From the window's start to the last twin update seen."""
    folded: dict[float, float] = field(default_factory=dict)
    """The worker's `twin_processing_lag_seconds` over the window (broker receipt -> folded and served
    by GET /twins/{id}): records at or under each bucket's bound."""
    worker_cpu: float = 0.0
    """Worker CPU seconds per wall second over that time."""
    steps: dict[str, Buckets] = field(default_factory=dict)
    """The worker's `twin_step_seconds` over the window, by step."""
    window_s: float = 0.0
    """From the window's start to the last reading of the worker's histograms."""


class ChangelogReader:
    """Reads a worker's twins changelog from its end on; finds the first record holding each
    (robot, seq): a twin is stored once per micro-batch, so one record may apply several."""

    def __init__(self, settings: Settings) -> None:
        self.topic = f"{settings.app_id}-twins-changelog"
        self.consumer = AIOKafkaConsumer(**client_kwargs(settings), enable_auto_commit=False)
        self.partitions = settings.partitions
        self.pending: dict[str, dict[int, float]] = {}
        """Robot -> seq -> wall-clock instant it was sent."""
        self.result: Latency | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)
        for tp in tps:
            await self.consumer.position(tp)  # resolve "end" now, before anything is sent
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=100)
            now = time.time()
            for records in batch.values():
                for record in records:
                    twin = decode_twin(record.value)
                    waiting = self.pending.get(twin.robot_id, {})
                    for seq in [q for q in waiting if q <= twin.latest_seq]:
                        sent = waiting.pop(seq)
                        if self.result is not None:
                            self.result.updated.append(record.timestamp / 1000 - sent)
                            self.result.visible.append(now - sent)
                            self.result.seen += 1
                    if not waiting:
                        self.pending.pop(twin.robot_id, None)

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
        await self.consumer.stop()


class Pacer:
    """Sends each slice at once, per-partition batches like `KafkaSink` but with no linger (the
    sink's 20 ms would be the producer's latency, not the pipeline's) and without waiting for
    acks between slices (they are awaited at the end)."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.telemetry_topic
        self.producer = AIOKafkaProducer(**client_kwargs(settings), linger_ms=0, acks=1, max_batch_size=1 << 20)
        self.partitioner = DefaultPartitioner()
        self.partitions: list[int] = []
        self.acks: list[asyncio.Future[Any]] = []

    async def __aenter__(self) -> Pacer:
        await self.producer.start()
        self.partitions = sorted(await self.producer.partitions_for(self.topic))
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await asyncio.gather(*self.acks)
        finally:
            await self.producer.stop()

    async def send(self, events: list[Event]) -> None:
        batches: dict[int, Any] = {}
        for event in events:
            key = event.robot_id.encode()
            part = self.partitioner(key, self.partitions, self.partitions)
            batch = batches.get(part) or batches.setdefault(part, self.producer.create_batch())
            batch.append(key=key, value=ENCODE(event), timestamp=None)
        for part, batch in batches.items():
            self.acks.append(await self.producer.send_batch(batch, self.topic, partition=part))


async def offer(settings: Settings, reader: ChangelogReader, ticks: list[list[Event]], rate: float,
                wait_s: float, pid: int | None, scrape_s: float = 0.0) -> Latency:
    """Send `ticks` at `rate` events/s in 10 ms slices, each event timed now; wait for its twin.
    `scrape_s`: GET /metrics that often meanwhile, as Prometheus would (0: never)."""
    events = [e for tick in ticks for e in tick]
    per_slice = max(1, round(rate * SLICE_S))
    result = reader.result = Latency(0.0, 0, 0)
    url = f"http://127.0.0.1:{settings.web_port}"
    seen0 = await asyncio.to_thread(histograms, url)
    cpu0 = cpu_s(pid)
    scraping = asyncio.create_task(scrape_every(url, scrape_s)) if scrape_s else None
    async with Pacer(settings) as pacer:
        start = time.monotonic()
        for i, lo in enumerate(range(0, len(events), per_slice)):
            await asyncio.sleep(max(0.0, start + i * SLICE_S - time.monotonic()))
            now = time.time()
            batch = [msgspec.structs.replace(e, ts=now) for e in events[lo:lo + per_slice]]
            for e in batch:
                reader.pending.setdefault(e.robot_id, {})[e.seq] = now
            await pacer.send(batch)
            result.sent += len(batch)
        sent_s = time.monotonic() - start
    result.offered = result.sent / sent_s
    deadline = time.monotonic() + wait_s
    while reader.pending and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    result.last_update_s = time.monotonic() - start if not reader.pending else float("nan")
    result.worker_cpu = (cpu_s(pid) - cpu0) / (time.monotonic() - start)
    if scraping is not None:
        scraping.cancel()
    seen1 = await asyncio.to_thread(histograms, url)  # after the window: a scrape summarises every twin
    result.folded = seen1[("twin_processing_lag_seconds", "")].since(seen0.get(("twin_processing_lag_seconds", ""))).counts
    result.steps = {step: b.since(seen0.get((name, step))) for (name, step), b in seen1.items()
                    if name == "twin_step_seconds"}
    result.window_s = time.monotonic() - start
    return result


async def scrape_every(url: str, seconds: float) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        while True:
            await client.get(f"{url}/metrics")
            await asyncio.sleep(seconds)


@dataclass
class Buckets:
    """One series of a histogram: upper bound -> records at or under it, and the values' sum."""

    counts: dict[float, float] = field(default_factory=dict)
    total: float = 0.0

    def since(self, before: Buckets | None) -> Buckets:
        """What was observed after `before` was read."""
        if before is None:
            return self
        return Buckets({le: n - before.counts.get(le, 0.0) for le, n in self.counts.items()}, self.total - before.total)


def histograms(url: str) -> dict[tuple[str, str], Buckets]:
    """The worker's histograms, by (name, value of its label other than `le`, or '')."""
    out: dict[tuple[str, str], Buckets] = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=60).text):
        if family.type != "histogram":
            continue
        for s in family.samples:
            series = out.setdefault((family.name, next((v for k, v in s.labels.items() if k != "le"), "")), Buckets())
            if s.name.endswith("_bucket"):
                series.counts[float(s.labels["le"])] = s.value
            elif s.name.endswith("_sum"):
                series.total = s.value
    return out


def bucket_quantile(buckets: dict[float, float], q: float) -> float:
    """The smallest bucket bound holding a share `q` of the records (an upper bound of the quantile)."""
    total = buckets.get(math.inf, 0.0)
    return next((le for le, n in sorted(buckets.items()) if total and n >= q * total), math.nan)


async def wait_processed(url: str, n: float, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    with httpx.Client() as client:
        while processed(client, url) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not process {n} events in {limit_s} s")
            await asyncio.sleep(0.2)


def latency_runs(base: Settings, tmp: Path, rate: float, seconds: float, repeat: int,
                 wait_s: float, spy: Profiler | None = None, silence_check_s: float = QUIET,
                 scrape_s: float = 0.0) -> list[Latency]:
    """A fresh worker and topic; one warm-up report per robot, then `repeat` windows (`spy` profiles the first)."""
    run = uuid.uuid4().hex[:6]
    robots = int(rate)  # one report per robot per second
    settings = worker_settings(base, f"{base.app_id}-lat{robots}-{run}", tmp,
                               topic_prefix=f"{base.topic_prefix}lat{robots}-{run}.", silence_check_s=silence_check_s)
    asyncio.run(ensure_topics(settings))
    worker = Worker(settings)
    try:
        worker.start()
        return asyncio.run(_latency_windows(settings, worker, robots, seconds, repeat, wait_s, spy, scrape_s))
    finally:
        worker.stop()


async def _latency_windows(settings: Settings, worker: Worker, robots: int, seconds: float, repeat: int,
                           wait_s: float, spy: Profiler | None, scrape_s: float) -> list[Latency]:
    sim = simulate(robots, int(seconds * repeat) + 1, seed=5)
    warm = [msgspec.structs.replace(e, ts=time.time()) for e in sim.step()]
    await send_all(settings, warm)
    await wait_processed(worker.url, len(warm), 120)
    reader = ChangelogReader(settings)
    await reader.start()
    try:
        out = []
        for window in range(repeat):
            ticks = [sim.step() for _ in range(int(seconds))]
            if spy is not None and window == 0:
                spy.attach(worker)
            out.append(await offer(settings, reader, ticks, robots, wait_s, worker.pid, scrape_s))
            if spy is not None and window == 0:
                await asyncio.to_thread(spy.wait)
            reader.pending.clear()
            await asyncio.sleep(2)
        return out
    finally:
        await reader.stop()


# -- (5), (6) memory and recovery ----------------------------------------------------------------

async def read_changelog(settings: Settings) -> tuple[dict[str, bytes], dict[int, bytes]]:
    """(newest value per robot, newest record's value per partition) of the twins changelog."""
    latest: dict[str, bytes] = {}
    last: dict[int, bytes] = {}
    for m in await read_topic(settings, f"{settings.app_id}-twins-changelog"):
        latest[json.loads(m.key)] = last[m.partition] = m.value
    return latest, last


@dataclass
class MemoryPoint:
    robots: int
    rss_mib: float
    """1 s after the drain: the fold's growth just over, what it freed perhaps not yet returned."""
    stored_bytes: int
    drain_s: float
    settled_mib: float
    """`SETTLE_S` later: the worker's heap trimmed at least once since (`streams.worker.memory`)."""


SETTLE_S = TRIM_S + 2.0


def memory_and_recovery(base: Settings, tmp: Path, sizes: list[int], reports: int) -> None:
    run = uuid.uuid4().hex[:6]
    settings = worker_settings(base, f"{base.app_id}-mem-{run}", tmp,
                               topic_prefix=f"{base.topic_prefix}mem-{run}.", silence_check_s=QUIET)
    asyncio.run(ensure_topics(settings))
    sim = simulate(max(sizes), reports, seed=3)
    ticks = [sim.step() for _ in range(reports)]
    order = sim.roster.robot_ids
    worker = Worker(settings)
    try:
        t0 = time.monotonic()
        worker.start()
        empty_start_s = time.monotonic() - t0
        time.sleep(2.0)
        assert worker.pid is not None
        points = [MemoryPoint(0, rss_mib(worker.pid), 0, 0.0, rss_mib(worker.pid))]
        sent = 0
        for lo, hi in zip([0, *sizes], sizes):
            group = set(order[lo:hi])
            sent += asyncio.run(send_all(settings, [e for tick in ticks for e in tick if e.robot_id in group]))
            began = time.monotonic()
            asyncio.run(watch_changelog(settings, [worker.pid], None, lambda: None))
            drain_s = time.monotonic() - began
            time.sleep(1.0)
            rss = rss_mib(worker.pid)
            latest, _ = asyncio.run(read_changelog(settings))
            time.sleep(max(0.0, SETTLE_S - 1.0))
            points.append(MemoryPoint(len(latest), rss, sum(map(len, latest.values())), drain_s, rss_mib(worker.pid)))
        with httpx.Client() as client:
            seen = metric_sums(client, worker.url, ("twin_table_robots", "twin_table_bytes"))
        print_memory(points, seen)
        stop_s = worker.stop()
        recovery(settings, worker, empty_start_s, stop_s)
        reported_again(settings, worker, sim.step())
    finally:
        worker.stop()


def print_memory(points: list[MemoryPoint], seen: dict[str, float]) -> None:
    print("\n(5) memory: worker VmRSS and stored twins (newest changelog value per robot)")
    for p in points:
        per = f"{p.stored_bytes / p.robots:6.0f} B/robot stored" if p.robots else ""
        print(f"  {p.robots:>7,} robots  RSS {p.rss_mib:7.1f} MiB, {p.settled_mib:7.1f} settled  stored "
              f"{p.stored_bytes / 2**20:7.1f} MiB {per}  (drained in {p.drain_s:.0f} s)")
    for a, b in zip(points, points[1:]):
        delta = (b.rss_mib - a.rss_mib) * 2**20 / (b.robots - a.robots)
        settled = (b.settled_mib - a.settled_mib) * 2**20 / (b.robots - a.robots)
        print(f"  RSS per robot {a.robots:,} -> {b.robots:,}: {delta:,.0f} B, {settled:,.0f} B settled "
              f"({SETTLE_S:.0f} s later) (stored {(b.stored_bytes - a.stored_bytes) / (b.robots - a.robots):,.0f} B)")
    print(f"  worker's own view at the end: twin_table_robots {seen['twin_table_robots']:,.0f}, "
          f"twin_table_bytes {seen['twin_table_bytes'] / 2**20:.1f} MiB")


def recovery(settings: Settings, worker: Worker, empty_start_s: float, stop_s: float) -> None:
    """Start the stopped worker again; time until every partition's newest twin is served."""
    latest, last = asyncio.run(read_changelog(settings))
    sentinels = {p: decode_twin(v) for p, v in last.items()}
    records = asyncio.run(changelog_records(settings))
    headers = {"Authorization": f"Bearer {settings.api_token.get_secret_value()}"}  # type: ignore[union-attr]
    t0 = time.monotonic()
    worker.start()
    health_s = time.monotonic() - t0
    waiting = dict(sentinels)
    with httpx.Client(headers=headers) as client:
        while waiting:
            for p, twin in list(waiting.items()):
                r = client.get(f"{worker.url}/twins/{twin.robot_id}", timeout=10)
                if r.status_code == 200 and r.json()["seq"] == twin.seq and r.json()["ts"] == twin.ts:
                    del waiting[p]
            if time.monotonic() - t0 > 900:
                raise TimeoutError(f"partitions {sorted(waiting)} not recovered in 900 s")
            time.sleep(0.1)
    took = time.monotonic() - t0
    assert worker.pid is not None
    rss = rss_mib(worker.pid)
    with httpx.Client() as client:
        seen = metric_sums(client, worker.url, ("twin_table_robots",))["twin_table_robots"]
    net = took - empty_start_s
    print(f"\n(6) recovery: SIGTERM took {stop_s:.1f} s; restart with the same app id and state folder")
    print(f"  changelog: {records:,} records, {len(latest):,} robots; started with an empty table: "
          f"/healthz in {empty_start_s:.1f} s")
    print(f"  restart: /healthz in {health_s:.1f} s, newest twin of all {len(sentinels)} partitions served "
          f"in {took:.1f} s")
    print(f"  => {len(latest) / took:,.0f} keys/s ({records / took:,.0f} records/s) overall; "
          f"{len(latest) / net:,.0f} keys/s net of the empty start ({net:.1f} s)")
    print(f"  after recovery: twin_table_robots {seen:,.0f}, RSS {rss:.1f} MiB")


def reported_again(settings: Settings, worker: Worker, tick: list[Event]) -> None:
    """After the recovery, one more report of every robot: each is loaded from the table into the
    fold (and taken out of the table); the RSS once that is drained and settled."""
    asyncio.run(send_all(settings, tick))
    asyncio.run(watch_changelog(settings, [worker.pid], None, lambda: None))
    time.sleep(SETTLE_S)
    assert worker.pid is not None
    rss = rss_mib(worker.pid)
    with httpx.Client() as client:
        seen = metric_sums(client, worker.url, ("twin_table_robots",))["twin_table_robots"]
    print(f"  every robot reported once more: twin_table_robots {seen:,.0f}, RSS {rss:.1f} MiB settled")


async def changelog_records(settings: Settings) -> int:
    consumer = AIOKafkaConsumer(**client_kwargs(settings))
    await consumer.start()
    try:
        topic = f"{settings.app_id}-twins-changelog"
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        starts, ends = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        return sum(ends[tp] - starts[tp] for tp in tps)
    finally:
        await consumer.stop()


# -- the run -------------------------------------------------------------------------------------

def throughput(base: Settings, args: argparse.Namespace, tmp: Path) -> None:
    started = time.monotonic()
    ticks = args.events // args.robots
    load = Load(args.robots, ticks, round(time.time() - ticks, 3))
    n = asyncio.run(prefill(base, load))
    print(f"topic {base.telemetry_topic}: {n:,} events ({args.robots:,} robots x {n // args.robots} ticks, "
          f"{base.partitions} partitions), produced in {time.monotonic() - started:.1f} s")
    bare = bare_rate(base, n, args.repeat, None, decode=False)
    decoded = bare_rate(base, n, args.repeat, None, decode=True)
    print(f"\n(1) bare consumer (baseline)   {bare:>9,.0f} events/s   getmany, nothing decoded")
    print(f"(2) decode + validate          {decoded:>9,.0f} events/s   ratio to (1) {decoded / bare:.2f}")
    prefilled = median_drain([drain_workers(base, load, 1, tmp) for _ in range(args.repeat)])
    print(f"(3) full worker, pre-filled    {prefilled.rate:>9,.0f} events/s   ratio to (1) {prefilled.rate / bare:.3f}; "
          f"steady (20th-90th pct of writes) {prefilled.steady:,.0f}/s; start-up {prefilled.startup_s:.1f} s, "
          f"spawn to done {prefilled.total_s:.1f} s")
    print(f"      CPU per wall second during the drain: worker {prefilled.worker_cpu:.2f}, "
          f"broker {prefilled.broker_cpu:.2f}; {prefilled.anomalies:,} anomaly messages published per run; "
          f"twins changelog ({base.changelog_compression}) {prefilled.changelog_bytes:,.0f} B per twin on disk")
    if not args.skip_codec and base.changelog_compression != "none":
        plain = median_drain([drain_workers(base, load, 1, tmp, changelog_compression="none")
                              for _ in range(args.repeat)])
        print(f"(3z) the same, twins changelog uncompressed: {plain.rate:,.0f} events/s, (3) is x"
              f"{prefilled.rate / plain.rate:.2f} it; CPU per wall second: worker {plain.worker_cpu:.2f}, broker "
              f"{plain.broker_cpu:.2f}; {plain.changelog_bytes:,.0f} B per twin on disk, (3) "
              f"{plain.changelog_bytes / max(prefilled.changelog_bytes, 1):.1f}x fewer")
    storm = median_drain([drain_workers(base, replace(load, event_time=False), 1, tmp) for _ in range(args.repeat)])
    print(f"(3c) the same events stamped when produced (clocks up to {ticks} s behind the broker's: clock_skew open "
          f"on most robots): {storm.rate:,.0f} events/s, ratio to (1) {storm.rate / bare:.3f}, to (3) "
          f"{storm.rate / prefilled.rate:.2f}; {storm.anomalies:,} anomaly messages per run")
    if not args.skip_gateway:
        via = median_drain([drain_workers(base, replace(load, gateway=True), 1, tmp) for _ in range(args.repeat)])
        json_b, gw_b = wire_bytes(load, base.partitions)
        print(f"(3g) the same events as site gateways send them (one Arrow record per site and partition, "
              f"{json_b:,.0f} -> {gw_b:,.0f} bytes per event on the wire): {via.rate:,.0f} events/s, ratio to (3) "
              f"{via.rate / prefilled.rate:.2f}; steady {via.steady:,.0f}/s; CPU per wall second: worker "
              f"{via.worker_cpu:.2f}, broker {via.broker_cpu:.2f}")
    if base.checkpoint_s > 0:
        every = median_drain([drain_workers(base, load, 1, tmp, checkpoint_s=0.0) for _ in range(args.repeat)])
        print(f"(3b) the same, twins stored and offsets committed after every batch (checkpoint_s 0): "
              f"{every.rate:,.0f} events/s, ratio to (1) {every.rate / bare:.3f}; (3) is x{prefilled.rate / every.rate:.2f} it")
    scale: dict[int, Drain] = {}
    if not args.skip_workers:
        for count in (1, 2):
            scale[count] = median_drain([drain_workers(base, load, count, tmp, settle=True)
                                         for _ in range(args.repeat)])
        print("\nscale-out: the group settles first, then the same events are produced (~4 s) while it works")
        for d in scale.values():
            print(f"  {d.workers} worker{'s' if d.workers > 1 else ' '}  steady {d.steady:>7,.0f} events/s, first to last "
                  f"write {d.rate:>7,.0f}/s; spawn to settled {d.startup_s:.1f} s; CPU per wall second: workers "
                  f"{d.worker_cpu:.2f}, broker {d.broker_cpu:.2f}; shares (last run) "
                  f"{', '.join(f'{x:.2f}' for x in d.shares)}")
        print(f"  2 workers / 1 worker: {scale[2].steady / scale[1].steady:.2f} (steady), "
              f"{scale[2].rate / scale[1].rate:.2f} (first to last write)")
        per_cpu = scale[2].per_cpu_s / scale[1].per_cpu_s
        print(f"  events per worker CPU second: 1 worker {scale[1].per_cpu_s:,.0f}, 2 workers {scale[2].per_cpu_s:,.0f}"
              f" ({per_cpu:.2f}): given a core each, two workers would do {2 * per_cpu:.2f}x one given a core"
              f" (derived: throughput taken as proportional to the CPU a worker gets)")
        joined = drain_workers(base, load, 2, tmp)
        print(f"  2 workers started together on the pre-filled topic (one run): {joined.rate:,.0f} events/s first "
              f"to last write, spawn to done {joined.total_s:.1f} s, shares {', '.join(f'{x:.2f}' for x in joined.shares)}")
    if args.what_if:
        env = dict(kv.split("=", 1) for kv in args.what_if.split(","))
        what_if = median_drain([drain_workers(base, load, 1, tmp, faust_env=env) for _ in range(args.repeat)])
        print(f"\nwhat-if, 1 worker, pre-filled, Faust {args.what_if}: {what_if.rate:,.0f} events/s "
              f"(x{what_if.rate / prefilled.rate:.2f} the default), steady {what_if.steady:,.0f}/s, "
              f"CPU per wall second {what_if.worker_cpu:.2f}")
    sweep: dict[str, list[float]] = {}
    if not args.skip_sweep:
        sweep = {"bare": [bare_rate(base, n, args.repeat, r, False) for r in SWEEP],
                 "decode": [bare_rate(base, n, args.repeat, r, True) for r in SWEEP]}
        print("\ngetmany(max_records=...)   " + "".join(f"{r:>10,}" for r in SWEEP))
        print("  bare consumer            " + "".join(f"{v:>10,.0f}" for v in sweep["bare"]))
        print("  decode + validate        " + "".join(f"{v:>10,.0f}" for v in sweep["decode"]))
    batches: dict[int, float] = {}
    if not args.skip_batches:
        sizes = [int(b) for b in args.batches.split(",")]
        batches = {b: drain_workers(base, load, 1, tmp, batch_max=b).rate for b in sizes}
        print("\nworker micro-batch (FLEET_TWIN_BATCH_MAX), one run each:")
        print("  batch_max                " + "".join(f"{b:>10,}" for b in sizes))
        print("  full worker, events/s    " + "".join(f"{batches[b]:>10,.0f}" for b in sizes))
    if args.plot:
        plot(args.plot, bare, decoded, sweep, prefilled, scale, batches)
    if not args.skip_profile:
        profile(base, load, n, tmp, prefilled.rate)
    print(f"(throughput part took {time.monotonic() - started:.0f} s)")


def profile(base: Settings, load: Load, n: int, tmp: Path, rate: float) -> None:
    seconds = max(5.0, min(20.0, 0.7 * n / rate))
    spy = Profiler(tmp / "worker.raw", seconds)
    d = drain_workers(base, load, 1, tmp, on_first=spy.attach)
    spy.wait()
    print_profile(spy, f"draining (that run: {d.rate:,.0f} events/s")


def print_profile(spy: Profiler, what: str) -> None:
    prof = summarise_profile(spy.out, spy.seconds)
    print(f"\nprofile: py-spy record --threads --native -r 100 -f raw, {spy.seconds:.0f} s of one worker "
          f"{what}; raw stacks in {spy.out}, kept with --keep-temp)")
    print("  samples per wall second, by thread (an idle thread in epoll counts as busy under --native): "
          + ", ".join(f"{t} {b:.2f}" for t, b in prof.busy.items()))
    print("  the main thread's samples (the event loop: ingest, agents, web), by component:")
    for name, share in prof.parts:
        print(f"  {share:6.1%}  {name}")
    print(f"  garbage collection (CPython's {GC_FRAME}): {prof.gc:.1%} of the main thread's samples, "
          f"{prof.gc_fold:.1%} of the fold's")
    print("  top functions by own time:")
    for name, share in prof.leaves[:12]:
        print(f"  {share:6.1%}  {name}")


def plot(path: Path, bare: float, decoded: float, sweep: dict[str, list[float]], prefilled: Drain,
         scale: dict[int, Drain], batches: dict[int, float]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.4), gridspec_kw={"width_ratios": [3, 2]})
    if sweep:
        left.plot(SWEEP, sweep["bare"], "o-", label="bare consumer (getmany, no decode)")
        left.plot(SWEEP, sweep["decode"], "s-", label="decode + validate (twin.validate.parse)")
    if batches:
        left.plot(list(batches), list(batches.values()), "^-", color="tab:red",
                  label="full worker (micro-batch: FLEET_TWIN_BATCH_MAX)")
    else:
        left.axhline(prefilled.rate, color="tab:red", ls="--", label="full worker")
    left.set(xscale="log", yscale="log", xlabel="records per batch (getmany max_records / worker batch_max)",
             ylabel="events/s",
             title="One consumer process vs batch size")
    left.legend(fontsize=8)
    left.grid(alpha=0.3, which="both")
    names = ["bare\nconsumer", "decode +\nvalidate", "1 worker\npre-filled"]
    values = [bare, decoded, prefilled.rate]
    for count, d in scale.items():
        names.append(f"{count} worker{'s' if count > 1 else ''}\nsteady")
        values.append(d.steady)
    bars = right.bar(names, values, color=["tab:blue", "tab:orange"] + ["tab:red"] * (len(values) - 2))
    right.bar_label(bars, labels=[f"{v:,.0f}" for v in values], fontsize=8)
    right.set(yscale="log", ylabel="events/s (log)", title="Same events, same run, 2 shared cores")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


def print_steps(runs: list[Latency]) -> None:
    """Where the worker's event loop went in the first window: each step of ingest's time, how much of
    the window it held, its slowest (bucket bounds), and how often it held the loop past 100 ms."""
    run = runs[0]
    print(f"  ingest's steps in the first window ({run.window_s:.0f} s; twin_step_seconds):")
    for step, b in sorted(run.steps.items(), key=lambda kv: -kv[1].total):
        n = b.counts.get(math.inf, 0.0)
        if not n:
            continue
        over = n - b.counts.get(0.1, 0.0)
        print(f"    {step:<14} {n:8,.0f} x  {b.total:6.2f} s ({b.total / run.window_s:5.1%} of the window)  "
              f"mean {b.total / n * 1000:7.2f} ms  p99 <= {bucket_quantile(b.counts, 0.99) * 1000:6.1f} ms  "
              f"over 100 ms {over:,.0f}")


def latency(base: Settings, args: argparse.Namespace, tmp: Path) -> None:
    started = time.monotonic()
    levels = [(float(r), args.seconds, 300.0) for r in args.rates.split(",") if r]
    for rate, seconds, wait in levels + [(args.high_rate, args.high_seconds, 600.0)]:
        if not rate:
            continue
        spy = Profiler(tmp / f"worker-{rate:.0f}.raw", seconds) if rate == args.profile_rate else None
        runs = latency_runs(base, tmp, rate, seconds, args.repeat, wait, spy,
                            args.silence_check_s or QUIET, args.scrape_s)
        print(f"\n(4) latency at {rate:,.0f} events/s offered for {seconds:.0f} s, {len(runs)} windows "
              f"(median over windows): offered {median([r.offered for r in runs]):,.0f}/s, "
              f"twins seen {sum(r.seen for r in runs):,} of {sum(r.sent for r in runs):,}")
        delays: tuple[tuple[str, Callable[[Latency], list[float]]], ...] = (
            ("produce -> twin updated", lambda r: r.updated), ("produce -> visible to a reader", lambda r: r.visible))
        for label, get in delays:
            qs = [median([pct(get(r), q) * 1000 for r in runs]) for q in (0.5, 0.95, 0.99)]
            top = max(max(get(r), default=float("nan")) for r in runs) * 1000
            print(f"  {label:<32} p50 {qs[0]:8.1f} ms  p95 {qs[1]:8.1f} ms  p99 {qs[2]:8.1f} ms  max {top:8.1f} ms")
        folded = [r.folded for r in runs if r.folded.get(math.inf)]
        if folded:
            within = median([f.get(0.1, 0.0) / f[math.inf] for f in folded])
            print(f"  broker -> folded and served (the worker's twin_processing_lag_seconds): p99 <= "
                  f"{median([bucket_quantile(f, 0.99) for f in folded]) * 1000:,.0f} ms (bucket bound), "
                  f"{within:.1%} within 100 ms")
        done = median([r.sent / r.last_update_s for r in runs])
        print(f"  all twins updated within {median([r.last_update_s for r in runs]):.1f} s of the window's "
              f"start ({seconds:.0f} s of sending): {done:,.0f} events/s processed; worker CPU per wall second "
              f"{median([r.worker_cpu for r in runs]):.2f}")
        print_steps(runs)
        if spy is not None:
            print_profile(spy, f"at {rate:,.0f} events/s offered, its first window (worker CPU per wall second "
                               f"{runs[0].worker_cpu:.2f}")
    print(f"(latency part took {time.monotonic() - started:.0f} s)")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """--help: the module's description as written, and each option's default where it has one
    (as argparse.ArgumentDefaultsHelpFormatter does, without "default: None" and "False")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, "", argparse.SUPPRESS) and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


QUICK = {"events": 40_000, "robots": 1_000, "repeat": 1, "rates": "1000,4000", "seconds": 10.0,
         "high_rate": 0.0, "skip_sweep": True, "skip_batches": True, "skip_workers": True, "skip_memory": True,
         "skip_gateway": True, "skip_codec": True}
"""--quick: (1) to (4) once, with less of everything: minutes, where the full run takes the better part of an hour."""


def arguments() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    ap.add_argument("--events", type=int, default=200_000, help="events pre-filled for (1) to (3)")
    ap.add_argument("--robots", type=int, default=2_000, help="robots those events come from")
    ap.add_argument("--repeat", type=int, default=3, help="repetitions of each figure; the median is reported")
    ap.add_argument("--rates", default="1000,2000,4000", help="offered loads (events/s) for (4), each --seconds")
    ap.add_argument("--batches", default=BATCHES, help="worker micro-batch sizes (FLEET_TWIN_BATCH_MAX) for the batches part")
    ap.add_argument("--seconds", type=float, default=30, help="seconds of sending at each of --rates")
    ap.add_argument("--high-rate", type=float, default=20_000, help="one more load in (4), events/s; 0 skips it")
    ap.add_argument("--high-seconds", type=float, default=10, help="seconds of sending at --high-rate")
    ap.add_argument("--checkpoint-s", type=float, default=None,
                    help="the workers' FLEET_TWIN_CHECKPOINT_S (default: the worker's); (4) measures to the "
                         "changelog write, so it includes the wait for a checkpoint")
    ap.add_argument("--memory-robots", default="10000,100000", help="fleet sizes for (5)")
    ap.add_argument("--reports", type=int, default=3, help="reports per robot in (5)")
    ap.add_argument("--what-if", default="",
                    help="Faust settings (KEY=VALUE,...) for one more 1-worker drain; '' skips it")
    ap.add_argument("--plot", type=lambda v: Path(v) if v else None, default=None,
                    help="where to write the PNG (docs/img/throughput.png to update the docs' figure); "
                         "default: throughput-<run>.png in the system's temporary folder")
    ap.add_argument("--profile", action="store_true",
                    help="profile one more worker while it drains (needs py-spy: pip install py-spy)")
    ap.add_argument("--profile-rate", type=float, default=0.0,
                    help="profile the worker over the first window of this rate of (4) (one of --rates or "
                         "--high-rate; needs py-spy); 0: none")
    ap.add_argument("--scrape-s", type=float, default=0.0,
                    help="in (4), GET the worker's /metrics this often, as Prometheus would (0: never)")
    ap.add_argument("--silence-check-s", type=float, default=0.0,
                    help="in (4), the worker's FLEET_TWIN_SILENCE_CHECK_S (0: an hour, i.e. off)")
    ap.add_argument("--keep-temp", action="store_true",
                    help="keep the temporary folder (worker state, a broker started here, raw profile)")
    ap.add_argument("--quick", action="store_true",
                    help="a short run: " + " ".join(f"--{k.replace('_', '-')}" + ("" if v is True else f" {v:g}"
                                                    if isinstance(v, float) else f" {v}") for k, v in QUICK.items()))
    for part in ("throughput", "sweep", "batches", "workers", "latency", "memory", "gateway", "codec"):
        ap.add_argument(f"--skip-{part}", action="store_true", help=f"leave out the {part} part")
    args = ap.parse_args()
    if args.quick:
        vars(args).update(QUICK)
    args.skip_profile = not args.profile
    if (args.profile or args.profile_rate) and py_spy() is None:  # say so now, not after ten minutes of (1)-(3)
        ap.error("--profile and --profile-rate need py-spy (pip install py-spy) beside this Python or on PATH")
    return args


def py_spy() -> Path | None:
    """py-spy beside this interpreter (a venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    on_path = shutil.which("py-spy")
    return beside if beside.exists() else Path(on_path) if on_path else None


async def delete_topics(settings: Settings, prefix: str) -> int:
    """Delete the run's topics from a broker this benchmark did not start (theirs stay otherwise)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if mine:
            await admin.delete_topics(mine)
        return len(mine)
    finally:
        await admin.close()


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # a TextIOWrapper; typeshed says TextIO
    args = arguments()
    run = uuid.uuid4().hex[:8]
    if args.plot is None:
        args.plot = Path(tempfile.gettempdir()) / f"throughput-{run}.png"
    tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    try:
        bench(args, run, tmp)
    finally:  # gigabytes when the broker was started here: never left behind, not even on an error
        if args.keep_temp:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def bench(args: argparse.Namespace, run: str, tmp: Path) -> None:
    sink = AlertSink()
    base = Settings(topic_prefix=f"bench-pipe-{run}.", app_id=f"bench-pipe-{run}", state_dir=tmp / "stack",
                    api_token=SecretStr(secrets.token_urlsafe(32)), alertmanager_address=sink.url)
    if args.checkpoint_s is not None:
        base = base.model_copy(update={"checkpoint_s": args.checkpoint_s})
    print(f"pipeline throughput, run {run}: {machine()}")
    print(f"workers' checkpoint interval (FLEET_TWIN_CHECKPOINT_S): {base.checkpoint_s:g} s")
    print(f"code: {code_version()}")
    stack = Stack(base)
    started_kafka = stack.start_kafka()
    try:
        if not args.skip_throughput:
            throughput(base, args, tmp)
        if not args.skip_latency:
            latency(base, args, tmp)
        if not args.skip_memory:
            memory_and_recovery(base, tmp, [int(s) for s in args.memory_robots.split(",")], args.reports)
    finally:
        if started_kafka:
            stack.stop_kafka()
        else:
            print(f"deleted the run's {asyncio.run(delete_topics(base, f'bench-pipe-{run}'))} topics")
        sink.server.shutdown()
    print(f"load average at the end {os.getloadavg()[0]:.2f}; alerts posted to the stand-in Alertmanager: "
          f"{sink.alerts:,}")


if __name__ == "__main__":
    main()

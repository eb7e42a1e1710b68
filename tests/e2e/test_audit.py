"""`fleet-twin audit` against the real broker: a small log of robots on two versions, desired
changes and gate looks is published to topics of the test's own, the command runs as a user
runs it, and its Parquet figures and its page are checked against what was published.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import msgspec
import polars as pl
import pytest
from aiokafka import AIOKafkaProducer

from streams.local.stack import settings_env
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.support.net import free_port
from twin import audit
from twin.desired import DesiredChange, Selector, change_key, encode_change
from twin.fleet import Fleet
from twin.plan import GateRecord
from twin.schema import encode
from twin.sim import FleetSim, Scenario

NEW, OLD = "policy-2.5.0", "policy-2.4.0"
TICKS = 600
"""Reports per robot, one a second: 599 working seconds each."""
ESTOP_EVERY = 150
REASON = "canary of 2.5.0 <ticket SAFE-42> & sign-off by QA"
START = time.time() - 1200


@pytest.fixture(scope="module")
def own(settings: Settings, broker: str) -> Settings:
    run = uuid.uuid4().hex[:6]
    mine = settings.model_copy(update={"topic_prefix": f"{settings.topic_prefix}audit-{run}.",
                                       "app_id": f"{settings.app_id}-audit-{run}"})
    asyncio.run(ensure_topics(mine))
    return mine


@pytest.fixture(scope="module")
def published(own: Settings, fleet: Fleet) -> dict[str, str]:
    """The log: 4 robots working (2 on each version, e-stops only on the new one), two desired changes
    and gate looks of two plans. Returns each robot's version."""
    return asyncio.run(_publish(own, fleet))


async def _publish(s: Settings, fleet: Fleet) -> dict[str, str]:
    sim = FleetSim(fleet, Scenario(name="audit", robots=4, rate_hz=1.0), seed=5, start_ts=START)
    versions = {rid: NEW if i % 2 == 0 else OLD for i, rid in enumerate(sim.roster.robot_ids)}
    producer = AIOKafkaProducer(bootstrap_servers=s.bootstrap, linger_ms=20, acks="all")
    await producer.start()
    sent: list[asyncio.Future[object]] = []

    async def send(topic: str, key: bytes, value: bytes, ts: float) -> None:
        sent.append(await producer.send(topic, value, key=key, timestamp_ms=int(ts * 1000)))

    try:
        canary = DesiredChange(change_id=uuid.uuid4().hex, ts=START + 10, principal="alice", reason=REASON,
                               selector=Selector(share=0.5), field="ai_model", value=NEW, plan="p-audit", wave=0)
        other = DesiredChange(change_id=uuid.uuid4().hex, ts=START + 20, principal="bob", reason="unrelated",
                              selector=Selector(sector="mining"), field="ai_model", value="policy-2.3.1")
        for change in (canary, other):
            await send(s.desired_topic, change_key(change), encode_change(change), change.ts)
        for tick in range(TICKS):
            for e in sim.step():
                codes = ("E-STOP",) if versions[e.robot_id] == NEW and tick % ESTOP_EVERY == ESTOP_EVERY - 1 else ()
                e = msgspec.structs.replace(e, mode="working", ai_model_version=versions[e.robot_id], codes=codes)
                await send(s.telemetry_topic, e.robot_id.encode(), encode(e), e.ts + 0.05)
        looks = [GateRecord(plan="p-audit", wave=0, ts=START + 300, decision="continue", statistic=0.4,
                            upper=2.94, lower=-2.25, share=0.5),
                 GateRecord(plan="p-audit", wave=0, ts=START + 590, decision="halt", statistic=3.1, upper=2.94,
                            lower=-2.25, status="halted", share=0.5, evidence={"estop": 8}),
                 GateRecord(plan="p-other", wave=1, ts=START + 400, decision="advance", statistic=-2.5,
                            upper=2.94, lower=-2.25)]
        for look in looks:
            await send(s.rollouts_topic, look.plan.encode(), msgspec.json.encode(look), look.ts)
        await send(s.rollouts_topic, b"p-audit", b"{not a gate record", START + 600)
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return versions


def run_audit(s: Settings, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams", "audit", "--model-version", NEW, "--from", str(START - 60),
         "--out", str(out), "--no-progress", *extra],
        env={**os.environ, **settings_env(s)}, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def audited(own: Settings, published: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("audit")
    result = run_audit(own, out)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "report: " in result.stdout and "2 robots" in result.stdout
    return out


def test_the_robots_that_ran_the_version_and_their_operating_hours(audited: Path, published: dict[str, str]) -> None:
    robots = pl.read_parquet(audited / "robots.parquet")
    on_new = robots.filter(pl.col("version") == NEW).sort("robot_id")
    assert on_new["robot_id"].to_list() == sorted(r for r, v in published.items() if v == NEW)
    assert sorted(robots.filter(pl.col("version") == OLD)["robot_id"]) == sorted(
        r for r, v in published.items() if v == OLD)
    assert on_new["operating_h"].to_list() == pytest.approx([(TICKS - 1) / 3600] * 2)
    assert on_new["estop"].to_list() == [TICKS // ESTOP_EVERY] * 2
    assert (on_new["last_ts"] - on_new["first_ts"]).to_list() == pytest.approx([TICKS - 1] * 2)
    assert on_new["first_ts"].to_list() == pytest.approx([START] * 2, abs=1.0)


def test_rates_per_1000_hours_with_exact_intervals_against_the_predecessor(audited: Path) -> None:
    rates = pl.read_parquet(audited / "rates.parquet").filter(pl.col("scope") == "all")
    hours = 2 * (TICKS - 1) / 3600
    new = rates.filter((pl.col("version") == NEW) & (pl.col("kind") == "estop")).row(0, named=True)
    events = 2 * (TICKS // ESTOP_EVERY)
    assert new["events"] == events and new["operating_h"] == pytest.approx(hours)
    assert new["rate_per_1000h"] == pytest.approx(events / hours * 1000)
    # 8 events: exact 95% interval [3.4538, 15.7632] (Garwood), per 1,000 h of this exposure
    assert (new["lower_95"], new["upper_95"]) == pytest.approx((3.4538 * 1000 / hours, 15.7632 * 1000 / hours),
                                                              rel=1e-4)
    old = rates.filter((pl.col("version") == OLD) & (pl.col("kind") == "estop")).row(0, named=True)
    assert old["events"] == 0 and old["rate_per_1000h"] == 0
    assert old["upper_95"] == pytest.approx(3.688879 * 1000 / hours, rel=1e-5)  # nothing seen: the rule of three
    ratio = pl.read_parquet(audited / "comparison.parquet").filter(
        (pl.col("scope") == "all") & (pl.col("kind") == "estop")).row(0, named=True)
    p = 0.025 ** (1 / events)  # every e-stop on the new version: Clopper-Pearson's lower bound of the share
    assert ratio["ratio"] == ratio["upper_95"] == float("inf") and ratio["lower_95"] == pytest.approx(p / (1 - p))
    meta = json.loads((audited / "audit.json").read_text())
    assert meta["predecessor"] == OLD and meta["version"] == NEW
    assert audit.poisson_interval(events)[0] == pytest.approx(3.4538, abs=1e-4)


def test_the_changes_that_touched_it_and_its_plans_gate_decisions(audited: Path) -> None:
    changes = pl.read_parquet(audited / "changes.parquet")
    assert changes.select("principal", "reason", "selector", "value", "plan", "how").rows() == [
        ("alice", REASON, "share=0.5", NEW, "p-audit", "sets it")]
    gates = pl.read_parquet(audited / "gates.parquet")
    assert gates.select("plan", "decision", "status").rows() == [("p-audit", "continue", "running"),
                                                                 ("p-audit", "halt", "halted")]
    assert json.loads(gates["evidence"][1]) == {"estop": 8}
    bad = json.loads((audited / "audit.json").read_text())["undecodable"]
    assert len(bad) == 1 and "rollouts" in bad[0]  # said, not dropped silently


def test_the_page_is_self_contained_and_names_who_and_why(audited: Path) -> None:
    page = (audited / "audit.html").read_text()
    assert "http://" not in page and "https://" not in page and "url(" not in page
    assert "<script" not in page.lower() and "<link" not in page.lower()
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<b>alice</b>" in page and "canary of 2.5.0 &lt;ticket SAFE-42&gt; &amp; sign-off by QA" in page
    assert "<b>halt</b>" in page and "unrelated" not in page and "p-other" not in page
    assert f"fleet-twin audit --model-version {NEW}" in page
    assert "did not decode" in page


def test_the_archive_gives_the_same_figures(own: Settings, audited: Path, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    archived = subprocess.run([sys.executable, "-m", "streams", "archive", "--once", "--out", str(root)],
                              env={**os.environ, **settings_env(own)}, capture_output=True, text=True, timeout=300)
    assert archived.returncode == 0, archived.stdout + archived.stderr
    result = run_audit(own, tmp_path / "from-archive", "--source", str(root))
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("robots.parquet", "rates.parquet", "comparison.parquet", "changes.parquet", "gates.parquet"):
        assert pl.read_parquet(tmp_path / "from-archive" / name).equals(pl.read_parquet(audited / name)), name


def test_an_unknown_version_is_a_clear_error(own: Settings, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "streams", "audit", "--model-version", "policy-9.9.9", "--out", str(tmp_path),
         "--no-progress"], env={**os.environ, **settings_env(own)}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "policy-9.9.9" in result.stderr and "release registry" in result.stderr
    assert not (tmp_path / "audit.html").exists()


def test_no_broker_is_a_clear_error(own: Settings, tmp_path: Path) -> None:
    nowhere = own.model_copy(update={"kafka_port": free_port()})
    result = subprocess.run(
        [sys.executable, "-m", "streams", "audit", "--model-version", NEW, "--out", str(tmp_path), "--no-progress"],
        env={**os.environ, **settings_env(nowhere)}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and f"no Kafka broker at {nowhere.bootstrap}" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout

"""What the worker's periodic passes over its fleet cost per robot: from the fold's columns against twins.

Three things a worker does over every robot it holds, whatever the event rate: the silence timer
(every `FLEET_TWIN_SILENCE_CHECK_S`, 5 s) asks which robots went quiet, and a Prometheus scrape
summarises the fleet gauges and the desired-state gauges (each summary reused for at least 5 s).
Before, each decoded every twin of the table (the baseline here; the gauges also built and encoded
the twins changed since the last checkpoint first, which the baseline leaves out: it is the cheapest
case of the old way). Now:

* silence: `twin.batch_silence.quiet_robots` over the columns, against `fleet_fold.silence_check_due`
  of every decoded twin; asked at `--instants` instants from the newest record on;
* fleet gauges: `twin.batch_summary.summarize_fold`, against `summary.summarize_fleet` of every
  decoded twin;
* desired-state gauges: `twin.desired_summary.summarize_desired_fold` over the columns, against
  `summarize_desired` of every decoded twin (and, as the tenth session left it, of the fold's twins
  without their signals, `batch_reduce.to_twins(signals=False)`), with a rollout wave for a tenth
  of one model's robots and one sector's firmware pinned; each robot's `robot_share` hashed once
  beforehand (the worker's `Shares` cache), the hashing timed on its own;
* the commands a desired change sends (`twin.desired.commands_on_change`): the wave added to the
  pinned sector, over the twins `twin.desired.reachable` leaves (decoded from the table, as the
  worker's desired reader does), against every twin decoded.

Fold: bench/fold_batch.py's log (the chaos scenario at `--robots` robots for `--seconds` seconds,
silence checks for 2% of them every 5 s), folded through `batch_fold.fold_log`; the table is every
robot's `encode_twin` bytes. Each pair's answers are checked equal (the run stops with an error
otherwise; the fleet summary's float sums to 1e-9 relative). Process CPU time per robot and its
ratio. The fold itself is not timed.

    .venv/bin/python bench/fleet_scans.py [--robots 10000] [--seconds 20] [--instants 5]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fold_batch  # noqa: E402
from streams.seeds import read_detectors, read_fleet  # noqa: E402
from twin import batch_fold as bf  # noqa: E402
from twin.batch_reduce import to_twins  # noqa: E402
from twin.batch_silence import quiet_robots  # noqa: E402
from twin.batch_summary import summarize_fold  # noqa: E402
from twin.desired import DesiredChange, DesiredRules, Selector, add_change, commands_on_change, reachable  # noqa: E402
from twin.desired_summary import Shares, summarize_desired, summarize_desired_fold  # noqa: E402
from twin.fleet_fold import Rules, silence_check_due  # noqa: E402
from twin.state import decode_twin, encode_twin  # noqa: E402
from twin.summary import FleetSummary, summarize_fleet  # noqa: E402

BATCH = 4000
PARTITIONS = set(range(8))


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.process_time()
    out = fn()
    return out, time.process_time() - t0


def same_summary(a: FleetSummary, b: FleetSummary) -> bool:
    close = all(math.isclose(getattr(a.signals[k], f), getattr(b.signals[k], f), rel_tol=1e-9, abs_tol=1e-9)
                for k in b.signals for f in ("band_sum", "value_sum"))
    counts = all((a.signals[k].buckets, a.signals[k].count) == (b.signals[k].buckets, b.signals[k].count)
                 for k in b.signals)
    versions = all((a.versions[k].robots, a.versions[k].anomalous, a.versions[k].latency_n)
                   == (v.robots, v.anomalous, v.latency_n) for k, v in b.versions.items())
    return ((a.robots, a.offline, a.anomalies) == (b.robots, b.offline, b.anomalies)
            and a.signals.keys() == b.signals.keys() and a.versions.keys() == b.versions.keys()
            and close and counts and versions)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--robots", type=int, default=10_000)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--instants", type=int, default=5)
    a = ap.parse_args()
    rules = Rules(read_fleet(fold_batch.SEEDS), read_detectors(fold_batch.SEEDS))
    records = fold_batch.log(rules, a.robots, a.seconds, a.robots // 50)  # checks: some robots flagged silent
    state = bf.FoldState(rules)
    for at in range(0, len(records), BATCH):
        bf.fold_log(state, rules, records[at:at + BATCH])
    ids = state.red.robot_ids
    table = [encode_twin(t) for t in bf.twins_of(state, ids) if t is not None]
    n, newest, oldest = len(table), max(r.timestamp for r in records), min(r.timestamp for r in records)
    print(f"{n:,} robots, {len(records):,} records; CPU time per robot, decoding every twin (the baseline) "
          "against the fold's columns")

    def decoded() -> list[Any]:
        return [decode_twin(raw) for raw in table]

    old = new = 0.0
    for k in range(a.instants):
        now = newest + 30.0 * k / max(a.instants - 1, 1)  # from nobody quiet to everyone
        want, t_old = timed(lambda: [t.robot_id for t in decoded()
                                     if t.partition in PARTITIONS and silence_check_due(t, now, rules.config)])
        got, t_new = timed(lambda: quiet_robots(state, now, rules.config, PARTITIONS))
        if sorted(got) != sorted(want):
            raise SystemExit(f"silence: MISMATCH at now = newest + {now - newest:.1f} s")
        old, new = old + t_old, new + t_new
    report("silence checks", old / a.instants / n, new / a.instants / n)

    want_fleet, t_old = timed(lambda: summarize_fleet(decoded(), rules.fleet))
    got_fleet, t_new = timed(lambda: summarize_fold(state, rules.fleet))
    if not same_summary(got_fleet, want_fleet):
        raise SystemExit("fleet summary: MISMATCH")
    report("fleet gauges' summary", t_old / n, t_new / n)

    first = decode_twin(table[0])
    versions = rules.fleet.models[first.model].ai_model_versions
    wave = DesiredChange(change_id="bench", ts=oldest, principal="bench", reason="a tenth of the fleet",
                         selector=Selector(model=first.model, share=0.1, version=first.ai_model_version),
                         field="ai_model", value=versions[-1], plan="bench-plan", wave=0)
    pinned = DesiredChange(change_id="pin", ts=oldest, principal="bench", reason="one sector pinned",
                           selector=Selector(sector=first.sector), field="firmware", value=first.firmware)
    desired = add_change(add_change(DesiredRules(), wave), pinned)
    want_desired, t_old = timed(lambda: summarize_desired(decoded(), desired))
    shares = Shares()
    _, t_hash = timed(lambda: shares(state.red))
    got_desired, t_new = timed(lambda: summarize_desired_fold(state.red, desired, shares(state.red)))
    _, t_tenth = timed(lambda: summarize_desired(to_twins(state.red, ids, signals=False), desired))
    if got_desired != want_desired or not sum(want_desired.robots.values()):
        raise SystemExit("desired summary: MISMATCH (or no robot desired)")
    report("desired-state gauges' summary", t_old / n, t_new / n)
    report("  (twins without signals)", t_old / n, t_tenth / n)
    print(f"  robot_share, once per robot:    {t_hash / n * 1e6:8.2f} us/robot")

    keyed = dict(zip(ids, table))
    only_pinned = add_change(DesiredRules(), pinned)

    def commands(pick: Callable[[str], bool] | None) -> list[Any]:
        twins = [decode_twin(raw) for robot, raw in keyed.items() if pick is None or pick(robot)]
        return commands_on_change(only_pinned, desired, twins, newest)

    want_commands, t_old = timed(lambda: commands(None))
    got_commands, t_new = timed(lambda: commands(reachable(only_pinned, desired)))
    if got_commands != want_commands or not want_commands:
        raise SystemExit("commands on a desired change: MISMATCH (or none)")
    report("commands of a 10% wave", t_old / n, t_new / n)


def report(what: str, old: float, new: float) -> None:
    print(f"  {what:<31} {old * 1e6:8.2f} us/robot -> {new * 1e6:7.3f} us/robot   ratio {old / new:6.1f}x")


if __name__ == "__main__":
    main()

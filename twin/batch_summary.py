"""The fleet gauges' summary of a fold, read from its columns.

A worker's fleet gauges (`streams.worker.metrics.FleetCollector`) summarise
its twins at scrape time. Built as twins (`twins_of` for the robots changed
since the last checkpoint, every other one decoded from the table) and passed
to `twin.summary.summarize_fleet`, that costs ~80 µs per robot, on the event
loop: at 10,000 robots ingest stood still for most of a second at each
summary. Here the same summary is a few group-bys over the reducer's slot
columns and signal blocks, and a walk over the open anomalies only.

`summarize_fold(state)` is `summarize_fleet` of the fold's twins, counts
exact; its sums of floats (band positions, values, latencies) are the same
numbers added in another order, equal up to rounding (they are gauges, no
state). tests/unit/test_batch_summary.py holds the two equal on chaos folds.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from twin.batch_fold import FoldState
from twin.batch_reduce import ReduceState
from twin.detect.watch import Open
from twin.fleet import Fleet
from twin.schema import MODES
from twin.summary import BAND_BUCKETS, Distribution, FleetSummary, VersionSummary, kind_of

Array = np.ndarray
SILENCE = "silence"
INFERENCE = "inference_ms"
_BOUNDS = np.array(BAND_BUCKETS)


def summarize_fold(state: FoldState, fleet: Fleet) -> FleetSummary:
    """`summarize_fleet` of every twin the fold holds, without building one."""
    red, out = state.red, FleetSummary()
    n = red.robots
    if not n:
        return out
    col = {k: red.cols[k][:n] for k in ("sector", "site", "model", "mode", "ai", "block", "row")}
    names = red.strings.table
    combos, inverse = grouped(col["sector"], col["site"], col["model"], col["mode"])
    for (s, site, m, mode), count in zip(combos, np.bincount(inverse).tolist()):
        out.robots[(names[s], names[site], names[m], MODES[mode])] += count
    anomalous = _opened(out, state.obs.opened, col, names)
    _signals(out, red, col, fleet)
    _versions(out, red, col, fleet, anomalous)
    return out


def merge(a: FleetSummary, b: FleetSummary) -> FleetSummary:
    """Both summaries' robots in one (a worker's fold and the table's twins it does not hold)."""
    out = FleetSummary(a.robots + b.robots, a.offline + b.offline, {}, {}, a.anomalies + b.anomalies)
    for kind in {*a.signals, *b.signals}:
        out.signals[kind] = _add(Distribution(), *(s.signals[kind] for s in (a, b) if kind in s.signals))
    for version in {*a.versions, *b.versions}:
        parts = [s.versions[version] for s in (a, b) if version in s.versions]
        out.versions[version] = VersionSummary(sum(p.robots for p in parts), sum(p.anomalous for p in parts),
                                           sum(p.latency_sum for p in parts), sum(p.latency_n for p in parts))
    return out


def _add(into: Distribution, *more: Distribution) -> Distribution:
    for d in more:
        into.buckets = [x + y for x, y in zip(into.buckets, d.buckets)]
        into.band_sum, into.value_sum, into.count = (into.band_sum + d.band_sum, into.value_sum + d.value_sum,
                                                     into.count + d.count)
    return into


def grouped(*keys: Array) -> tuple[list[tuple[int, ...]], Array]:
    """The distinct combinations of the key columns, and each row's index among them (for `np.bincount`).
    One-dimensional `np.unique` per key: its `axis=` form made the summary 5.4 instead of 2.1 us per robot."""
    code = np.zeros(len(keys[0]), np.int64)
    for key in keys:
        values, index = np.unique(key, return_inverse=True)
        code = np.unique(code * len(values) + index, return_inverse=True)[1].reshape(-1)
    first = np.unique(code, return_index=True)[1]
    return list(zip(*(key[first].tolist() for key in keys))), code


def _opened(out: FleetSummary, opened: Mapping[int, list[Open]], col: Mapping[str, Array],
            names: list[str]) -> Array:
    """Count the open anomalies and the silent robots; the mask of robots with any open."""
    anomalous = np.zeros(len(col["sector"]), bool)
    for slot, found in opened.items():
        if not found:
            continue
        anomalous[slot] = True
        sector, site, model = (names[int(col[k][slot])] for k in ("sector", "site", "model"))
        if any(o.detector == SILENCE for o in found):
            out.offline[(sector, site, model)] += 1
        for o in found:
            out.anomalies[(sector, o.detector)] += 1
    return anomalous


def _signals(out: FleetSummary, red: ReduceState, col: Mapping[str, Array], fleet: Fleet) -> None:
    """Each (sector, model, signal kind)'s distribution of the robots' latest values."""
    names = red.strings.table
    for b, block in enumerate(red.blocks):
        robots = np.flatnonzero(col["block"] == b)
        if not len(robots):
            continue
        rows, models, sectors = col["row"][robots], col["model"][robots], col["sector"][robots]
        for j, name in enumerate(block.names):
            kind = kind_of(name)
            if kind is None:
                continue
            present = block.c["present"][rows, j]
            for m in np.unique(models[present]).tolist():
                spec = fleet.models[names[m]].signals.get(name) if names[m] in fleet.models else None
                if spec is None:
                    continue
                lo, hi = spec.nominal
                pick = present & (models == m)
                value = block.c["value"][rows[pick], j]
                for (sector,), dist in zip(*_distributions(sectors[pick], (value - lo) / (hi - lo), value)):
                    _add(out.signals.setdefault((names[sector], names[m], kind), Distribution()), dist)


def _distributions(keys: Array, position: Array, value: Array) -> tuple[list[tuple[int, ...]], list[Distribution]]:
    """Per distinct key, the distribution of the rows holding it."""
    combos, inverse = grouped(keys)
    k, width = len(combos), len(BAND_BUCKETS) + 1
    bucket = np.searchsorted(_BOUNDS, position, side="left")
    buckets = np.bincount(inverse * width + bucket, minlength=k * width).reshape(k, width).tolist()
    bands, values = np.bincount(inverse, position, k).tolist(), np.bincount(inverse, value, k).tolist()
    counts = np.bincount(inverse, minlength=k).tolist()
    return combos, [Distribution(*d) for d in zip(buckets, bands, values, counts)]


def _versions(out: FleetSummary, red: ReduceState, col: Mapping[str, Array], fleet: Fleet,
              anomalous: Array) -> None:
    """Per (model, version label): robots, anomalous robots, their latest inference latency."""
    names = red.strings.table
    latency, has = _latest(red, col, INFERENCE)
    combos, inverse = grouped(col["model"], col["ai"])
    k = len(combos)
    sums = zip(np.bincount(inverse, minlength=k).tolist(), np.bincount(inverse, anomalous, k).tolist(),
               np.bincount(inverse, np.where(has, latency, 0.0), k).tolist(), np.bincount(inverse, has, k).tolist())
    for (m, ai), (robots, sick, latency_sum, latency_n) in zip(combos, sums):
        stats = out.versions.setdefault((names[m], fleet.version_label(names[m], names[ai])), VersionSummary())
        stats.robots += robots
        stats.anomalous += int(sick)
        stats.latency_sum += latency_sum
        stats.latency_n += int(latency_n)


def _latest(red: ReduceState, col: Mapping[str, Array], signal: str) -> tuple[Array, Array]:
    """Every robot's latest value of `signal`, and whether its twin has one."""
    value, has = np.zeros(len(col["block"])), np.zeros(len(col["block"]), bool)
    for b, block in enumerate(red.blocks):
        j = block.column.get(signal)
        if j is None:
            continue
        robots = np.flatnonzero(col["block"] == b)
        rows = col["row"][robots]
        has[robots] = block.c["present"][rows, j]
        value[robots] = block.c["value"][rows, j]
    return value, has

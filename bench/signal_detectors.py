"""How fast the per-signal value detectors judge rounds of readings over arrays, against the scalar calls.

Baseline: per cell (one robot's one signal), what `twin.detect.robot._signals` does for a
present signal: `twin.detect.signals.watch_signal` (band, spike, stuck) and, for the signals
watched for drift on a settled working step, the drift input and `signals.drift`. Then
`twin.batch_signals.signals_round` on the same readings, a round at a time (gather the
round's state from the store, judge, build the findings of the masked cells, scatter back).

Readings: `--robots` robots of one fleet model, its first `--signals` signals, `--rounds`
reports each, a second apart; noisy values in the nominal band, and a few robots with a
fault each (a stuck sensor, a level far out of band, a spike, a slow rise of a motor current),
so every detector fires somewhere. 5% of the reports are not settled working (no band,
spike or drift). The reference is learned over 20 s instead of 180 so that most rounds run
the CUSUM rather than the learning. Inputs (values, each cell's running mean and variance,
the scalar `SignalState`s) are built outside the timing, per round. After the timing, every
cell's final state and every round's findings (msgpack bytes) are checked equal.

    .venv/bin/python bench/signal_detectors.py [--robots 2000] [--signals 14] [--rounds 100]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
from msgspec.structs import replace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.seeds import read_detectors, read_fleet  # noqa: E402
from twin import batch_signals as bs  # noqa: E402
from twin.detect import signals as sig  # noqa: E402
from twin.detect.findings import Finding  # noqa: E402
from twin.detect.params import RobotDetectorParams  # noqa: E402
from twin.detect.watch import SignalWatch  # noqa: E402
from twin.fleet import Signal  # noqa: E402
from twin.reduce import ALPHA  # noqa: E402
from twin.state import SignalState  # noqa: E402

Array = npt.NDArray[Any]
SEEDS = Path(__file__).resolve().parent.parent / "seeds"


class Inputs(msgspec.Struct):
    """All rounds' readings: per round the values and the priors, per robot operating and dt."""

    values: list[Array]
    priors: list[bs.Prior]
    operating: list[Array]
    dt: list[Array]


def readings(specs: list[Signal], robots: int, rounds: int, seed: int) -> Inputs:
    """Noisy in-band values (3 decimals, as robots report them) and a few faults; the reducer's
    running statistics of each cell before each round."""
    rng = np.random.default_rng(seed)
    lo = np.array([s.nominal[0] for s in specs])
    hi = np.array([s.nominal[1] for s in specs])
    width = hi - lo
    base = lo + width * rng.uniform(0.3, 0.7, (robots, len(specs)))
    values = [np.round(base + width * 0.02 * rng.standard_normal(base.shape), 3) for _ in range(rounds)]
    for r, v in enumerate(values):
        v[0::97, 0] = values[0][0::97, 0]  # stuck sensors
        if r > rounds // 3:
            v[1::89, 2] = hi[2] + 2 * width[2]  # far out of band
            v[3::83, 1] += width[1] * 0.01 * (r - rounds // 3)  # a motor current creeping up
        if r == rounds // 2:
            v[2::79, 3] = hi[3] + 5 * width[3]  # one spike
    value, mean, var = values[0].copy(), values[0].copy(), np.full(base.shape, (width * 0.02) ** 2)
    priors, operating, dts = [], [], []
    for v in values:
        priors.append(bs.Prior(np.ones(v.size, dtype=bool), value.ravel().copy(), mean.ravel().copy(), var.ravel().copy()))
        delta = v - mean  # twin.reduce._update_signal, elementwise (the same IEEE operations)
        mean = mean + ALPHA * delta
        var = (1 - ALPHA) * (var + ALPHA * delta * delta)
        value = v
        working = rng.random(robots) >= 0.05
        operating.append(working)
        dts.append(np.where(working, 1.0, np.nan))
    return Inputs([v.ravel() for v in values], priors, operating, dts)


def scalar(inputs: Inputs, names: list[str], specs: list[Signal], k: bs.Kinds) -> tuple[float, list[SignalWatch], list[bytes]]:
    """The baseline: `_signals`' per-cell calls. Seconds, final state, findings per round."""
    p, n, cells = k.p, len(names), inputs.values[0].size
    view = k.view.tolist()
    ws = [SignalWatch()] * cells
    found: list[bytes] = []
    seconds = 0.0
    for r, values in enumerate(inputs.values):
        pr = inputs.priors[r]
        before = [SignalState(v, None, None, None, m, s) for v, m, s in zip(pr.value.tolist(), pr.mean.tolist(), pr.var.tolist())]
        vals, operating, dts = values.tolist(), inputs.operating[r].tolist(), inputs.dt[r].tolist()
        t0 = time.perf_counter()
        out = _scalar_round(ws, vals, before, operating, dts, names, specs, view, n, p)
        seconds += time.perf_counter() - t0
        found.append(msgspec.msgpack.encode(out))
    return seconds, ws, found


def _scalar_round(ws: list[SignalWatch], vals: list[float], before: list[SignalState], operating: list[bool],
                  dts: list[float], names: list[str], specs: list[Signal], view: list[int], n: int,
                  p: RobotDetectorParams) -> dict[int, list[Finding]]:
    out: dict[int, list[Finding]] = {}
    for i, value in enumerate(vals):
        j, robot = i % n, i // n
        spec, name = specs[j], names[j]
        w, f = sig.watch_signal(ws[i], name, value, before[i], spec, operating[robot], p)
        dt = dts[robot]
        if view[j] and dt == dt:  # _signals: a settled working step, a signal watched for drift
            width = max(spec.nominal[1] - spec.nominal[0], 1e-9)
            trend = view[j] == bs.VIEW_TREND
            x = (value - before[i].value) / width / dt if trend else (value - spec.nominal[0]) / width
            d, g = sig.drift(w.drift, name, x, dt, trend, p)
            w = replace(w, drift=d)
            f = f + g
        ws[i] = w
        if f:
            out[i] = f
    return out


def batched(inputs: Inputs, robots: int, n: int, k: bs.Kinds) -> tuple[float, bs.CellStore, list[bytes]]:
    """`signals_round` per round on a store of every cell (all cells report every round here)."""
    cells = robots * n
    store = bs.CellStore(cells)
    idx = np.arange(cells)
    kind = np.tile(np.arange(n), robots)
    ones, zeros = np.ones(cells, dtype=bool), np.zeros(cells, dtype=bool)
    seq = np.zeros(cells, dtype=np.uint64)
    found: list[bytes] = []
    seconds = 0.0
    for r, values in enumerate(inputs.values):
        rnd = bs.Round(kind, ones, values, inputs.priors[r], ones, np.repeat(inputs.operating[r], n), zeros,
                       np.repeat(inputs.dt[r], n), ones, seq, seq)
        t0 = time.perf_counter()
        new, out = bs.signals_round(store.take(idx), rnd, k)
        store.put(idx, new)
        seconds += time.perf_counter() - t0
        found.append(msgspec.msgpack.encode(out))
    return seconds, store, found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--robots", type=int, default=2000)
    ap.add_argument("--signals", type=int, default=14)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--model", default="industrial-arm-6ax")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    model = read_fleet(SEEDS).models[args.model]
    p = replace(read_detectors(SEEDS).for_model(args.model), drift_reference_s=20.0)
    names = list(model.signals)[:args.signals]
    specs = [model.signals[name] for name in names]
    k = bs.Kinds(list(zip(names, specs)), p)
    inputs = readings(specs, args.robots, args.rounds, args.seed)
    base_s, ws, base_found = scalar(inputs, names, specs, k)
    batch_s, store, batch_found = batched(inputs, args.robots, len(names), k)
    if bs.to_watches(store.take(np.arange(len(store)))) != ws or batch_found != base_found:
        raise SystemExit("batch signal detectors differ from the scalar ones")
    cells = args.robots * len(names) * args.rounds
    fired = Counter(f["detector"] for b in base_found for fs in msgspec.msgpack.decode(b).values() for f in fs)
    print(f"signal detectors, {args.model}: {args.robots:,} robots x {len(names)} signals "
          f"({int((k.view > 0).sum())} watched for drift) x {args.rounds} rounds = {cells:,} cells; "
          f"findings {dict(fired)}; identical state and findings")
    print(f"  {'scalar calls (baseline)':<26} {cells / base_s:>12,.0f} cells/s   ratio 1.00")
    print(f"  {'signals_round':<26} {cells / batch_s:>12,.0f} cells/s   ratio {base_s / batch_s:5.1f}")


if __name__ == "__main__":
    main()

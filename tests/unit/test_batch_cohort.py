"""twin.batch_cohort against the scalar cohort chain (`_cohort` / `multivariate.step`, `learn`,
`learn_rates`, `_against_cohort`, and `twin.pipeline.ingest` as the oracle on chaos runs):
equal states, scores, findings and Cohorts bytes, at random batch splits."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.seeds import read_detectors, read_scenario
from twin import batch_cohort as bc
from twin.detect import multivariate as mv
from twin.detect.cohort import PARAMS, Cohorts, features, learn, learn_rates
from twin.detect.findings import Finding
from twin.detect.params import DetectorConfig, RobotDetectorParams
from twin.detect.robot import _against_cohort, _cohort, observe, settled_at_work, trend_rates
from twin.detect.watch import Drift, Watch
from twin.effects import Effects
from twin.fleet import Fleet, RobotModel, Signal
from twin.pipeline import ingest
from twin.reduce import apply
from twin.schema import Event
from twin.sim import FleetSim
from twin.sim.scenario import load_scenario
from twin.state import Twin

SEEDS = Path(__file__).resolve().parents[2] / "seeds"
TREND = "battery_soc_pct"


def cohort_bytes(c: Cohorts) -> bytes:
    """Every number of a Cohorts, keys in their order, as msgpack (floats as their 8 bytes)."""
    return msgspec.msgpack.encode({
        "refit_s": c.refit_s,
        "sums": {m: (n, s1.tobytes(), s2.tobytes()) for m, (n, s1, s2) in c.sums.items()},
        "baselines": dict(c.baselines), "fitted_at": dict(c.fitted_at),
        "rates": {m: dict(r) for m, r in c.rates.items()}})


def same(a: object, b: object) -> bool:
    return msgspec.msgpack.encode(a) == msgspec.msgpack.encode(b)


def baseline(rng: np.random.Generator, p: int, weight: float = 5000.0) -> mv.Baseline:
    rows = rng.normal(size=(300, p)) @ rng.normal(size=(p, p)) * rng.uniform(0.01, 2.0, p)
    return mv.from_moments(rows.mean(axis=0), np.cov(rows.T, bias=True).reshape(p, p), weight, PARAMS)


# --- distances -----------------------------------------------------------------------------------

@pytest.mark.parametrize("p", [1, 2, 3, 4, 7, 8, 9, 16, 17, 30])
def test_batched_distances_are_the_scalar_distances_bit_for_bit(p: int) -> None:
    rng = np.random.default_rng(p)
    base = baseline(rng, p)
    x = rng.normal(size=(600, p)) * 3 + rng.normal(size=p)
    x[::7] = np.asarray(base.mean)  # zero distance
    got = bc.distance_rows(base, x)
    want = np.array([mv.distance(base, x[i]) for i in range(len(x))])
    assert got.tobytes() == want.tobytes()
    rows = np.arange(len(x))[1::3]  # rows of a larger matrix: other strides and alignments
    assert bc.distance_rows(base, x[rows]).tobytes() == want[rows].tobytes()


# --- the smoothing and hysteresis ---------------------------------------------------------------

states = st.one_of(st.none(), st.builds(mv.State, level=st.sampled_from([0.0, 5.0, 12.0, 19.999, 20.0, 80.0, 200.0]),
                                        ts=st.sampled_from([100.0, 101.0, 99.5]), alarm=st.booleans(),
                                        since=st.just(50.0)))
raws = st.one_of(st.sampled_from([0.0, 12.0, 20.0, 80.0, 81.0, 1e6]), st.floats(0.0, 200.0))


@settings(max_examples=60, deadline=None)
@given(data=st.data(), rise=st.sampled_from([30.0, 0.0, 1e-300]), fall=st.sampled_from([60.0, 0.0]))
def test_advance_round_is_multivariate_step(data: st.DataObject, rise: float, fall: float) -> None:
    params = msgspec.structs.replace(PARAMS, rise_s=rise, fall_s=fall)
    n = data.draw(st.integers(1, 8))
    old = [data.draw(states) for _ in range(n)]
    for _ in range(data.draw(st.integers(1, 6))):
        raw = np.array([data.draw(raws) for _ in range(n)])
        ts = np.array([data.draw(st.sampled_from([99.0, 100.0, 100.5, 101.0, 130.0, 1e4])) for _ in range(n)])
        adv = np.array([data.draw(st.booleans()) for _ in range(n)])
        s = bc.states_of(old)
        new, score, found = bc.advance_round(s, raw, adv, ts, params)
        want = [mv.advance(o, float(r), float(t), params) if a else mv._hold(o, float(t), params)
                for o, r, t, a in zip(old, raw, ts, adv)]
        assert [bc.state_at(new, i) for i in range(n)] == [w for w, _ in want]
        assert score.tobytes() == np.array([sc for _, sc in want]).tobytes()
        assert found.tolist() == [sc >= 1 for _, sc in want]
        old = [w for w, _ in want]


def test_cohort_findings_are_built_as_the_scalar_builds_them() -> None:
    rng = np.random.default_rng(7)
    base = baseline(rng, 4)
    x = np.vstack([np.asarray(base.mean) + 40.0, np.asarray(base.mean)])
    old = bc.states_of([mv.State(19.0, 0.0, False, 0.0), None])
    raw = bc.distance_rows(base, x)
    new, score, found = bc.advance_round(old, raw, np.ones(2, dtype=bool), np.array([200.0, 200.0]))
    assert found.tolist() == [True, False]
    got = bc.cohort_findings(old, new, score, np.flatnonzero(found), [base, base], x, np.ones(2, dtype=bool),
                             np.array([200.0, 200.0]))
    _, want = _cohort(Watch(cohort=mv.State(19.0, 0.0, False, 0.0)), base, event_with(x[0], base), one_model(4))
    assert same(got, {0: want}) and want


def one_model(p: int) -> RobotModel:
    return RobotModel(description="m", period_s=1.0, signals={f"s{i}": Signal("x", (0.0, 1.0), (-1e9, 1e9)) for i in range(p)})


def event_with(x: np.ndarray, base: mv.Baseline) -> Event:
    return Event(schema=1, robot_id="r", seq=1, ts=200.0, sector="s", site="s", model="m", mode="working",
                 signals={f"s{i}": float(v) for i, v in enumerate(x.tolist())})


# --- learning in log order ----------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), refit=st.sampled_from([0.0, 0.5, 3.0, 1e9]), p=st.sampled_from([1, 3, 8]),
       n0=st.sampled_from([0, 1, 1990]), data=st.data())
def test_plan_is_the_learn_chain_at_any_batch_split(seed: int, refit: float, p: int, n0: int,
                                                    data: st.DataObject) -> None:
    rng = np.random.default_rng(seed)
    n = data.draw(st.integers(1, 400))
    x = rng.normal(size=(n, p))
    ts = 1000.0 + np.cumsum(rng.choice([0.0, 0.01, 0.1, 0.3, -0.2], n))  # robots' clocks disagree
    has_x = rng.random(n) > 0.05
    x[~has_x] = np.nan
    r = np.round(rng.normal(size=(n, 2)) * 1e-4, 9)
    has_r = rng.random((n, 2)) > 0.4
    mask = rng.random(n) > data.draw(st.sampled_from([0.0, 0.3, 0.9]))
    start = Cohorts(refit_s=refit)
    if n0:  # a model with history, and another model's entries first
        mean = np.full(p, 0.1)
        skew = np.triu(np.full((p, p), 0.01)) if n0 == 1 else np.full((p, p), 0.01)  # an s2 not symmetric
        start = Cohorts(refit, sums={"other": (3, np.ones(2), np.ones((2, 2))), "m": (n0, n0 * mean, n0 * (np.eye(p) + skew))},
                        baselines={"m": mv.from_moments(mean, np.eye(p), float(n0), PARAMS)}, fitted_at={"m": 999.0},
                        rates={"m": {"b": (float(n0), 1e-3, 1e-6)}})
    chain, before = start, []
    for i in range(n):  # the scalar core, report by report
        before.append(chain)
        if mask[i]:
            if has_x[i]:
                chain = learn(chain, "m", x[i], float(ts[i]))
            chain = learn_rates(chain, "m", {k: float(r[i, j]) for j, k in enumerate(("a", "b")) if has_r[i, j]})
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(n - 1, 1)), max_size=6)))) if n > 1 else []
    got, lo = start, 0
    for hi in [*cuts, n]:
        s = slice(lo, hi)
        made = bc.plan(got, "m", bc.Reports(ts[s], x[s], has_x[s], r[s], has_r[s], ("a", "b")), mask[s])
        for j, i in enumerate(range(lo, hi)):
            assert made.baselines[made.epoch[j]] == before[i].baselines.get("m"), i
            assert bc.in_force(made)[j] == ("m" in before[i].baselines)
            for name in ("a", "b"):
                assert bc.moments_at(made.rates[name], j) == before[i].rates.get("m", {}).get(name), (i, name)
        assert all(made.epoch[j] < made.epoch[j + 1] for j in made.refits.tolist() if j + 1 < hi - lo)
        got, lo = made.cohorts, hi
    assert cohort_bytes(got) == cohort_bytes(chain)
    if not mask.any():
        assert got is start  # nothing learned: the same object, as the scalar core keeps it


# --- the trend reference against the cohort's rates -------------------------------------------

@settings(max_examples=40, deadline=None)
@given(data=st.data(), floor=st.sampled_from([5e-6, 0.0]), z=st.sampled_from([4.0, 1.0]))
def test_against_round_is_against_cohort(data: st.DataObject, floor: float, z: float) -> None:
    p = RobotDetectorParams(trend_floor=floor, drift_cohort_z=z, drift_reference_s=10.0)
    n = data.draw(st.integers(1, 12))
    known = np.array([data.draw(st.booleans()) for _ in range(n)])
    cnt = np.array([data.draw(st.sampled_from([0.0, 1999.0, 2000.0, 5e5])) for _ in range(n)])
    mean = np.array([data.draw(st.sampled_from([-1e-4, 0.0, 3e-5])) for _ in range(n)])
    sd = np.array([data.draw(st.sampled_from([0.0, 1e-6, 2e-5, 1e-4])) for _ in range(n)])
    s1, s2 = cnt * mean, cnt * (sd * sd + mean * mean)
    ref = np.array([data.draw(st.sampled_from([0.0, 99.0, 100.0, 1800.0])) for _ in range(n)])
    # levels on the threshold (z exactly at drift_cohort_z, as the scalar computes z) and anywhere
    edge = [round((m + z * max(math.sqrt(max(b / c - (a / c) ** 2, 0.0)) if c else 0.0, floor)) / 1e-7)
            for a, b, c, m in zip(s1, s2, cnt, mean)]
    level = np.array([float(data.draw(st.sampled_from([e, e - 1, e + 1, 0, -3000, 10**6]))) for e in edge])
    rates = bc.Rates(known, cnt, s1, s2)
    want: dict[int, list[Finding]] = {}
    for i in range(n):
        try:
            f = _against_cohort("b", Drift(int(ref[i]), int(level[i])), bc.moments_at(rates, i), p)
        except ZeroDivisionError:
            with pytest.raises(ZeroDivisionError):
                bc.against_round(level, ref, rates, p)
            return
        if f:
            want[i] = f
    mask = bc.against_round(level, ref, rates, p)
    assert same(bc.against_findings("b", level, ref, rates, np.flatnonzero(mask), p), want)


# --- chaos: the scalar pipeline against the batch functions ------------------------------------

class Row(msgspec.Struct):
    """One event through `ingest` and what the cohort chain made of it."""

    before: Twin | None
    twin: Twin
    event: Event
    effects: Effects
    cohorts: Cohorts
    """Before the event."""
    learned: bool
    cohort: list[Finding]
    """`_cohort`'s findings on it (empty when it did not run)."""
    ran: bool


def seeded(fleet: Fleet, events: list[Event], refit_s: float) -> Cohorts:
    """Cohorts a little short of `min_weight` (the baselines start to judge within the run), from
    the run's own working reports; rate moments just short too, tight around a slow drain."""
    sums, base, rates = {}, {}, {}
    n = PARAMS.min_weight - 15
    for name, model in fleet.models.items():
        xs = [x for e in events if e.model == name and e.mode == "working" and (x := features(e, model)) is not None]
        if len(xs) < 2:
            continue
        mean = np.mean(xs, axis=0)
        cov = np.cov(np.array(xs).T, bias=True).reshape(len(mean), len(mean))
        sums[name] = (int(n), n * mean, n * (cov + np.outer(mean, mean)))
        base[name] = mv.from_moments(mean, cov, n, PARAMS)
        if TREND in model.signals:
            rates[name] = {TREND: (n + 10, (n + 10) * -2e-5, (n + 10) * (4e-5 ** 2 + 2e-5 ** 2))}
    t0 = min(e.ts for e in events)
    return Cohorts(refit_s, sums, base, {m: t0 for m in base}, rates)


def scalar(events: list[Event], fleet: Fleet, config: DetectorConfig, cohorts: Cohorts) -> tuple[list[Row], Cohorts]:
    """The scalar core: `ingest` event by event, with what `_cohort` said on each; and the final cohorts."""
    twins: dict[str, Twin] = {}
    rows = []
    for e in events:
        before = twins.get(e.robot_id)
        twin, effects, _, after = ingest(before, e, e.ts + 0.2, fleet, config, cohorts)
        p, model = config.for_model(e.model), fleet.models[e.model]
        base = cohorts.baselines.get(e.model)
        ran = effects.outcome not in ("duplicate", "stale", "late") and settled_at_work(twin, e, p)
        found: list[Finding] = []
        if ran and base is not None:
            watch, found = _cohort((before.watch if before else None) or Watch(), base, e, model)
            assert watch.cohort == (twin.watch.cohort if twin.watch else None)
        learned = (effects.outcome == "applied" and settled_at_work(twin, e, p)
                   and not (twin.watch and twin.watch.open))
        rows.append(Row(before, twin, e, effects, cohorts, bool(learned), found, bool(ran)))
        twins[e.robot_id] = twin
        cohorts = after
    return rows, cohorts


Chaos = tuple[list[Row], Cohorts, Cohorts, DetectorConfig]


def chaos_run(fleet: Fleet) -> tuple[list[Event], DetectorConfig, Cohorts]:
    """24 robots over 330 s of the chaos scenario with `faulty`'s faults, detectors that settle
    fast, and cohorts seeded just short of `min_weight` with a 4 s refit (so they judge and refit)."""
    scenario = read_scenario(SEEDS, "chaos")
    small = load_scenario({**msgspec.to_builtins(scenario), "robots": 24, "duration_s": 330}, "chaos")
    sim = FleetSim(fleet, small, seed=11)
    clean = [e for _ in range(sim.ticks) for e in sim.step()]
    base = read_detectors(SEEDS)
    config = DetectorConfig(msgspec.structs.replace(base.defaults, drift_reference_s=30.0, settle_s=20.0),
                            {m: msgspec.structs.replace(p, drift_reference_s=30.0, settle_s=20.0)
                             for m, p in base.models.items()})
    return faulty(clean, fleet), config, seeded(fleet, clean, refit_s=4.0)


@pytest.fixture(scope="module")
def chaos(fleet: Fleet) -> Chaos:
    events, config, start = chaos_run(fleet)
    rows, end = scalar(events, fleet, config, start)
    return rows, start, end, config


def faulty(events: list[Event], fleet: Fleet) -> list[Event]:
    """Some batteries drain ever faster (their trend references stand out of the cohort's), and some
    robots' signals go two band widths high for a while (the cohort alarms)."""
    t0 = min(e.ts for e in events)
    robots = sorted({e.robot_id for e in events})
    gaps = {e.robot_id for e in events if features(e, fleet.models[e.model]) is None}
    fast, off = set(robots[1::3]), set([r for r in robots if r not in gaps][::3])
    out = []
    for e in events:
        soc = e.signals.get(TREND)
        if e.robot_id in fast and soc is not None:
            e = msgspec.structs.replace(e, signals={**e.signals, TREND: round(max(soc - 0.02 * (e.ts - t0), 0.0), 3)})
        if e.robot_id in off and 120 < e.ts - t0 < 240:
            specs = fleet.models[e.model].signals
            e = msgspec.structs.replace(e, signals={n: v + 2 * (specs[n].nominal[1] - specs[n].nominal[0]) if n in specs else v
                                                    for n, v in e.signals.items()})
        out.append(e)
    return out


def reports(rows: list[Row], model: RobotModel, p: RobotDetectorParams) -> bc.Reports:
    """One model's rows of a batch as the batch engine holds them: signal columns, trend rates."""
    values = np.array([[r.event.signals.get(n, np.nan) for n in model.signals] for r in rows], dtype=np.float64)
    x, has_x = bc.features(values.reshape(len(rows), len(model.signals)), model)
    rates = [trend_rates(r.before, r.twin, r.event, model, p) for r in rows]
    return bc.Reports(np.array([r.event.ts for r in rows], dtype=np.float64), x, has_x,
                      np.array([[q.get(TREND, np.nan)] for q in rates], dtype=np.float64).reshape(len(rows), 1),
                      np.array([[TREND in q] for q in rates], dtype=bool).reshape(len(rows), 1), (TREND,))


def rounds_of(robots: list[str]) -> list[list[int]]:
    """Positions grouped so each robot is in a round at most once (its k-th row in round k)."""
    out: list[list[int]] = []
    seen: dict[str, int] = defaultdict(int)
    for j, robot in enumerate(robots):
        k = seen[robot]
        seen[robot] += 1
        if k == len(out):
            out.append([])
        out[k].append(j)
    return out


class Tally(msgspec.Struct):
    scored: int = 0
    cohort: int = 0
    refits: int = 0
    checked: int = 0
    against: int = 0


def batch_model(rows: list[Row], cohorts: Cohorts, name: str, model: RobotModel, p: RobotDetectorParams,
                states: dict[str, mv.State | None], tally: Tally) -> Cohorts:
    """One model's rows of one batch through the batch functions, checked row by row against the scalar
    core's; returns the cohorts after them."""
    rep = reports(rows, model, p)
    made = bc.plan(cohorts, name, rep, np.array([r.learned for r in rows], dtype=bool))
    tally.refits += len(made.refits)
    for j, r in enumerate(rows):
        assert made.baselines[made.epoch[j]] == r.cohorts.baselines.get(name)
        assert bc.moments_at(made.rates[TREND], j) == r.cohorts.rates.get(name, {}).get(TREND)
    ran = np.array([r.ran for r in rows], dtype=bool)
    scored = ran & rep.has_x & bc.in_force(made)
    raw, adv = bc.distances(made, rep.x, scored)
    pos = np.flatnonzero(scored)
    for rnd in rounds_of([rows[j].event.robot_id for j in pos.tolist()]):
        idx = pos[rnd]
        old = bc.states_of([states.get(rows[j].event.robot_id) for j in idx.tolist()])
        new, score, found = bc.advance_round(old, raw[idx], adv[idx], rep.ts[idx])
        base = {c: made.baselines[made.epoch[idx[c]]] for c in np.flatnonzero(found).tolist()}
        got = bc.cohort_findings(old, new, score, np.flatnonzero(found), base, rep.x[idx], adv[idx], rep.ts[idx])
        for c, j in enumerate(idx.tolist()):
            r = rows[j]
            states[r.event.robot_id] = bc.state_at(new, c)
            assert states[r.event.robot_id] == r.twin.watch.cohort, (r.event.robot_id, r.event.seq)  # type: ignore[union-attr]
            assert same(got.get(c, []), r.cohort), (r.event.robot_id, r.event.seq)
        tally.scored += len(idx)
        tally.cohort += len(got)
    assert all(not rows[j].cohort for j in np.flatnonzero(~scored).tolist())
    check_trend(rows, made, p, tally)
    return made.cohorts


def check_trend(rows: list[Row], made: bc.Plan, p: RobotDetectorParams, tally: Tally) -> None:
    """`against_round` on every row whose twin has a trend reference, against `_against_cohort`."""
    drifts: list[Drift | None] = []
    for r in rows:
        names = list(r.twin.signals)
        w = r.twin.watch.signals if r.twin.watch else []
        drifts.append(w[names.index(TREND)].drift if TREND in names and len(w) == len(names) else None)
    at = np.array([d is not None for d in drifts], dtype=bool)
    level = np.array([float(d.level) if d else 0.0 for d in drifts])
    ref = np.array([float(d.ref) if d else 0.0 for d in drifts])
    mask = bc.against_round(level, ref, made.rates[TREND], p) & at
    got = bc.against_findings(TREND, level, ref, made.rates[TREND], np.flatnonzero(mask), p)
    want = {j: f for j, d in enumerate(drifts) if d and (f := _against_cohort(TREND, d, bc.moments_at(made.rates[TREND], j), p))}
    assert same(got, want)
    tally.checked += int(at.sum())
    tally.against += len(want)


@pytest.mark.parametrize(("split", "upto"), [(1, 1500), (7, 3000), (333, None), (2000, None), (0, None)])
def test_chaos_batches_give_the_scalar_cores_cohort_state_findings_and_cohorts(chaos: Chaos, fleet: Fleet,
                                                                               split: int, upto: int | None) -> None:
    """Batches of one row and of seven rows take the run's first rows only (the test's time)."""
    rows, start, end, config = chaos
    if upto is not None:
        rows, end = rows[:upto], rows[upto].cohorts
    rng = np.random.default_rng(split)
    cuts: list[int] = []
    while (cuts[-1] if cuts else 0) < len(rows):  # split 0: random sizes up to 2,000
        cuts.append((cuts[-1] if cuts else 0) + (split or int(rng.integers(1, 2000))))
    states: dict[str, mv.State | None] = {}
    cohorts, lo, tally = start, 0, Tally()
    for hi in cuts:
        batch = rows[lo:hi]
        by: dict[str, list[Row]] = defaultdict(list)
        for r in batch:
            by[r.event.model].append(r)
        for name, mine in by.items():
            cohorts = batch_model(mine, cohorts, name, fleet.models[name], config.for_model(name), states, tally)
        lo = hi
    assert cohort_bytes(cohorts) == cohort_bytes(end)
    if upto is None:
        assert tally.scored > 3000 and tally.cohort > 100 and tally.against > 10 and tally.refits > 50, tally
    assert tally.scored > 0 and tally.refits > 0


def test_settle_reaches_the_scalar_learn_mask_from_a_naive_guess(chaos: Chaos, fleet: Fleet) -> None:
    """The caller's loop: plan with a guess, score the rows against the plan (here by the scalar
    `observe`, fed each row's baseline and moments from the plan), repeat until the mask holds."""
    rows, start, end, config = chaos
    name = "humanoid"
    mine = [r for r in rows if r.event.model == name][:700]  # about 200 s of its robots
    model, p = fleet.models[name], config.for_model(name)
    rep = reports(mine, model, p)

    def outcome(made: bc.Plan) -> np.ndarray:
        twins: dict[str, Twin] = {}
        out = np.zeros(len(mine), dtype=bool)
        for j, r in enumerate(mine):
            before = twins.get(r.event.robot_id)
            twin, effects = apply(before, r.event, received_ts=r.event.ts + 0.2)
            moments = bc.moments_at(made.rates[TREND], j)
            twin, _ = observe(before, twin, r.event, effects, r.event.ts + 0.2, model, p, made.baselines[made.epoch[j]],
                              {TREND: moments} if moments else None)
            out[j] = effects.outcome == "applied" and settled_at_work(twin, r.event, p) and not (twin.watch and twin.watch.open)
            twins[r.event.robot_id] = twin
        return out

    guess = np.array([r.effects.outcome == "applied" and settled_at_work(r.twin, r.event, p) for r in mine])
    made, mask, passes = bc.settle(start, name, rep, guess, outcome)
    assert mask.tolist() == [r.learned for r in mine]
    assert 2 <= passes <= 8, passes  # one 200 s batch with dozens of refits: a few passes
    last = next(k for k, r in enumerate(rows) if r is mine[-1])
    after = rows[last + 1].cohorts  # the scalar core's, right after the model's last row here
    for field in ("sums", "baselines", "fitted_at", "rates"):
        assert cohort_bytes(Cohorts(**{field: {name: getattr(made.cohorts, field)[name]}})) == \
            cohort_bytes(Cohorts(**{field: {name: getattr(after, field)[name]}}))

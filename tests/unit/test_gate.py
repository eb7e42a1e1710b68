"""The rollout gate's sequential test: error rates hold under a look at every step, harm halts, no harm advances.

The simulations are seeded Poisson processes: two strata of 100 robots, a
share of them on the new version, one look per simulated minute of work.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from twin.gate import (
    GateParams, GateState, Pair, Readings, Tally, evidence, llr, look, lower, new_hours, pairs, read, start, stratum,
    upper,
)

PARAMS = GateParams(harm_ratio=2.0, alpha=0.05, beta=0.2)
STRATA = (stratum("amr", "logistics"), stratum("humanoid", "retail"))
STEP_S = 60.0


def simulate(ratio: float, seed: int, *, share: float = 0.2, rate_per_h: float = 0.2, robots: int = 100,
             max_looks: int = 3000, min_hours: float = 0.0, params: GateParams = PARAMS) -> GateState:
    """One wave looked at every simulated minute until the gate decides (or `max_looks`)."""
    rng = np.random.default_rng(seed)
    counts = {k: Pair() for k in STRATA}
    state = start(params, counts, min_hours=min_hours)
    n_new = int(robots * share)
    for _ in range(max_looks):
        for i, key in enumerate(STRATA):
            base = rate_per_h * (1 + i) / 3600.0  # strata differ in baseline rate: matched controls matter
            e_new, e_old = n_new * STEP_S, (robots - n_new) * STEP_S
            p = counts[key]
            counts[key] = Pair(
                new=Tally(exposure_s=p.new.exposure_s + e_new, events=p.new.events + rng.poisson(base * ratio * e_new)),
                old=Tally(exposure_s=p.old.exposure_s + e_old, events=p.old.events + rng.poisson(base * e_old)))
        state, decision = look(state, counts)
        if decision != "continue":
            break
    return state


def rate(decisions: Sequence[str], which: str) -> float:
    return decisions.count(which) / len(decisions)


def test_wald_boundaries() -> None:
    assert upper(PARAMS) == pytest.approx(math.log(0.8 / 0.05))
    assert lower(PARAMS) == pytest.approx(math.log(0.2 / 0.95))


def test_false_halts_stay_near_alpha_with_a_look_every_minute() -> None:
    runs = [simulate(1.0, seed) for seed in range(300)]
    decisions = [s.decision for s in runs]
    assert "continue" not in decisions  # every run decided
    bound = PARAMS.alpha + 2.5 * math.sqrt(PARAMS.alpha * (1 - PARAMS.alpha) / len(runs))
    assert rate(decisions, "halt") <= bound
    assert min(s.looks for s in runs) >= 1 and max(s.looks for s in runs) > 20  # many looks were taken


def test_a_naive_test_repeated_at_every_look_would_halt_far_more_often() -> None:
    """Why a sequential test: a one-sided z-test at 5 % applied at every look of the same data halts
    harmless versions much more than 5 % of the time (the statistic here is only the comparison)."""
    halts = 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        x_new = x_old = 0
        for _ in range(200):
            x_new += rng.poisson(20 * STEP_S / 3600)
            x_old += rng.poisson(80 * STEP_S / 3600)
            n = x_new + x_old
            if n and (x_new - 0.2 * n) / math.sqrt(0.16 * n) > 1.645:
                halts += 1
                break
    assert halts / 100 > 2 * PARAMS.alpha


def test_a_harmful_version_halts() -> None:
    decisions = [simulate(2.0, 1000 + seed).decision for seed in range(150)]
    assert rate(decisions, "halt") >= 1 - PARAMS.beta - 0.1
    much_worse = [simulate(4.0, 2000 + seed).decision for seed in range(50)]
    assert rate(much_worse, "halt") >= 0.95


def test_a_harmless_version_advances_only_after_its_minimum_exposure() -> None:
    state = simulate(1.0, 7, min_hours=40.0)
    assert state.decision == "advance"
    assert state.statistic <= lower(PARAMS)
    assert new_hours(state) >= 40.0
    early = simulate(1.0, 7, min_hours=40.0, max_looks=5)
    assert early.decision == "continue" and new_hours(early) < 40.0
    safer = [simulate(0.5, 3000 + seed, min_hours=10.0).decision for seed in range(50)]
    assert rate(safer, "advance") >= 0.95


def test_no_events_carry_no_evidence_unless_the_wave_is_truncated() -> None:
    counts = {STRATA[0]: Pair(new=Tally(exposure_s=36000.0), old=Tally(exposure_s=360000.0))}
    plain = start(PARAMS, {}, min_hours=1.0)
    assert look(plain, counts)[1] == "continue"
    truncated = start(PARAMS, {}, min_hours=1.0, max_hours=5.0)
    state, decision = look(truncated, counts)
    assert decision == "advance" and state.statistic == 0.0
    assert look(start(PARAMS, {}, max_hours=20.0), counts)[1] == "continue"  # 10 h < 20 h


def test_events_before_the_wave_are_not_evidence() -> None:
    before = {STRATA[0]: Pair(new=Tally(exposure_s=100.0, events=50), old=Tally(exposure_s=100.0))}
    state = start(PARAMS, before)
    now = {STRATA[0]: Pair(new=Tally(exposure_s=200.0, events=50), old=Tally(exposure_s=200.0, events=3))}
    state, _ = look(state, now)
    assert state.statistic < 0  # only the 3 old-version events of the increment count


def test_a_counter_reset_counts_from_zero_and_events_wait_for_their_exposure() -> None:
    state = start(PARAMS, {STRATA[0]: Pair(new=Tally(exposure_s=1e6, events=10), old=Tally(exposure_s=1e6))})
    reset = {STRATA[0]: Pair(new=Tally(exposure_s=100.0, events=1), old=Tally(exposure_s=900.0, events=2))}
    state, _ = look(state, reset)
    assert state.totals[STRATA[0]].new.events == 1 and state.totals[STRATA[0]].old.exposure_s == 900.0
    # events on the new version, but no new-version exposure yet: deferred, not an infinite statistic
    waiting = {STRATA[0]: Pair(new=Tally(exposure_s=100.0, events=3), old=Tally(exposure_s=1800.0, events=2))}
    state2, _ = look(state, waiting)
    assert state2.statistic == state.statistic
    later = {STRATA[0]: Pair(new=Tally(exposure_s=200.0, events=3), old=Tally(exposure_s=2700.0, events=2))}
    state3, _ = look(state2, later)
    assert state3.statistic > state2.statistic and state3.totals[STRATA[0]].new.events == 3


def test_workers_are_read_series_by_series_so_a_restart_or_a_missed_scrape_adds_no_events() -> None:
    s, new, old = STRATA[0], "policy-2.5.0", "policy-2.4.0"

    def answer(w1: float, w2: float | None, on_new: float = 0.0) -> dict[tuple[str, str, str], Tally]:
        out = {(s, old, "w1"): Tally(exposure_s=w1, events=w1 / 100), (s, new, "w1"): Tally(exposure_s=on_new)}
        if w2 is not None:
            out[(s, old, "w2")] = Tally(exposure_s=w2, events=w2 / 100)
        return out

    first = read(Readings(), answer(1000.0, 5000.0))
    assert pairs(first, new) == {s: Pair()}  # the first reading is where counting starts
    missed = read(first, answer(1100.0, None))  # w2 missed its scrape: it keeps its last value
    assert pairs(missed, new)[s].old == Tally(exposure_s=100.0, events=1.0)
    back = read(missed, answer(1200.0, 5100.0))
    assert pairs(back, new)[s].old == Tally(exposure_s=300.0, events=3.0)  # not w2's 5,100 s once more
    restarted = read(back, answer(50.0, 5200.0, on_new=30.0))  # w1 restarted: its 50 s are new, from zero
    assert pairs(restarted, new)[s] == Pair(new=Tally(exposure_s=30.0), old=Tally(exposure_s=450.0, events=4.5))
    joined = read(restarted, {**answer(60.0, 5200.0, on_new=30.0), (s, old, "w3"): Tally(exposure_s=40.0)})
    assert pairs(joined, new)[s].old.exposure_s == 500.0  # w3 started since the first reading: from zero


def test_llr_of_one_increment() -> None:
    step = Pair(new=Tally(exposure_s=10.0, events=2), old=Tally(exposure_s=90.0, events=5))
    p0, p1 = 0.1, 20 / 110
    assert llr(step, 2.0) == pytest.approx(2 * math.log(p1 / p0) + 5 * math.log((1 - p1) / (1 - p0)))
    assert llr(Pair(), 2.0) == 0.0


def test_a_decision_stays_and_evidence_shows_both_groups() -> None:
    state = simulate(4.0, 11)
    assert state.decision == "halt"
    again, decision = look(state, {})
    assert decision == "halt" and again == state
    ev = evidence(state)
    assert ev["statistic"] >= ev["upper"] > 0 > ev["lower"]
    assert ev["new"]["events"] > 0 and ev["old"]["hours"] > ev["new"]["hours"]
    assert set(ev["strata"]) <= set(STRATA)


@pytest.mark.parametrize("bad", [{"harm_ratio": 1.0}, {"alpha": 0.0}, {"beta": 0.7}, {"kinds": ("estop", "x")},
                                 {"kinds": ()}])
def test_bad_parameters_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="gate\\."):
        GateParams(**bad)  # type: ignore[arg-type]

"""twin.batch_silence.quiet_robots against `silence_check_due` of each robot's twin (the oracle).

The fold: the chaos scenario on three partitions whose communication loss lasts 25 s (robots
flagged silent by their checks, then reporting again), folded in batches; after each batch the
robots the columns pick are compared with those the scalar rule picks of `twin_of`, at instants
from "just reported" to "everyone quiet", for every partition and for some of them.
"""

from __future__ import annotations

import functools

from tests.unit.test_batch_fold import chaos_log, rules
from twin import batch_fold as bf
from twin.batch_silence import quiet_robots
from twin.fleet_fold import silence_check_due
from twin.record import Record

PARTITIONS = 3


@functools.cache
def log() -> tuple[Record, ...]:
    return chaos_log(robots=18, seconds=90, seed=4, reconnect=True, partitions=PARTITIONS)


def scalar(state: bf.FoldState, now: float, partitions: set[int]) -> list[str]:
    twins = bf.twins_of(state, state.red.robot_ids)
    return [t.robot_id for t in twins
            if t is not None and t.partition in partitions and silence_check_due(t, now, rules().config)]


def test_quiet_robots_are_those_the_scalar_rule_picks_of_each_twin() -> None:
    compared, silent_held_back, picked = 0, 0, 0
    for size in (97, 400):
        c, s, p = compare_at_every_batch(size)
        compared, silent_held_back, picked = compared + c, silent_held_back + s, picked + p
    assert compared > 50 and picked > 0
    assert silent_held_back > 0  # robots flagged silent were left out: the open-anomaly branch was taken


def compare_at_every_batch(size: int) -> tuple[int, int, int]:
    """(comparisons, batches after which a robot was held back by its open silence, robots picked)."""
    records = log()
    state = bf.FoldState(rules())
    compared, silent_held_back, picked = 0, 0, 0
    for at in range(0, len(records), size):
        batch = list(records[at:at + size])
        bf.fold_log(state, rules(), batch)
        newest = max(r.timestamp for r in batch)
        for later in (0.0, 10.0, 15.0, 16.0, 30.0, 300.0):
            for partitions in ({0, 1, 2}, {1}, set()):
                now = newest + later
                want = scalar(state, now, partitions)
                assert quiet_robots(state, now, rules().config, partitions) == want, (at, later, partitions)
                compared += 1
                picked += len(want)
        everyone = {0, 1, 2}
        silent_held_back += len(quiet_robots(state, newest + 300.0, rules().config, everyone)) < state.red.robots
    return compared, silent_held_back, picked


def test_an_empty_fold_has_no_quiet_robots() -> None:
    assert quiet_robots(bf.FoldState(rules()), 1e9, rules().config, {0}) == []

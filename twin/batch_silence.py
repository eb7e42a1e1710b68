"""Which robots of a fold are due a silence check, read from its columns.

The worker's silence timer asks every few seconds which of its robots went
quiet (`twin.fleet_fold.silence_check_due`). Asked of twins, that decodes
every twin the worker holds each time: a cost per robot, not per event, that
grows with the fleet while the robots say nothing. Asked of the fold's columns
it is one comparison per robot over two arrays, and only the robots found
quiet are looked at further (their open anomalies). `quiet_robots` is
`silence_check_due` of each robot's `twin_of`, and tests/unit/test_batch_silence.py
holds the two equal on chaos folds; robots the fold does not hold (the table's,
after a rebalance) are still asked as twins.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from twin.batch_fold import FoldState
from twin.detect.params import DetectorConfig

SILENCE = "silence"


def quiet_robots(state: FoldState, now: float, config: DetectorConfig, partitions: Collection[int]) -> list[str]:
    """The robots on `partitions` that `silence_check_due` picks at `now`, in slot order."""
    red = state.red
    n = red.robots
    if not n or not partitions:
        return []
    model, last_seen = red.cols["model"][:n], red.cols["last_seen"][:n]
    min_s = np.zeros(len(red.strings.table))
    for m in np.unique(model).tolist():
        min_s[m] = config.for_model(red.strings.table[m]).silence_min_s
    due = (now - last_seen > min_s[model]) & np.isin(red.cols["partition"][:n], list(partitions))
    opened = state.obs.opened
    return [red.robot_ids[slot] for slot in np.flatnonzero(due).tolist()
            if not any(o.detector == SILENCE for o in opened.get(slot, ()))]

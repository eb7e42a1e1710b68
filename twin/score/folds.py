"""Out-of-fold evaluation: every parameter is chosen on data that excludes what it is scored on.

A figure tuned on the files it is scored on measures the tuning, not the
detector. Each benchmark (NAB, SKAB, UR3, a user's `--data` folder) cuts its
units (files, experiment folders, time blocks) into folds; `out_of_fold`
hands the parameter search only a fold's training units and scores the
chosen parameters only on its test units, and refuses a fold whose test
units appear among its training units. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

U = TypeVar("U")
P = TypeVar("P")
R = TypeVar("R")


class LeakError(ValueError):
    """A fold would let the parameter search see a unit it is scored on."""


@dataclass(frozen=True)
class Fold(Generic[U]):
    """One split: parameters are searched on `train` and scored on `test`."""

    name: str
    train: tuple[U, ...]
    test: tuple[U, ...]


@dataclass(frozen=True)
class FoldResult(Generic[U, P, R]):
    """What one fold chose on its training units and what that scored on its test units."""

    fold: Fold[U]
    params: P
    result: R


def leave_one_group_out(units: Sequence[U], group: Callable[[U], Hashable]) -> list[Fold[U]]:
    """One fold per group (a file, a NAB category, a SKAB experiment folder), in first-seen order.

    Needs two groups at least: with one, nothing is left to search on.
    """
    order: list[Hashable] = []
    for u in units:
        if (g := group(u)) not in order:
            order.append(g)
    if len(order) < 2:
        raise ValueError(f"out-of-fold needs at least 2 groups, got {len(order)}")
    return [
        Fold(str(g), tuple(u for u in units if group(u) != g), tuple(u for u in units if group(u) == g))
        for g in order
    ]


def contiguous_blocks(n: int, k: int) -> list[tuple[int, int]]:
    """`k` contiguous [start, stop) row ranges covering `n` rows in order: time blocks, never shuffled rows.

    Rows next to each other in time share state and conditions; a random row
    split would put a test row's neighbours in the training set.
    """
    if k < 2 or n < k:
        raise ValueError(f"need 2 <= k <= n, got k={k}, n={n}")
    edges = [round(i * n / k) for i in range(k + 1)]
    return [(edges[i], edges[i + 1]) for i in range(k)]


def out_of_fold(
    folds: Sequence[Fold[U]],
    search: Callable[[Sequence[U]], P],
    score: Callable[[P, Sequence[U]], R],
    key: Callable[[U], Hashable],
) -> list[FoldResult[U, P, R]]:
    """For each fold, `search` on its training units only, then `score` what it chose on its test units.

    `key` names a unit (a file's path, a block's range): a fold whose test
    units share a key with its training units raises `LeakError` before any
    search runs, so a figure from here is out-of-fold by construction.
    """
    for fold in folds:
        if leaked := {key(u) for u in fold.test} & {key(u) for u in fold.train}:
            raise LeakError(f"fold {fold.name!r}: scored units also in its training set: {sorted(map(str, leaked))}")
        if not fold.test:
            raise ValueError(f"fold {fold.name!r} has nothing to score")
    results = []
    for fold in folds:
        params = search(fold.train)
        results.append(FoldResult(fold, params, score(params, fold.test)))
    return results

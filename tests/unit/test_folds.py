"""The out-of-fold protocol: a search never sees the units its choice is scored on."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twin.score.folds import Fold, LeakError, contiguous_blocks, leave_one_group_out, out_of_fold


def test_each_search_sees_every_unit_but_the_ones_it_is_scored_on() -> None:
    files = ["a/1.csv", "a/2.csv", "b/1.csv", "c/1.csv"]
    seen: list[tuple[set[str], set[str]]] = []

    def search(train: object) -> set[str]:
        return set(train)  # type: ignore[call-overload]

    def score(params: set[str], test: object) -> None:
        seen.append((params, set(test)))  # type: ignore[call-overload]

    out_of_fold(leave_one_group_out(files, lambda f: f.split("/")[0]), search, score, key=str)
    assert [sorted(test) for _, test in seen] == [["a/1.csv", "a/2.csv"], ["b/1.csv"], ["c/1.csv"]]
    for train, test in seen:
        assert not train & test
        assert train | test == set(files)


def test_a_fold_that_shows_the_search_its_test_file_is_refused_before_any_search() -> None:
    calls: list[object] = []
    leaky = [Fold("x", ("f1", "f2"), ("f2",))]
    with pytest.raises(LeakError, match="f2"):
        out_of_fold(leaky, calls.append, lambda p, t: None, key=str)
    assert calls == []


def test_one_group_is_not_a_cross_fold() -> None:
    with pytest.raises(ValueError, match="at least 2 groups"):
        leave_one_group_out(["a", "a"], lambda u: u)


@given(st.integers(2, 5000), st.integers(2, 20))
def test_blocks_cover_the_rows_in_order_without_overlap(n: int, k: int) -> None:
    if n < k:
        with pytest.raises(ValueError):
            contiguous_blocks(n, k)
        return
    blocks = contiguous_blocks(n, k)
    assert blocks[0][0] == 0 and blocks[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
    assert all(stop > start for start, stop in blocks)

"""Fleet-level aggregates of twins, over bounded label sets only."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from twin.state import Twin


def count_by_sector_mode(twins: Iterable[Twin]) -> Counter[tuple[str, str]]:
    """Robots per (sector, mode): the source of `fleet_robots` and /fleet/summary."""
    return Counter((t.sector, t.mode) for t in twins)

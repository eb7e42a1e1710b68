"""What the desired-state gauges show: desires, drifts and rollout waves reached, per worker.

One summary of every robot a worker holds, computed at scrape time
(`streams.worker.control_metrics`). `summarize_desired` builds it from twins
with the functions the twin API and a replay call (`twin.desired.resolve`,
`deltas`, `matches`): a robot drifts here exactly when `GET /twins/{id}` shows
it a delta. The worker's fold holds most robots as columns, and building a
twin per robot for this cost 12-13 µs each (1.3 s of the event loop per summary
at 100,000 robots; `bench/fleet_scans.py`): `summarize_desired_fold` reads the
columns instead (~1 ms there), and
`merge` adds the twins the fold does not hold. tests/unit/test_desired_summary.py
holds the two equal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from twin.batch_reduce import ReduceState
from twin.batch_summary import grouped
from twin.desired import DesiredChange, DesiredRules, deltas, matches, reported, resolve, robot_share
from twin.state import Twin

Array = np.ndarray
_ABSENT = -1
"""A string code no robot reports: a selector or value the fold has never seen."""


@dataclass
class Wave:
    robots: int = 0
    """Robots of this worker the wave's selector covers."""
    reached: int = 0
    """Of those, robots reporting the wave's value."""


@dataclass
class DesiredSummary:
    robots: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """(sector, model, field) -> robots with a desire for the field."""
    drift: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """(sector, model, field) -> robots whose reported value differs from the desired one."""
    waves: dict[tuple[str, int], Wave] = field(default_factory=dict)
    """(plan, wave) -> its robots and how many reached its value."""


def summarize_desired(twins: Iterable[Twin], rules: DesiredRules) -> DesiredSummary:
    """One pass over the twins: desires, drifts and waves reached.

    A wave's robots are those its own change selects (`twin.desired.matches`, so a
    later wave covering the same robots does not take them from it); a robot that
    reached the value still counts (a version selector keeps matching it by the value).
    """
    out = _empty(rules)
    waves = wave_changes(rules)
    for twin in twins:
        desired = resolve(rules, twin)
        drifting = {d.field for d in deltas(twin, desired)}
        for name in desired:
            out.robots[(twin.sector, twin.model, name)] += 1
            out.drift[(twin.sector, twin.model, name)] += name in drifting
        if waves:
            now = reported(twin)
            for key, changes in waves.items():
                selected = [c for c in changes if matches(c, twin)]
                if selected:
                    out.waves[key].robots += 1
                    out.waves[key].reached += all(now.get(c.field) == c.value for c in selected)
    return out


def wave_changes(rules: DesiredRules) -> dict[tuple[str, int], list[DesiredChange]]:
    """The changes rollout plans made (and still in force), per (plan, wave)."""
    out: dict[tuple[str, int], list[DesiredChange]] = {}
    for change in rules.changes:
        if change.plan and change.value is not None:
            out.setdefault((change.plan, change.wave), []).append(change)
    return out


def merge(a: DesiredSummary, b: DesiredSummary) -> DesiredSummary:
    """Both summaries' robots in one (a worker's fold and the table's twins it does not hold)."""
    waves = {key: Wave(sum(s.waves[key].robots for s in (a, b) if key in s.waves),
                       sum(s.waves[key].reached for s in (a, b) if key in s.waves))
             for key in {*a.waves, *b.waves}}
    return DesiredSummary(a.robots + b.robots, a.drift + b.drift, waves)


class Shares:
    """`robot_share` of each slot of a fold, hashed once per robot (slots only grow; a new fold, a new cache)."""

    def __init__(self) -> None:
        self._of: ReduceState | None = None
        self._shares = np.zeros(0)

    def __call__(self, red: ReduceState) -> Array:
        if self._of is not red:
            self._of, self._shares = red, np.zeros(0)
        if len(self._shares) < red.robots:
            more = [robot_share(r) for r in red.robot_ids[len(self._shares):red.robots]]
            self._shares = np.concatenate([self._shares, np.array(more, np.float64)])
        return self._shares[:red.robots]


def summarize_desired_fold(red: ReduceState, rules: DesiredRules, shares: Array | None = None) -> DesiredSummary:
    """`summarize_desired` of every twin the fold holds, without building one: each change's
    selector is a mask over the slot columns, applied in the rules' order (`resolve`'s).

    `shares`: `robot_share` per slot (a `Shares` cache's), hashed here when None."""
    out = _empty(rules)
    n = red.robots
    if not n or not rules.changes:
        return out
    cols = _Columns(red, shares)
    masks = {id(c): cols.selects(c) for c in rules.changes}
    desired: dict[str, Array] = {}
    values: dict[str, list[str]] = {}
    for change in rules.changes:
        held = desired.setdefault(change.field, np.full(n, _ABSENT, np.int64))
        if change.value is None:
            held[masks[id(change)]] = _ABSENT
        else:
            known = values.setdefault(change.field, [])
            if change.value not in known:
                known.append(change.value)
            held[masks[id(change)]] = known.index(change.value)
    for name, held in desired.items():
        drifting = np.zeros(n, bool)
        for k, value in enumerate(values.get(name, [])):
            drifting |= (held == k) & ~cols.reports(name, value, missing="")
        _count(out.robots, cols, name, held != _ABSENT)
        _count(out.drift, cols, name, drifting)
    for key, changes in wave_changes(rules).items():
        selected = np.zeros(n, bool)
        reached = np.ones(n, bool)
        for c in changes:
            selected |= masks[id(c)]
            reached &= ~masks[id(c)] | cols.reports(c.field, c.value or "", missing=None)
        out.waves[key] = Wave(int(selected.sum()), int((selected & reached).sum()))
    return out


class _Columns:
    """The slot columns a selector or a reported value reads, and the string codes of the fold."""

    def __init__(self, red: ReduceState, shares: Array | None) -> None:
        n = red.robots
        self.red = red
        self.n = n
        self.col = {k: red.cols[k][:n] for k in ("sector", "site", "model", "ai", "fw", "config")}
        self.shares = shares if shares is not None else Shares()(red)

    def code(self, value: str) -> int:
        """The fold's code of a string (never interning one: the fold's state stays as it was)."""
        return dict.get(self.red.strings, value, _ABSENT)

    def selects(self, change: DesiredChange) -> Array:
        """`twin.desired.matches` of `change` for every slot."""
        sel, col = change.selector, self.col
        mask = np.ones(self.n, bool)
        if sel.robots:
            named = np.zeros(self.n, bool)
            named[[self.red.slot_of[r] for r in sel.robots if r in self.red.slot_of]] = True
            mask &= named
        for name, value in (("sector", sel.sector), ("site", sel.site), ("model", sel.model)):
            if value is not None:
                mask &= col[name] == self.code(value)
        if sel.share is not None:
            mask &= self.shares < sel.share
        if sel.version is not None:
            on = col["ai"] == self.code(sel.version)
            mask &= on if change.value is None else on | self.reports(change.field, change.value, missing=None)
        return mask

    def reports(self, name: str, value: str, missing: str | None) -> Array:
        """Which slots report `value` for the desirable field `name` (`reported(twin).get(name, missing)`)."""
        if name in ("ai_model", "firmware"):
            same: Array = self.col["ai" if name == "ai_model" else "fw"] == self.code(value)
            return same
        key = name.removeprefix("config.")
        table = self.red.configs.canonical.table
        lookup = np.array([dict(items).get(key, missing) == value for items in table], bool)
        out: Array = lookup[self.col["config"]]
        return out


def _count(into: Counter[tuple[str, str, str]], cols: _Columns, name: str, mask: Array) -> None:
    """Add the robots of `mask` per (sector, model) under `name`."""
    if not mask.any():
        return
    names = cols.red.strings.table
    combos, inverse = grouped(cols.col["sector"][mask], cols.col["model"][mask])
    for (sector, model), k in zip(combos, np.bincount(inverse).tolist()):
        into[(names[sector], names[model], name)] += k


def _empty(rules: DesiredRules) -> DesiredSummary:
    return DesiredSummary(waves={key: Wave() for key in wave_changes(rules)})


"""The desired-state changes a worker has folded, where its pages can read them.

The reader of `fleet.desired` (`desired_reader.DesiredReader`) folds each
record into the ingest's `FleetState` and hands the result here; `GET /desired`
(`control_views`) lists it. One writer, readers on the same event loop: the
rules are an immutable value, replaced whole, so a reader never sees half a fold.
"""

from __future__ import annotations

from twin.desired import DesiredChange, DesiredRules


class DesiredBook:
    """The latest `DesiredRules` of this worker (empty until the reader folds a change)."""

    def __init__(self) -> None:
        self.rules = DesiredRules()

    def fold(self, rules: DesiredRules) -> None:
        """Replace the rules with `rules`, the fold of every change read so far."""
        self.rules = rules

    def changes(self) -> tuple[DesiredChange, ...]:
        """Every change kept (the latest per selector|field), oldest first: by (ts, change_id)."""
        return self.rules.changes

"""What applying an event did, as values the shell may publish, count or log.

The reducer never performs I/O; it returns these and the caller decides.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Outcome = Literal["applied", "late", "duplicate", "stale"]
OUTCOMES: tuple[Outcome, ...] = ("applied", "late", "duplicate", "stale")
"""applied: became the latest state; late: accepted, but older than the latest;
duplicate: seq seen before; stale: too far below the high-water mark to tell."""


class ModeChanged(msgspec.Struct, frozen=True, tag=True):
    """The newest event reports another mode than the one before it."""

    robot_id: str
    ts: float
    previous: str
    mode: str


class VersionChanged(msgspec.Struct, frozen=True, tag=True):
    """The robot now runs another AI model, firmware or even robot model."""

    robot_id: str
    ts: float
    field: Literal["ai_model_version", "firmware", "model"]
    previous: str
    current: str


class SeqGap(msgspec.Struct, frozen=True, tag=True):
    """Seqs were skipped: messages lost on the way, or not yet arrived."""

    robot_id: str
    ts: float
    after_seq: int
    next_seq: int

    @property
    def missing(self) -> int:
        return self.next_seq - self.after_seq - 1


Change = ModeChanged | VersionChanged | SeqGap
EFFECT_KINDS: tuple[str, ...] = ("ModeChanged", "VersionChanged", "SeqGap")


class Effects(msgspec.Struct, frozen=True):
    """The outcome of one event plus the changes it caused."""

    outcome: Outcome
    changes: tuple[Change, ...] = ()

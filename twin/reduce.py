"""Apply one event to a twin: the only way a twin changes.

Rules, in order:
1. No twin yet: the event creates it.
2. `seq` at or below the high-water mark: a duplicate (redelivery, replay
   overlap). Only the `duplicates` counter moves.
3. `seq` above the mark but `ts` older than the twin's state: a late event
   (clock skew, reordering at the source). The mark and counters move; the
   state keeps the newer values.
4. Otherwise the event becomes the twin's state.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from twin.schema import Event
from twin.state import Twin

Outcome = Literal["applied", "late", "duplicate"]
OUTCOMES: tuple[Outcome, ...] = ("applied", "late", "duplicate")


def reduce(twin: Twin | None, event: Event) -> tuple[Twin, Outcome]:
    """Return the twin after `event` and what happened to the event."""
    if twin is None:
        return _create(event), "applied"
    if event.seq <= twin.seq:
        return msgspec.structs.replace(twin, duplicates=twin.duplicates + 1), "duplicate"
    if event.ts < twin.ts:
        return msgspec.structs.replace(twin, seq=event.seq, late=twin.late + 1), "late"
    return _advance(twin, event), "applied"


def _create(event: Event) -> Twin:
    return Twin(
        robot_id=event.robot_id,
        sector=event.sector,
        site=event.site,
        model=event.model,
        mode=event.mode,
        ai_model_version=event.ai_model_version,
        firmware=event.firmware,
        signals=dict(event.signals),
        codes=event.codes,
        ts=event.ts,
        first_ts=event.ts,
        seq=event.seq,
        applied=1,
    )


def _advance(twin: Twin, event: Event) -> Twin:
    return msgspec.structs.replace(
        twin,
        sector=event.sector,
        site=event.site,
        model=event.model,
        mode=event.mode,
        ai_model_version=event.ai_model_version,
        firmware=event.firmware,
        signals={**twin.signals, **event.signals},
        codes=event.codes,
        ts=event.ts,
        seq=event.seq,
        applied=twin.applied + 1,
    )

"""Apply one event to a twin: the only way a twin changes.

The rules:
1. No twin yet: the event creates it.
2. De-duplication is exact by seq: the high-water mark plus a bitmap of the
   WINDOW seqs below it. A seq seen before is a `duplicate`; a seq further
   below the mark than the window is `stale` (it cannot be told apart from a
   duplicate). Both only move a counter.
3. Any other event is accepted: it counts, moves the mark, feeds each signal's
   statistics and fills its place in the seq bitmap.
4. It becomes the latest state only if its `(ts, seq)` is newer than the
   twin's; otherwise it is `late` and 'latest' never moves backwards. Each
   signal keeps its own newest value by the same rule, so a late event can
   still supply a signal the newer events did not carry.
5. A jump past the mark + 1 is a `SeqGap`; a different mode or version on the
   newest event is a `ModeChanged` / `VersionChanged`. These are returned as
   values for the shell to publish; nothing here performs I/O.

Within a span of WINDOW seqs, any arrival order of the same events yields the
same latest state and counts (tests/unit/test_reduce.py proves it).
"""

from __future__ import annotations

from typing import Any, Literal

from msgspec.structs import replace

from twin.effects import Change, Effects, ModeChanged, SeqGap, VersionChanged
from twin.schema import MODES, Event
from twin.state import WINDOW, Counts, SignalState, Twin

ALPHA = 0.05
"""Weight of a new value in each signal's running mean and variance (about 20 reports of memory)."""

_MASK = (1 << WINDOW) - 1
_MODE_INDEX = {mode: i for i, mode in enumerate(MODES)}
_VERSIONED: tuple[Literal["ai_model_version", "firmware", "model"], ...] = (
    "ai_model_version", "firmware", "model",
)


def apply(twin: Twin | None, event: Event, *, received_ts: float) -> tuple[Twin, Effects]:
    """The twin after `event`, which the broker received at `received_ts`, and what it did."""
    if twin is None:
        return _create(event, received_ts), Effects("applied")
    verdict = _admit(twin, event.seq)
    if verdict == "duplicate":
        return replace(twin, counts=replace(twin.counts, duplicates=twin.counts.duplicates + 1)), Effects(verdict)
    if verdict == "stale":
        return replace(twin, counts=replace(twin.counts, stale=twin.counts.stale + 1)), Effects(verdict)
    return _accept(twin, event, received_ts)


def note_rejected(twin: Twin) -> Twin:
    """Count a message keyed to this robot that failed validation."""
    return replace(twin, counts=replace(twin.counts, rejected=twin.counts.rejected + 1))


def _admit(twin: Twin, seq: int) -> Literal["accept", "duplicate", "stale"]:
    if seq > twin.seq:
        return "accept"
    if seq == twin.seq:
        return "duplicate"
    bit = twin.seq - seq - 1
    if bit >= WINDOW:
        return "stale"
    return "duplicate" if twin.window >> bit & 1 else "accept"


def _accept(twin: Twin, event: Event, received_ts: float) -> tuple[Twin, Effects]:
    changes: list[Change] = []
    if event.seq > twin.seq + 1:
        changes.append(SeqGap(twin.robot_id, event.ts, twin.seq, event.seq))
    newest = (event.ts, event.seq) > (twin.ts, twin.latest_seq)
    accepted = replace(
        twin,
        **_mark(twin, event.seq),
        last_seen=max(twin.last_seen, received_ts),
        signals=_merge_signals(twin, event, newest),
        counts=_count(twin.counts, event),
    )
    if not newest:
        return replace(accepted, late=twin.late + 1), Effects("late", tuple(changes))
    latest, more = _become_latest(accepted, event)
    return latest, Effects("applied", (*changes, *more))


def _mark(twin: Twin, seq: int) -> dict[str, int]:
    """The high-water mark, seq bitmap and lowest seq after accepting `seq`."""
    if seq > twin.seq:
        shift = seq - twin.seq
        # Bounded shift: a hostile seq of 2**62 must not build a 2**62-bit integer.
        window = ((twin.window << shift) | (1 << (shift - 1))) & _MASK if shift <= WINDOW else 0
        return {"seq": seq, "window": window}
    bit = twin.seq - seq - 1
    return {"window": twin.window | (1 << bit), "first_seq": min(twin.first_seq, seq)}


def _merge_signals(twin: Twin, event: Event, newest: bool) -> dict[str, SignalState]:
    """Each signal keeps its newest value by (ts, seq) and folds the new one into its statistics.

    A signal whose value comes with the twin's latest event stores ts/seq as
    None; when the latest moves on without it, its own time is written out.
    Likewise its count `n` is None while the signal came with every accepted
    event, and is written out when an event comes without it.
    """
    events = twin.counts.events + 1  # after this event
    merged = {}
    for name, old in twin.signals.items():
        value = event.signals.get(name)
        if value is not None:
            n = _n(twin.signal_count(old) + 1, events)
            merged[name] = _update_signal(old, twin.signal_time(old), value, event, newest, n)
            continue
        state = old
        if newest and (old.ts is None or old.seq is None):
            ts, seq = twin.signal_time(old)
            state = replace(state, ts=ts, seq=seq)
        if old.n is None:
            state = replace(state, n=twin.counts.events)
        merged[name] = state
    fresh = {name: _new_signal(v, event, newest, _n(1, events)) for name, v in event.signals.items()
             if name not in twin.signals}
    if fresh:
        merged = dict(sorted({**merged, **fresh}.items()))  # canonical order: bytes must not depend on the sender's
    return merged


def _n(count: int, events: int) -> int | None:
    """A signal's count as stored: None when it equals the twin's accepted events."""
    return None if count == events else count


def _new_signal(value: float, event: Event, newest: bool, n: int | None = None) -> SignalState:
    return SignalState(value, None if newest else event.ts, None if newest else event.seq, n, value, 0.0)


def _update_signal(old: SignalState, when: tuple[float, int], value: float, event: Event,
                   newest: bool, n: int | None) -> SignalState:
    delta = value - old.mean
    mean = old.mean + ALPHA * delta
    var = (1 - ALPHA) * (old.var + ALPHA * delta * delta)
    if (event.ts, event.seq) > when:
        ts, seq = (None, None) if newest else (event.ts, event.seq)
        return SignalState(value, ts, seq, n, mean, var)
    # Older than this signal's value: then it is not the twin's newest either,
    # so the stored ts/seq (None or explicit) keep their meaning.
    return SignalState(old.value, old.ts, old.seq, n, mean, var)


def _count(counts: Counts, event: Event) -> Counts:
    modes = list(counts.modes)
    modes[_MODE_INDEX[event.mode]] += 1
    return replace(counts, events=counts.events + 1, modes=tuple(modes))


def _become_latest(twin: Twin, event: Event) -> tuple[Twin, list[Change]]:
    changes: list[Change] = [
        VersionChanged(twin.robot_id, event.ts, field, getattr(twin, field), getattr(event, field))
        for field in _VERSIONED
        if getattr(twin, field) != getattr(event, field)
    ]
    if event.mode != twin.mode:
        changes.insert(0, ModeChanged(twin.robot_id, event.ts, twin.mode, event.mode))
    latest = replace(
        twin,
        **_latest(event),
        mode_since=event.ts if event.mode != twin.mode else twin.mode_since,
        ai_model_since=event.ts if event.ai_model_version != twin.ai_model_version else twin.ai_model_since,
        firmware_since=event.ts if event.firmware != twin.firmware else twin.firmware_since,
        version_changes=twin.version_changes + sum(isinstance(c, VersionChanged) for c in changes),
    )
    return latest, changes


def _latest(event: Event) -> dict[str, Any]:
    """The twin fields the newest event decides."""
    return {
        "sector": event.sector, "site": event.site, "model": event.model, "mode": event.mode,
        "ai_model_version": event.ai_model_version, "firmware": event.firmware, "codes": event.codes,
        "location": event.location, "ts": event.ts, "latest_seq": event.seq,
        "config": _config(event),
    }


_NO_CONFIG: dict[str, str] = {}


def _config(event: Event) -> dict[str, str]:
    """The event's reported configuration in canonical (sorted) order: the stored bytes must not
    depend on the sender's order."""
    config = event.reported_config()
    return dict(sorted(config.items())) if config else _NO_CONFIG


def _create(event: Event, received_ts: float) -> Twin:
    return Twin(
        robot_id=event.robot_id,
        **_latest(event),
        seq=event.seq,
        first_seq=event.seq,
        window=0,
        first_seen=received_ts,
        last_seen=received_ts,
        signals={name: _new_signal(v, event, True) for name, v in sorted(event.signals.items())},
        counts=_count(Counts(), event),
        mode_since=event.ts,
        ai_model_since=event.ts,
        firmware_since=event.ts,
    )

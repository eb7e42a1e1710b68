"""Stall detector: a robot at work stands still where its work cycle normally moves.

A protective stop of a cobot (UR3 CobotOps) halts the arm mid-motion: every
joint speed drops to zero and stays there. Judged one signal at a time
against a static band, that looks normal, because a work cycle has pauses of
its own (the arm waits 2-5 s for the gripper, at the ends of a move) and
zero is inside every speed's band. What is abnormal is standing still *at a
moment of the cycle where normal cycles move*.

So the detector follows the work cycle. The robot reports a work-cycle
counter (the controller's program cycle number) as one of its signals; the
detector keeps the event time at which the counter last changed, so each
reading has a phase: whole seconds since its cycle began (the same
arithmetic as `phases`, which the shell uses to learn the profile). The
robot model's `StallParams.profile` says, per second of the cycle, which
share of the readings of normal cycles were moving (learned offline from the
normal-only runs by `profile`; `fleet-twin import` learns it, out-of-fold in
`streams.analysis.eval.ur3_production`). A reading whose joints all stand
still (|speed| < `still`) at a second where at least `expect` of normal
readings move is unexpected; `reports` such readings in a row are a stall.

Unknown is never alarming: before the counter has been seen to change (the
start of the robot's first cycle is not known), past the end of the
profile (an overrunning cycle), without speeds or counter, or outside
`working` mode, the reading is not judged. Off (params None) for robot models
that report no cycle counter, so nothing changes for them.

State per robot: three numbers (`State`), inside the twin budget.
"""

from __future__ import annotations

import math
from fnmatch import fnmatchcase

import msgspec
import numpy as np
import numpy.typing as npt

from twin.detect.findings import Finding

Floats = npt.NDArray[np.float64]


class StallParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A robot model's stall detector (seeds/detectors.yaml, `stall:` under the model)."""

    cycle: str
    """The signal that holds the work-cycle counter (any value that changes when a cycle starts)."""
    speeds: tuple[str, ...]
    """Joint speed signals (glob patterns); still = all of them below `still`."""
    profile: tuple[float, ...] = ()
    """Per whole second of the work cycle, the share of normal readings that were moving
    (learned by `profile` from normal-only runs). Empty: the detector judges nothing."""
    still: float = 0.03
    """|speed| below this on every joint is standing still: far below the speeds of motion
    (UR3: 0.2-2.5 rad/s), above the jitter of joints at rest (about 0.01 rad/s)."""
    expect: float = 0.8
    """A second of the cycle where at least this share of normal readings move is one where
    the robot is expected to move (4 of 5 normal cycles)."""
    reports: int = 3
    """Unexpectedly still readings in a row that make a stall (a single slow sample is not one)."""


class State(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """Per robot: the work-cycle counter, when it took that value, unexpected still readings in a row."""

    cycle: float = math.nan
    """Last counter value seen (NaN: none yet)."""
    since: float = math.nan
    """Event time the counter took that value (NaN: the cycle's start was not seen)."""
    still: int = 0
    """Readings in a row that stood still where normal cycles move."""


def phase(since: float, ts: float) -> int:
    """Whole seconds since the cycle began (rounded: readings come about once a second)."""
    return int(math.floor(ts - since + 0.5))


def _speeds(signals: dict[str, float], patterns: tuple[str, ...]) -> list[float]:
    return [v for name, v in signals.items() if any(fnmatchcase(name, pat) for pat in patterns)]


def step(state: State | None, signals: dict[str, float], ts: float, working: bool,
         p: StallParams) -> tuple[State, list[Finding], bool]:
    """One reading: the new state, the finding (if a stall), and whether the reading was judged."""
    s = state or State()
    counter = signals.get(p.cycle)
    if counter is None:
        return s, [], False
    if counter != s.cycle:
        # A new cycle starts here; the very first value seen does not say when its cycle began.
        s = State(counter, ts if not math.isnan(s.cycle) else math.nan, 0)
    speeds = _speeds(signals, p.speeds)
    if not working or not speeds or math.isnan(s.since):
        return s, [], False
    k = phase(s.since, ts)
    if not 0 <= k < len(p.profile):
        return msgspec.structs.replace(s, still=0), [], False  # an overrunning cycle: unknown, not judged
    unexpected = max(abs(v) for v in speeds) < p.still and p.profile[k] >= p.expect
    still = s.still + 1 if unexpected else 0
    s = msgspec.structs.replace(s, still=still)
    if still < p.reports:
        return s, [], True
    return s, [Finding("stall", "", still / p.reports, {"phase_s": k, "moving_share": p.profile[k]})], True


def phases(ts: Floats, counter: Floats) -> npt.NDArray[np.int64]:
    """Per row, the phase `step` gives it (-1 where unknown: before the first change of the counter).

    Rows must be one robot's, in time order; rows whose counter is NaN keep the phase arithmetic
    of the cycle before them (as `step` ignores them)."""
    out = np.full(len(ts), -1, dtype=np.int64)
    last, since = math.nan, math.nan
    for i, (t, c) in enumerate(zip(ts.tolist(), counter.tolist())):
        if math.isnan(c):
            continue
        if c != last:
            since = t if not math.isnan(last) else math.nan
            last = c
        if not math.isnan(since):
            out[i] = phase(since, t)
    return out


def profile(runs: list[tuple[Floats, Floats, Floats]], still: float, min_rows: int = 10) -> tuple[float, ...]:
    """The moving share per second of the cycle over normal runs, each (ts, counter, max |speed|).

    Seconds seen in fewer than `min_rows` readings end the profile (too few cycles last that
    long to say whether the robot moves there)."""
    moving: dict[int, list[bool]] = {}
    for ts, counter, speed in runs:
        for k, v in zip(phases(ts, counter).tolist(), speed.tolist()):
            if k >= 0 and not math.isnan(v):
                moving.setdefault(k, []).append(v >= still)
    out: list[float] = []
    for k in range(max(moving, default=-1) + 1):
        seen = moving.get(k, [])
        if len(seen) < min_rows:
            break
        out.append(round(sum(seen) / len(seen), 3))
    return tuple(out)

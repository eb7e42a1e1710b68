"""How a simulated robot takes a command: later, and not always.

A real robot does not switch its AI model, firmware or configuration the
instant it is told to: it downloads, installs and restarts, which takes a
while; some installs fail and leave the old version running; some take and
are rolled back by the robot's own health check a little later. `Inbox`
holds what each robot was told and when each change shows in its reports,
in event time, drawn from a random stream per robot and command, so the same
commands at the same event times give the same reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

FIELDS = ("ai_model", "firmware")
"""Desirable fields besides `config.<name>` (twin.desired)."""
MAX_VALUE = 64
"""Longest value a report can carry (`twin.schema.Version`)."""


class BadCommand(ValueError):
    """A command this robot cannot take: an unknown field or an empty or overlong value."""


@dataclass(frozen=True)
class Obedience:
    """How robots take commands.

    A change shows `apply_delay_s` x uniform(1 - jitter, 1 + jitter) event-time seconds
    after the command; `fail_share` of changes never show, `rollback_share` show and are
    undone `rollback_after_s` (jittered likewise) later.
    """

    apply_delay_s: float = 20.0
    jitter: float = 0.5
    fail_share: float = 0.0
    rollback_share: float = 0.0
    rollback_after_s: float = 60.0

    def __post_init__(self) -> None:
        if self.apply_delay_s < 0 or self.rollback_after_s < 0:
            raise ValueError("apply_delay_s and rollback_after_s must be >= 0")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter {self.jitter}: must be within [0, 1]")
        if min(self.fail_share, self.rollback_share) < 0 or self.fail_share + self.rollback_share > 1:
            raise ValueError(f"fail_share {self.fail_share} and rollback_share {self.rollback_share}: "
                             "each >= 0, together at most 1")


@dataclass(frozen=True)
class Change:
    """A value that will show in a robot's reports from `due` on."""

    robot: int
    field: str
    value: str
    due: float
    undo_after: float | None = None
    """Seconds after it shows that the robot's own health check rolls it back (None: it holds)."""
    rollback: bool = False
    """The robot undoing a change it had taken: a command repeating the value does not cancel it."""


@dataclass
class Installed:
    """What every robot runs and reports: AI model, firmware, configuration (one entry per robot)."""

    versions: list[str]
    firmware: list[str]
    config: list[dict[str, str]]

    def get(self, robot: int, name: str) -> str:
        if name == "ai_model":
            return self.versions[robot]
        if name == "firmware":
            return self.firmware[robot]
        return self.config[robot][name.removeprefix("config.")]

    def set(self, robot: int, name: str, value: str) -> None:
        if name == "ai_model":
            self.versions[robot] = value
        elif name == "firmware":
            self.firmware[robot] = value
        else:
            self.config[robot] = {**self.config[robot], name.removeprefix("config."): value}

    def check(self, robot: int, fields: dict[str, Any]) -> None:
        """Raise `BadCommand` unless every field is one this robot has and every value can be reported."""
        if not fields:
            raise BadCommand("a command without fields")
        for name, value in fields.items():
            known = name in FIELDS or (name.startswith("config.")
                                        and name.removeprefix("config.") in self.config[robot])
            if not known:
                raise BadCommand(f"field {name!r}: not ai_model, firmware or a config.<name> of this robot's model "
                                 f"({', '.join(sorted(self.config[robot])) or 'it has none'})")
            if not isinstance(value, str) or not 0 < len(value) <= MAX_VALUE:
                raise BadCommand(f"field {name!r}: value {value!r} is not a string of 1 to {MAX_VALUE} characters")


@dataclass
class Inbox:
    """Changes robots were told about and have not shown yet, at most one per (robot, field)."""

    obedience: Obedience
    seed: int
    pending: dict[tuple[int, str], Change] = field(default_factory=dict)
    told: dict[int, int] = field(default_factory=dict)
    """Commands each robot has taken so far: each draws from a stream of its own."""

    def receive(self, robot: int, fields: dict[str, str], at_ts: float, installed: Installed) -> None:
        """Schedule each field's change; a field already at its value cancels an update still on its way."""
        n = self.told.get(robot, 0)
        self.told[robot] = n + 1
        rng = np.random.default_rng([self.seed, 3, robot, n])
        o = self.obedience
        for name in sorted(fields):
            delay, outcome, back = rng.random(3)  # three draws per field whatever happens: stable streams
            key, waiting = (robot, name), self.pending.get((robot, name))
            if fields[name] == installed.get(robot, name) or outcome < o.fail_share:
                # Nothing to install, or the install fails: the robot keeps what it runs.
                if waiting is not None and not waiting.rollback:
                    del self.pending[key]
                continue
            undo = (o.rollback_after_s * _jittered(back, o.jitter)
                    if outcome < o.fail_share + o.rollback_share else None)
            self.pending[key] = Change(robot, name, fields[name], at_ts + o.apply_delay_s * _jittered(delay, o.jitter),
                                       undo_after=undo)

    def due(self, ts: float, installed: Installed) -> list[Change]:
        """Apply every change due by `ts` to `installed`; return them in the order they showed."""
        ready = sorted((c for c in self.pending.values() if c.due <= ts), key=lambda c: (c.due, c.robot, c.field))
        for change in ready:
            key = (change.robot, change.field)
            del self.pending[key]
            before = installed.get(change.robot, change.field)
            installed.set(change.robot, change.field, change.value)
            if change.undo_after is not None:
                self.pending[key] = Change(change.robot, change.field, before, change.due + change.undo_after,
                                           rollback=True)
        return ready


def _jittered(u: float, jitter: float) -> float:
    return 1.0 - jitter + 2.0 * jitter * u

"""Errors of the core, split by whose fault they are (h11's Remote/Local split).

`InvalidEvent` means the other side sent bad data: the shell dead-letters the
message with `reason` and carries on. `InvariantViolated` means we broke our own
rules: it must crash loudly (in tests above all), never be swallowed.

Every class says whether trying the same thing again may succeed (`retriable`,
as aiokafka's errors do), so the shell decides a retry from the error's class,
not from a list of names. The core's errors never are: the same bytes stay
invalid, the same seeds stay wrong, a broken invariant stays broken. The
shell's own errors are in `streams.exceptions`.
"""

from __future__ import annotations

from typing import ClassVar


class FleetTwinError(Exception):
    """Root of every error this project raises on purpose."""

    retriable: ClassVar[bool] = False
    """True where the same call may succeed later without anyone changing anything."""


class InvalidEvent(FleetTwinError):
    """A message that cannot become an event; `reason` is a short, bounded code.

    The reason codes are a closed set (see `REASONS`) because they become a
    Prometheus label and a DLQ header that operators filter on; `detail` is the
    free-text explanation for a human.
    """

    REASONS = frozenset(
        {
            "oversize",
            "undecodable",
            "missing_field",
            "invalid_field",
            "unsupported_version",
            "key_mismatch",
            "non_finite",
            "future_ts",
            "unknown_sector",
            "unknown_site",
            "unknown_model",
            "unknown_signal",
            "out_of_limits",
            "repeated_robot",
        }
    )

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in self.REASONS:
            raise InvariantViolated(f"unknown rejection reason {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class InvalidSeed(FleetTwinError):
    """A seed file (fleet model) that does not describe a valid fleet."""


class InvariantViolated(FleetTwinError):
    """Our own bug: never dead-lettered, never retried."""

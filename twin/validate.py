"""Turn raw message bytes into a trusted `Event`, or say exactly why not.

Two stages, because they fail differently: decoding (is this a v1 event at
all?) and checking against the fleet model and the message it came in (does
this robot, site and signal exist, is each value physically possible, is the
key right, is the clock sane?). Both raise `InvalidEvent` with a reason code
from a closed set; the shell dead-letters on it.

"Physically impossible" (outside a signal's `limits`) is rejected here;
"anomalous but possible" (outside `nominal`) is accepted and left to the
detectors.
"""

from __future__ import annotations

import math

import msgspec

from twin.exceptions import InvalidEvent
from twin.fleet import Fleet
from twin.schema import Event


class Policy(msgspec.Struct, frozen=True):
    """How strict ingest is; the defaults suit robots with NTP-synchronised clocks."""

    max_bytes: int = 64 * 1024
    """Larger messages are refused before parsing."""
    max_future_s: float = 300.0
    """How far an event's time may run ahead of the time Kafka received it."""


DEFAULT_POLICY = Policy()

_decoder = msgspec.json.Decoder(Event)


def decode(raw: bytes, *, max_bytes: int = DEFAULT_POLICY.max_bytes) -> Event:
    """Parse one message value into an event, checking types but not the fleet model."""
    if len(raw) > max_bytes:
        raise InvalidEvent("oversize", f"{len(raw)} bytes is over the {max_bytes}-byte limit")
    try:
        return _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise InvalidEvent(_validation_reason(str(exc)), str(exc)) from None
    except msgspec.DecodeError as exc:
        if b"NaN" in raw or b"Infinity" in raw:
            raise InvalidEvent("non_finite", f"NaN or Infinity is not a number here ({exc})") from None
        raise InvalidEvent("undecodable", str(exc)) from None


def _validation_reason(message: str) -> str:
    if "`$.schema`" in message:
        return "unsupported_version"
    if message.startswith("Object missing required field"):
        return "missing_field"
    if message.startswith("Number out of range"):
        return "non_finite"  # 1e999 and friends: JSON's only way to spell infinity
    return "invalid_field"


def check(
    event: Event, fleet: Fleet, *, key: bytes | None, received_ts: float | None,
    policy: Policy = DEFAULT_POLICY,
) -> Event:
    """Check an event against its message and the fleet model; return it unchanged.

    `received_ts` is the Kafka timestamp of the message: part of the log, so a
    replay judges the clock exactly as the live worker did.
    """
    _check_key(event, key)
    _check_time(event, received_ts, policy.max_future_s)
    _check_place(event, fleet)
    _check_signals(event, fleet)
    return event


def parse(
    raw: bytes, fleet: Fleet, *, key: bytes | None, received_ts: float | None = None,
    policy: Policy = DEFAULT_POLICY,
) -> Event:
    """Decode and check: the one call the ingest path makes per message."""
    event = decode(raw, max_bytes=policy.max_bytes)
    return check(event, fleet, key=key, received_ts=received_ts, policy=policy)


def _check_key(event: Event, key: bytes | None) -> None:
    # The key decides the partition and so the worker that owns the twin:
    # an event keyed otherwise would update a twin on the wrong worker.
    if key is None:
        raise InvalidEvent("key_mismatch", "message has no key; the key must be the robot_id")
    if key != event.robot_id.encode():
        raise InvalidEvent(
            "key_mismatch", f"key {key[:64]!r} is not the robot_id {event.robot_id!r}"
        )


def _check_time(event: Event, received_ts: float | None, max_future_s: float) -> None:
    if not math.isfinite(event.ts):
        raise InvalidEvent("non_finite", f"ts is {event.ts}")
    if received_ts is not None and event.ts > received_ts + max_future_s:
        raise InvalidEvent(
            "future_ts",
            f"ts {event.ts:.3f} is {event.ts - received_ts:.0f}s after the broker received it "
            f"(limit {max_future_s:.0f}s): is the robot's clock set?",
        )


def _check_place(event: Event, fleet: Fleet) -> None:
    sector = fleet.sectors.get(event.sector)
    if sector is None:
        raise InvalidEvent("unknown_sector", f"sector {event.sector!r} is not in the fleet model")
    if event.site not in sector.sites:
        raise InvalidEvent("unknown_site", f"site {event.site!r} is not a site of {event.sector!r}")
    if event.model not in fleet.models:
        raise InvalidEvent("unknown_model", f"robot model {event.model!r} is not in the fleet model")


def _check_signals(event: Event, fleet: Fleet) -> None:
    catalogue = fleet.models[event.model].signals
    for name, value in event.signals.items():
        spec = catalogue.get(name)
        if spec is None:
            raise InvalidEvent(
                "unknown_signal", f"signal {name!r} is not in the catalogue of {event.model!r}"
            )
        if not math.isfinite(value):
            raise InvalidEvent("non_finite", f"signal {name!r} is {value}")
        lo, hi = spec.limits
        if not lo <= value <= hi:
            raise InvalidEvent(
                "out_of_limits",
                f"signal {name!r} = {value} {spec.unit} is outside physical limits [{lo}, {hi}]",
            )

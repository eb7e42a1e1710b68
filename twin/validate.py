"""Turn raw message bytes into a trusted `Event`, or say exactly why not.

Two stages, because they fail differently: decoding (is this a v1 event at
all?) and checking against the fleet model (does this robot, site and signal
exist, is each value physically possible?). Both raise `InvalidEvent` with a
reason code from a closed set; the shell dead-letters on it.
"""

from __future__ import annotations

import math

import msgspec

from twin.exceptions import InvalidEvent
from twin.fleet import Fleet
from twin.schema import Event

MAX_EVENT_BYTES = 64 * 1024

_decoder = msgspec.json.Decoder(Event)


def decode(raw: bytes, *, max_bytes: int = MAX_EVENT_BYTES) -> Event:
    """Parse one message value into an event, checking types but not the fleet model."""
    if len(raw) > max_bytes:
        raise InvalidEvent("oversize", f"{len(raw)} bytes is over the {max_bytes}-byte limit")
    try:
        return _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        if "`$.schema`" in str(exc):
            raise InvalidEvent("unsupported_version", str(exc)) from None
        raise InvalidEvent("schema", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise InvalidEvent("undecodable", str(exc)) from None


def check(event: Event, fleet: Fleet, *, key: bytes | None) -> Event:
    """Check an event against the message key and the fleet model; return it unchanged."""
    _check_key(event, key)
    _check_place(event, fleet)
    _check_signals(event, fleet)
    return event


def parse(raw: bytes, fleet: Fleet, *, key: bytes | None, max_bytes: int = MAX_EVENT_BYTES) -> Event:
    """Decode and check: the one call the ingest path makes per message."""
    return check(decode(raw, max_bytes=max_bytes), fleet, key=key)


def _check_key(event: Event, key: bytes | None) -> None:
    # The key decides the partition and so the worker that owns the twin:
    # an event keyed otherwise would update a twin on the wrong worker.
    if key is None:
        raise InvalidEvent("key_mismatch", "message has no key; the key must be the robot_id")
    if key != event.robot_id.encode():
        raise InvalidEvent(
            "key_mismatch", f"key {key[:64]!r} is not the robot_id {event.robot_id!r}"
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
    if not math.isfinite(event.ts):
        raise InvalidEvent("non_finite", f"ts is {event.ts}")
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

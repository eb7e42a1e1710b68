"""Turn raw message bytes into a trusted `Event`, or say exactly why not.

Two stages, because they fail differently: decoding (is this a v1 event at
all?) and checking against the fleet model and the message it came in (does
this robot, site and signal exist, is each value physically possible, is the
key right, is the clock sane?). Both raise `InvalidEvent` with a reason code
from a closed set; the shell dead-letters on it.

"Physically impossible" (outside a signal's `limits`) is rejected here;
"anomalous but possible" (outside `nominal`) is accepted and left to the
detectors.

Whatever the bytes, `parse` returns an event or raises `InvalidEvent`, never
anything else: the ingest agent catches only that, so any other exception
here would stop a worker on one hostile message. `tests/unit/test_hostile_input.py`
holds it to that.
"""

from __future__ import annotations

import math
import re

import msgspec
import numpy as np

from twin.exceptions import InvalidEvent
from twin.fleet import Fleet
from twin.schema import Event


class Policy(msgspec.Struct, frozen=True):
    """How strict ingest is; the defaults suit robots with NTP-synchronised clocks."""

    max_bytes: int = 64 * 1024
    """Larger messages are refused before parsing."""
    max_future_s: float = 300.0
    """How far an event's time may run ahead of the time Kafka received it."""
    max_depth: int = 32
    """Deeper nesting of arrays and objects is refused before parsing (a v1 event needs 2).

    Keep it far below Python's recursion limit: msgspec recurses once per level."""


DEFAULT_POLICY = Policy()

_decoder = msgspec.json.Decoder(Event)


def decode(
    raw: bytes, *, max_bytes: int = DEFAULT_POLICY.max_bytes, max_depth: int = DEFAULT_POLICY.max_depth,
) -> Event:
    """Parse one message value into an event, checking types but not the fleet model."""
    if len(raw) > max_bytes:
        raise InvalidEvent("oversize", f"{len(raw)} bytes is over the {max_bytes}-byte limit")
    _check_text(raw, max_depth)
    try:
        return _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise InvalidEvent(_validation_reason(str(exc)), str(exc)) from None
    except msgspec.DecodeError as exc:
        raise InvalidEvent(_malformed_reason(raw, str(exc)), str(exc)) from None


def _check_text(raw: bytes, max_depth: int) -> None:
    # msgspec raises UnicodeDecodeError (not DecodeError) for invalid UTF-8 in
    # a field it decodes, and skips unknown fields unchecked; it raises
    # RecursionError past a depth that depends on the caller's stack, so a
    # replay could judge a message otherwise than the live worker. Both are
    # settled here, the same way everywhere. Valid events are ASCII and have
    # a handful of brackets: the common case costs two scans in C.
    if not raw.isascii():
        try:
            raw.decode()
        except UnicodeDecodeError as exc:
            raise InvalidEvent("undecodable", f"invalid UTF-8 at byte {exc.start}: {exc.reason}") from None
    if raw.count(b"[") + raw.count(b"{") > max_depth and (depth := _depth(raw)) > max_depth:
        raise InvalidEvent("undecodable", f"nested {depth} levels deep; the limit is {max_depth}")


# A JSON string, or an unterminated one running to the end: every match ends at
# its first unescaped quote or the end, so the scan is linear on any input.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*(?:"|\\?\Z)', re.DOTALL)
# Openers become +1 and closers -1 (as int8); every other byte is deleted.
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects outside strings.

    On malformed input, at least the depth a decoder reaches before it fails.
    """
    steps = np.frombuffer(_STRING.sub(b"", raw).translate(_STEPS, _NOT_BRACKETS), dtype=np.int8)
    return int(np.cumsum(steps, dtype=np.int64).max(initial=0))


# How common encoders spell the numbers JSON has no words for: Python, Java and
# JavaScript (NaN, Infinity), C and Rust (nan, -inf), Go (+Inf), MSVC (1.#INF, -nan(ind)).
_NON_FINITE = re.compile(
    rb"(?<![\w.+-])[-+]?(?:nan(?:\(\w*\))?|inf(?:inity)?|\d\.#(?:inf|ind|qnan|snan)\d*)(?=[\s,\]}]|\Z)",
    re.IGNORECASE,
)
_AT_BYTE = re.compile(r"\(byte (\d+)\)$")


def _malformed_reason(raw: bytes, message: str) -> str:
    # Only the token the decoder stopped at counts: a "NaN" elsewhere (in a
    # string, say) says nothing about why this message is malformed. msgspec
    # points at the token, or up to 4 bytes on (after `nan`, read as `null`).
    at = _AT_BYTE.search(message)
    if at is None:
        return "undecodable"
    stop = int(at.group(1))
    found = any(_NON_FINITE.match(raw, start) for start in range(max(stop - 4, 0), stop + 1))
    return "non_finite" if found else "undecodable"


def _validation_reason(message: str) -> str:
    # msgspec ends the message with the path; the middle may quote the sender's
    # own value (an unknown mode), so only the end is trusted.
    if message.endswith("`$.schema`"):
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
    event = decode(raw, max_bytes=policy.max_bytes, max_depth=policy.max_depth)
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
                "unknown_signal", f"signal {name[:64]!r} is not in the catalogue of {event.model!r}"
            )
        if not math.isfinite(value):
            raise InvalidEvent("non_finite", f"signal {name!r} is {value}")
        lo, hi = spec.limits
        if not lo <= value <= hi:
            raise InvalidEvent(
                "out_of_limits",
                f"signal {name!r} = {value} {spec.unit} is outside physical limits [{lo}, {hi}]",
            )

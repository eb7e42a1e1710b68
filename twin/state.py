"""The twin: what the fleet twin believes about one robot right now."""

from __future__ import annotations

import msgspec


class Twin(msgspec.Struct, frozen=True, kw_only=True):
    """Latest known state of one robot, plus the bookkeeping that makes replays exact."""

    robot_id: str
    sector: str
    site: str
    model: str
    mode: str
    """Mode from the newest event (by event time)."""
    ai_model_version: str
    firmware: str
    signals: dict[str, float]
    """Newest value of each signal ever reported (a signal keeps its last value)."""
    codes: tuple[str, ...]
    """Codes of the newest event."""
    ts: float
    """Event time of the newest event applied to the state above."""
    first_ts: float
    """Event time of the first event seen for this robot."""
    seq: int
    """High-water mark: the highest seq applied. Anything at or below it is a duplicate."""
    applied: int = 0
    """Events that advanced the twin."""
    late: int = 0
    """Events past the high-water mark but older (event time) than the state: counted, not applied to signals."""
    duplicates: int = 0
    """Events at or below the high-water mark: dropped."""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Twin)


def encode_twin(twin: Twin) -> bytes:
    """The stored form of a twin (table value, changelog, HTTP body): compact JSON."""
    return _encoder.encode(twin)


def decode_twin(raw: bytes) -> Twin:
    return _decoder.decode(raw)

"""Faust codecs for the `twins` table, passed as instances (no global registry)."""

from __future__ import annotations

from typing import Any

import msgspec
from faust.serializers.codecs import Codec

from twin.state import Twin


class Utf8(Codec):
    """Robot ids as `str` in memory, UTF-8 bytes in the changelog."""

    def _dumps(self, s: Any) -> bytes:
        return s.encode() if isinstance(s, str) else bytes(s)

    def _loads(self, s: bytes) -> Any:
        return s.decode()


class TwinCodec(Codec):
    """Twins as msgspec JSON in the changelog: compact and readable with kcat."""

    _encoder = msgspec.json.Encoder()
    _decoder = msgspec.json.Decoder(Twin)

    def _dumps(self, s: Any) -> bytes:
        return self._encoder.encode(s)

    def _loads(self, s: bytes) -> Any:
        return self._decoder.decode(s)

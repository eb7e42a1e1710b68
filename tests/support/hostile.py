"""Hostile telemetry by class, each message with the one reason it must be rejected for.

Deterministic (a seeded `random.Random`), so the unit tier can check every
expectation that the e2e tier then sends to the real broker and worker. The
hypothesis strategies in `tests/unit/test_hostile_input.py` cover the same
classes with inputs that change from run to run.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from tests.support.cases import NOW, event

INVALID_UTF8 = (b"\xff", b"\xfe\xff", b"\x80", b"\xc0\xaf", b"\xe2\x82", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
                b"\xf8\x88\x80\x80\x80")
"""Bytes no UTF-8 decoder may accept: invalid bytes, a lone continuation, an overlong
encoding of '/', a truncated sequence, a UTF-16 surrogate, a code point past U+10FFFF, a 5-byte form."""

NON_FINITE = (b"NaN", b"-NaN", b"Infinity", b"-Infinity", b"+Infinity", b"nan", b"-nan", b"inf", b"-inf",
              b"+Inf", b"-Inf", b"INF", b"infinity", b"1.#INF", b"-1.#IND", b"1.#QNAN", b"nan(ind)",
              b"-nan(ind)", b"1e400", b"-1e999", b"1" + b"0" * 400, b"1.7976931348623159e308")
"""How encoders in the field spell numbers JSON cannot hold (Python, Java, C, Go, Rust, MSVC), and
finite-looking literals past the largest double."""

HUGE_INT = b"1" + b"0" * 5000
"""10**5000 as an integer literal (Python itself will not print it: 4300-digit limit)."""

WRONG = {"null": None, "true": True, "int": 7, "float": 1.5, "string": "x", "array": [1], "object": {"a": 1}}
"""One value of each JSON type."""

FIELD_TYPES = {
    "schema": {"int"}, "robot_id": {"string"}, "seq": {"int"}, "ts": {"int", "float"},
    "sector": {"string"}, "site": {"string"}, "model": {"string"}, "mode": {"string"},
    "signals": {"object"}, "ai_model_version": {"string"}, "firmware": {"string"}, "codes": {"array"},
    "location": {"object", "null"},
}
"""The JSON types each field of a v1 event accepts (an int is a valid float)."""


@dataclass(frozen=True)
class Hostile:
    kind: str
    """Class of input (a row of the figures in docs/RELIABILITY.md, "Hostile input")."""
    value: bytes
    key: bytes | None
    reason: str
    """The rejection reason this message must get, and no other."""


def json_type(value: Any) -> str:
    """The JSON type name of a decoded value (bool before int: in Python a bool is an int)."""
    for name, kind in (("null", type(None)), ("true", bool), ("int", int), ("float", float),
                       ("string", str), ("array", list), ("object", dict)):
        if isinstance(value, kind):
            return name
    raise TypeError(value)


def wrong_type_reason(field: str) -> str:
    return "unsupported_version" if field == "schema" else "invalid_field"


def dumps(robot_id: str, ts: float, /, **changes: Any) -> bytes:
    body = event(robot_id, ts=ts)
    body.update(changes)
    return json.dumps(body).encode()


def numbers_at(robot_id: str, ts: float, literal: bytes, *, unknown: bool = True) -> list[bytes]:
    """`literal` in place of each kind of number: a signal, ts, latitude, and an unknown field.

    An unknown field is skipped, not converted: there only a literal that is not
    JSON at all (NaN) is refused; 1e400 is valid JSON and passes.
    """
    base = dumps(robot_id, ts, location={"lat": 12.5, "lon": 4.0}, extra=0.25)
    places = [b'"speed_mps": 1.2', f'"ts": {ts!r}'.encode(), b'"lat": 12.5'] + [b'"extra": 0.25'] * unknown
    return [base.replace(place, place.split(b":")[0] + b": " + literal) for place in places]


def corpus(robot_id: str, *, ts: float = NOW, seed: int = 20240611, scale: int = 1,
           big: int = 900_000, big_count: int = 2) -> list[Hostile]:
    """Hostile messages of every class, most keyed to `robot_id`: about 1900 at `scale=1`.

    `big` is the size of the largest oversize messages (under the broker's 1 MB limit,
    over the worker's 64 KiB), `big_count` how many random ones of that size to add.
    """
    rng = random.Random(seed)
    k = robot_id.encode()
    out: list[Hostile] = []

    def add(kind: str, reason: str, values: list[bytes], key: bytes | None = k) -> None:
        out.extend(Hostile(kind, v, key, reason) for v in values)

    valid = [dumps(robot_id, ts), json.dumps(event(robot_id, ts=ts, firmware="fw-ü-2", codes=["E-STOP"],
                                                   location={"lat": -33.9, "lon": 151.2, "floor": 3})).encode()]

    randoms = [rng.randbytes(rng.randrange(1, 600)) for _ in range(500 * scale)]
    add("random bytes", "undecodable", [b if not_utf8(b) else b + b"\xff" for b in randoms])
    add("truncated", "undecodable", [v[:cut] for v in valid for cut in range(len(v))])

    deep = [b"[" * 60_000, b"[" * 30_000 + b"]" * 30_000, b'{"a":' * 12_000, b"[" * 33, b"{" * 33]
    deep += [dumps(robot_id, ts, extra=None).replace(b'"extra": null', b'"extra": ' + b"[" * n + b"]" * n)
             for n in (32, 100, 1000, 30_000)]
    deep += [dumps(robot_id, ts, extra=None).replace(b'"extra": null', b'"extra": ' + b'{"a":' * n + b"1" + b"}" * n)
             for n in (32, 1000, 10_000)]
    deep += [dumps(robot_id, ts).replace(b"1.2", b"[" * n + b"]" * n) for n in (31, 1000, 30_000)]
    add("deep nesting", "undecodable", deep)
    add("deep nesting", "oversize", [b"[" * 100_000, b'{"a":' * 100_000])

    for literal in NON_FINITE + (HUGE_INT,):
        json_syntax = literal[-1:].isdigit() and b"#" not in literal
        add("NaN/Infinity/huge", "non_finite", numbers_at(robot_id, ts, literal, unknown=not json_syntax))
    add("NaN/Infinity/huge", "invalid_field", [dumps(robot_id, ts).replace(b'"seq": 1', b'"seq": ' + HUGE_INT),
                                               dumps(robot_id, ts).replace(b'"seq": 1', b'"seq": -' + HUGE_INT)])

    for field, accepted in FIELD_TYPES.items():
        add("wrong type", wrong_type_reason(field),
            [dumps(robot_id, ts, **{field: v}) for name, v in WRONG.items() if name not in accepted])
    for sub, accepted in (("lat", {"int", "float"}), ("lon", {"int", "float"}), ("floor", {"int", "null"})):
        add("wrong type", "invalid_field", [dumps(robot_id, ts, location={"lat": 1.0, "lon": 2.0, sub: v})
                                            for name, v in WRONG.items() if name not in accepted])
    add("wrong type", "invalid_field", [dumps(robot_id, ts, signals={"speed_mps": v})
                                        for name, v in WRONG.items() if name not in ("int", "float")])

    utf8 = []
    for v in valid:
        for at in range(0, len(v), 2):
            bad = rng.choice(INVALID_UTF8)
            utf8.append(v[:at] + bad + v[at:])
    add("invalid UTF-8", "undecodable", utf8)

    for n in (129, 1000, 20_000):
        long_id = "r" * n
        add("overlong strings", "invalid_field", [dumps(long_id, ts)], key=long_id.encode())
    for field in ("sector", "site", "model", "mode", "firmware", "ai_model_version"):
        add("overlong strings", "invalid_field", [dumps(robot_id, ts, **{field: "x" * n}) for n in (65, 5000, 60_000)])
    add("overlong strings", "invalid_field", [dumps(robot_id, ts, codes=["c" * 65]),
                                              dumps(robot_id, ts, codes=["c"] * 33)])
    add("overlong strings", "unknown_signal", [dumps(robot_id, ts, signals={"s" * n: 1.0}) for n in (65, 60_000)])

    add("duplicate keys", "key_mismatch", [dumps(robot_id, ts).replace(b'"seq"', b'"robot_id": "someone-else", "seq"')])
    add("duplicate keys", "invalid_field", [dumps(robot_id, ts).replace(b'"seq": 1', b'"seq": 1, "seq": "two"'),
                                            dumps(robot_id, ts).replace(b'"mode": "working"', b'"mode": "working", "mode": "x"')])
    add("duplicate keys", "unsupported_version", [dumps(robot_id, ts).replace(b'"schema": 1', b'"schema": 1, "schema": 2')])
    add("duplicate keys", "out_of_limits", [dumps(robot_id, ts).replace(b'"speed_mps": 1.2', b'"speed_mps": 1.2, "speed_mps": 99')])

    add("oversize", "oversize", [b" " * (65_537 - len(valid[0])) + valid[0], rng.randbytes(100_000),
                                 b" " * big + valid[0], b"[" * big, json.dumps(event(robot_id, ts=ts, extra="x" * big)).encode()]
        + [rng.randbytes(big) for _ in range(big_count)])

    keys = [None, b"", robot_id.upper().encode(), k + b" ", b" " + k, k + b"\x00", b"\xff\xfe", b"someone-else"]
    keys += [rng.randbytes(rng.randrange(1, 40)) for _ in range(300 * scale)]
    for key in keys:
        if key != k:
            add("key mismatch", "key_mismatch", [valid[rng.randrange(2)]], key=key)
    return out


def not_utf8(b: bytes) -> bool:
    try:
        b.decode()
    except UnicodeDecodeError:
        return True
    return False

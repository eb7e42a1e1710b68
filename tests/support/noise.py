"""What a flaky, hostile log adds to the records of a run, drawn from a seeded random source."""

from __future__ import annotations

import random

import msgspec

from twin.record import Record


def with_noise(record: Record, rng: random.Random) -> list[Record]:
    """The record, then (telemetry only, each by chance) a truncated copy, a report with no robot
    behind its key, and the same report again (a duplicate the reducer sees)."""
    out = [record]
    if record.kind == "telemetry" and rng.random() < 0.01:
        out.append(msgspec.structs.replace(record, value=record.value[: len(record.value) // 2]))
    if record.kind == "telemetry" and rng.random() < 0.005:
        out.append(msgspec.structs.replace(record, key=b"r-nobody", value=b'{"schema": 1}'))
    if record.kind == "telemetry" and rng.random() < 0.01:
        out.append(record)
    return out

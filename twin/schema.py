"""Telemetry event, schema v1: what a robot (or the simulator) puts on the wire.

JSON on the wire, decoded by msgspec straight into a frozen struct (no dict in
between). Unknown fields are ignored so producers can add fields without
breaking older workers.

Versioning: `schema` is required and checked. When v2 arrives, `EventV2` gets
`tag_field="schema", tag=2`, this one `tag=1`, the decoder takes the union
`EventV1 | EventV2` (msgspec picks the type by the tag), and `decode` upgrades a
v1 event to the newest type, so everything after decoding sees one type.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

SCHEMA_VERSION = 1
SEQ_MAX = 2**63 - 1
"""The largest seq: a signed 64-bit integer, what a twin's msgpack, Parquet and Arrow columns hold
(at 1,000 reports a second, 292 million years). JSON allows any integer; a seq past 2**64 - 1 got
through and then failed to encode when the worker stored the twin."""

Mode = Literal["idle", "working", "charging", "fault", "estop", "maintenance"]
MODES: tuple[str, ...] = ("idle", "working", "charging", "fault", "estop", "maintenance")

RobotId = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
Label = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Version = Annotated[str, msgspec.Meta(max_length=64)]
ConfigKey = Annotated[str, msgspec.Meta(min_length=1, max_length=48, pattern=r"^[a-z][a-z0-9_]*$")]
ConfigValue = Annotated[str, msgspec.Meta(max_length=64)]
Config = Annotated[dict[ConfigKey, ConfigValue], msgspec.Meta(max_length=32)]


class Location(msgspec.Struct, frozen=True, kw_only=True):
    """Where the robot is: WGS84 position, optionally a floor for indoor sites."""

    lat: Annotated[float, msgspec.Meta(ge=-90, le=90)]
    lon: Annotated[float, msgspec.Meta(ge=-180, le=180)]
    floor: int | None = None


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """One report of one robot."""

    schema: Literal[1]
    """Wire-format version."""
    robot_id: RobotId
    """Stable id of the robot; also the Kafka message key."""
    seq: Annotated[int, msgspec.Meta(ge=0, le=SEQ_MAX)]
    """Per-robot sequence number, strictly increasing at the source."""
    ts: Annotated[float, msgspec.Meta(gt=0)]
    """Event time: when the robot measured this, seconds since the Unix epoch (UTC)."""
    sector: Label
    """Sector id from seeds/sectors.yaml."""
    site: Label
    """Site id from seeds/sectors.yaml; must belong to `sector`."""
    model: Label
    """Robot model id from seeds/models.yaml."""
    mode: Mode
    """What the robot says it is doing."""
    signals: dict[str, float]
    """Measurements, named from the model's signal catalogue."""
    ai_model_version: Version = ""
    """Version of the on-device AI model (policy/perception) the robot runs."""
    firmware: Version = ""
    """Controller firmware version."""
    codes: Annotated[tuple[Label, ...], msgspec.Meta(max_length=32)] = ()
    """Fault or warning codes raised since the previous report (e.g. `E-STOP`, `F-OVERCURRENT-J3`)."""
    location: Location | None = None
    """Position, for robots that move; absent for fixed ones."""
    config: Config | msgspec.UnsetType = msgspec.UNSET
    """Reported configuration parameters (named in the model's `control.config`), values as
    strings. Unset (not `{}`) by default so that events without it encode as before."""

    def reported_config(self) -> dict[str, str]:
        """The reported configuration, `{}` when the event carries none."""
        return {} if isinstance(self.config, msgspec.UnsetType) else self.config


_encoder = msgspec.json.Encoder()


def encode(event: Event) -> bytes:
    """The wire form of an event (used by the simulator and tests)."""
    return _encoder.encode(event)

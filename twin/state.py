"""The twin: what the fleet twin believes about one robot.

Fields fall in two groups, and the difference matters for replay:

* the latest state (everything taken from the newest event by `(ts, seq)`) and
  `counts` are functions of the *set* of events received: any arrival order
  gives the same values (within the reorder window, see `twin.reduce`);
* `late`, `mode_since`, the `*_since` version times and each signal's running
  statistics depend on arrival order by definition. Replaying the log in its
  own order reproduces them bit for bit.

Stored form (Faust table, changelog): msgpack with structs as arrays, so field
names are not repeated per robot. HTTP form: `streams.twin_view.to_view`, a
stable JSON shape with names (documented in docs/TWIN.md).

A twin is a value: a tree of frozen structs, dicts and lists that never refers
back to itself. Its structs (and the detector state structs in `twin.detect`)
are declared `gc=False`, untracked by Python's cycle collector, which has no
cycle to find in them: a checkpoint or a takeover builds tens of thousands of
twins at once, and tracked they set off collections that walked every one of
them again (bench/twins_of.py). Their lists are still tracked.
"""

from __future__ import annotations

import msgspec

from twin.detect.watch import Watch
from twin.schema import MODES, Location

ARRIVAL_ORDER_FIELDS = frozenset(
    {"late", "mode_since", "ai_model_since", "firmware_since", "version_changes", "first_seen"}
)
"""Twin fields that depend on arrival order (plus each signal's mean and var)."""

WINDOW = 64
"""How many seqs below the high-water mark are remembered for exact de-duplication."""


class SignalState(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """The newest value of one signal and running statistics over its values."""

    value: float
    """Newest value, by the `(ts, seq)` of the event that carried it."""
    ts: float | None
    """Event time of `value`; None when it came with the twin's latest event (the usual
    case: one byte stored instead of nine). `Twin.signal_time` resolves it."""
    seq: int | None
    """Seq of `value`; None when it came with the twin's latest event."""
    n: int | None
    """Values seen (every accepted event that carried this signal); None when that is every event
    the twin accepted (the usual case: one byte stored instead of three to five, which pays for
    the reported configuration). `Twin.signal_count` resolves it."""
    mean: float
    """Exponentially weighted mean, in arrival order: the detectors' baseline."""
    var: float
    """Exponentially weighted variance, in arrival order."""


class Counts(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """What happened to this robot's messages; independent of arrival order."""

    events: int = 0
    """Distinct events accepted."""
    duplicates: int = 0
    """Events whose seq was already accepted: dropped."""
    stale: int = 0
    """Events more than WINDOW seqs below the high-water mark: dropped, unverifiable."""
    rejected: int = 0
    """Messages keyed to this robot that failed validation (they are in the DLQ)."""
    modes: tuple[int, ...] = (0,) * len(MODES)
    """Accepted events per reported mode, in `twin.schema.MODES` order."""


class Twin(msgspec.Struct, frozen=True, gc=False, kw_only=True, array_like=True):
    """Everything known about one robot, small enough to keep a million in memory."""

    robot_id: str
    sector: str
    site: str
    model: str
    mode: str
    ai_model_version: str
    firmware: str
    codes: tuple[str, ...]
    location: Location | None
    ts: float
    """Event time of the newest event: the instant the latest state describes."""
    latest_seq: int
    """Seq of the newest event (by event time, then seq)."""
    seq: int
    """High-water mark: the highest seq accepted."""
    first_seq: int
    """Lowest seq accepted: with `seq` and `counts.events` it gives `missing()`."""
    window: int
    """Bit i set when seq `seq - 1 - i` was accepted (exact de-duplication below the mark)."""
    first_seen: float
    """Broker time of the first message accepted for this robot."""
    last_seen: float
    """Broker time of the newest message accepted: silence is measured from here."""
    signals: dict[str, SignalState]
    counts: Counts
    late: int = 0
    """Accepted events that arrived after a newer one (arrival-order dependent)."""
    mode_since: float
    """Event time at which the current mode began, as seen in arrival order."""
    ai_model_since: float
    """Event time at which the current AI-model version was first seen."""
    firmware_since: float
    version_changes: int = 0
    """AI-model, firmware or robot-model changes seen on the newest event."""
    watch: Watch | None = None
    """Detector state and open anomalies (twin.detect); None until detectors have run."""
    partition: int = -1
    """Kafka partition the robot's records are in (the key puts them all in one)."""
    offset: int = -1
    """Offset of the newest telemetry record applied to this twin, valid or not.

    After a crash the worker re-reads records from its last committed offset,
    while the table (recovered from its changelog) may already hold them: a
    record at or below this offset is skipped, so redelivery cannot count an
    event twice (twin.pipeline.redelivered)."""
    check_offset: int = -1
    """The same for the robot's silence checks (a topic co-partitioned with telemetry)."""
    config: dict[str, str] = {}
    """Reported configuration parameters, from the newest event (sorted by name). Last field:
    stored twins written before it existed still decode (array_like)."""

    def signal_time(self, state: SignalState) -> tuple[float, int]:
        """The (event time, seq) of a signal's newest value."""
        return (self.ts if state.ts is None else state.ts,
                self.latest_seq if state.seq is None else state.seq)

    def signal_count(self, state: SignalState) -> int:
        """How many values of a signal were seen."""
        return self.counts.events if state.n is None else state.n

    def missing(self) -> int:
        """Seqs between the lowest and highest accepted that never arrived (lost messages)."""
        return self.seq - self.first_seq + 1 - self.counts.events


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Twin)


def encode_twin(twin: Twin) -> bytes:
    """The stored form of a twin (table value, changelog)."""
    return _encoder.encode(twin)


def decode_twin(raw: bytes) -> Twin:
    return _decoder.decode(raw)


"""Desired state: what operators want each robot to run, and how far it is from what it reports.

A desired change says "robots matching this selector should have this field at
this value" (or, value None, "forget what this selector desired of the
field"), with who, when and why. Changes live on a compacted topic keyed by
`change_key` (selector + field), so the log keeps the latest change per key;
`DesiredRules` holds the same thing in memory, whatever order the changes come
in. A robot's desire is never stored in its twin: it is *resolved* from the
rules and the twin's reported state (`resolve`), so the stored twin stays
small and any order of changes and reports resolves to the same desire.

The rules of resolution:

- changes apply in `(ts, change_id)` order; a matching change sets its field,
  a matching clear (value None) removes whatever earlier changes set;
- a selector matches on every constraint it names (robot ids, sector, site,
  robot model, AI-model version, share of the fleet);
- `share` puts a robot in a wave when `robot_share(robot_id) < share`: the
  5% wave is inside the 25% wave, so canary waves nest;
- `version` matches robots reporting that AI-model version *or already at the
  change's own value*: a robot that converged stays selected instead of
  dropping out of its own change.

A *delta* is a desired field whose reported value differs; a robot's whole
delta is its `Command`; a delta older than the drift grace opens a
`desired_drift` anomaly (`judge_drift`) that resolves once the robot reports
the desired value or the desire is cleared. Pure: no I/O, event time only.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import re
from collections.abc import Callable, Iterable
from typing import NamedTuple

import msgspec
from msgspec.structs import replace

from twin.detect.findings import Anomaly, anomaly_id
from twin.detect.watch import Open, Watch
from twin.exceptions import InvalidEvent
from twin.fleet import ConfigParam, Fleet, RobotModel
from twin.state import Twin

SCHEMA_VERSION = 1
DETECTOR = "desired_drift"
"""Detector name of drift anomalies (the `signal` is the field)."""
FIELDS = ("ai_model", "firmware")
"""Desirable fields besides `config.<name>`."""
MAX_BYTES = 64 * 1024
"""A desired-change record larger than this is refused before parsing."""

_ROBOT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class InvalidChange(InvalidEvent):
    """A desired change that cannot be taken: an `InvalidEvent` with reasons of its own.

    Its own closed set, so the telemetry rejection reasons (a metric label) do not grow.
    """

    REASONS = frozenset({"undecodable", "schema", "unknown_field", "bad_value", "bad_selector"})


class Selector(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """Which robots a change is for: every constraint named must hold (none named: the whole fleet)."""

    robots: tuple[str, ...] = ()
    """Explicit robot ids (empty: any)."""
    sector: str | None = None
    site: str | None = None
    model: str | None = None
    version: str | None = None
    """Robots reporting this AI-model version, or already at the change's value."""
    share: float | None = None
    """In (0, 1]: robots with `robot_share(robot_id) < share` (nested canary waves)."""


class DesiredChange(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One desired-state event, as on `fleet.desired` (JSON, key `change_key`)."""

    schema: int = SCHEMA_VERSION
    change_id: str
    """uuid4 hex, made by the shell; one API call's changes share it."""
    ts: float
    """Event time of the change: the API stamps it on receipt."""
    principal: str
    """Who: the API token's principal (`rollout:<plan>` for a rollout plan)."""
    reason: str
    """Why (required, non-empty)."""
    selector: Selector
    field: str
    """`ai_model`, `firmware` or `config.<name>`."""
    value: str | None
    """The desired value; None clears what this (selector, field) desired."""
    plan: str = ""
    """Rollout plan id, when a plan made the change."""
    wave: int = -1


class DesiredRules(msgspec.Struct, frozen=True):
    """Every change known, the latest per `change_key` (what the compacted topic keeps)."""

    changes: tuple[DesiredChange, ...] = ()
    """Sorted by `(ts, change_id)`: the order they apply in."""


class Desire(NamedTuple):
    """What a robot should have in one field, and the change that says so."""

    value: str
    ts: float
    change_id: str
    principal: str
    reason: str


class Delta(NamedTuple):
    """A desired field the robot does not report (yet)."""

    field: str
    desired: str
    reported: str
    since: float
    """Event time the difference began: the later of the desire and the reported value's change."""


class Command(msgspec.Struct, frozen=True, kw_only=True):
    """The value on `fleet.commands` (key robot_id): a robot's whole delta, to apply."""

    robot_id: str
    ts: float
    fields: dict[str, str]
    """Field -> desired value, for every field in the delta."""
    change_ids: tuple[str, ...]
    """The changes behind it (sorted, unique)."""


# -- selectors ------------------------------------------------------------------

def robot_share(robot_id: str) -> float:
    """The robot's fixed place in [0, 1): the first 8 bytes of blake2b(robot_id) over 2**64.

    Uniform and stable, so `share < 0.05` picks ~5% of any population and a
    robot in a smaller wave is in every bigger one.
    """
    digest = hashlib.blake2b(robot_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def matches(change: DesiredChange, twin: Twin, share: float | None = None) -> bool:
    """Does `change`'s selector pick this robot, as it reports now?

    `share`: the robot's `robot_share`, when the caller has it (resolving many changes for one
    robot hashes its id once, not once per change).
    """
    sel = change.selector
    if sel.robots and twin.robot_id not in sel.robots:
        return False
    if sel.sector is not None and twin.sector != sel.sector:
        return False
    if sel.site is not None and twin.site != sel.site:
        return False
    if sel.model is not None and twin.model != sel.model:
        return False
    if sel.share is not None and not (robot_share(twin.robot_id) if share is None else share) < sel.share:
        return False
    if sel.version is not None and twin.ai_model_version != sel.version:
        return change.value is not None and reported(twin).get(change.field) == change.value
    return True


def _canonical(sel: Selector) -> Selector:
    return replace(sel, robots=tuple(sorted(set(sel.robots))))


_key_encoder = msgspec.json.Encoder(order="deterministic")


def change_key(change: DesiredChange) -> bytes:
    """The compaction key: the canonical selector (robot ids sorted) + `|` + field."""
    return _key_encoder.encode(_canonical(change.selector)) + b"|" + change.field.encode()


# -- wire form --------------------------------------------------------------------

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(DesiredChange)


def encode_change(change: DesiredChange) -> bytes:
    """The record value on `fleet.desired` (JSON)."""
    return _encoder.encode(change)


def decode_change(raw: bytes) -> DesiredChange:
    """A record value back into a change, or `InvalidChange` ("undecodable" or "schema")."""
    if len(raw) > MAX_BYTES:
        raise InvalidChange("undecodable", f"{len(raw)} bytes is over the {MAX_BYTES}-byte limit")
    try:
        change = _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise InvalidChange("schema", str(exc)) from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidChange("undecodable", str(exc)) from None
    if change.schema != SCHEMA_VERSION:
        raise InvalidChange("schema", f"schema {change.schema} is not supported (only {SCHEMA_VERSION})")
    if not math.isfinite(change.ts) or change.ts <= 0:
        raise InvalidChange("schema", f"ts must be a positive finite time, not {change.ts}")
    return change


# -- checking against the fleet -------------------------------------------------------

def check_change(change: DesiredChange, fleet: Fleet) -> None:
    """Raise `InvalidChange` ("bad_selector", "unknown_field" or "bad_value") unless the fleet
    allows it: the selector names known things, every robot model it can reach declares the
    field, and each of them allows the value."""
    if not change.reason.strip():
        raise InvalidChange("bad_value", "a reason is required: say why the change is made")
    if not change.principal.strip() or not change.change_id.strip():
        raise InvalidChange("bad_value", "a change needs a principal and a change_id")
    if not math.isfinite(change.ts) or change.ts <= 0:
        raise InvalidChange("bad_value", f"ts must be a positive finite time, not {change.ts}")
    reach = _reach(change.selector, fleet)
    declaring = {name: model for name, model in reach.items() if _declares(model, change.field)}
    if not _field_known(change.field, fleet):
        raise InvalidChange("unknown_field", f"'{change.field}' is not desirable: use ai_model, firmware "
                            f"or config.<name> with a name from seeds/models.yaml control.config")
    if not declaring:
        raise InvalidChange("unknown_field", f"no robot model the selector reaches ({', '.join(sorted(reach))}) "
                            f"declares '{change.field}'")
    if not change.selector.robots and len(declaring) < len(reach):
        lacking = sorted(set(reach) - set(declaring))
        raise InvalidChange("unknown_field", f"robot models {', '.join(lacking)} do not declare "
                            f"'{change.field}': narrow the selector (model, sector or site)")
    if change.value is None:
        return
    for name, model in sorted(declaring.items()):
        problem = _value_problem(model, change.field, change.value)
        if problem:
            raise InvalidChange("bad_value", f"{change.field}={change.value!r} for model {name}: {problem}")


def _reach(sel: Selector, fleet: Fleet) -> dict[str, RobotModel]:
    """The robot models a selector can pick (all of them when it names no sector, site or model)."""
    if sel.share is not None and not (0 < sel.share <= 1):
        raise InvalidChange("bad_selector", f"share must be in (0, 1], not {sel.share}")
    bad = [r for r in sel.robots if not _ROBOT_ID.match(r)]
    if bad:
        raise InvalidChange("bad_selector", f"not a robot id: {bad[0][:140]!r}")
    if sel.version is not None and not 0 < len(sel.version) <= 64:
        raise InvalidChange("bad_selector", "version must be 1 to 64 characters")
    names = set(fleet.models)
    if sel.sector is not None:
        if sel.sector not in fleet.sectors:
            raise InvalidChange("bad_selector", f"unknown sector '{sel.sector}'")
        names &= set(fleet.sectors[sel.sector].models)
    if sel.site is not None:
        owner = next((n for n, s in fleet.sectors.items() if sel.site in s.sites), None)
        if owner is None:
            raise InvalidChange("bad_selector", f"unknown site '{sel.site}'")
        if sel.sector is not None and owner != sel.sector:
            raise InvalidChange("bad_selector", f"site '{sel.site}' is in sector '{owner}', not '{sel.sector}'")
        names &= set(fleet.sectors[owner].models)
    if sel.model is not None:
        if sel.model not in fleet.models:
            raise InvalidChange("bad_selector", f"unknown robot model '{sel.model}'")
        if sel.model not in names:
            raise InvalidChange("bad_selector", f"robot model '{sel.model}' is not deployed where the selector points")
        names = {sel.model}
    if sel.version is not None and not any(sel.version in fleet.models[n].ai_model_versions for n in names):
        raise InvalidChange("bad_selector", f"version '{sel.version}' is in no reached model's ai_model_versions")
    return {n: fleet.models[n] for n in names}


def _field_known(field: str, fleet: Fleet) -> bool:
    return any(_declares(model, field) for model in fleet.models.values())


def _declares(model: RobotModel, field: str) -> bool:
    if field == "ai_model":
        return bool(model.ai_model_versions)
    if field == "firmware":
        return bool(model.control.firmware_versions)
    return field.startswith("config.") and field[len("config."):] in model.control.config


def _value_problem(model: RobotModel, field: str, value: str) -> str:
    """Why `value` is not allowed for `field` of `model` ("" when it is)."""
    if field == "ai_model":
        allowed = model.ai_model_versions
    elif field == "firmware":
        allowed = model.control.firmware_versions
    else:
        return _config_problem(model.control.config[field[len("config."):]], value)
    return "" if value in allowed else f"allowed: {', '.join(allowed)}"


def _config_problem(param: ConfigParam, value: str) -> str:
    if param.type == "enum":
        return "" if value in param.values else f"allowed: {', '.join(param.values)}"
    try:
        number = int(value) if param.type == "int" else float(value)
    except ValueError:
        return f"not a{'n int' if param.type == 'int' else ' float'}"
    if not math.isfinite(number):
        return "not finite"
    if (param.min is not None and number < param.min) or (param.max is not None and number > param.max):
        return f"outside [{param.min}, {param.max}]"
    return ""


# -- rules --------------------------------------------------------------------------

def add_change(rules: DesiredRules, change: DesiredChange) -> DesiredRules:
    """The rules with `change` known: it replaces an older change of its key, and is ignored
    when a change of its key at least as new is known (a re-read of the topic changes nothing)."""
    key = change_key(change)
    kept: list[DesiredChange] = []
    for old in rules.changes:
        if change_key(old) == key:
            if (old.ts, old.change_id) >= (change.ts, change.change_id):
                return rules
            continue
        kept.append(old)
    kept.append(change)
    kept.sort(key=lambda c: (c.ts, c.change_id))
    return DesiredRules(tuple(kept))


def resolve(rules: DesiredRules, twin: Twin, at: float | None = None) -> dict[str, Desire]:
    """The robot's desired fields from the changes with ts <= `at` (all when None)."""
    desired: dict[str, Desire] = {}
    share = robot_share(twin.robot_id) if rules.changes else None
    for change in rules.changes:
        if at is not None and change.ts > at:
            break
        if not matches(change, twin, share):
            continue
        if change.value is None:
            desired.pop(change.field, None)
        else:
            desired[change.field] = Desire(change.value, change.ts, change.change_id, change.principal,
                                           change.reason)
    return desired


def reported(twin: Twin) -> dict[str, str]:
    """What the robot reports, by desirable field name."""
    out = {"ai_model": twin.ai_model_version, "firmware": twin.firmware}
    out.update({f"config.{name}": value for name, value in twin.config.items()})
    return out


def deltas(twin: Twin, desired: dict[str, Desire]) -> list[Delta]:
    """The desired fields the robot reports otherwise (or not at all), in field order."""
    now = reported(twin)
    out = []
    for field, desire in sorted(desired.items()):
        value = now.get(field, "")
        if value != desire.value:
            out.append(Delta(field, desire.value, value, max(desire.ts, _field_since(twin, field, desire.ts))))
    return out


def _field_since(twin: Twin, field: str, default: float) -> float:
    if field == "ai_model":
        return twin.ai_model_since
    if field == "firmware":
        return twin.firmware_since
    return default


def command_for(twin: Twin, desired: dict[str, Desire], at: float | None = None) -> Command | None:
    """The robot's whole delta as a command stamped `at` (default: the twin's time); None without one."""
    delta = deltas(twin, desired)
    if not delta:
        return None
    return Command(robot_id=twin.robot_id, ts=twin.ts if at is None else at,
                   fields={d.field: d.desired for d in delta},
                   change_ids=tuple(sorted({desired[d.field].change_id for d in delta})))


def commands_on_change(before: DesiredRules, after: DesiredRules, twins: Iterable[Twin],
                       at: float) -> list[Command]:
    """The commands a change of the rules causes now: robots whose desired values changed and who
    have a delta (a change that re-states what a robot already desired sends nothing).

    Only robots whose twin is already at or past the change's time: for the others the change
    takes effect with their next report, which sends the command then (`took_effect`). So each
    robot gets one command per change, whatever order the worker learns of changes and reports.
    """
    known = set(before.changes)
    since = min((c.ts for c in after.changes if c not in known), default=at)
    out = []
    for twin in twins:
        if twin.ts < since:
            continue
        now = resolve(after, twin)
        if _values(now) == _values(resolve(before, twin)):
            continue
        command = command_for(twin, now, at)
        if command is not None:
            out.append(command)
    return out


def reachable(before: DesiredRules, after: DesiredRules) -> Callable[[str], bool] | None:
    """Which robots a change of the rules can give other desired values, judged by robot id alone;
    None: any robot.

    A robot's desire is resolved from the changes that match it, in order, so only a robot that
    a change added or dropped between `before` and `after` matches can resolve otherwise. Of a
    selector, only its robot ids and its share depend on nothing but the id (a robot's sector,
    site or version may differ between the twins a caller holds and the fold's newer state), so
    a caller decodes the twins of these robots only and passes them to `commands_on_change`:
    the same commands, without decoding a whole fleet for a 5% wave or one pinned robot.
    """
    known, kept = set(before.changes), set(after.changes)
    moved = [c.selector for c in (*after.changes, *before.changes) if (c in known) != (c in kept)]
    if any(not sel.robots and sel.share is None for sel in moved):
        return None
    named = {r for sel in moved for r in sel.robots}
    shared = max((sel.share for sel in moved if not sel.robots and sel.share is not None), default=0.0)
    return lambda robot_id: robot_id in named or (shared > 0 and robot_share(robot_id) < shared)


def took_effect(rules: DesiredRules, before: Twin, now: float) -> bool:
    """Did the robot's desired values change between its previous report (`before.ts`) and `now`?

    A change stamped between two reports of a robot takes effect for it at the
    second, whenever the worker learnt of the change: before the robot's twin
    existed, or after its report was folded. The robot's command then goes out
    with that report (`twin.pipeline.desire`), so no order of change and reports
    leaves a robot without one.
    """
    changes = rules.changes
    i = bisect.bisect_right(changes, before.ts, key=lambda c: c.ts)
    if i == len(changes) or changes[i].ts > now:
        return False
    return _values(resolve(rules, before, at=before.ts)) != _values(resolve(rules, before, at=now))


def _values(desired: dict[str, Desire]) -> dict[str, str]:
    return {field: desire.value for field, desire in desired.items()}


# -- drift ----------------------------------------------------------------------------

def judge_drift(twin: Twin, desired: dict[str, Desire], now: float,
                grace_s: float) -> tuple[Twin, list[Anomaly]]:
    """Open a `desired_drift` anomaly per field whose delta is older than `grace_s` at event time
    `now`; resolve it once the field has no delta (reported as desired, or the desire cleared).

    Kept in `twin.watch.open` with the other detectors' anomalies (which leave it alone: it
    is no detector they evaluate). A twin with nothing desired and nothing open is returned as is.
    """
    opened = twin.watch.open if twin.watch else []
    if not desired and not any(o.detector == DETECTOR for o in opened):
        return twin, []
    current = {d.field: d for d in deltas(twin, desired)}
    still: list[Open] = []
    out: list[Anomaly] = []
    for o in opened:
        if o.detector != DETECTOR:
            still.append(o)
            continue
        delta = current.pop(o.signal, None)
        if delta is None:
            out.append(_message(twin, o, "resolved", now, None))
        else:
            still.append(replace(o, peak=max(o.peak, _score(delta, now, grace_s))))
    for field, delta in current.items():
        if now - delta.since >= grace_s:
            new = Open(DETECTOR, field, now, _score(delta, now, grace_s), "warning")
            still.append(new)
            out.append(_message(twin, new, "open", now, delta))
    if not out and still == opened:
        return twin, []
    return replace(twin, watch=replace(twin.watch or Watch(), open=still)), out


def _score(delta: Delta, now: float, grace_s: float) -> float:
    return round((now - delta.since) / grace_s, 4) if grace_s > 0 else 1.0


def _message(twin: Twin, o: Open, status: str, ts: float, delta: Delta | None) -> Anomaly:
    evidence = {} if delta is None else {
        "desired": delta.desired, "reported": delta.reported, "since": delta.since,
        "age_s": round(ts - delta.since, 3),
    }
    return Anomaly(
        id=anomaly_id(twin.robot_id, o.detector, o.signal, o.start),
        status=status,  # type: ignore[arg-type]  # "open" or "resolved" by construction
        robot_id=twin.robot_id, sector=twin.sector, site=twin.site, model=twin.model,
        detector=o.detector, signal=o.signal, severity=o.severity, score=round(o.peak, 4),
        start_ts=o.start, ts=ts, end_ts=ts if status == "resolved" else None, evidence=evidence,
    )


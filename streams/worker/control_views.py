"""`POST /desired` and `GET /desired`: desired state through the twin API.

A change names robots by a selector and sets (or, with null, clears) fields
of theirs: `{"selector": {"model": "amr", "sector": "logistics"}, "fields":
{"ai_model": "policy-2.5.0"}, "reason": "..."}`. Every request needs a token;
its principal is recorded as who made the change. The request is checked
whole with `twin.desired.check_change` (the rule the folds apply too) before
anything is published: a bad selector, an unknown field for the selected
models or a bad value is a 400 whose `error` says which and why, and nothing
reaches `fleet.desired`. A good request becomes one `DesiredChange` per field,
sharing one change id and the time the API received it, and is answered 202
once the broker holds them all; the workers then fold them from the topic.
`GET /desired` lists the changes this worker has folded, oldest first.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
import faust
from faust.web import Request, Response, View
from pydantic import SecretStr

from streams.auth import principal_in
from streams.desired_log import ChangesTooLarge, DesiredPublisher
from streams.exceptions import is_retriable
from streams.worker.desired_book import DesiredBook
from streams.worker.routing import RETRY_AFTER_S
from twin.desired import DesiredChange, Selector, check_change, encode_change
from twin.exceptions import FleetTwinError, InvalidEvent
from twin.fleet import Fleet

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_FIELDS = 32
MAX_REASON_CHARS = 1000
BODY_KEYS = ("selector", "fields", "reason")


class BadDesire(FleetTwinError):
    """A `POST /desired` body that cannot become changes (400); the message says which part and why."""

    def __init__(self, detail: str, code: str = "bad_request") -> None:
        super().__init__(detail)
        self.code = code


def parse_desire(raw: bytes, fleet: Fleet, principal: str, ts: float, change_id: str) -> tuple[DesiredChange, ...]:
    """The changes a `POST /desired` body asks for, each checked against the fleet; BadDesire if any is bad."""
    if len(raw) > MAX_BODY_BYTES:
        raise BadDesire(f"the body is over {MAX_BODY_BYTES // 1024} KiB")
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError as err:
        raise BadDesire(f"the body is not JSON ({err})") from None
    if not isinstance(body, dict):
        raise BadDesire('the body must be a JSON object: {"selector": {...}, "fields": {...}, "reason": "..."}')
    if unknown := sorted(set(body) - set(BODY_KEYS)):
        raise BadDesire(f"unknown key(s) {', '.join(map(repr, unknown))} in the body; known: {', '.join(BODY_KEYS)}")
    if missing := [k for k in BODY_KEYS if k not in body]:
        raise BadDesire(f"the body lacks {', '.join(missing)} (selector {{}} means the whole fleet)")
    selector = _selector(body["selector"])
    fields = _fields(body["fields"])
    reason = body["reason"]
    if not isinstance(reason, str) or not reason.strip():
        raise BadDesire("reason must be a non-empty string: say why the fleet should change", "bad_value")
    if len(reason) > MAX_REASON_CHARS:
        raise BadDesire(f"reason is over {MAX_REASON_CHARS} characters", "bad_value")
    changes = tuple(DesiredChange(change_id=change_id, ts=ts, principal=principal, reason=reason.strip(),
                                  selector=selector, field=field, value=value) for field, value in fields.items())
    for change in changes:
        try:
            check_change(change, fleet)
        except InvalidEvent as err:
            raise BadDesire(err.detail, err.reason) from None
    return changes


def _selector(value: Any) -> Selector:
    try:
        return msgspec.convert(value, Selector)
    except msgspec.ValidationError as err:
        # msgspec says where with a path from the root ("at `$.share`"): name the body's key instead
        raise BadDesire(f"bad selector: {str(err).replace('`$', '`selector')}", "bad_selector") from None


def _fields(value: Any) -> dict[str, str | None]:
    try:
        fields = msgspec.convert(value, dict[str, str | None])
    except msgspec.ValidationError as err:
        raise BadDesire('fields must map each field to a string value, or null to clear it '
                        f'(e.g. {{"ai_model": "policy-2.5.0"}}): {str(err).replace("`$", "`fields")}',
                        "bad_value") from None
    if not fields:
        raise BadDesire('fields is empty: name at least one, e.g. {"ai_model": "policy-2.5.0"}')
    if len(fields) > MAX_FIELDS:
        raise BadDesire(f"{len(fields)} fields in one change; at most {MAX_FIELDS}")
    return fields


def change_view(change: DesiredChange) -> dict[str, Any]:
    """A change as `GET /desired` shows it: every attribute, defaults included."""
    shown: dict[str, Any] = msgspec.json.decode(encode_change(change))  # the JSON on the topic
    return {"change_id": change.change_id, "ts": change.ts, "principal": change.principal,
            "reason": change.reason, "selector": shown.get("selector", {}), "field": change.field,
            "value": change.value, "plan": change.plan, "wave": change.wave}


def register_control(app: faust.App, fleet: Fleet, known: Mapping[str, SecretStr], publisher: DesiredPublisher,
                     book: DesiredBook, clock: Callable[[], float] = time.time) -> None:
    """Add `/desired` to `app`: for requests bearing one of the `known` principals' tokens."""
    tokens = dict(known)

    def who(view: View, request: Request) -> str | Response:
        principal = principal_in(request.headers.get("Authorization"), tokens)
        if principal is None:
            return view.json({"error": "unauthorized"}, status=401,
                             headers={"WWW-Authenticate": 'Bearer realm="fleet-twin"'})
        return principal

    @app.on_before_shutdown.connect
    async def stop_publishing(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        await publisher.stop()

    @app.page("/desired")
    class Desired(View):
        """Desired state: the changes folded (GET), a new change (POST)."""

        async def get(self, request: Request) -> Response:
            principal = who(self, request)
            if not isinstance(principal, str):
                return principal
            return self.json([change_view(c) for c in book.changes()])

        async def post(self, request: Request) -> Response:
            principal = who(self, request)
            if not isinstance(principal, str):
                return principal
            ts, change_id = round(clock(), 3), uuid.uuid4().hex
            try:
                changes = parse_desire(await request.read(), fleet, principal, ts, change_id)
                await publisher.publish(changes)
            except BadDesire as err:
                return self.json({"error": str(err), "reason": err.code}, status=400)
            except ChangesTooLarge as err:
                return self.error(413, str(err))
            except Exception as err:  # noqa: BLE001 - whatever the producer says, the client must hear it
                log.warning("desired change %s not published: %r", change_id, err)
                return self.error(503, f"the broker did not take the change ({type(err).__name__}); it may not be "
                                  "published: send it again (the same change again has the same effect)",
                                  headers={"Retry-After": str(RETRY_AFTER_S)} if is_retriable(err) else None)
            log.info("desired change %s by %s: %s", change_id, principal,
                     ", ".join(f"{c.field}={c.value}" for c in changes))
            return self.json({"change_id": change_id, "changes": len(changes), "ts": ts}, status=202)

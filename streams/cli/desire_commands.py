"""`fleet-twin desire set|clear|list`: desired state through a worker's twin API.

The commands never write to Kafka themselves: they POST to `/desired` with the
API token, so the worker checks the change with the same rule as always
(`twin.desired.check_change`) and records the token's principal as who made it.
The token is `FLEET_TWIN_API_TOKEN` or the state folder's file, as for curl;
a named principal (`FLEET_TWIN_API_TOKENS` on the worker) sets its own token
in FLEET_TWIN_API_TOKEN on the machine it runs the CLI from. Anything that
goes wrong (no worker, a refused token, a change the worker refuses) is one
line and exit 2.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, NoReturn, Optional

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from streams.auth import api_token
from streams.cli.context import load_settings, settings_of
from streams.exceptions import NoApiToken
from streams.settings import Settings
from streams.twin_view import iso

desire_app = typer.Typer(help="Desired state: set or clear fields per robot or selector, list the changes.",
                         no_args_is_help=True, pretty_exceptions_show_locals=False, callback=load_settings)
console = Console()
TIMEOUT_S = 30.0
"""The worker answers once the broker has taken the change (its producer gives up after 15 s)."""

Robots = Annotated[Optional[list[str]], typer.Option("--robot", help="A robot id (repeat for more).")]
Sector = Annotated[Optional[str], typer.Option(help="Robots of this sector.")]
Site = Annotated[Optional[str], typer.Option(help="Robots of this site.")]
Model = Annotated[Optional[str], typer.Option(help="Robots of this robot model (seeds/models.yaml).")]
Version = Annotated[Optional[str], typer.Option(
    help="Robots reporting this AI-model version (or already at the change's value).")]
Share = Annotated[Optional[float], typer.Option(
    help="A fixed share (0, 1] of the selected robots, by robot id: 0.05 lies inside 0.25 (canary waves).")]
Reason = Annotated[str, typer.Option(help="Why: recorded with the change, with who made it and when.")]


def selector(robots: list[str] | None, sector: str | None, site: str | None, model: str | None,
             version: str | None, share: float | None) -> dict[str, Any]:
    """The selector the options name; none named: the whole fleet."""
    named = {"sector": sector, "site": site, "model": model, "version": version, "share": share}
    out: dict[str, Any] = {"robots": list(robots)} if robots else {}
    return {**out, **{k: v for k, v in named.items() if v is not None}}


def assignments(items: list[str]) -> dict[str, str]:
    """`FIELD=VALUE` arguments as a mapping; BadParameter for one without `=` or named twice."""
    fields: dict[str, str] = {}
    for item in items:
        field, sep, value = item.partition("=")
        if not sep or not field.strip():
            raise typer.BadParameter(f"{item!r}: want FIELD=VALUE, e.g. ai_model=policy-2.5.0", param_hint="FIELD=VALUE")
        if field.strip() in fields:
            raise typer.BadParameter(f"{field.strip()!r} is given twice", param_hint="FIELD=VALUE")
        fields[field.strip()] = value.strip()
    return fields


def field_names(items: list[str]) -> dict[str, None]:
    """`FIELD` arguments of `clear` (each cleared: null)."""
    bad = next((i for i in items if "=" in i or not i.strip()), None)
    if bad is not None:
        raise typer.BadParameter(f"{bad!r}: clear takes field names only, e.g. ai_model", param_hint="FIELD")
    return {i.strip(): None for i in items}


def describe(sel: dict[str, Any]) -> str:
    """A selector in one short line: `model=amr sector=logistics share=0.05`, or `whole fleet`."""
    words = [f"{k}={','.join(v) if isinstance(v, list) else v}" for k, v in sel.items()]
    return " ".join(words) or "whole fleet"


@desire_app.command("set")
def set_command(
    ctx: typer.Context,
    assignment: Annotated[list[str], typer.Argument(metavar="FIELD=VALUE...",
                                                    help="ai_model=..., firmware=... or config.<name>=...")],
    reason: Reason,
    robot: Robots = None, sector: Sector = None, site: Site = None, model: Model = None,
    version: Version = None, share: Share = None,
) -> None:
    """Set desired fields of the selected robots (one change id for all of them)."""
    _send(settings_of(ctx), selector(robot, sector, site, model, version, share), assignments(assignment), reason)


@desire_app.command("clear")
def clear_command(
    ctx: typer.Context,
    field: Annotated[list[str], typer.Argument(metavar="FIELD...", help="Fields whose desire to clear.")],
    reason: Reason,
    robot: Robots = None, sector: Sector = None, site: Site = None, model: Model = None,
    version: Version = None, share: Share = None,
) -> None:
    """Clear what this selector desired of the fields (robots keep what they run)."""
    _send(settings_of(ctx), selector(robot, sector, site, model, version, share), field_names(field), reason)


@desire_app.command("list")
def list_command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the worker's JSON instead of a table.")] = False,
) -> None:
    """The desired-state changes the worker has folded (the latest per selector and field), oldest first."""
    settings = settings_of(ctx)
    changes = _call(settings, "GET", None)
    if as_json:
        print(json.dumps(changes, indent=2))
        return
    table = Table("time (UTC)", "change", "who", "selector", "field", "value", "reason")
    for c in changes:
        value = "[dim](cleared)[/dim]" if c["value"] is None else escape(c["value"])
        table.add_row(iso(c["ts"]), c["change_id"][:8], escape(c["principal"]), escape(describe(c["selector"])),
                      escape(c["field"]), value, escape(c["reason"]))
    console.print(table if changes else "no desired-state changes")


def _send(settings: Settings, sel: dict[str, Any], fields: Mapping[str, str | None], reason: str) -> None:
    body = _call(settings, "POST", {"selector": sel, "fields": fields, "reason": reason})
    what = ", ".join(f"{f}={v}" if v is not None else f"{f} cleared" for f, v in fields.items())
    console.print(f"change {body['change_id']} ({body['changes']} field(s)) on fleet.desired at {iso(body['ts'])}: "
                  f"{describe(sel)}: {what}", highlight=False, soft_wrap=True)


def _call(settings: Settings, method: str, body: dict[str, Any] | None) -> Any:
    """The worker's answer to `method /desired`, or one line and exit 2."""
    url = f"{settings.web_url()}/desired"
    try:
        token = api_token(settings).get_secret_value()
    except NoApiToken as err:
        _fail(str(err))
    try:
        answer = httpx.request(method, url, json=body, headers={"Authorization": f"Bearer {token}"},
                               timeout=TIMEOUT_S)
    except httpx.HTTPError as err:
        _fail(f"no answer from the worker at {url} ({type(err).__name__}): start one with `make up` or "
              "point FLEET_TWIN_WEB_HOST/FLEET_TWIN_WEB_PORT at it")
    if answer.status_code == 401:
        _fail(f"the worker at {url} refused the API token (FLEET_TWIN_API_TOKEN or its state folder's file)")
    try:
        payload = answer.json()
    except ValueError:
        _fail(f"{method} {url} answered {answer.status_code} without JSON")
    if not answer.is_success:
        said = payload.get("error") if isinstance(payload, dict) else None
        _fail(f"{method} {url} answered {answer.status_code}: {said or answer.text[:200]}")
    return payload


def _fail(message: str) -> NoReturn:
    console.print(f"[red]fleet-twin desire:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)

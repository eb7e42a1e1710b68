"""`fleet-twin dashboards`: generate the Grafana dashboards, push them to a Grafana, or draw them as PNGs.

The dashboards themselves are code in `dashboards/` (grafana-foundation-sdk);
they are imported inside each command, so the worker image, which ships only
`twin/` and `streams/`, never needs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from streams.cli.context import load_settings, settings_of

dashboards_app = typer.Typer(help="Grafana dashboards: generate JSON, push to Grafana, render PNGs.",
                             no_args_is_help=True, pretty_exceptions_show_locals=False, callback=load_settings)
console = Console()

TOKEN_ENV = "FLEET_TWIN_GRAFANA_TOKEN"
FOLDER_UID, FOLDER_TITLE = "fleet-twin", "fleet-twin"


@dashboards_app.command()
def generate(
    out: Annotated[Optional[Path], typer.Option(help="Folder for <name>.json (default: dashboards/json).")] = None,
) -> None:
    """Write every dashboard's JSON model (sorted keys: regenerating is byte-identical)."""
    from dashboards import JSON_DIR, write_all

    for path in write_all(out or JSON_DIR):
        console.print(f"wrote {path}")


@dashboards_app.command()
def push(
    ctx: typer.Context,
    url: Annotated[str, typer.Option(help="Grafana base URL, e.g. http://127.0.0.1:3000")],
    token: Annotated[Optional[str], typer.Option(
        help=f"Service account token (default: ${TOKEN_ENV}). Never printed.", show_default=False)] = None,
    folder: Annotated[str, typer.Option(help="Folder uid to put the dashboards in (created if missing).")]
    = FOLDER_UID,
) -> None:
    """Upload every dashboard to an existing Grafana (overwriting same-uid versions).

    Credentials: --token, else FLEET_TWIN_GRAFANA_TOKEN, else basic auth with
    FLEET_TWIN_GRAFANA_USER (default admin) and FLEET_TWIN_GRAFANA_PASSWORD.
    """
    from grafana_client.api import GrafanaApi  # its own module: the package re-exports it implicitly (no __all__)
    from grafana_client.client import GrafanaClientError, GrafanaException, TokenAuth

    from dashboards import render_all

    settings = settings_of(ctx)
    secret = token or (settings.grafana_token.get_secret_value() if settings.grafana_token else "")
    credential: TokenAuth | tuple[str, str]
    if secret:
        credential = TokenAuth(secret)  # type: ignore[no-untyped-call]  # grafana_client leaves TokenAuth unannotated
    elif settings.grafana_password:
        secret = settings.grafana_password.get_secret_value()
        credential = (settings.grafana_user, secret)
    else:
        console.print(f"[red]no credentials:[/red] give --token, or set {TOKEN_ENV} "
                      "(or FLEET_TWIN_GRAFANA_USER and FLEET_TWIN_GRAFANA_PASSWORD)")
        raise typer.Exit(2)
    api = GrafanaApi.from_url(url, credential=credential)
    try:
        try:
            api.folder.get_folder(folder)
        except GrafanaClientError as err:
            if err.status_code != 404:
                raise
            api.folder.create_folder(FOLDER_TITLE if folder == FOLDER_UID else folder, uid=folder)
        for name, model in render_all().items():
            result = api.dashboard.update_dashboard(
                {"dashboard": {**model, "id": None}, "folderUid": folder, "overwrite": True,
                 "message": "fleet-twin dashboards push"})
            console.print(f"pushed {name}: {url.rstrip('/')}{result.get('url', '')}")
    except GrafanaException as err:
        console.print(f"[red]push failed:[/red] {_redact(str(err.message), secret)}")
        raise typer.Exit(1) from None
    except Exception as err:  # connection refused, TLS, DNS: say what, never with a traceback's locals
        console.print(f"[red]push failed:[/red] {type(err).__name__}: {_redact(str(err), secret)}")
        raise typer.Exit(1) from None


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


@dashboards_app.command()
def render(
    prometheus: Annotated[str, typer.Option(help="Prometheus base URL, e.g. http://127.0.0.1:9090")],
    out: Annotated[Path, typer.Option(help="Folder for <name>.png.")],
    dashboard: Annotated[list[str], typer.Option(
        help="Dashboard(s) to draw (default: all): fleet-overview, sector, site, robot, rollout, anomalies, "
             "pipeline.")] = [],  # noqa: B006
    window: Annotated[float, typer.Option(help="Time range to draw, in minutes.")] = 60.0,
    end: Annotated[Optional[float], typer.Option(help="End of the range, Unix seconds (default: now).")] = None,
    var: Annotated[list[str], typer.Option(
        help="Template variable NAME=VALUE (default: the first value Prometheus knows).")] = [],  # noqa: B006
) -> None:
    """Draw PNG snapshots of the dashboards with matplotlib, from Prometheus query_range data."""
    from dashboards.prom import QueryFailed
    from dashboards.snapshot import render_dashboards

    given = {}
    for item in var:
        name, sep, value = item.partition("=")
        if not sep:
            console.print(f"[red]--var takes NAME=VALUE, not {item!r}[/red]")
            raise typer.Exit(2)
        given[name] = value
    try:
        paths = render_dashboards(prometheus, out, dashboard or None, window_s=window * 60, given=given,
                                  end=end)
    except (KeyError, QueryFailed) as err:
        console.print(f"[red]render failed:[/red] {err}")
        raise typer.Exit(1) from None
    for path in paths:
        console.print(f"wrote {path}")

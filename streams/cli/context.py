"""The settings of one `fleet-twin` run: built once, before any command, and handed down.

`load_settings` is the callback of the app (and of the `dashboards` sub-app,
which tests also run on its own): it reads the environment once and puts the
settings on the typer context, where every command finds them with
`settings_of(ctx)` and passes them on to the functions it calls. Malformed
settings fail the first command that asks for them, as before, not `--help`.
"""

from __future__ import annotations

import asyncio

import typer
from pydantic import ValidationError
from rich.console import Console

from streams.settings import Settings
from twin.exceptions import InvariantViolated


def load_settings(ctx: typer.Context) -> None:
    """Build the settings from `FLEET_TWIN_*` unless a parent command already did."""
    if ctx.obj is not None:
        return
    try:
        ctx.obj = Settings()
    except ValidationError as err:
        ctx.obj = err  # the callback runs before a sub-command's --help is parsed


def settings_of(ctx: typer.Context) -> Settings:
    """The run's settings (child contexts share their parent's `obj`)."""
    if isinstance(ctx.obj, ValidationError):
        raise ctx.obj
    if not isinstance(ctx.obj, Settings):
        raise InvariantViolated("no settings on the typer context: the command ran without load_settings")
    return ctx.obj


def topics_or_exit(settings: Settings, console: Console) -> None:
    """Create the topics, or say plainly that there is no broker to talk to (exit 2)."""
    from aiokafka.errors import KafkaConnectionError

    from streams.topics import ensure_topics

    try:
        asyncio.run(ensure_topics(settings))
    except KafkaConnectionError:
        console.print(f"[red]no Kafka broker at {settings.bootstrap}[/red]: start the local stack with "
                      "`make up`, or point FLEET_TWIN_KAFKA_BOOTSTRAP at yours")
        raise typer.Exit(2) from None

"""`fleet-twin audit`: a model version's safety record from the log, as a reviewer signs it."""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from streams.analysis.replay_window import iso
from streams.cli.context import settings_of
from streams.cli.params import source_callback, time_callback, window as window_of
from streams.cli.replay_commands import _bar, print_command
from streams.exceptions import ReportError

console = Console()


def audit_command(
    ctx: typer.Context,
    version: Annotated[str, typer.Option("--model-version", help="The AI-model version to audit, e.g. policy-2.5.0.")],
    model: Annotated[Optional[str], typer.Option(help="Only robots of this robot model.")] = None,
    start: Annotated[str, typer.Option("--from", "--since", help="Start: ISO 8601 (UTC), epoch seconds, or -2h/-7d; "
                                       "default the start of the log.", callback=time_callback)] = "0",
    end: Annotated[str, typer.Option("--to", "--until", help="End: as --from; default now.",
                                     callback=time_callback)] = "now",
    source: Annotated[str, typer.Option(help="Telemetry from kafka, archive (the configured archive) or an "
                                        "archive's path; changes and gate decisions always from Kafka.",
                                        callback=source_callback)] = "kafka",
    out: Annotated[Optional[Path], typer.Option(help="Directory for the Parquet files and audit.html.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Which robots ran a model version, its safety events per 1,000 h against its predecessor (exact 95%
    intervals), every desired-state change that touched it, and every gate decision: HTML and Parquet."""
    from aiokafka.errors import KafkaConnectionError

    from streams.analysis import audit

    settings = settings_of(ctx)
    window = window_of(start, end, source)
    if model is not None and model not in _models(settings.seeds_dir):
        raise typer.BadParameter(f"{model!r}; known: {', '.join(_models(settings.seeds_dir))}", param_hint="'--model'")
    out = out or settings.state_dir / "audits" / f"{version}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime(window.end))}"
    command = shlex.join(["fleet-twin", "audit", "--model-version", version, *(["--model", model] if model else []),
                          "--from", iso(window.start), "--to", iso(window.end), "--source", window.source,
                          "--out", str(out)])
    try:
        with _bar(window, progress) as on_record:
            found = audit.run(settings, window, version, model=model, on_record=on_record, command=command)
    except ReportError as err:
        typer.secho(f"fleet-twin audit failed: {err}", fg="red", err=True)
        raise typer.Exit(1) from None
    except KafkaConnectionError:
        typer.secho(f"fleet-twin audit: no Kafka broker at {settings.bootstrap} (the changes and gate decisions "
                    "are read from it, whatever --source): start it with `make up`, or point "
                    "FLEET_TWIN_KAFKA_BOOTSTRAP at yours", fg="red", err=True)
        raise typer.Exit(2) from None
    page = audit.write(out, found)
    on = found.robots.filter(found.robots["version"] == version)
    console.print(f"{version}: {on.height:,} robots, {on['operating_h'].sum():,.2f} operating h; "
                  f"compared with {found.predecessor or 'nothing (first release)'}; "
                  f"{found.changes.height} desired changes, {found.gates.height} gate decisions", highlight=False)
    print_command("report", str(page))
    print_command("files", f"{out}/")
    print_command("reproduce", command)


def _models(seeds_dir: Path) -> list[str]:
    from streams.seeds import read_fleet

    return sorted(read_fleet(seeds_dir).models)

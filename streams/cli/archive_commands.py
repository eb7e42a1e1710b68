"""`fleet-twin archive` and `fleet-twin report`: the log kept as Parquet, a replay's report rebuilt."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from streams.analysis.archive import ArchiveStats, archive
from streams.analysis.report import write_report
from streams.cli.context import settings_of, topics_or_exit
from streams.exceptions import ReportError

console = Console()


def archive_command(
    ctx: typer.Context,
    out: Annotated[Optional[Path], typer.Option(
        help="Archive root (default: FLEET_TWIN_ARCHIVE_DIR, else .fleet-twin/archive).")] = None,
    once: Annotated[bool, typer.Option(help="Drain every partition to its current end, then stop.")] = False,
    flush_rows: Annotated[int, typer.Option(help="Write once this many records are buffered.")] = 100_000,
    flush_s: Annotated[float, typer.Option(
        help="Write once the oldest buffered record is this old (seconds).")] = 300.0,
) -> None:
    """Archive telemetry, silence checks and anomalies to Parquet, partitioned by date and sector."""
    settings = settings_of(ctx)
    root = out or settings.archive_dir
    topics_or_exit(settings, console)
    with console.status(f"archiving to {root} ...") as status:
        def show(stats: ArchiveStats, buffered: int) -> None:
            status.update(f"archiving to {root}: {_describe(stats)}; {buffered:,} buffered")

        stats = asyncio.run(archive(settings, root, once=once, flush_rows=flush_rows, flush_s=flush_s,
                                    on_progress=show))
    console.print(f"archived to {root}: {_describe(stats)}")


def _describe(stats: ArchiveStats) -> str:
    rate = stats.total / max(time.monotonic() - stats.started, 1e-9)
    counts = ", ".join(f"{n:,} {d}" for d, n in stats.records.items())
    return f"{counts} ({rate:,.0f}/s); {stats.files:,} files, {stats.bytes / 1e6:,.1f} MB"


def report_command(
    out_dir: Annotated[Path, typer.Argument(help="A replay's output directory.", exists=True, file_okay=False)],
    max_robots: Annotated[int, typer.Option(help="Robots that get their own plots, the most severe first.")] = 8,
) -> None:
    """Regenerate report.html from a replay's output directory."""
    try:
        path = write_report(out_dir, max_robots=max_robots)
    except ReportError as err:
        typer.secho(f"fleet-twin report failed: {err}", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(str(path))

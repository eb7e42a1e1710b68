"""The incident report of a replay: one self-contained HTML file.

`write_report(out_dir)` reads what a replay wrote (events, anomalies and
snapshots as Parquet, `replay.json`, optionally the what-if `changes.parquet`)
and writes `out_dir/report.html`; `fleet-twin report DIR` does the same from
the shell. Drawing needs matplotlib, imported on first use so that every other
`fleet-twin` command starts without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from streams.exceptions import ReportError
from twin.frames import CHANGE_SCHEMA, changes_to_frame

__all__ = ["CHANGE_SCHEMA", "ReportError", "changes_to_frame", "report_command", "write_report"]


def write_report(out_dir: Path, *, max_robots: int = 8) -> Path:
    """Write `out_dir/report.html` from the replay files in `out_dir`; returns its path.

    At most `max_robots` robots get their own plots (the most severe first);
    every episode is in the timeline table whatever the limit.
    """
    from streams.analysis.report.page import write_report as write

    return write(out_dir, max_robots=max_robots)


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

"""The incident report of a replay: one self-contained HTML file.

`write_report(out_dir)` reads what a replay wrote (events, anomalies and
snapshots as Parquet, `replay.json`, optionally the what-if `changes.parquet`)
and writes `out_dir/report.html` (`fleet-twin report DIR` calls it). Drawing needs matplotlib, imported on first use so that every other
`fleet-twin` command starts without it.
"""

from __future__ import annotations

from pathlib import Path

from streams.exceptions import ReportError
from twin.frames import CHANGE_SCHEMA, changes_to_frame

__all__ = ["CHANGE_SCHEMA", "ReportError", "changes_to_frame", "write_report"]


def write_report(out_dir: Path, *, max_robots: int = 8) -> Path:
    """Write `out_dir/report.html` from the replay files in `out_dir`; returns its path.

    At most `max_robots` robots get their own plots (the most severe first);
    every episode is in the timeline table whatever the limit.
    """
    from streams.analysis.report.page import write_report as write

    return write(out_dir, max_robots=max_robots)

"""A command line that cannot mean anything stops before any work: exit 2, one line, no traceback.

Every command that takes a time, a window or a scenario is here; none of
these reaches Kafka (the check runs while the arguments are parsed, or first
thing in the command), so the tests need no broker.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from streams.cli.main import app

BAD = [
    (["replay", "--from=yesterday"], "Invalid value for '--from': 'yesterday': not a time"),
    (["replay", "--from=+1h"], "Invalid value for '--from': '+1h' is in the future; count back: -1h"),
    (["replay", "--from=-1h", "--at=noon"], "Invalid value for '--at': 'noon': not a time"),
    (["replay", "--from=-1h", "--to=-2h"], "is before --from"),
    (["replay", "--from=2026-12-02", "--to=2026-12-01"], "Invalid value for '--to': 2026-12-01T00:00:00.000Z is before"),
    (["twin-at", "r-1", "notatime"], "Invalid value for 'instant': 'notatime': not a time"),
    (["twin-at", "r-1", "2026-01-01", "--from=2026-02-01"], "Invalid value for 'instant': 2026-01-01T00:00:00.000Z"),
    (["twin-at", "r-1", "now", "--from=soon"], "Invalid value for '--from': 'soon': not a time"),
    (["export-dataset", "--from=yesterday"], "Invalid value for '--from': 'yesterday': not a time"),
    (["export-dataset", "--from=-1h", "--to=+1h"], "Invalid value for '--to': '+1h' is in the future"),
    (["export-dataset", "--from=-1h", "--to=-2h"], "Invalid value for '--to':"),
    (["export-dataset", "--from=-1h", "--labels", "/nope.parquet"], "Invalid value for '--labels': file '/nope.parquet'"),
    (["replay", "--from=-1h", "--source", "/no/archive"], "Invalid value for '--source': '/no/archive': not kafka"),
    (["twin-at", "r-1", "now", "--source", "archiv"], "Invalid value for '--source': 'archiv': not kafka"),
    (["replay", "--from=-1m", "--republish", "x.staging", "--speed", "fast"], "'--speed': 'fast': not a pace"),
    (["replay", "--from=-1m", "--republish", "x.staging", "--speed", "0x"], "'--speed': '0x': the pace must be above"),
    (["simulate", "--scenario", "unknown", "--no-progress"], "Invalid value for '--scenario': 'unknown'; known: chaos"),
    (["simulate", "--scenario", "missing.yaml", "--no-progress"], "Invalid value for '--scenario': missing.yaml: no such"),
    (["eval", "--scenario", "unknown"], "Invalid value for '--scenario': 'unknown'; known: chaos"),
    (["eval", "--data", "kaggle"], "Invalid value for '--data': 'kaggle': not nab, skab, ur3 nor a folder"),
    (["eval", "--data", "/"], "Invalid value for '--data': '/': a folder needs labels/combined_windows.json"),
    (["simulate", "--speed", "0", "--no-progress"], "Invalid value for '--speed': 0.0: must be above 0"),
    (["simulate", "--robots", "-3", "--no-progress"], "Invalid value for '--robots': -3: must be above 0"),
    (["simulate", "--rate", "0", "--no-progress"], "Invalid value for '--rate': 0.0: must be above 0"),
    (["simulate", "--duration", "-1", "--no-progress"], "Invalid value for '--duration': -1.0: must be above 0"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_a_bad_argument_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit), result.exception
    said = [line for line in result.output.splitlines() if "Invalid value" in line]
    assert len(said) == 1 and message in said[0], result.output


@pytest.mark.parametrize("args", [["replay", "--from=yesterday"], ["twin-at", "r-1", "notatime"],
                                  ["replay", "--from=-1h", "--to=-2h"]])
def test_a_bad_time_fits_one_line_at_80_columns(args: list[str]) -> None:
    result = CliRunner().invoke(app, args, env={"COLUMNS": "80"})
    box = [line for line in result.output.splitlines() if line.startswith("│")]
    assert result.exit_code == 2 and len(box) == 1, result.output

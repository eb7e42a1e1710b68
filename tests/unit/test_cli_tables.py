"""Tables the CLI prints: at 80 columns or without a terminal, nothing is cut or wrapped mid-cell."""

from __future__ import annotations

import io

import polars as pl
from rich.console import Console

from streams.cli.tables import print_frame, print_rows

# the eval table's shape, where two faults both showed as `senso…` at 80 columns
EVAL = pl.DataFrame({
    "fault": ["sensor_dropout", "sensor_spikes", "latency_regression", "(all)"],
    "labels": [3, 3, 4, 10], "detected": [3, 2, 4, 9], "recall": [1.0, 2 / 3, 1.0, 0.9],
    "median delay s": [4.0, 22.5, 113.1, None], "p90 delay s": [4.0, 34.1, 207.8, None],
    "precision": [None, None, None, 1.0], "false alarms": [None, None, None, 0],
    "false / robot-day": [None, None, None, 0.0],
})


def printed(frame: pl.DataFrame, width: int, terminal: bool) -> str:
    out = io.StringIO()
    print_frame(Console(file=out, width=width, force_terminal=terminal, color_system=None), "chaos", frame)
    return out.getvalue()


def test_without_a_terminal_columns_are_plain_full_and_aligned() -> None:
    text = printed(EVAL, 80, terminal=False)
    assert "…" not in text and "sensor_dropout" in text and "sensor_spikes" in text
    lines = text.splitlines()
    assert lines[1].split() == ["fault", "labels", "detected", "recall", "median", "delay", "s", "p90", "delay", "s"]
    assert "(all): precision 1, false alarms 0, false / robot-day 0" in text  # totals under the table


def test_on_an_80_column_terminal_the_table_fits_and_cuts_nothing() -> None:
    text = printed(EVAL, 80, terminal=True)
    assert "…" not in text and "latency_regression" in text and "0.6667" in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_a_terminal_too_narrow_for_the_table_gets_one_line_per_row() -> None:
    out = io.StringIO()
    print_rows(Console(file=out, width=28, force_terminal=True, color_system=None), "",
               ["fault", "labels", "median delay s"], [["latency_regression", "4", "113.1"]])
    assert out.getvalue().replace("\n", " ").split() == "latency_regression: labels 4, median delay s 113.1".split()

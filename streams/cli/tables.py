"""Tables the CLI prints, readable whatever the terminal: nothing cut, nothing wrapped mid-cell.

A rich table squeezed below its width cuts its cells (`senso…` twice, for
two different faults) and is useless in a log. So: on a terminal wide enough,
a rich table whose cells never wrap nor shrink; on a narrower terminal, one
line per row in `header value` pairs (the terminal wraps those between pairs);
without a terminal (a pipe, a file, CI), plain aligned columns, full width,
which `less -S`, `grep` and `column` read as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table


def print_rows(console: Console, title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print `rows` under `headers` in the layout that fits `console` (see the module's docstring)."""
    if not console.is_terminal:
        _print_plain(console, title, headers, rows)
        return
    table = _rich_table(title, headers, rows)
    natural = console.measure(table, options=console.options.update_width(10_000)).maximum  # nothing cut
    if natural <= console.width:
        console.print(table)
    else:
        _print_records(console, title, headers, rows)


def print_frame(console: Console, title: str, frame: Any) -> None:
    """A polars frame, as `print_rows`. Columns filled only on the last row (totals, as the eval's
    precision and false alarms) go under the table as `name: value`, so the rest fits 80 columns."""
    rows = [[_cell(v) for v in row] for row in frame.iter_rows()]
    totals = [i for i in range(len(frame.columns))
              if len(rows) > 1 and rows[-1][i] and not any(row[i] for row in rows[:-1])]
    keep = [i for i in range(len(frame.columns)) if i not in totals]
    print_rows(console, title, [frame.columns[i] for i in keep], [[row[i] for i in keep] for row in rows])
    if totals:
        console.print(f"{rows[-1][0]}: " + ", ".join(f"{frame.columns[i]} {rows[-1][i]}" for i in totals),
                      highlight=False, markup=False)


def _cell(value: object) -> str:
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def _rich_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    """Cells never wrap; a header longer than its column's values breaks between its words."""
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    for i, header in enumerate(headers):
        widest = max((len(row[i]) for row in rows), default=0)
        table.add_column(header.replace(" ", "\n") if len(header) > widest else header, no_wrap=True)
    for row in rows:
        table.add_row(*row)
    return table


def _print_plain(console: Console, title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    lines = [title] if title else []
    for row in [list(headers), *rows]:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    console.print("\n".join(lines), soft_wrap=True, highlight=False, markup=False)


def _print_records(console: Console, title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    if title:
        console.print(title, highlight=False, markup=False)
    for row in rows:
        pairs = [f"{h} {v}" for h, v in zip(headers[1:], row[1:]) if v]
        console.print(f"{row[0]}: " + ", ".join(pairs), highlight=False, markup=False)

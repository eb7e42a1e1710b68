"""Arguments that name a time, a window or a scenario, checked while the command line is parsed.

A value that cannot mean anything is the user's mistake, not the program's:
it must stop the command before any work with one line that says what to
type instead, and exit 2 like every other usage error, never a traceback.
Everything here raises typer's `BadParameter` for that (typer handles its own
click's errors only), with messages short enough for one line of its error box
at 80 columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import typer

from streams.analysis.replay_window import Window, iso, parse_time
from streams.seeds import read_scenario
from twin.exceptions import InvalidSeed
from twin.sim.scenario import Scenario

T = TypeVar("T", str, Sequence[str], None)
N = TypeVar("N", int, float, None)
SCENARIO = "'--scenario'"


def check_time(text: str) -> float:
    """`parse_time`, with a message for the user instead of a `ValueError` from `datetime`."""
    if text.strip().startswith("+") and text.strip()[-1:] in "smhd":
        raise typer.BadParameter(f"{text!r} is in the future; count back: -{text.strip()[1:]}")
    try:
        return parse_time(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: not a time; try -1d or 2026-12-02") from None


def time_callback(value: T) -> T:
    """Parameter callback: the value (or each of a repeated option's values) must be a time."""
    texts: list[str] = [value] if isinstance(value, str) else list(value or [])
    for text in texts:
        check_time(text)
    return value


def source_callback(value: str) -> str:
    """Parameter callback: `kafka`, `archive` or an archive's folder; a mistyped path would read
    nothing and report an empty window as if the log were empty."""
    if value not in ("kafka", "archive") and not Path(value).is_dir():
        raise typer.BadParameter(f"{value!r}: not kafka, archive or an archive's folder")
    return value


def pace_callback(value: str) -> str:
    """Parameter callback: a pace such as `10x` (or `10`), above zero."""
    try:
        factor = float(value.removesuffix("x"))
    except ValueError:
        raise typer.BadParameter(f"{value!r}: not a pace; try 10x") from None
    if not factor > 0:
        raise typer.BadParameter(f"{value!r}: the pace must be above 0x")
    return value


def window(start: str, end: str, source: str, end_name: str = "--to") -> Window:
    """The window `--from`..`--to`; one that ends before it starts is a usage error (an empty
    report with exit 0 would hide the typo)."""
    first, last = parse_time(start), parse_time(end)
    if last < first:
        raise typer.BadParameter(f"{iso(last)} is before --from", param_hint=f"'{end_name}'")
    return Window(first, last, source)


def scenarios(seeds_dir: Path) -> list[str]:
    """The scenario names under `seeds/scenarios/`."""
    return sorted(p.stem for p in (seeds_dir / "scenarios").glob("*.yaml"))


def check_scenario(seeds_dir: Path, name: str) -> str:
    """A scenario name in the seeds, or the path of a YAML file; else a usage error naming them."""
    if name.endswith((".yaml", ".yml")):
        if not Path(name).is_file():
            raise typer.BadParameter(f"{name}: no such file", param_hint=SCENARIO)
        return name
    known = scenarios(seeds_dir)
    if name not in known:
        raise typer.BadParameter(f"{name!r}; known: {', '.join(known)} or a .yaml", param_hint=SCENARIO)
    return name


def scenario_spec(seeds_dir: Path, name: str) -> Scenario:
    """The scenario `name` (checked as `check_scenario` does); a YAML file that is no scenario is a usage
    error too, with the reason."""
    try:
        return read_scenario(seeds_dir, check_scenario(seeds_dir, name))
    except InvalidSeed as err:
        raise typer.BadParameter(str(err), param_hint=SCENARIO) from None


def check_choice(option: str, value: str, known: Sequence[str]) -> str:
    """`value` if it is one of `known`; else a usage error that lists them."""
    if value not in known:
        raise typer.BadParameter(f"{value!r}; known: {', '.join(known)}", param_hint=f"'{option}'")
    return value


def check_data(value: str, known: Sequence[str]) -> str:
    """`value` if it names a shipped data set or a folder `eval --data` can score; else a usage error.

    A folder is scored by what it holds: NAB's layout (labels/combined_windows.json)
    or labelled recordings (manifest.yaml), docs/ANOMALY.md.
    """
    if value in known:
        return value
    folder = Path(value)
    if not folder.is_dir():
        raise typer.BadParameter(f"{value!r}: not {', '.join(known)} nor a folder", param_hint="'--data'")
    if data_layout(folder) is None:
        raise typer.BadParameter(
            f"{value!r}: a folder needs labels/combined_windows.json (NAB layout) or manifest.yaml (recordings)",
            param_hint="'--data'")
    return value


def data_layout(folder: Path) -> str | None:
    """Which scorer a data folder is for: 'nab', 'recordings' or None."""
    if (folder / "labels" / "combined_windows.json").is_file():
        return "nab"
    if (folder / "manifest.yaml").is_file():
        return "recordings"
    return None


def positive(value: N) -> N:
    """Parameter callback: a count, rate, speed or duration must be above zero (0x speed divides by zero)."""
    if value is not None and value <= 0:
        raise typer.BadParameter(f"{value!r}: must be above 0")
    return value

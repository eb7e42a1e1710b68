"""`fleet-twin replay`, `twin-at` and `export-dataset`: time travel over the event log."""

from __future__ import annotations

import shlex
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from streams.analysis import replay_window as replaying
from streams.analysis.replay_window import Window, iso, parse_time
from streams.cli.context import settings_of
from streams.cli.params import pace_callback, source_callback, time_callback, window as window_of
from streams.cli.tables import print_rows
from streams.settings import Settings
from streams.twin_view import diff_twins, to_view
from twin.compare import compare_runs, count_changes
from twin.record import Record
from twin.replay import Result, Selection

console = Console()

From = Annotated[str, typer.Option("--from", help="Start: ISO 8601 (UTC), epoch seconds, or -15m/-2h/-1d.",
                                   callback=time_callback)]
To = Annotated[str, typer.Option("--to", help="End: as --from; default now.", callback=time_callback)]
Source = Annotated[str, typer.Option(help="kafka, archive (the configured archive), or an archive's path.",
                                      callback=source_callback)]
Robot = Annotated[Optional[str], typer.Option(help="Only this robot (the fold still covers its partition).")]
Site = Annotated[Optional[str], typer.Option(help="Only robots of this site.")]
Sector = Annotated[Optional[str], typer.Option(help="Only robots of this sector.")]
Model = Annotated[Optional[str], typer.Option(help="Only robots of this model.")]


def replay_command(
    ctx: typer.Context,
    start: From, end: To = "now", robot: Robot = None, site: Site = None, sector: Sector = None,
    model: Model = None,
    at: Annotated[list[str], typer.Option(help="Snapshot the twins at this instant (repeat).",
                                          callback=time_callback)] = [],  # noqa: B006
    detectors: Annotated[Optional[Path], typer.Option(
        help="What-if detector settings (keys of seeds/detectors.yaml) run side by side with the seeds'.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Directory for Parquet files and report.html.")] = None,
    source: Source = "kafka",
    republish: Annotated[Optional[str], typer.Option(help="Re-emit the window's telemetry to this (non-live) topic.")] = None,
    speed: Annotated[str, typer.Option(help="Pace of --republish: 10x = ten times real time.",
                                       callback=pace_callback)] = "1x",
    report: Annotated[bool, typer.Option(help="Write report.html.")] = True,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Replay a window of the log through the live code: twins, anomalies, snapshots, what-if, report."""
    settings = settings_of(ctx)
    window = window_of(start, end, source)
    selection = Selection(robot=robot, site=site, sector=sector, model=model)
    instants = [parse_time(t) for t in at]
    if republish:
        _republish(settings, window, selection, republish, speed, progress)
        return
    out = out or settings.state_dir / "replays" / time.strftime("%Y%m%dT%H%M%S", time.gmtime(window.start))
    command = _command(window, selection, instants, detectors, out)
    started = time.monotonic()
    with _bar(window, progress) as on_record:
        result = replaying.run(settings, window, selection, at=instants, what_if=detectors, on_record=on_record)
    elapsed = time.monotonic() - started
    meta = replaying.write(out, result, {
        "command": command, "source": window.source, "from": window.start, "to": window.end,
        "selection": {"robot": robot, "site": site, "sector": sector, "model": model},
        "detectors": "seeds", "what_if": str(detectors) if detectors else None, "elapsed_s": round(elapsed, 3)})
    _print_result(result, meta, elapsed)
    if report:
        from streams.analysis.report import write_report

        print_command("report", str(write_report(out)))
    print_command("files", f"{out}/")
    print_command("reproduce", command)


def twin_at_command(
    ctx: typer.Context,
    robot: Annotated[str, typer.Argument(help="Robot id.")],
    instant: Annotated[str, typer.Argument(help="When: ISO 8601 (UTC), epoch seconds, now, or -15m.",
                                           callback=time_callback)],
    start: Annotated[str, typer.Option("--from", help="Fold from here (default: the start of the log).",
                                       callback=time_callback)] = "0",
    source: Source = "kafka",
) -> None:
    """Print a robot's twin as it was at an instant (folded from the log, as the worker built it)."""
    settings = settings_of(ctx)
    window = window_of(start, instant, source, end_name="instant")
    when = window.end
    result = replaying.run(settings, window, Selection(robot=robot), at=[when])
    twin = result.snapshots[when].get(robot)
    if twin is None:
        console.print(f"[red]{robot}[/red] has no accepted event at or before {iso(when)}")
        raise typer.Exit(1)
    console.print_json(data=to_view(twin, result.desired_at[when]))


def export_dataset_command(
    ctx: typer.Context,
    start: From, end: To = "now", site: Site = None, sector: Sector = None, model: Model = None,
    source: Source = "kafka",
    labels: Annotated[Optional[Path], typer.Option(help="Ground truth (Parquet from `simulate --labels`).",
                                                   exists=True, dir_okay=False)] = None,
    out: Annotated[Path, typer.Option(
        help="Directory for windows.parquet, samples.parquet, manifest.json and events/.")] = Path("dataset"),
    pre: Annotated[float, typer.Option(help="Seconds of context before an anomaly.")] = 60.0,
    post: Annotated[float, typer.Option(help="Seconds of context after it.")] = 60.0,
    normal_per_anomaly: Annotated[int, typer.Option(help="Matched normal windows per anomaly window.")] = 1,
    seed: Annotated[int, typer.Option(help="Chooses the normal windows, reproducibly.")] = 0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    chunk_rows: Annotated[int, typer.Option(help="Events per Parquet file under OUT/events/.", min=1)] = 200_000,
) -> None:
    """Labelled windows (anomalies and matched normal ones) for training the next model release.

    The replayed events go to OUT/events/ in Parquet chunks as they are read, so memory stays flat;
    Ctrl-C stops the reading and still cuts a (partial) set from what was read."""
    import polars as pl

    from streams.analysis.dataset_files import EventChunks, Params, write_chunked_dataset
    from twin.frames import anomalies_to_frame

    settings = settings_of(ctx)
    window = window_of(start, end, source)
    selection = Selection(site=site, sector=sector, model=model)
    truth = pl.read_parquet(labels) if labels else None
    chunks = EventChunks(out / "events", rows=chunk_rows)
    stop = StopOnInterrupt()
    with stop, _bar(window, progress, lambda: f"{chunks.written:,} events in {len(chunks.parts)} files") as on_record:
        result = replaying.run(settings, window, selection, at=[], on_record=on_record, on_event=chunks.add,
                               source=stop.around(replaying.records(settings, window, selection)))
    read_to = window.end if not stop.stopped else (stop.last_ts or window.start)
    command = shlex.join(["fleet-twin", "export-dataset", "--from", iso(window.start), "--to", iso(read_to),
                          "--source", window.source, *_flags(selection), "--out", str(out),
                          *(["--labels", str(labels)] if labels else []), "--pre", f"{pre:g}", "--post",
                          f"{post:g}", "--normal-per-anomaly", str(normal_per_anomaly), "--seed", str(seed)])
    with _steps(progress) as on_step:
        manifest = write_chunked_dataset(
            out, chunks, anomalies_to_frame(result.anomalies), truth,
            {"from": window.start, "to": read_to, "source": window.source, "command": command},
            Params(pre, post, normal_per_anomaly, seed), complete=not stop.stopped, on_step=on_step)
    if stop.stopped:
        console.print(f"[yellow]interrupted:[/yellow] a partial set, the window read up to {iso(read_to)}")
    console.print(describe_dataset(manifest, result.records), highlight=False)
    print_command("dataset", f"{out}/")
    print_command("reproduce", command)


def by_name(counts: Mapping[str, int]) -> str:
    """`band 3, stuck 1` (by name), or `none`: counts as people read them, not a Python dict."""
    return ", ".join(f"{name} {n:,}" for name, n in sorted(counts.items())) or "none"


def describe_dataset(manifest: dict[str, Any], records: int) -> str:
    """A data set's counts as a sentence (its manifest has them all)."""
    counts = manifest["counts"]
    kinds = ", ".join(f"{n:,} {kind}" for kind, n in counts["windows"].items()) or "none"
    detectors = by_name(counts["detector"])
    skipped = f"; {counts['skipped_matches']:,} normal matches found no room" if counts["skipped_matches"] else ""
    return (f"{records:,} records read: windows {kinds} (by detector: {detectors}); "
            f"{counts['samples']:,} samples{skipped}")


def print_command(label: str, text: str) -> None:
    """A command or path on one line, whatever the width: a wrapped shell command cannot be pasted."""
    console.print(f"{label}: {text}", soft_wrap=True, highlight=False, markup=False)


class StopOnInterrupt:
    """The first Ctrl-C ends the records early (the fold then finishes as if the window ended there);
    a second one interrupts as usual. A flag rather than KeyboardInterrupt, which could strike in the
    middle of a fold step and lose the anomalies found so far."""

    def __init__(self) -> None:
        self.stopped = False
        self.last_ts: float | None = None
        """The time of the last record handed on: where a stopped window ends."""
        self._before: Any = None

    def __enter__(self) -> StopOnInterrupt:
        self._before = signal.signal(signal.SIGINT, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._before)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stopped = True
        signal.signal(signal.SIGINT, self._before)

    def around(self, records: Iterator[Record]) -> Iterator[Record]:
        """`records` until the first Ctrl-C."""
        try:
            for record in records:
                self.last_ts = record.timestamp
                yield record
                if self.stopped:
                    return
        finally:
            close = getattr(records, "close", None)
            if close is not None:
                close()  # stops a Kafka source's consumer


class _steps:
    """A progress bar over the steps after the replay (windows, then samples chunk by chunk)."""

    def __init__(self, enabled: bool) -> None:
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, disable=not enabled)
        self.task = self.progress.add_task("data set", total=None)

    def __enter__(self) -> Callable[[str, int, int], None]:
        self.progress.__enter__()
        return self.on_step

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def on_step(self, what: str, done: int, total: int) -> None:
        self.progress.update(self.task, description=what, completed=done, total=total)


class _bar:
    """A progress bar over the window's time (records arrive in time order); `note` adds to its text."""

    def __init__(self, window: Window, enabled: bool, note: Callable[[], str] | None = None) -> None:
        self.window, self.note = window, note
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                                 console=console, disable=not enabled)
        self.task = self.progress.add_task("replay", total=max(window.end - window.start, 1e-9))
        self.count = 0

    def __enter__(self):  # type: ignore[no-untyped-def]
        self.progress.__enter__()
        return self.on_record

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def on_record(self, record: Record) -> None:
        self.count += 1
        if self.count % 2000 == 0:
            self.progress.update(self.task, completed=record.timestamp - self.window.start,
                                 description=f"replay {self.count:,} records, at {iso(record.timestamp)}"
                                 + (f"; {self.note()}" if self.note else ""))


def _republish(settings: Settings, window: Window, selection: Selection, topic: str, speed: str,
               progress: bool) -> None:
    factor = float(speed.removesuffix("x"))
    try:
        with _bar(window, progress) as on_record:
            sent = replaying.republish(settings, replaying.records(settings, window, selection), topic, factor,
                                       on_record)
    except ValueError as err:
        console.print(f"[red]refused:[/red] {err}")
        raise typer.Exit(2) from None
    console.print(f"{sent:,} telemetry records republished to {topic} at {factor:g}x")


def _command(window: Window, selection: Selection, at: list[float], detectors: Path | None, out: Path) -> str:
    """The command that reproduces this replay, with every relative time made absolute."""
    args = ["fleet-twin", "replay", "--from", iso(window.start), "--to", iso(window.end),
            "--source", window.source, *_flags(selection)]
    for instant in at:
        args += ["--at", iso(instant)]
    if detectors:
        args += ["--detectors", str(detectors)]
    return shlex.join([*args, "--out", str(out)])


def _flags(selection: Selection) -> list[str]:
    return [x for name in ("robot", "site", "sector", "model") if (v := getattr(selection, name))
            for x in (f"--{name}", v)]


def _print_result(result: Result, meta: dict[str, object], elapsed: float) -> None:
    opened = Counter(a.detector for a in result.anomalies if a.status == "open")
    console.print(f"{result.records:,} records in {elapsed:.1f}s ({result.records / max(elapsed, 1e-9):,.0f}/s): "
                  f"{len(result.twins)} robots, {len(result.rejected)} rejected, "
                  f"anomalies opened: {by_name(opened)}", highlight=False)
    instants = sorted(result.snapshots)
    for before, after in zip(instants, instants[1:]):
        changed = sum(bool(diff_twins(result.snapshots[before].get(r), t))
                      for r, t in result.snapshots[after].items())
        console.print(f"{iso(before)} -> {iso(after)}: {changed} twins changed")
    if result.what_if is not None:
        changes = compare_runs(result.anomalies, result.what_if)
        kinds = ", ".join(f"{n:,} {kind}" for kind, n in count_changes(changes).items())  # in their order
        console.print(f"what-if ({meta['what_if']}): anomalies {kinds}", highlight=False, markup=False)
        rows = [[c.robot_id or c.site or c.model, c.kind, c.detector, c.signal,
                 iso(c.base_opened) if c.base_opened else "", iso(c.other_opened) if c.other_opened else "",
                 "" if c.shift_s is None else f"{c.shift_s:+.1f}"]
                for c in [c for c in changes if c.kind != "same"][:30]]
        print_rows(console, "", ["robot", "change", "detector", "signal", "seeds opened", "what-if opened",
                                 "shift s"], rows)

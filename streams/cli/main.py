"""`fleet-twin`: run the local stack, a worker, or the simulator."""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import msgspec
import typer
from rich.console import Console
from rich.progress import (
    BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn,
)
from rich.table import Table

from streams.auth import ensure_api_token, principals, token_file
from streams.cli.archive_commands import archive_command, report_command
from streams.cli.audit_commands import audit_command
from streams.cli.context import load_settings, settings_of, topics_or_exit
from streams.cli.dashboards import dashboards_app
from streams.cli.desire_commands import desire_app
from streams.cli.import_commands import import_command
from streams.cli.params import positive
from streams.exceptions import NoApiToken, ProcessFailed
from streams.cli.replay_commands import export_dataset_command, replay_command, twin_at_command
from streams.cli.rollout_commands import rollout_app
from streams.settings import Settings
from streams.local.stack import Stack

app = typer.Typer(help="Event-driven digital twin of a robot fleet.", no_args_is_help=True,
                  callback=load_settings)
app.add_typer(dashboards_app, name="dashboards", help="Grafana dashboards: generate, push, render.")
app.add_typer(rollout_app, name="rollout", help="Staged rollouts behind the safety gate: run a plan, show its status.")
app.add_typer(desire_app, name="desire", help="Desired state: set, clear, list (through the twin API).")
app.command("report")(report_command)
app.command("archive")(archive_command)
app.command("replay")(replay_command)
app.command("twin-at")(twin_at_command)
app.command("export-dataset")(export_dataset_command)
app.command("import")(import_command)
app.command("audit")(audit_command)
console = Console()


@app.command()
def up(ctx: typer.Context) -> None:
    """Start broker, Prometheus, Alertmanager, a worker and the simulator; print where to look."""
    settings = settings_of(ctx)
    stack = Stack(settings)
    started = time.monotonic()
    created = ensure_api_token(settings)
    try:
        with console.status("starting the local stack..."):
            stack.up()
    except (ProcessFailed, NoApiToken) as err:
        console.print(f"[red]fleet-twin up failed:[/red] {err}")
        raise typer.Exit(1) from None
    _print_status(stack)
    robot = _example_robot(settings)
    if created:
        console.print(f"\nThe twin API wants a bearer token: a new one is in {created} (0600, kept "
                      "across runs; FLEET_TWIN_API_TOKEN overrides it).", soft_wrap=True)
    auth = ('-H "Authorization: Bearer $FLEET_TWIN_API_TOKEN"' if settings.api_token
            else f'-H "Authorization: Bearer $(cat {token_file(settings)})"')
    console.print(
        f"\nUp in {time.monotonic() - started:.0f}s. Try:\n"
        f"  curl {auth} {settings.web_url()}/twins/{robot}\n"
        f"  curl {auth} '{settings.web_url()}/twins?sector=mining&limit=5'\n"
        f"  curl -s 'http://127.0.0.1:{settings.prometheus_port}/api/v1/query' "
        "--data-urlencode 'query=sum by (sector) (fleet_robots)'\n"
        f"Alerts: {settings.alertmanager_url}/#/alerts"
        + (" (the demo fleet's first faults show within 5 minutes)\n" if settings.sim_scenario == "demo" else "\n")
        + f"Logs: {stack.procs.log_dir}/   Stop: make down", soft_wrap=True, highlight=False,
    )


@app.command()
def down(ctx: typer.Context) -> None:
    """Stop everything `up` started (by pid file)."""
    stopped = Stack(settings_of(ctx)).down()
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@app.command()
def status(ctx: typer.Context) -> None:
    """Show the local stack's services: pid, address, health (the worker's partitions and lag)."""
    _print_status(Stack(settings_of(ctx)))


@app.command()
def worker(ctx: typer.Context) -> None:
    """Run one stream worker in the foreground (twin table, DLQ, web API, /metrics)."""
    import faust
    from prometheus_client import CollectorRegistry

    from streams.worker.app import build_app
    from streams.seeds import read_detectors, read_fleet
    settings = settings_of(ctx)
    try:
        principals(settings)  # the API token, and the named principals' if any
    except NoApiToken as err:
        console.print(f"[red]{err}[/red]")
        raise typer.Exit(2) from None
    fleet = read_fleet(settings.seeds_dir)
    detectors = read_detectors(settings.seeds_dir)
    topics_or_exit(settings, console)
    asyncio.set_event_loop(asyncio.new_event_loop())
    faust_app = build_app(settings, fleet, detectors, CollectorRegistry())
    # The app, the seeds and the libraries live as long as the process: out of the collector's
    # sight, full collections stop walking them again and again while micro-batches churn.
    gc.freeze()
    faust.Worker(faust_app, loglevel="INFO").execute_from_commandline()


@app.command()
def simulate(
    ctx: typer.Context,
    scenario: Annotated[str, typer.Option(help="Name in seeds/scenarios/, or a YAML path.")] = "steady",
    robots: Annotated[Optional[int], typer.Option(callback=lambda v: positive(v), help="Fleet size (default: the scenario's).")] = None,
    rate: Annotated[Optional[float], typer.Option(callback=lambda v: positive(v), help="Reports per robot per second.")] = None,
    speed: Annotated[float, typer.Option(callback=lambda v: positive(v), help="Run X times faster than real time (Kafka only).")] = 1.0,
    duration: Annotated[Optional[float], typer.Option(
        callback=lambda v: positive(v), help="Scenario seconds to run (a repeating scenario such as demo: how long to loop; "
             "default: to Kafka until stopped, to a file one cycle).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Same seed, same events, byte for byte.")] = None,
    to_file: Annotated[Optional[Path], typer.Option("--to-file", help="Write Parquet here instead of Kafka.")] = None,
    to_jsonl: Annotated[Optional[Path], typer.Option("--to-jsonl", help="Write JSON lines here instead of Kafka.")] = None,
    labels: Annotated[Optional[Path], typer.Option(help="Ground-truth Parquet (default: beside the events).")] = None,
    progress: Annotated[bool, typer.Option(help="Show a live progress bar.")] = True,
    fleet_id: Annotated[Optional[str], typer.Option(
        callback=lambda v: _fleet_id(v),
        help="Prefix of this run's robot ids, so that two runs never report for the same robot. "
             "Default: a new one per run to Kafka, none for files; '' gives the ids `make up`'s simulator uses.")] = None,
    apply_delay_s: Annotated[float, typer.Option(min=0.0, help="Seconds a robot takes to apply a command from "
                                                 "fleet.commands (each change +-50%).")] = 20.0,
    fail_share: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of commanded changes that fail "
                                              "(the robot keeps its old value).")] = 0.0,
    rollback_share: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of commanded changes the robot "
                                                  "reports, then rolls back about a minute later.")] = 0.0,
    gateway: Annotated[bool, typer.Option(help="Send as site gateways do: one record per site and partition, "
                                          "its robots' reports as Arrow columns (docs/TWIN.md). Kafka only.")] = False,
) -> None:
    """Run a fleet scenario: to Kafka at a controlled rate, or to a file with its ground truth.

    Robots run to Kafka obey the commands on fleet.commands (docs/CONTROL.md)."""
    from streams.cli.params import scenario_spec
    from streams.seeds import read_fleet
    from streams.local.simulator import LabelLog, Obeyed, labels_path, new_fleet_id, to_file as write_file, to_kafka
    from twin.sim import FleetSim
    from twin.sim.commands import Obedience
    from twin.sim.engine import ENDLESS

    settings = settings_of(ctx)
    fleet = read_fleet(settings.seeds_dir)
    spec = scenario_spec(settings.seeds_dir, scenario)
    # A repeating scenario keeps its cycle: --duration is how long it loops, not how long a cycle lasts.
    cycle = None if spec.repeat else duration
    overrides = {k: v for k, v in (("robots", robots), ("rate_hz", rate), ("duration_s", cycle)) if v}
    spec = msgspec.structs.replace(spec, **overrides)
    out = to_file or to_jsonl
    live = out is None
    fleet_id = fleet_id if fleet_id is not None else new_fleet_id() if live else ""
    try:
        obedience = Obedience(apply_delay_s=apply_delay_s, fail_share=fail_share, rollback_share=rollback_share)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    sim = FleetSim(fleet, spec, seed=settings.sim_seed if seed is None else seed,
                   start_ts=round(time.time(), 3) if live else None, time_scale=1.0 / speed if live else 1.0,
                   fleet_id=fleet_id, run_s=(duration or (float("inf") if live else None)) if spec.repeat else None,
                   obedience=obedience)
    label_file = labels or (labels_path(out) if out else
                            settings.state_dir / "labels" / f"{spec.name}-{int(sim.start_ts)}.parquet")
    truth = LabelLog(sim, label_file)
    bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=console, disable=not progress)
    task = bar.add_task(f"{spec.name}: {len(sim.roster)} robots", total=None if sim.ticks == ENDLESS else sim.ticks)
    if fleet_id:
        console.print(f"robot ids: {sim.roster.robot_ids[0]} ... ({len(sim.roster)} robots, fleet id {fleet_id})",
                      highlight=False)
    started = time.monotonic()

    def show(ticks: int, sent: int) -> None:
        rate_now = sent / max(time.monotonic() - started, 1e-9)
        bar.update(task, completed=ticks, description=f"{spec.name}: {sent:,} events ({rate_now:,.0f}/s)")

    with bar:
        if live:
            topics_or_exit(settings, console)
            obeyed = Obeyed()
            sent = asyncio.run(to_kafka(settings, sim, speed=speed, on_tick=show, labels=truth, sign_off=True,
                                        obeyed=obeyed, gateway=gateway))
            console.print(str(obeyed), highlight=False)
        else:
            assert out is not None
            sent = write_file(sim, out, on_tick=show, labels=truth)
    elapsed = time.monotonic() - started
    where = settings.telemetry_topic if live else str(out)
    console.print(f"{sent:,} events to {where} in {elapsed:.1f}s ({sent / max(elapsed, 1e-9):,.0f}/s); "
                  f"{truth.frame.height} ground-truth labels in {label_file}")


def _fleet_id(value: str | None) -> str | None:
    """A fleet id must fit into robot ids; a bad one is a usage error, not a traceback."""
    from twin.sim.roster import FLEET_ID

    if value and not FLEET_ID.match(value):
        raise typer.BadParameter(f"{value!r}: 1 to 32 of A-Z a-z 0-9 . _ : (no '-')")
    return value


@app.command(name="eval")
def evaluate(
    ctx: typer.Context,
    scenario: Annotated[list[str], typer.Option(help="Simulator scenario(s) to score against their ground truth.")] = [],  # noqa: B006
    robots: Annotated[Optional[int], typer.Option(callback=lambda v: positive(v), help="Fleet size (default: the scenario's).")] = None,
    duration: Annotated[Optional[float], typer.Option(help="Scenario seconds (default: the scenario's).")] = None,
    seed: Annotated[int, typer.Option(help="Simulator seed.")] = 1,
    data: Annotated[list[str], typer.Option(
        help="Data to score: nab, skab, ur3 (the shipped public sets) or a folder in NAB's layout or of "
             "labelled recordings with a manifest.yaml (docs/ANOMALY.md).")] = [],  # noqa: B006
    model: Annotated[Optional[str], typer.Option(
        help="With --data FOLDER of recordings: import its runs as robots of this seeds/models.yaml model and "
             "score the worker's own detectors on them (fleet-twin import, docs/ANOMALY.md).")] = None,
) -> None:
    """Score the detectors offline, with the same code as the live workers."""
    from streams.analysis.eval.sim import sim_table
    from streams.cli.params import check_data, check_scenario
    from streams.cli.replay_commands import by_name
    from streams.cli.tables import print_frame

    settings = settings_of(ctx)
    for name in scenario:
        check_scenario(settings.seeds_dir, name)
    for name in data:
        check_data(name, DATA_SETS)
    for name in scenario:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task(f"folding {name} (simulated seconds)", total=None)
            about, table, by_detector = sim_table(
                settings.seeds_dir, name, robots=robots, duration_s=duration, seed=seed,
                partitions=settings.partitions, on_tick=lambda done, total: bar.update(task, completed=done, total=total))
        print_frame(console, about, table)
        console.print(f"anomalies opened, by detector: {by_name(by_detector)}", highlight=False)
    for name in data:
        with console.status(f"scoring {name}..."):
            table = _data_table(name, settings, model)
        print_frame(console, name, table)
    if not scenario and not data:
        console.print("nothing to do: give --scenario NAME and/or --data nab|skab|ur3|FOLDER")


DATA_SETS = ("nab", "skab", "ur3")
"""Public data sets `eval --data` scores (a module `streams.analysis.eval.<name>` each)."""


def _data_table(name: str, settings: Settings, model: str | None = None) -> Any:
    """A shipped data set by name, or a folder by its layout (the checks in `check_data` let only these through)."""
    if model is not None and name not in DATA_SETS:
        return _production_table(Path(name), model, settings)
    import importlib

    from streams.cli.params import data_layout

    if name in DATA_SETS:
        module = importlib.import_module(f"streams.analysis.eval.{name}")
        return getattr(module, f"{name}_table")(settings.data_dir)
    folder = Path(name)
    if data_layout(folder) == "nab":
        from streams.analysis.eval.nab import nab_folder_table

        return nab_folder_table(folder)
    from streams.analysis.eval.recordings import recordings_table

    return recordings_table(folder)


def _production_table(folder: Path, model: str, settings: Settings) -> Any:
    """The worker's detectors on a recordings folder imported as robots of `model`; a folder or model
    that cannot be imported is one line and exit 2."""
    from streams.analysis.eval.production import production_table
    from streams.analysis.importing import ImportProblem
    from streams.analysis.recordings import RecordingError

    try:
        return production_table(folder, model, settings.seeds_dir)
    except (ImportProblem, RecordingError) as err:
        console.print(f"[red]fleet-twin eval:[/red] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _print_status(stack: Stack) -> None:
    """Each service's pid, address and what it says about itself: a pid alone does not say a
    worker serves twins (streams/local/health.py)."""
    from rich.markup import escape

    from streams.local.health import service_health

    table = Table("service", "pid", "address", "health")
    for s in stack.status():
        pid = str(s.pid) if s.pid else "external" if s.external else "[dim]not running[/dim]"
        health = service_health(s.name, stack.settings) if s.pid or s.external else None
        shown = "" if health is None or health.ok is None else \
            f"[{'green' if health.ok else 'red'}]{escape(health.text)}[/]"
        table.add_row(s.name, pid, s.url, shown)
    console.print(table)


def _example_robot(settings: Settings) -> str:
    from streams.seeds import read_fleet
    from twin.sim.roster import place

    return place(read_fleet(settings.seeds_dir), 1, settings.sim_seed).robot_ids[0]


def main() -> None:
    app()

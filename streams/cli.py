"""`fleet-twin`: run the local stack, a worker, or the simulator."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from streams.procs import ProcessFailed
from streams.settings import Settings
from streams.stack import Stack

app = typer.Typer(help="Event-driven digital twin of a robot fleet.", no_args_is_help=True)
console = Console()


@app.command()
def up() -> None:
    """Start broker, Prometheus, Alertmanager, a worker and the simulator; print where to look."""
    settings = Settings()
    stack = Stack(settings)
    started = time.monotonic()
    try:
        with console.status("starting the local stack..."):
            stack.up()
    except ProcessFailed as err:
        console.print(f"[red]fleet-twin up failed:[/red] {err}")
        raise typer.Exit(1) from None
    _print_status(stack)
    robot = _example_robot(settings)
    console.print(
        f"\nUp in {time.monotonic() - started:.0f}s. Try:\n"
        f"  curl {settings.web_url()}/twins/{robot}\n"
        f"  curl '{settings.web_url()}/twins?sector=mining&limit=5'\n"
        f"  curl -s 'http://127.0.0.1:{settings.prometheus_port}/api/v1/query' "
        "--data-urlencode 'query=sum by (sector) (fleet_robots)'\n"
        f"Logs: {stack.procs.log_dir}/   Stop: make down"
    )


@app.command()
def down() -> None:
    """Stop everything `up` started (by pid file)."""
    stopped = Stack(Settings()).down()
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@app.command()
def status() -> None:
    """Show which services of the local stack run."""
    _print_status(Stack(Settings()))


@app.command()
def worker() -> None:
    """Run one stream worker in the foreground (twin table, DLQ, web API, /metrics)."""
    import faust
    from prometheus_client import CollectorRegistry

    from streams.app import build_app
    from streams.seeds import read_fleet
    from streams.topics import ensure_topics

    settings = Settings()
    fleet = read_fleet(settings.seeds_dir)
    asyncio.run(ensure_topics(settings))
    asyncio.set_event_loop(asyncio.new_event_loop())
    faust_app = build_app(settings, fleet, CollectorRegistry())
    faust.Worker(faust_app, loglevel="INFO").execute_from_commandline()


@app.command()
def simulate(
    robots: Annotated[Optional[int], typer.Option(help="Fleet size.")] = None,
    rate: Annotated[Optional[float], typer.Option(help="Reports per robot per second.")] = None,
    duration: Annotated[Optional[float], typer.Option(help="Seconds to run (default: until stopped).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Same seed, same fleet and events.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a live progress line.")] = True,
) -> None:
    """Publish a simulated fleet to the telemetry topic at a controlled rate."""
    from streams.seeds import read_fleet
    from streams.simulate import publish
    from streams.topics import ensure_topics

    settings = Settings()
    fleet = read_fleet(settings.seeds_dir)
    n = robots or settings.sim_robots
    hz = rate or settings.sim_rate_hz
    asyncio.run(ensure_topics(settings))
    started = time.monotonic()

    live = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                    console=console, disable=not progress)
    task = live.add_task("connecting...", total=None)

    def show(ticks: int, sent: int) -> None:
        rate_now = sent / max(time.monotonic() - started, 1e-9)
        live.update(task, description=f"{n} robots at {hz} Hz: {sent:,} events ({rate_now:,.0f}/s)")

    with live:
        sent = asyncio.run(
            publish(settings, fleet, robots=n, rate_hz=hz, duration_s=duration,
                    seed=seed if seed is not None else settings.sim_seed, on_tick=show)
        )
    console.print(f"sent {sent:,} events to {settings.telemetry_topic}")


def _print_status(stack: Stack) -> None:
    table = Table("service", "pid", "address")
    for s in stack.status():
        pid = str(s.pid) if s.pid else "external" if s.external else "[dim]not running[/dim]"
        table.add_row(s.name, pid, s.url)
    console.print(table)


def _example_robot(settings: Settings) -> str:
    from streams.seeds import read_fleet
    from twin.sim import make_roster

    return make_roster(read_fleet(settings.seeds_dir), 1, settings.sim_seed)[0].robot_id


def main() -> None:
    app()

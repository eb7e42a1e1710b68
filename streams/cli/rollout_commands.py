"""`fleet-twin rollout run PLAN.yaml` and `fleet-twin rollout status PLAN_ID`: staged rollouts behind the safety gate."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Optional

import typer
import yaml
from rich.console import Console
from rich.table import Table

from streams.cli.context import settings_of, topics_or_exit
from streams.rollout import EXIT_CODES, Controller, PrometheusUnavailable, check_plan, gate_records
from streams.seeds import read_fleet
from twin.exceptions import InvalidEvent
from twin.plan import GateRecord, Plan, load_plan

rollout_app = typer.Typer(no_args_is_help=True)
console = Console()


def _read_plan(path: Path) -> Plan:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise typer.BadParameter(f"{path}: {err}", param_hint="'PLAN'") from None
    try:
        return load_plan(doc, str(path))
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="'PLAN'") from None


@rollout_app.command("run")
def run_command(
    ctx: typer.Context,
    plan_file: Annotated[Path, typer.Argument(metavar="PLAN", help="The plan (YAML, like seeds/plans/canary-amr.yaml).",
                                              exists=True, dir_okay=False)],
    look_s: Annotated[Optional[float], typer.Option(help="Seconds between looks (default: the plan's look_s).",
                                                    min=0.1)] = None,
    max_s: Annotated[Optional[float], typer.Option(help="Give up after this many seconds (exit 4); the wave in "
                                                   "force stays as it is.", min=1)] = None,
) -> None:
    """Run a staged rollout: publish each wave, look at the safety KPIs, advance, or halt and revert.

    Exit 0 when the plan completes, 3 when the gate halted it (the wave is reverted and a
    critical rollout_gate alert raised), 4 on --max-s, 2 on a bad plan or no Prometheus."""
    settings = settings_of(ctx)
    plan = _read_plan(plan_file)
    try:
        check_plan(plan, read_fleet(settings.seeds_dir))
    except InvalidEvent as err:
        raise typer.BadParameter(f"{plan_file}: {err}", param_hint="'PLAN'") from None
    topics_or_exit(settings, console)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    console.print(f"rollout {plan.id}: {plan.from_} -> {plan.to}, waves "
                  f"{', '.join(f'{w.share:.0%}' for w in plan.waves)}; a look every {look_s or plan.look_s:g} s")
    controller = Controller(settings, plan, on_look=_print_look)
    try:
        status = asyncio.run(controller.run(max_s=max_s, look_s=look_s))
    except PrometheusUnavailable as err:
        console.print(f"[red]no Prometheus to read the safety KPIs from[/red] ({err}); nothing was published")
        raise typer.Exit(2) from None
    console.print(f"rollout {plan.id}: [bold]{status}[/bold]")
    raise typer.Exit(EXIT_CODES[status])


def _print_look(record: GateRecord) -> None:
    new, old = record.evidence.get("new", {}), record.evidence.get("old", {})
    console.print(
        f"{_when(record.ts)} wave {record.wave + 1} ({record.share:.0%}) {record.decision:<8} "
        f"LLR {record.statistic:+.3f} in [{record.lower:.2f}, {record.upper:.2f}]  "
        f"new {new.get('events', 0):g} ev / {new.get('hours', 0):.2f} h, old {old.get('events', 0):g} ev / "
        f"{old.get('hours', 0):.2f} h  -> {record.status}", highlight=False)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


@rollout_app.command("status")
def status_command(
    ctx: typer.Context,
    plan_id: Annotated[str, typer.Argument(help="The plan's id.")],
    looks: Annotated[int, typer.Option(help="Latest looks to list.", min=1)] = 10,
) -> None:
    """Where a plan stands, from its gate records on fleet.rollouts (exit 1 when it has none)."""
    settings = settings_of(ctx)
    topics_or_exit(settings, console)
    records = asyncio.run(gate_records(settings, plan_id))
    if not records:
        console.print(f"no gate records for plan '{plan_id}' on {settings.rollouts_topic}")
        raise typer.Exit(1)
    last = records[-1]
    table = Table(title=f"rollout {plan_id}: {last.status}, wave {last.wave + 1} ({last.share:.0%})")
    for column in ("time (UTC)", "wave", "decision", "LLR", "lower", "upper", "new ev/h", "old ev/h", "status"):
        table.add_column(column)
    for r in records[-looks:]:
        new, old = r.evidence.get("new", {}), r.evidence.get("old", {})
        table.add_row(_when(r.ts), f"{r.wave + 1} ({r.share:.0%})", r.decision, f"{r.statistic:+.3f}",
                      f"{r.lower:.2f}", f"{r.upper:.2f}", f"{new.get('events', 0):g}/{new.get('hours', 0):.2f}",
                      f"{old.get('events', 0):g}/{old.get('hours', 0):.2f}", r.status)
    console.print(table)

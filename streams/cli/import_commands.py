"""`fleet-twin import`: a folder of labelled recordings as a fleet's log (streams.analysis.importing)."""

from __future__ import annotations

import shlex
from collections import Counter
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from streams.cli.context import settings_of

console = Console()


def import_command(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A folder of recordings: manifest.yaml and one CSV/Parquet file per run.")],
    model: Annotated[str, typer.Option(help="The robot model (seeds/models.yaml) the runs are robots of.")],
    out: Annotated[Optional[Path], typer.Option(
        help="Where the log goes, as a Parquet archive (default: imported/<folder name>).")] = None,
    robot_id: Annotated[Optional[str], typer.Option(
        help="The robot id of a single run; with several runs, the prefix of theirs (default: the file stems).")] = None,
    map_: Annotated[list[str], typer.Option(
        "--map", help="COLUMN=SIGNAL: a recording column as this model signal (COLUMN= leaves it out). Repeat.")] = [],  # noqa: B006
    sector: Annotated[Optional[str], typer.Option(help="Sector of the robots (default: the first deploying the model).")] = None,
    site: Annotated[Optional[str], typer.Option(help="Site of the robots (default: the sector's first).")] = None,
    learn_bands: Annotated[bool, typer.Option(
        "--learn-bands", help="Also write bands learned from the normal-only runs as a models.yaml snippet to review.")] = False,
) -> None:
    """Turn labelled recordings into schema-v1 events of a robot model: a log `replay --source` reads,
    its labelled episodes, and the worker's detectors run over it."""
    from streams.analysis.importing import ImportProblem, bands_yaml, import_set, learn_bands as learn
    from streams.analysis.importing import learn_stall_profile, learn_stuck_reports, model_of, parse_mapping, write_archive
    from streams.analysis.recordings import RecordingError, load_recordings
    from streams.seeds import read_detectors, read_fleet
    from streams.twin_view import iso

    settings = settings_of(ctx)
    fleet = read_fleet(settings.seeds_dir)
    try:
        model_of(fleet, model)
        mapping = parse_mapping(map_)
        recs = load_recordings(path)
        with console.status(f"importing {path} as {model}..."):
            imported = import_set(recs, fleet, read_detectors(settings.seeds_dir), model, mapping=mapping,
                                  robot_id=robot_id, sector=sector, site=site)
    except (ImportProblem, RecordingError) as err:
        console.print(f"[red]fleet-twin import:[/red] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    out = out or Path("imported") / path.resolve().name
    command = shlex.join(["fleet-twin", "import", str(path), "--model", model, "--out", str(out),
                          *(["--robot-id", robot_id] if robot_id else []), *(f"--map={m}" for m in map_),
                          *(["--sector", sector] if sector else []), *(["--site", site] if site else [])])
    write_archive(out, imported, {"source": str(path), "command": command})
    opened = Counter(a.detector for a in imported.anomalies if a.status == "open")
    console.print(f"{len(imported.robots)} robot(s) of {model}, {len(imported.telemetry):,} events, "
                  f"{len(imported.checks):,} silence checks, {imported.labels.height} labelled episode(s) -> {out}/",
                  highlight=False, soft_wrap=True)
    console.print(f"signals: {', '.join(f'{c} -> {s}' if c != s else c for c, s in imported.mapping.items())}",
                  highlight=False, soft_wrap=True)
    if imported.rejected:
        console.print(f"[yellow]{imported.rejected:,} event(s) rejected[/yellow] (a value outside the model's "
                      "physical limits?): `fleet-twin replay` lists them", highlight=False)
    console.print(f"anomalies opened by the worker's detectors: "
                  f"{', '.join(f'{k} {v}' for k, v in opened.most_common()) or 'none'}", highlight=False, soft_wrap=True)
    if learn_bands:
        normal = [r.frame for r in recs.normal]
        bands = learn(normal, imported.mapping)
        stuck = learn_stuck_reports(normal, imported.mapping)
        snippet = out / f"model-{model}.yaml"
        text = bands_yaml(fleet, model, bands, str(path), stuck)
        if (stall := read_detectors(settings.seeds_dir).for_model(model).stall) is not None:
            profile = learn_stall_profile(normal, imported.mapping, stall)
            text += ("# and the stall detector's work-cycle profile (moving share per second of the cycle):\n"
                     f"#   {model}: {{stall: {{cycle: {stall.cycle}, speeds: {list(stall.speeds)}, "
                     f"profile: [{', '.join(f'{v:g}' for v in profile)}]}}}}\n")
        snippet.write_text(text)
        console.print(f"learned bands (from {len(normal)} normal-only run(s)), to review: {snippet}", highlight=False,
                      soft_wrap=True)
    first = min(r.timestamp for r in imported.telemetry)
    last = max(r.timestamp for r in imported.telemetry)
    console.print(f"replay:  fleet-twin replay --source {shlex.quote(str(out))} --from {iso(first)} --to {iso(last + 1)}\n"
                  f"score:   fleet-twin eval --data {shlex.quote(str(path))} --model {model}", highlight=False,
                  soft_wrap=True)

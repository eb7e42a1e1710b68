"""The incident report end to end, without a broker: a simulated fault scenario is folded
by `twin.replay` exactly as a replay would, written as a replay's directory, turned into
`report.html`, and that page is opened by headless Chromium with the network cut off.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import polars as pl
import pytest
import yaml

from streams.analysis.replay_window import peers_of
from streams.analysis.report import changes_to_frame, write_report
from streams.seeds import read_detectors
from twin.compare import compare_runs
from twin.detect.params import load_config
from twin.fleet import Fleet
from twin.record import Record
from twin.replay import Result, Selection, replay
from twin.schema import encode
from twin.sim import FleetSim
from twin.sim.scenario import load_scenario
from streams.twin_view import snapshots_to_frame
from twin.frames import HEAD, anomalies_to_frame, seen_to_frame

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "seeds"
CHECK_EVERY = 5
SCENARIO = load_scenario({
    "name": "incident-report", "robots": 24, "duration_s": 900, "sectors": ["manufacturing"],
    "faults": [
        {"type": "thermal_runaway", "robots": 1, "start": "30%", "duration": 400},
        {"type": "overcurrent", "robots": 1, "start": "40%", "duration": 60},
        {"type": "stuck_sensor", "robots": 1, "start": "45%", "duration": 300},
        {"type": "comm_loss", "robots": 1, "start": "50%", "duration": 120},
        {"type": "fault_code_burst", "robots": 1, "start": "60%", "duration": 90, "rate": 0.4, "estop_rate": 0.1},
        {"type": "site_power_dip", "where": {"site": "mfg-osaka-01"}, "start": "75%", "duration": 30},
        {"type": "rollout", "where": {"model": "cobot-arm"}, "version": "policy-2.5.0", "share": 0.5,
         "start": "35%", "spread": 60, "latency_factor": 1.8},
    ],
}, "test")
SLOWER = {"stuck_reports": 90, "band_reports": 8}
"""The what-if: the seeded detectors, slower to call a band or a stuck signal, so there are changes to show."""


def records(sim: FleetSim) -> list[Record]:
    """The scenario as the worker's log: telemetry, and a silence check per robot every few seconds."""
    out: list[Record] = []
    for tick in range(sim.ticks):
        now = sim.start_ts + tick * sim.dt
        out += [Record("telemetry", 0, len(out) + i, now, e.robot_id.encode(), encode(e))
                for i, e in enumerate(sim.step())]
        if tick % CHECK_EVERY == CHECK_EVERY - 1:
            out += [Record("check", 0, len(out) + i, now, rid.encode(), repr(now).encode())
                    for i, rid in enumerate(sim.roster.robot_ids)]
    return out


def write_replay_dir(out: Path, fleet: Fleet) -> tuple[Result, list[dict[str, object]]]:
    """Fold the scenario (and the what-if configuration) and write what `fleet-twin replay` writes."""
    sim = FleetSim(fleet, SCENARIO, seed=1)
    log = records(sim)
    start, end = sim.start_ts, sim.start_ts + SCENARIO.duration_s
    base = replay(log, fleet, read_detectors(SEEDS), at=[start + 300, start + 600, end])
    what_if = yaml.safe_load((SEEDS / "detectors.yaml").read_text())
    what_if["defaults"] = {**(what_if.get("defaults") or {}), **SLOWER}
    (out / "what-if.yaml").write_text(yaml.safe_dump(what_if))
    other = replay(log, fleet, load_config(what_if, str(out / "what-if.yaml")))
    seen_to_frame(base.events).write_parquet(out / "events.parquet")
    anomalies_to_frame(base.anomalies).write_parquet(out / "anomalies.parquet")
    snapshots_to_frame(base.snapshots).write_parquet(out / "snapshots.parquet")
    changes_to_frame(compare_runs(base.anomalies, other.anomalies)).write_parquet(out / "changes.parquet")
    meta = {
        "command": f"fleet-twin replay --source archive:/tmp/archive --from {start:.0f} --to {end:.0f} "
                   f"--what-if {out / 'what-if.yaml'} --out {out}",
        "source": "archive:/tmp/archive", "from": start, "to": end,
        "selection": {"robot": None, "site": None, "sector": None, "model": None},
        "records": base.records, "events": len(base.events), "rejected": len(base.rejected),
        "anomalies": len(base.anomalies), "detectors": str(SEEDS / "detectors.yaml"),
        "what_if": str(out / "what-if.yaml"),
    }
    (out / "replay.json").write_text(json.dumps(meta, indent=2))
    return base, sim.labels()


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, fleet: Fleet) -> tuple[Path, Result, list[dict[str, object]]]:
    out = tmp_path_factory.mktemp("replay")
    result, labels = write_replay_dir(out, fleet)
    return write_report(out), result, labels


def test_the_report_needs_nothing_from_outside(report: tuple[Path, Result, list[dict[str, object]]]) -> None:
    page = report[0].read_text()
    assert "http://" not in page and "https://" not in page
    assert 'src="/' not in page and "<script" not in page.lower() and "<link" not in page.lower()
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "url(" not in page  # no CSS fetches either


def test_the_report_names_the_faulty_robots_and_their_detectors(
        report: tuple[Path, Result, list[dict[str, object]]]) -> None:
    path, result, labels = report
    page = path.read_text()
    single = {str(label["robot_id"]): label["fault"] for label in labels
              if label["fault"] in ("thermal_runaway", "overcurrent", "stuck_sensor", "comm_loss",
                                    "fault_code_burst")}
    assert len(single) == 5
    for robot in single:
        assert f'id="robot-{robot}"' in page, (robot, single[robot])  # has its own plots
    for detector in {a.detector for a in result.anomalies} | {"site_incident", "rollout", "silence", "stuck"}:
        assert f"<td>{detector}</td>" in page, detector
    assert "<h2>What if</h2>" in page and "<h2>Twin snapshots</h2>" in page
    assert "fleet-twin replay --source archive:/tmp/archive" in page


def test_the_top_faults_come_first_and_incidents_keep_their_robots_together(
        report: tuple[Path, Result, list[dict[str, object]]]) -> None:
    page = report[0].read_text()
    top, timeline = page.index("<h2>Top faults</h2>"), page.index("<h2>Alert timeline</h2>")
    assert top < timeline
    first = re.search(r"<tbody>\s*<tr>(.*?)</tr>", page[top:timeline], re.S)
    assert first and "sev-critical" in first[1], "a warning leads the top faults"
    rows = re.findall(r"<tr><td class=\"num\">(\d+)</td>(.*?)</tr>", page[timeline:page.index("</table>", timeline)])
    ranks = [int(rank) for rank, _ in rows]
    assert ranks == sorted(ranks) and len(set(ranks)) < len(ranks)  # grouped: an incident and its robots share one
    worst = {rank: max(("sev-critical" in cells) * 2 + ("sev-warning" in cells) for r, cells in rows if int(r) == rank)
             for rank in ranks}
    assert [worst[r] for r in sorted(worst)] == sorted(worst.values(), reverse=True)  # critical groups first
    incident = next(rank for rank, cells in rows if "site mfg-osaka-01" in cells and "site_incident" in cells)
    members = [cells for rank, cells in rows if rank == incident]
    assert "site_incident" in members[0] and len(members) > 3  # the incident leads, its robots follow at once


def test_a_single_robot_report_plots_its_signals(fleet: Fleet, tmp_path: Path) -> None:
    """A replay of one robot shows its signals, alerted or not: here a robot whose only alerts
    (silence, gaps) name no signal, which used to get a mode band and nothing else."""
    sim = FleetSim(fleet, SCENARIO, seed=1)
    log = records(sim)
    robot = next(str(label["robot_id"]) for label in sim.labels() if label["fault"] == "comm_loss")
    selection = Selection(robot=robot)
    start, end = sim.start_ts, sim.start_ts + SCENARIO.duration_s
    result = replay(log, fleet, read_detectors(SEEDS), selection=selection, keep=peers_of(selection))
    seen_to_frame(result.events).write_parquet(tmp_path / "events.parquet")
    anomalies_to_frame(result.anomalies).write_parquet(tmp_path / "anomalies.parquet")
    snapshots_to_frame(result.snapshots).write_parquet(tmp_path / "snapshots.parquet")
    (tmp_path / "replay.json").write_text(json.dumps({
        "from": start, "to": end, "selection": {"robot": robot, "site": None, "sector": None, "model": None}}))
    assert {a.signal for a in result.anomalies if a.robot_id == robot} == {""}
    page = write_report(tmp_path).read_text()
    assert f'id="robot-{robot}"' in page
    alt = re.search(rf'alt="signals of {robot}: ([^"]*)"', page)
    assert alt, "no signal plot for the selected robot"
    model = fleet.models[next(a.model for a in result.anomalies if a.robot_id == robot)]
    plotted = alt[1].split(", ")
    assert len(plotted) == 6 and set(plotted) <= set(model.signals), plotted


def test_chromium_renders_it_offline(report: tuple[Path, Result, list[dict[str, object]]], tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is not installed: run deploy/install-system.sh --test"
    shot = tmp_path / "report.png"
    screenshot(chromium, report[0], shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(shot)[:, :, :3]
    assert pixels.shape[:2] == (4000, 1400)
    assert pixels.std() > 0.1 and (pixels < 0.9).mean() > 0.05  # plots and tables, not a blank page


def test_a_quiet_window_still_gives_a_page(tmp_path: Path) -> None:
    # seen_to_frame([]) cannot infer its signal columns (polars NoDataError): written by hand.
    head = {name: pl.String() for name in HEAD} | {
        "seq": pl.Int64(), "ts": pl.Float64(), "codes": pl.List(pl.String()), "received_ts": pl.Float64(),
        "partition": pl.Int32(), "offset": pl.Int64()}
    pl.DataFrame(schema=head).write_parquet(tmp_path / "events.parquet")
    anomalies_to_frame([]).write_parquet(tmp_path / "anomalies.parquet")
    snapshots_to_frame({}).write_parquet(tmp_path / "snapshots.parquet")
    (tmp_path / "replay.json").write_text(json.dumps({"from": 1767600000.0, "to": 1767603600.0,
                                                      "command": "fleet-twin replay --site <none>"}))
    page = write_report(tmp_path).read_text()
    assert "No anomaly opened in this window." in page and "2026-01-05T08:00:00Z" in page
    assert "fleet-twin replay --site &lt;none&gt;" in page


def screenshot(chromium: str, page: Path, out: Path, size: str = "1400,4000") -> None:
    """Headless Chromium, with no route to any network: a page that needed one would show it."""
    profile = out.parent / "chromium-profile"
    result = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--proxy-server=127.0.0.1:9",
         "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile}", f"--screenshot={out}",
         f"--window-size={size}", "--hide-scrollbars", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=90,
    )
    assert result.returncode == 0 and out.is_file(), result.stdout + result.stderr


if __name__ == "__main__":  # docs/img/incident-report.png: run once by hand, then commit the picture
    import tempfile

    from streams.seeds import read_fleet

    out = Path(tempfile.gettempdir()) / "fleet-twin-incident-report"  # a stable path for the picture
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    write_replay_dir(out, read_fleet(SEEDS))
    screenshot(shutil.which("chromium") or "chromium", write_report(out), out / "shot.png", "1400,3000")
    shutil.copy(out / "shot.png", ROOT / "docs" / "img" / "incident-report.png")
    shutil.rmtree(out)

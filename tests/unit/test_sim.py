from __future__ import annotations

from twin.fleet import Fleet
from twin.schema import encode
from twin.sim import Simulator, make_roster
from twin.validate import parse


def run(fleet: Fleet, robots: int, seed: int, steps: int) -> list[bytes]:
    sim = Simulator(fleet, make_roster(fleet, robots, seed), seed=seed)
    return [encode(e) for t in range(steps) for e in sim.step(ts=1000.0 + t)]


def test_same_seed_same_events(fleet: Fleet) -> None:
    assert run(fleet, 40, 7, 5) == run(fleet, 40, 7, 5)
    assert run(fleet, 40, 7, 5) != run(fleet, 40, 8, 5)


def test_18_robots_cover_all_18_sectors(fleet: Fleet) -> None:
    assert {r.sector for r in make_roster(fleet, 18, 0)} == set(fleet.sectors)


def test_every_simulated_event_passes_validation(fleet: Fleet) -> None:
    sim = Simulator(fleet, make_roster(fleet, 200, 3), seed=3)
    for t in range(20):
        for e in sim.step(ts=1000.0 + t):
            assert parse(encode(e), fleet, key=e.robot_id.encode()) == e


def test_seq_increases_by_one_per_report(fleet: Fleet) -> None:
    sim = Simulator(fleet, make_roster(fleet, 3, 0), seed=0)
    seqs = [[e.seq for e in sim.step(ts=float(t))] for t in range(4)]
    assert seqs == [[1, 1, 1], [2, 2, 2], [3, 3, 3], [4, 4, 4]]

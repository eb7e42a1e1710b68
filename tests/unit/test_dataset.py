"""Labelled windows: exact bounds, ground truth, matched normal windows that never touch trouble."""

from __future__ import annotations

from typing import Any

import polars as pl
from hypothesis import given, settings, strategies as st

from twin.dataset import WINDOW_SCHEMA, samples, tally, windows
from twin.detect.findings import Anomaly
from twin.replay import Seen
from twin.schema import Event
from twin.frames import anomalies_to_frame, labels_to_frame, seen_to_frame

T0 = 1_700_000_000.0
Robot = tuple[str, str, str]
"""(robot_id, site, model)"""


def events(robots: list[Robot], start: float = 0.0, end: float = 1000.0, step: float = 10.0) -> pl.DataFrame:
    """Every robot reports every `step` seconds over [T0 + start, T0 + end]."""
    seen: list[Seen] = []
    n = int((end - start) / step)
    for robot_id, site, model in robots:
        for i in range(n + 1):
            event = Event(schema=1, robot_id=robot_id, seq=i + 1, ts=T0 + start + i * step, sector="sec",
                          site=site, model=model, mode="working", signals={"x": float(i)})
            seen.append(Seen(event, event.ts, 0, len(seen)))
    return seen_to_frame(seen)


def anomaly(robot: Robot, opened: float, resolved: float | None = None, *, detector: str = "band",
            signal: str = "x") -> list[Anomaly]:
    """The messages of one episode: its opening and, if given, its resolution (times relative to T0)."""
    robot_id, site, model = robot
    base = dict(id=f"{robot_id}-{detector}-{opened}", robot_id=robot_id, sector="sec", site=site, model=model,
                detector=detector, signal=signal, severity="warning", score=2.0, start_ts=T0 + opened)
    out = [Anomaly(status="open", ts=T0 + opened, **base)]  # type: ignore[arg-type]
    if resolved is not None:
        out.append(Anomaly(status="resolved", ts=T0 + resolved, end_ts=T0 + resolved, **base))  # type: ignore[arg-type]
    return out


def label(robot: Robot, fault: str, start: float, end: float, scope: str = "robot") -> dict[str, Any]:
    robot_id, site, model = robot
    return {"robot_id": robot_id, "fault": fault, "start_ts": T0 + start, "end_ts": T0 + end, "signals": ["x"],
            "sector": "sec", "site": site, "model": model, "scope": scope, "group": 0}


A1, A2, B1 = ("a1", "site-a", "arm"), ("a2", "site-a", "arm"), ("b1", "site-b", "arm")
H1 = ("h1", "site-a", "humanoid")


def rel(frame: pl.DataFrame) -> list[tuple[float, float]]:
    return [(round(s - T0, 6), round(e - T0, 6)) for s, e in frame.select("start_ts", "end_ts").iter_rows()]


def test_anomaly_windows_have_exact_bounds_clipped_to_the_robots_reports() -> None:
    found = windows(events([A1]), anomalies_to_frame(anomaly(A1, 300, 400) + anomaly(A1, 20, 50, detector="spike")
                                                     + anomaly(A1, 900, detector="drift")),
                    None, normal_per_anomaly=0)
    assert found.schema == pl.Schema(WINDOW_SCHEMA)
    assert found["detector"].to_list() == ["spike", "band", "drift"]  # in the order they started
    assert rel(found) == [(0.0, 110.0), (240.0, 460.0), (840.0, 1000.0)]  # unresolved: to the last report
    assert found["resolved_ts"].to_list()[2] is None and found["truth"].to_list() == [None] * 3


def test_an_episode_seen_only_from_its_resolution_still_makes_a_window() -> None:
    resolved_only = [a for a in anomaly(A1, 300, 400) if a.status == "resolved"]
    found = windows(events([A1]), anomalies_to_frame(resolved_only), None, normal_per_anomaly=0)
    assert rel(found) == [(240.0, 460.0)]


def test_fleet_level_anomalies_and_episodes_outside_the_reports_make_no_window() -> None:
    site = Anomaly(id="x", status="open", robot_id="", sector="sec", site="site-a", model="", detector="site_incident",
                   signal="", severity="critical", score=3.0, start_ts=T0 + 100, ts=T0 + 100)
    gone = anomaly(A1, 2000, detector="silence")  # opened long after its last report
    frame = anomalies_to_frame([site, *gone])
    found = windows(events([A1]), frame, None)
    assert found.height == 0
    assert tally(found, frame, 1)["episodes_outside_events"] == 1


def test_severity_is_the_highest_any_message_gave() -> None:
    opened, resolved = anomaly(A1, 300, 400)
    update = Anomaly(**{**{f: getattr(opened, f) for f in opened.__struct_fields__}, "status": "update",
                        "severity": "critical", "ts": T0 + 350})
    found = windows(events([A1]), anomalies_to_frame([opened, update, resolved]), None)
    assert found["severity"].to_list()[0] == "critical"


def test_truth_is_the_overlapping_label_of_the_robot_or_its_site() -> None:
    evs = events([A1, A2, B1])
    found = windows(evs, anomalies_to_frame(anomaly(A1, 300, 400) + anomaly(A2, 500, 520) + anomaly(B1, 700, 720)),
                    labels_to_frame([label(A1, "stuck_sensor", 0, 250), label(A1, "overcurrent", 280, 420),
                                     label(B1, "site_power_dip", 500, 530, scope="site"),
                                     label(A2, "wear", 900, 950)]),
                    normal_per_anomaly=0)
    by_robot = dict(found.select("robot_id", "truth").iter_rows())
    assert by_robot["a1"] == "overcurrent"  # both labels overlap its window; this one most
    assert by_robot["a2"] == "normal"  # another site's dip is not about it; its wear comes later
    assert by_robot["b1"] == "normal"  # the dip at its site ended 110 s before its window
    dip = windows(evs, anomalies_to_frame(anomaly(A2, 510, 520)),
                  labels_to_frame([label(A1, "site_power_dip", 500, 530, scope="site")]), normal_per_anomaly=0)
    assert dip["truth"].to_list() == ["site_power_dip"]  # a1's label, but about the whole site


def test_a_label_ending_where_the_window_starts_is_not_its_truth() -> None:
    found = windows(events([A1]), anomalies_to_frame(anomaly(A1, 300, 400)),
                    labels_to_frame([label(A1, "overcurrent", 100, 240)]), normal_per_anomaly=0)
    assert found["truth"].to_list() == ["normal"]


def test_normal_windows_match_model_and_length_and_avoid_anomalies_and_labels() -> None:
    evs = events([A1, A2, H1], end=3000)
    found = windows(evs, anomalies_to_frame(anomaly(A1, 300, 400) + anomaly(A2, 1500, 1600)),
                    labels_to_frame([label(A2, "wear", 2000, 2500), label(A1, "site_power_dip", 1000, 1100, "site")]),
                    normal_per_anomaly=3, seed=7)
    anomalous = found.filter(pl.col("kind") == "anomaly")
    normal = found.filter(pl.col("kind") == "normal")
    assert normal.height == 6 and set(normal["truth"]) == {"normal"} and set(normal["model"]) == {"arm"}
    lengths = dict(anomalous.select("window_id", pl.col("end_ts") - pl.col("start_ts")).iter_rows())
    for row in normal.iter_rows(named=True):
        assert abs(row["end_ts"] - row["start_ts"] - lengths[row["matched_to"]]) < 1e-6
    busy = {"a1": [(240, 460), (940, 1160)], "a2": [(1440, 1660), (1940, 2560), (940, 1160)]}
    for robot_id, start, end in normal.select("robot_id", pl.col("start_ts") - T0, pl.col("end_ts") - T0).iter_rows():
        assert all(not (start < e and s < end) for s, e in busy[robot_id]), (robot_id, start, end)
    assert _disjoint(normal)


def test_same_site_is_preferred_and_another_site_serves_when_it_must() -> None:
    evs = events([A1, A2, B1], end=3000)
    for seed in range(20):
        found = windows(evs, anomalies_to_frame(anomaly(A1, 300, 400)), None, normal_per_anomaly=2, seed=seed)
        assert set(found.filter(pl.col("kind") == "normal")["site"]) == {"site-a"}
    # faults fill site-a's whole time: only b1 has room
    busy = labels_to_frame([label(A1, "wear", 0, 3000), label(A2, "wear", 0, 3000)])
    found = windows(evs, anomalies_to_frame(anomaly(A1, 300, 400)), busy, normal_per_anomaly=1, seed=3)
    assert found.filter(pl.col("kind") == "normal")["robot_id"].to_list() == ["b1"]


def test_no_room_skips_the_match_and_counts_it() -> None:
    evs = events([A1, H1])
    frame = anomalies_to_frame(anomaly(A1, 100, 900))  # the whole of a1; h1 is another model
    found = windows(evs, frame, None, normal_per_anomaly=2)
    assert found["kind"].to_list() == ["anomaly"]
    counts = tally(found, frame, 2)
    assert counts["skipped_matches"] == 2 and counts["windows"] == {"anomaly": 1}


def test_choices_are_deterministic_by_seed() -> None:
    evs = events([A1, A2, B1], end=5000)
    frame = anomalies_to_frame(anomaly(A1, 300, 400) + anomaly(B1, 2000, 2300))
    runs = [windows(evs, frame, None, normal_per_anomaly=2, seed=s) for s in (1, 1, 2)]
    assert runs[0].equals(runs[1]) and not runs[0].equals(runs[2])
    assert runs[0].filter(pl.col("kind") == "anomaly").equals(runs[2].filter(pl.col("kind") == "anomaly"))


def test_samples_are_the_events_inside_each_window_bounds_included() -> None:
    evs = events([A1, A2], end=1000)
    found = windows(evs, anomalies_to_frame(anomaly(A1, 300, 400) + anomaly(A1, 320, 400, detector="spike")), None,
                    normal_per_anomaly=1)
    rows = samples(evs, found)
    assert rows.columns == ["window_id", "kind", *evs.columns]
    for w in found.iter_rows(named=True):
        inside = rows.filter(pl.col("window_id") == w["window_id"])
        expected = evs.filter((pl.col("robot_id") == w["robot_id"])
                              & pl.col("ts").is_between(w["start_ts"], w["end_ts"]))
        assert inside.drop("window_id", "kind").equals(expected)
        assert set(inside["kind"]) == {w["kind"]}
    assert rows.filter(pl.col("kind") == "anomaly").height == 23 + 21  # [240, 460] and [260, 460]: shared rows twice


def test_empty_inputs_give_empty_tables_with_their_columns() -> None:
    evs = events([A1])
    found = windows(evs.clear(), anomalies_to_frame([]), labels_to_frame([]))
    assert found.height == 0 and found.schema == pl.Schema(WINDOW_SCHEMA)
    assert samples(evs, found).columns == ["window_id", "kind", *evs.columns]
    assert tally(found, anomalies_to_frame([]), 1)["skipped_matches"] == 0


def _disjoint(normal: pl.DataFrame) -> bool:
    for _, group in normal.group_by("robot_id"):
        spans = sorted(group.select("start_ts", "end_ts").iter_rows())
        if any(b[0] < a[1] for a, b in zip(spans, spans[1:])):
            return False
    return True


# Properties ------------------------------------------------------------------------------------

ROBOTS = [(f"r{i}", site, model) for i, (site, model) in
          enumerate([("site-a", "arm"), ("site-a", "arm"), ("site-b", "arm"), ("site-a", "amr"), ("site-b", "amr")])]

episode = st.tuples(st.sampled_from(ROBOTS), st.integers(0, 1900), st.one_of(st.none(), st.integers(1, 400)))
fault = st.tuples(st.sampled_from(ROBOTS), st.integers(0, 1900), st.integers(1, 600),
                  st.sampled_from(["robot", "site"]))


@settings(max_examples=60, deadline=None)
@given(st.lists(episode, max_size=6), st.lists(fault, max_size=4), st.integers(0, 3), st.integers(0, 2**32),
       st.integers(0, 90), st.integers(0, 90))
def test_normal_windows_never_cross_an_anomaly_or_label_of_their_robot(
        episodes: list[tuple[Robot, int, int | None]], faults: list[tuple[Robot, int, int, str]],
        per: int, seed: int, pre: int, post: int) -> None:
    evs = events(ROBOTS, end=2000, step=20)
    msgs = [m for robot, at, length in episodes
            for m in anomaly(robot, at, None if length is None else at + length, detector=f"d{at}")]
    labs = [label(robot, "wear", at, at + length, scope) for robot, at, length, scope in faults]
    found = windows(evs, anomalies_to_frame(msgs), labels_to_frame(labs), pre_s=pre, post_s=post,
                    normal_per_anomaly=per, seed=seed)
    anomalous = {r["window_id"]: r for r in found.filter(pl.col("kind") == "anomaly").iter_rows(named=True)}
    normal = found.filter(pl.col("kind") == "normal")
    site_of = {r[0]: r[1] for r in ROBOTS}
    for w in normal.iter_rows(named=True):
        twin = anomalous[w["matched_to"]]
        assert w["model"] == twin["model"] and w["truth"] == "normal"
        assert abs((w["end_ts"] - w["start_ts"]) - (twin["end_ts"] - twin["start_ts"])) < 1e-6
        assert T0 <= w["start_ts"] <= w["end_ts"] <= T0 + 2000
        trouble = [(a["start_ts"], a["end_ts"]) for a in anomalous.values() if a["robot_id"] == w["robot_id"]]
        about = [lab for lab in labs if (lab["site"] == site_of[w["robot_id"]] if lab["scope"] == "site"
                                         else lab["robot_id"] == w["robot_id"])]
        trouble += [(lab["start_ts"] - pre, lab["end_ts"] + post) for lab in about]
        assert all(not (w["start_ts"] < e and s < w["end_ts"]) for s, e in trouble), (w, trouble)
    assert _disjoint(normal)
    assert tally(found, anomalies_to_frame(msgs), per)["skipped_matches"] == len(anomalous) * per - normal.height


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1500), st.integers(1, 300)), min_size=1, max_size=3), st.integers(1, 3),
       st.integers(0, 2**32))
def test_every_anomaly_window_gets_its_matches_when_there_is_room(
        spans: list[tuple[int, int]], per: int, seed: int) -> None:
    """Calm robots whose reports each fit the longest window, one per match wanted: nothing can be skipped."""
    sick = ("sick", "site-a", "arm")
    calm = [(f"calm{i}", "site-b", "arm") for i in range(len(spans) * per)]
    evs = events([sick, *calm], end=2000, step=20)
    msgs = [m for i, (at, length) in enumerate(spans) for m in anomaly(sick, at, at + length, detector=f"d{i}")]
    found = windows(evs, anomalies_to_frame(msgs), None, normal_per_anomaly=per, seed=seed)
    per_window = found.filter(pl.col("kind") == "normal").group_by("matched_to").len()
    assert per_window.height == len(spans) and set(per_window["len"]) == {per}

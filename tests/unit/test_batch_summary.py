"""twin.batch_summary.summarize_fold against `summarize_fleet` of the fold's twins (the oracle).

The fold: the chaos scenario on three partitions whose communication loss lasts 25 s (robots flagged
silent, anomalies open), folded in batches; after each batch both summaries are compared: every count
exactly, the sums of floats up to their order of addition.
"""

from __future__ import annotations

import functools

import msgspec
import pytest

from tests.unit.test_batch_fold import chaos_log, rules
from twin import batch_fold as bf
from twin.batch_reduce import to_twins
from twin.batch_summary import merge, summarize_fold
from twin.record import Record
from twin.summary import FleetSummary, summarize_fleet


@functools.cache
def log() -> tuple[Record, ...]:
    """One robot never reports `battery_temp_c` (its block has the column: not present) and reports its
    `battery_soc_pct` at the bottom of the nominal band (a band position on a bucket's bound)."""
    records = chaos_log(robots=18, seconds=90, seed=4, reconnect=True, partitions=3)
    robot = records[0].key
    lo = rules().fleet.models[msgspec.json.decode(records[0].value)["model"]].signals["battery_soc_pct"].nominal[0]
    return tuple(_edited(r, lo) if r.key == robot and r.kind == "telemetry" else r for r in records)


def _edited(record: Record, soc: float) -> Record:
    try:
        doc = msgspec.json.decode(record.value)
        doc["signals"].pop("battery_temp_c", None)
        doc["signals"]["battery_soc_pct"] = soc
    except (msgspec.DecodeError, KeyError, TypeError, AttributeError):
        return record  # a malformed record of the noise stays as it is
    return msgspec.structs.replace(record, value=msgspec.json.encode(doc))


def assert_equal(got: FleetSummary, want: FleetSummary) -> None:
    assert got.robots == want.robots and got.offline == want.offline and got.anomalies == want.anomalies
    assert got.signals.keys() == want.signals.keys() and got.versions.keys() == want.versions.keys()
    for key, dw in want.signals.items():
        dg = got.signals[key]
        assert (dg.buckets, dg.count) == (dw.buckets, dw.count), key
        assert dg.band_sum == pytest.approx(dw.band_sum, rel=1e-12, abs=1e-9), key
        assert dg.value_sum == pytest.approx(dw.value_sum, rel=1e-12), key
    for version, vw in want.versions.items():
        vg = got.versions[version]
        assert (vg.robots, vg.anomalous, vg.latency_n) == (vw.robots, vw.anomalous, vw.latency_n), version
        assert vg.latency_sum == pytest.approx(vw.latency_sum, rel=1e-12), version


def test_the_fold_s_summary_is_that_of_its_twins_after_every_batch() -> None:
    records, state = log(), bf.FoldState(rules())
    offline = anomalies = 0
    for at in range(0, len(records), 211):
        bf.fold_log(state, rules(), list(records[at:at + 211]))
        twins = [t for t in bf.twins_of(state, state.red.robot_ids) if t is not None]
        want = summarize_fleet(twins, rules().fleet)
        assert_equal(summarize_fold(state, rules().fleet), want)
        offline, anomalies = offline + sum(want.offline.values()), anomalies + sum(want.anomalies.values())
    assert offline > 0 and anomalies > offline  # silent robots and other open anomalies were summarised


def test_merged_summaries_are_the_summary_of_both_parts() -> None:
    records, state = log(), bf.FoldState(rules())
    bf.fold_log(state, rules(), list(records))
    twins = [t for t in bf.twins_of(state, state.red.robot_ids) if t is not None]
    half = len(twins) // 2
    fleet = rules().fleet
    assert_equal(merge(summarize_fleet(twins[:half], fleet), summarize_fleet(twins[half:], fleet)),
                 summarize_fleet(twins, fleet))


def test_an_empty_fold_summarises_to_nothing() -> None:
    assert_equal(summarize_fold(bf.FoldState(rules()), rules().fleet), FleetSummary())


def test_twins_without_signals_are_the_twins_but_for_their_signals() -> None:
    records, state = log(), bf.FoldState(rules())
    bf.fold_log(state, rules(), list(records))
    ids = state.red.robot_ids
    light = to_twins(state.red, ids, signals=False)
    assert light == [msgspec.structs.replace(t, signals={}) for t in to_twins(state.red, ids)]
    assert all(t.signals == {} for t in light) and any(t.signals for t in to_twins(state.red, ids))

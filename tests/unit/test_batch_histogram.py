"""A histogram fed a batch at a time exposes what `prometheus_client.Histogram` fed value by value does."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import generate_latest

from streams.worker.batch_histogram import BatchHistogram
from streams.worker.metrics import PROCESSING_LAG_BUCKETS

lags = st.lists(st.one_of(st.sampled_from([0.0, *PROCESSING_LAG_BUCKETS]),
                          st.floats(min_value=0.0, max_value=4000.0)), max_size=200)


def samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {(s.name, s.labels.get("le", "")): s.value for m in registry.collect() for s in m.samples
            if not s.name.endswith("_created")}


@given(st.lists(lags, max_size=5))
def test_batches_count_as_the_values_one_by_one(batches: list[list[float]]) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    batched = BatchHistogram("lag_seconds", "lag", PROCESSING_LAG_BUCKETS, ours)
    single = Histogram("lag_seconds", "lag", buckets=PROCESSING_LAG_BUCKETS, registry=theirs)
    for batch in batches:
        batched.observe_many(batch)
        for value in batch:
            single.observe(value)
    got, want = samples(ours), samples(theirs)
    assert got.keys() == want.keys()
    for key, value in want.items():  # counts exactly (a value on a bound is in that bound's bucket)
        assert got[key] == (pytest.approx(value) if key[0].endswith("_sum") else value), key


def test_the_exposition_reads_as_a_histogram() -> None:
    registry = CollectorRegistry()
    BatchHistogram("lag_seconds", "lag", (0.1, 1.0), registry).observe_many([0.05, 0.1, 0.5, 7.0])
    text = generate_latest(registry).decode()
    assert "# TYPE lag_seconds histogram" in text
    assert 'lag_seconds_bucket{le="0.1"} 2.0' in text
    assert 'lag_seconds_bucket{le="1.0"} 3.0' in text
    assert 'lag_seconds_bucket{le="+Inf"} 4.0' in text
    assert "lag_seconds_count 4.0" in text


def test_nan_is_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        BatchHistogram("lag_seconds", "lag", (1.0,)).observe_many([0.5, float("nan")])

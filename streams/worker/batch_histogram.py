"""A Prometheus histogram fed a micro-batch at a time.

`prometheus_client.Histogram.observe` is one Python call, a bucket search and a lock per value,
paid twice per record by the worker (processing lag and event-time lag): 4.1% of its samples while
draining a backlog (bench/pipeline_throughput.py --profile, docs/BENCHMARKS.md). Here a batch's values are
bucketed with one `searchsorted` and one `bincount`, and the counts are exposed at scrape time as
an ordinary histogram (same name, buckets, `_bucket`/`_count`/`_sum` series), so dashboards and
`histogram_quantile` queries read it as before.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector


class BatchHistogram(Collector):
    """A histogram without labels whose values arrive in batches (`observe_many`)."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float],
                 registry: CollectorRegistry | None = None) -> None:
        bounds = sorted(float(b) for b in buckets)
        if not bounds or bounds[-1] != math.inf:
            bounds.append(math.inf)
        self._name = name
        self._documentation = documentation
        self._bounds = np.array(bounds)
        self._counts = np.zeros(len(bounds), dtype=np.int64)
        self._sum = 0.0
        self._lock = threading.Lock()  # a scrape may come from another thread than the batches
        if registry is not None:
            registry.register(self)

    def observe(self, value: float) -> None:
        self.observe_many((value,))

    def observe_many(self, values: Iterable[float] | np.ndarray) -> None:
        """Count every value in its bucket (upper bounds inclusive, as Prometheus' `le`)."""
        v = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.float64)
        if v.size == 0:
            return
        if np.isnan(v).any():
            raise ValueError(f"{self._name}: NaN observed")
        counts = np.bincount(np.searchsorted(self._bounds, v, side="left"), minlength=len(self._bounds))
        with self._lock:
            self._counts += counts
            self._sum += float(v.sum())

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self._name, self._documentation)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            cumulative, total = np.cumsum(self._counts).tolist(), self._sum
        yield HistogramMetricFamily(
            self._name, self._documentation,
            buckets=[(_le(b), c) for b, c in zip(self._bounds.tolist(), cumulative)],
            sum_value=total)


def _le(bound: float) -> str:
    """A bucket bound as `prometheus_client` writes it ("0.005", "1.0", "+Inf")."""
    return "+Inf" if bound == math.inf else repr(bound)

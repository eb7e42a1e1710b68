"""Which worker answers for a robot: the one holding its partition of the twins table (and so of
telemetry: ingest reads telemetry p where the table's changelog p is assigned, `handover`).

Faust's `app.topic_route` asks its producer's cluster metadata for the key's
partition (`aiokafka` `AIOKafkaProducer._partition`). That metadata is only
sure to hold the topics the producer sends to: once the producer sends to a
topic its metadata lacks (one created or deleted since the last full refresh),
its client tracks that subset from then on, every refresh replaces the
metadata with the subset, and the telemetry topic, to which a worker never
sends, is gone. `_partition` then fails with `TypeError: 'NoneType' object is
not iterable`, and every twin lookup answered 500 until the worker restarted.

Here the partition is what every producer of telemetry computes, Kafka's
default partitioner over the partition count the worker is configured with,
and the owner comes from the group's assignment of the twins changelog, which
Faust gives every member (`app.router.tables_metadata()`). Neither depends on a
producer's metadata. What cannot be routed answers 503 with Retry-After and
the reason, and /healthz reports the same reason (`problem`).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import faust
import httpx
from faust.web import Request, Response, View
from yarl import URL

from streams.kafka_client import partitioner

ROUTED_HEADER = "X-Fleet-Twin-Routed-By"
"""Set on a request forwarded to the owner, which then answers itself: no request goes round twice."""
RETRY_AFTER_S = 5
"""What a 503 tells the client to wait: about one rebalance of a small group."""
FORWARD_TIMEOUT_S = 10.0

Handler = Callable[..., Awaitable[Response]]


@dataclass(frozen=True)
class Here:
    """This worker holds the robot's partition."""

    partition: int


@dataclass(frozen=True)
class There:
    """Another worker holds it, at `url`."""

    partition: int
    url: str


@dataclass(frozen=True)
class Nowhere:
    """No worker is known to hold it: why, in words an operator can act on."""

    reason: str


Route = Here | There | Nowhere


def owners(distribution: Mapping[str, Mapping[str, Iterable[int]]], topic: str) -> dict[int, str]:
    """Partition -> URL of the worker holding it, from Faust's host -> topic -> partitions map."""
    return {p: url for url, topics in distribution.items() for p in topics.get(topic, ())}


def ownership_problem(held: Mapping[int, str], topic: str, partitions: int) -> str | None:
    """Why `held` cannot route every key of `topic` over `partitions` partitions, or None."""
    if extra := sorted(set(held) - set(range(partitions))):
        return (f"{topic} has partitions up to {extra[-1]} but the worker hashes keys over {partitions} "
                "(FLEET_TWIN_PARTITIONS): lookups would go to the wrong worker")
    if missing := sorted(set(range(partitions)) - set(held)):
        return f"no worker is assigned partition(s) {_ranges(missing)} of {topic}"
    return None


def _ranges(numbers: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5': short enough for a health page."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and runs[-1][-1] == n - 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def same_worker(a: str, b: str) -> bool:
    """Two worker URLs name the same listener (host and port, as Faust's router compares them)."""
    ua, ub = URL(a), URL(b)
    return (ua.host, ua.port) == (ub.host, ub.port)


class TwinRouter:
    """Routes a robot id to the worker holding its partition of `topic`, and forwards to it."""

    def __init__(self, app: faust.App, topic: str, partitions: int) -> None:
        self._app, self._topic, self._partitions = app, topic, partitions
        self._partition_of = partitioner(partitions)
        self._client: httpx.AsyncClient | None = None

    @property
    def me(self) -> str:
        return str(self._app.conf.canonical_url)

    @property
    def topic(self) -> str:
        """The topic whose partitions say which worker holds a robot (the twins changelog)."""
        return self._topic

    def _held(self) -> dict[int, str]:
        return owners(self._app.router.tables_metadata(), self._topic)

    def problem(self) -> str | None:
        """Why this worker cannot route twin lookups now, or None."""
        return ownership_problem(self._held(), self._topic, self._partitions)

    def route(self, robot_id: str) -> Route:
        partition = self._partition_of(robot_id.encode())
        url = self._held().get(partition)
        if url is None:
            return Nowhere(self.problem() or f"no worker is assigned partition {partition} of {self._topic}")
        return Here(partition) if same_worker(url, self.me) else There(partition, url)

    async def forward(self, view: View, request: Request, to: There) -> Response:
        """The owner's answer to the same request, carrying its Authorization; 503 if it does not answer."""
        target = URL(to.url)
        url = request.url.with_scheme(target.scheme or "http").with_host(target.host or "").with_port(target.port)
        headers = {ROUTED_HEADER: self.me}
        if auth := request.headers.get("Authorization"):
            headers["Authorization"] = auth
        try:
            answer = await self._http().get(str(url), headers=headers, timeout=FORWARD_TIMEOUT_S)
        except httpx.HTTPError as err:
            return unavailable(view, f"{to.url}, which holds partition {to.partition} of {self._topic}, "
                                     f"did not answer: {type(err).__name__}")
        kept = {k: v for k, v in answer.headers.items() if k.lower() in ("retry-after", "www-authenticate")}
        content_type = answer.headers.get("content-type", "application/json").split(";")[0]
        return view.bytes(answer.content, content_type=content_type, status=answer.status_code, headers=kept)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:  # made on first use, inside the worker's running loop
            self._client = httpx.AsyncClient()
        return self._client


def unavailable(view: View, reason: str) -> Response:
    """503 with the reason and when to try again: never a 500 for a lookup that may work soon."""
    return view.json({"error": "unavailable", "reason": reason}, status=503,
                     headers={"Retry-After": str(RETRY_AFTER_S)})


def routed(router: TwinRouter, match_info: str = "robot_id") -> Callable[[Handler], Handler]:
    """Decorate a view method to run on the worker holding the robot's partition (in place of
    Faust's `topic_route`); a request already forwarded once runs where it arrives."""

    def decorate(fun: Handler) -> Handler:
        @functools.wraps(fun)
        async def handler(view: View, request: Request, *args: Any, **kwargs: Any) -> Response:
            if request.headers.get(ROUTED_HEADER):
                return await fun(view, request, *args, **kwargs)
            where = router.route(request.match_info[match_info])
            if isinstance(where, Nowhere):
                return unavailable(view, where.reason)
            if isinstance(where, There):
                return await router.forward(view, request, where)
            return await fun(view, request, *args, **kwargs)

        return handler

    return decorate

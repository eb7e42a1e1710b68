"""HTTP views of a worker: the twin API, fleet summary, metrics and health.

Every view of fleet data wants the API's bearer token (`Private`); /healthz and
/metrics stay open for probes and Prometheus (docs/SECURITY.md says what
they show), unless a metrics token is set.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx

import faust
from faust.exceptions import ConsumerNotStarted
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import SecretStr

from streams.auth import bearer_ok
from streams.worker.routing import RETRY_AFTER_S, Here, TwinRouter, routed, unavailable
from twin.fleet import Fleet
from streams.twin_view import NO_RULES, to_view
from twin.desired import DesiredRules
from twin.state import decode_twin
from twin.summary import Labels, count_by_sector_mode

MAX_LIMIT = 10_000


@dataclass(frozen=True)
class ListQuery:
    """The filters of `GET /twins`, checked."""

    sector: str | None
    site: str | None
    limit: int


LIST_PARAMS = ("sector", "site", "limit")


def list_query(query: Mapping[str, str], fleet: Fleet) -> ListQuery | str:
    """The `GET /twins` query, or why it is a bad request.

    A filter that can match nothing (a sector or site the seeds do not have, a
    site of another sector, a misspelt parameter) would answer 200 with an
    empty list, which reads as "no robots there": it is a 400 that says why.
    A parameter given empty counts as not given (a link template whose variable is empty).
    """
    query = {k: v for k, v in query.items() if v != ""}
    if unknown := sorted(set(query) - set(LIST_PARAMS)):
        return f"unknown query parameter(s) {', '.join(unknown)}; known: {', '.join(LIST_PARAMS)}"
    sector, site = query.get("sector"), query.get("site")
    if sector is not None and sector not in fleet.sectors:
        return f"unknown sector {sector!r}; known: {', '.join(sorted(fleet.sectors))}"
    owner = next((name for name, s in fleet.sectors.items() if site in s.sites), None)
    if site is not None and owner is None:
        return f"unknown site {site!r} (the sites are in seeds/sectors.yaml)"
    if site is not None and sector is not None and owner != sector:
        return f"site {site!r} is in sector {owner!r}, not {sector!r}"
    text = query.get("limit", "100")
    if not text.isdecimal() or int(text) < 1:
        return f"limit must be a positive whole number (at most {MAX_LIMIT:,} are listed), not {text!r}"
    return ListQuery(sector, site, min(int(text), MAX_LIMIT))


def private(token: SecretStr) -> type[View]:
    """A View base class whose every method answers 401 unless the request bears `token`."""

    class Private(View):
        bearer: ClassVar[SecretStr] = token

        async def dispatch(self, request: Any) -> Any:
            # before any handler: a request for another worker's robot is checked here, then
            # forwarded with its Authorization header (Faust passes the headers on) and checked again
            if not bearer_ok(request.headers.get("Authorization"), self.bearer):
                return self.json({"error": "unauthorized"}, status=401,
                                 headers={"WWW-Authenticate": 'Bearer realm="fleet-twin"'})
            return await super().dispatch(request)

    return Private


def held_twin(view: View, app: faust.App, twin_bytes: Callable[[str], bytes | None], router: TwinRouter,
              robot_id: str) -> bytes | Response:
    """The robot's twin on the worker its request was routed to (as ingest serves it, `twin_bytes`),
    or the answer saying why not.

    A missing twin is only "unknown robot" (404) when this worker holds the
    robot's partition and is not recovering it; otherwise the partition is
    moving (or moved while the request was forwarded) and the client should ask
    again (503).
    """
    raw = twin_bytes(robot_id)
    if raw is None and (app.rebalancing or not isinstance(router.route(robot_id), Here)):
        return unavailable(view, f"the partition of {robot_id!r} is moving between workers")
    if raw is None:
        return view.notfound(f"no twin for robot {robot_id!r}")
    return raw


def register_views(app: faust.App, twin_bytes: Callable[[str], bytes | None], labels: Callable[[], list[Labels]],
                   router: TwinRouter, fleet: Fleet, registry: CollectorRegistry, token: SecretStr,
                   metrics_token: SecretStr | None = None,
                   desired: Callable[[], DesiredRules] = lambda: NO_RULES) -> None:
    """Add the worker's pages to `app`; fleet data only for requests bearing `token`;
    a twin shown with what `desired` (the rules read from fleet.desired) wants of it. Twins as
    ingest serves them: one robot's (`twin_bytes`), and every one's labels (`labels`)."""
    Private = private(token)
    # The handlers below say `self: View`: mypy cannot see a base made at run time and would take self as Any.

    @app.page("/twins/{robot_id}")
    class TwinView(Private):  # type: ignore[misc,valid-type]  # a class made at run time
        """One robot's twin, from whichever worker owns its partition."""

        # Routed by the telemetry partition of the robot id (routing.py says why not Faust's routes).
        @routed(router)
        async def get(self: View, request: Request, robot_id: str) -> Response:
            raw = held_twin(self, app, twin_bytes, router, robot_id)
            return self.json(to_view(decode_twin(raw), desired())) if isinstance(raw, bytes) else raw

    @app.page("/twins")
    class TwinList(Private):  # type: ignore[misc,valid-type]
        """Robot ids held by this worker, optionally for one sector or site."""

        async def get(self: View, request: Request) -> Response:
            query = list_query(request.query, fleet)
            if isinstance(query, str):
                return self.error(400, query)
            ids = sorted(
                t.robot_id for t in labels()
                if (query.sector is None or t.sector == query.sector) and (query.site is None or t.site == query.site)
            )
            return self.json({"robots": ids[:query.limit], "total": len(ids)})

    @app.page("/fleet/summary")
    class FleetSummary(Private):  # type: ignore[misc,valid-type]
        """Robots per sector and mode held by this worker."""

        async def get(self: View, request: Request) -> Response:
            counts = count_by_sector_mode(labels())
            by_sector: dict[str, dict[str, int]] = {s: {} for s in sorted(fleet.sectors)}
            for (sector, mode), n in sorted(counts.items()):
                by_sector.setdefault(sector, {})[mode] = n
            return self.json({"robots": sum(counts.values()), "sectors": by_sector})

    @app.page("/metrics")
    class Metrics(private(metrics_token) if metrics_token else View):  # type: ignore[misc]
        """Prometheus exposition of this worker's registry: aggregates, no robot ids."""

        async def get(self: View, request: Request) -> Response:
            return self.bytes(generate_latest(registry), content_type="text/plain")

    @app.page("/healthz")
    class Health(View):
        """Whether this worker can serve twins, and the partitions it holds (exposes no fleet data).

        `partitions` counts what Faust's group gave it (the tables' changelogs;
        its own readers take the log partitions that go with them);
        `telemetry_partitions` says which share of the fleet's twins it holds,
        the figure to compare with the topic's partition count. Before Faust's
        consumer has started it answers 503 `starting`, not an error.
        """

        async def get(self, request: Request) -> Response:
            try:
                assigned = app.consumer.assignment() if app.consumer else set()
            except ConsumerNotStarted:
                return self.json({"status": "starting", "app_id": app.conf.id}, status=503,
                                 headers={"Retry-After": str(RETRY_AFTER_S)})
            telemetry = sum(1 for tp in assigned if tp.topic == router.topic)
            body: dict[str, Any] = {"status": "ok", "app_id": app.conf.id, "partitions": len(assigned),
                                    "telemetry_partitions": telemetry}
            if app.rebalancing:  # expected and brief: a probe must not restart a worker for it
                body["status"] = "rebalancing"
            elif problem := router.problem():  # the twin API would answer 503: say why
                body.update(status="unavailable", reason=problem)
                return self.json(body, status=503, headers={"Retry-After": str(RETRY_AFTER_S)})
            return self.json(body, status=200)


class HttpClient:
    """One shared async HTTP client, created on first use inside the running loop."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient()
        return self._client


def register_inbox(app: faust.App, token: SecretStr, keep: int = 200) -> None:
    """A demo webhook receiver for the local stack: Alertmanager's notifications, newest last.

    Reading and posting both want the API token: Alertmanager sends it from its
    webhook's `http_config` (rendered by `Stack.render_alertmanager`).
    """
    inbox: collections.deque[Any] = collections.deque(maxlen=keep)

    @app.page("/maintenance/inbox")  # `self: View` in its handlers, as in register_views
    class Inbox(private(token)):  # type: ignore[misc]
        async def get(self: View, request: Request) -> Response:
            return self.json({"notifications": list(inbox)})

        async def post(self: View, request: Request) -> Response:
            inbox.append(await request.json())
            return self.json({"ok": True})

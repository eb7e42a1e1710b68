"""HTTP views of a worker: the twin API, fleet summary, metrics and health."""

from __future__ import annotations

import collections
from typing import Any

import httpx

import faust
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry, generate_latest

from twin.fleet import Fleet
from twin.state import decode_twin, to_view
from twin.summary import count_by_sector_mode

MAX_LIMIT = 10_000


def register_views(app: faust.App, twins: Any, fleet: Fleet, registry: CollectorRegistry) -> None:
    """Add the worker's pages to `app`."""
    from streams.app import twin_values

    @app.page("/twins/{robot_id}")
    class TwinView(View):
        """One robot's twin, from whichever worker owns its partition."""

        @app.table_route(table=twins, match_info="robot_id")
        async def get(self, request: Request, robot_id: str) -> Response:
            raw = twins.get(robot_id)
            if raw is None:
                return self.notfound(f"no twin for robot {robot_id!r}")
            return self.json(to_view(decode_twin(raw)))

    @app.page("/twins")
    class TwinList(View):
        """Robot ids held by this worker, optionally for one sector or site."""

        async def get(self, request: Request) -> Response:
            sector = request.query.get("sector")
            site = request.query.get("site")
            try:
                limit = min(int(request.query.get("limit", "100")), MAX_LIMIT)
            except ValueError:
                return self.error(400, "limit must be an integer")
            ids = sorted(
                t.robot_id for t in twin_values(twins)
                if (sector is None or t.sector == sector) and (site is None or t.site == site)
            )
            return self.json({"robots": ids[:limit], "total": len(ids)})

    @app.page("/fleet/summary")
    class FleetSummary(View):
        """Robots per sector and mode held by this worker."""

        async def get(self, request: Request) -> Response:
            counts = count_by_sector_mode(twin_values(twins))
            by_sector: dict[str, dict[str, int]] = {s: {} for s in sorted(fleet.sectors)}
            for (sector, mode), n in sorted(counts.items()):
                by_sector.setdefault(sector, {})[mode] = n
            return self.json({"robots": sum(counts.values()), "sectors": by_sector})

    @app.page("/metrics")
    class Metrics(View):
        """Prometheus exposition of this worker's registry."""

        async def get(self, request: Request) -> Response:
            return self.bytes(generate_latest(registry), content_type="text/plain")

    @app.page("/healthz")
    class Health(View):
        """Liveness plus the partitions this worker holds (exposes no fleet data)."""

        async def get(self, request: Request) -> Response:
            assigned = app.consumer.assignment() if app.consumer else set()
            body = {
                "status": "rebalancing" if app.rebalancing else "ok",
                "app_id": app.conf.id,
                "partitions": len(assigned),
            }
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


def register_inbox(app: faust.App, keep: int = 200) -> None:
    """A demo webhook receiver for the local stack: Alertmanager's notifications, newest last."""
    inbox: collections.deque[Any] = collections.deque(maxlen=keep)

    @app.page("/maintenance/inbox")
    class Inbox(View):
        async def get(self, request: Request) -> Response:
            return self.json({"notifications": list(inbox)})

        async def post(self, request: Request) -> Response:
            inbox.append(await request.json())
            return self.json({"ok": True})

"""What the end-to-end tests share beyond the session's stack: an Alertmanager of a test's own,
and a recorder between a worker and it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from streams.settings import Settings
from streams.local.stack import Stack
from tests.conftest import free_port


class AlertRecorder:
    """Stands between the worker and the real Alertmanager: records every alert posted, forwards it.

    While `refusing` is set it answers 503, as an Alertmanager that is down, and records the
    refused alerts apart."""

    def __init__(self, alertmanager: str) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        posted = self.posted = []  # type: list[dict]
        refused = self.refused = []  # type: list[dict]
        self.refusing = False
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                now = time.time()
                if recorder.refusing:
                    refused.extend(dict(a, posted_at=now) for a in json.loads(body))
                    self.send_response(503)
                    self.end_headers()
                    return
                posted.extend(dict(a, posted_at=now) for a in json.loads(body))
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization")}
                answer = httpx.post(f"{alertmanager}{self.path}", content=body, headers=headers, timeout=5)
                self.send_response(answer.status_code)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def private_alertmanager(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """A real Alertmanager of the test's own: the site incidents its robots open (they all fall
    silent at the end) would otherwise inhibit the robot alerts of other tests at those sites."""
    # no maintenance webhook: it notifies a worker inbox, on a port nobody listens on
    mine = settings.model_copy(update={
        "alertmanager_port": free_port(), "web_port": free_port(), "maintenance_webhook": "",
        "state_dir": tmp_path / "alertmanager"})
    stack = Stack(mine)
    try:
        stack.start_alertmanager()
        yield mine.alertmanager_url
    finally:
        stack.procs.stop("alertmanager")

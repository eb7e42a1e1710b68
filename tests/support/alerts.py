"""Stand-ins on Alertmanager's two sides: maintenance's webhook receiver, and a recorder
between a worker and the real Alertmanager."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


class Webhook:
    """A real HTTP receiver for Alertmanager's notifications (maintenance's side)."""

    def __init__(self, port: int) -> None:
        received = self.received = []  # type: list[dict]
        authorizations = self.authorizations = []  # type: list[str | None]

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                authorizations.append(self.headers.get("Authorization"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self) -> list[dict]:
        return [dict(a, status_of_group=n["status"]) for n in self.received for a in n["alerts"]]


class AlertRecorder:
    """Stands between the worker and the real Alertmanager: records every alert posted, forwards it.

    While `refusing` is set it answers 503, as an Alertmanager that is down, and records the
    refused alerts apart."""

    def __init__(self, alertmanager: str) -> None:
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

"""Serving the Bolt app over HTTP: `/slack/events` plus `/healthz` for Kubernetes probes.

A threading WSGI server from the standard library is enough: Bolt acks from the listener
thread and each request is short. Slack's signature is verified by Bolt on every request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler

EVENTS_PATH = "/slack/events"


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops SYNs under a burst of slash commands,
    # and the client's retransmit then costs a whole second.
    request_queue_size = 128


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # access logs are noise here
        return


def wsgi_app(app: App, healthy: Callable[[], bool]) -> Callable[..., Iterable[bytes]]:
    slack = SlackRequestHandler(app)

    def route(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == EVENTS_PATH:
            return slack(environ, start_response)
        if path in ("/healthz", "/readyz"):
            ok = healthy() if path == "/readyz" else True
            start_response(
                "200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")]
            )
            return [b"ok" if ok else b"unavailable"]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]

    return route


class HttpServer:
    """The app on host:port (port 0 picks a free one), served from a background thread."""

    def __init__(self, app: App, host: str, port: int, healthy: Callable[[], bool] = lambda: True):
        self.server = make_server(
            host, port, wsgi_app(app, healthy), _ThreadingWSGIServer, _QuietHandler
        )
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}{EVENTS_PATH}"

    def start(self) -> HttpServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

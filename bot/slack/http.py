"""Serving the Bolt app over HTTP: `/slack/events` plus the health and metrics paths
(bot/health.py); with no app, only the latter (Socket Mode, worker, cron).

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

from bot import health

EVENTS_PATH = "/slack/events"


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops SYNs under a burst of slash commands,
    # and the client's retransmit then costs a whole second.
    request_queue_size = 128


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # access logs are noise here
        return


def wsgi_app(app: App, probes: health.Probes) -> Callable[..., Iterable[bytes]]:
    slack = SlackRequestHandler(app)
    others = health.wsgi(probes)

    def route(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") == EVENTS_PATH:
            return slack(environ, start_response)
        return others(environ, start_response)

    return route


class HttpServer:
    """The app on host:port (port 0 picks a free one), served from a background thread."""

    def __init__(
        self,
        app: App | None,
        host: str,
        port: int,
        probes: health.Probes | None = None,
    ):
        probes = probes or health.Probes(redis=lambda: None, slack=None)
        handler = health.wsgi(probes) if app is None else wsgi_app(app, probes)
        self.server = make_server(host, port, handler, _ThreadingWSGIServer, _QuietHandler)
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

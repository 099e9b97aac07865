"""Serving the Bolt app over HTTP: `/slack/events` plus the health and metrics paths
(bot/health.py); with no app, only the latter (Socket Mode, worker, cron).

A threading WSGI server from the standard library is enough: Bolt acks from the listener
thread and each request is short. Slack's signature is verified before Bolt (bot/slack/guard.py).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk.signature import SignatureVerifier

from bot import health
from bot.slack import guard

EVENTS_PATH = "/slack/events"
log = logging.getLogger(__name__)


MAX_THREADS = 32
BUSY = b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops SYNs under a burst of slash commands,
    # and the client's retransmit then costs a whole second.
    request_queue_size = 128

    def server_activate(self) -> None:
        super().server_activate()
        # At most MAX_THREADS requests at once: a flood of slow or large requests cannot
        # take the process's memory or threads; the rest are told 503 at once.
        self._slots = threading.BoundedSemaphore(MAX_THREADS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.sendall(BUSY)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # access logs are noise here
        return


def wsgi_app(
    app: App, probes: health.Probes, signing_secret: str
) -> Callable[..., Iterable[bytes]]:
    if not signing_secret:
        raise ValueError("HTTP mode needs the signing secret: every request is verified")
    slack = SlackRequestHandler(app)
    verifier = SignatureVerifier(signing_secret)
    others = health.wsgi(probes)

    def route(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") != EVENTS_PATH:
            return others(environ, start_response)
        body = guard.read_body(environ)
        if body is None:
            start_response("413 Content Too Large", [("Content-Type", "text/plain")])
            return [b"too large"]
        if not guard.signed(environ, body, verifier):
            start_response("401 Unauthorized", [("Content-Type", "application/json")])
            return [b'{"error": "invalid request"}']
        try:
            return slack(guard.with_body(environ, body), start_response)
        except Exception as exc:  # a payload Bolt itself cannot read: no traceback out
            log.error("Bolt failed on a signed request: %s", type(exc).__name__)
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [b"error"]

    return route


class HttpServer:
    """The app on host:port (port 0 picks a free one), served from a background thread."""

    def __init__(
        self,
        app: App | None,
        host: str,
        port: int,
        probes: health.Probes | None = None,
        signing_secret: str = "",
    ):
        probes = probes or health.Probes(redis=lambda: None, slack=None)
        handler = health.wsgi(probes) if app is None else wsgi_app(app, probes, signing_secret)
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

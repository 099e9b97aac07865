"""Slack's Socket Mode, as slack_sdk's `SocketModeClient` (and so Bolt's handler) sees it.

`apps.connections.open` (slack.py), called with an app-level token, hands out a one-use
`ws://` URL on this server. On connect the app gets `hello`; `deliver()` then sends it an
envelope the way Slack does (`slash_commands`, `events_api`, `interactive`, with an
`envelope_id`) and returns the app's acknowledgement, the message carrying the same
`envelope_id`, whose `payload` is what Slack would show for the ack (an ephemeral reply to
a slash command, a modal's errors). Frames follow the fixtures in
/work/shared/fixtures/slack/inbound/socket_mode.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from urllib.parse import parse_qs, urlparse

from bot.sandbox.extra import missing

try:
    from websockets.exceptions import ConnectionClosed
    from websockets.http11 import Request, Response
    from websockets.sync.server import Server, ServerConnection, serve
except ModuleNotFoundError as exc:  # the [sandbox] extra
    raise missing(exc) from None

from bot.model import Json

KINDS = ("slash_commands", "events_api", "interactive")


class NotConnected(RuntimeError):
    """No app holds a Socket Mode connection (or it never acknowledged an envelope)."""


class SocketModeHub:
    def __init__(self, app_id: str) -> None:
        self.app_id = app_id
        self._server: Server | None = None
        self._lock = threading.Lock()
        self._tickets: set[str] = set()
        self._connections: list[ServerConnection] = []
        self._acks: dict[str, queue.Queue[Json]] = {}

    # --- lifecycle -----------------------------------------------------------------------

    def start(self, host: str) -> SocketModeHub:
        self._server = serve(
            self._serve,
            host,
            0,
            process_request=self._check_ticket,
            compression=None,
            logger=None,
        )
        thread = threading.Thread(target=self._server.serve_forever, name="sandbox-socket")
        thread.daemon = True
        thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the Socket Mode server is not running")
        return self._server.socket.getsockname()[1]

    # --- what apps.connections.open answers ------------------------------------------------

    def open_url(self) -> str:
        ticket = str(uuid.uuid4())
        with self._lock:
            self._tickets.add(ticket)
        return f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}&app_id={self.app_id}"

    # --- for tests and the demo -----------------------------------------------------------

    def connected(self) -> int:
        with self._lock:
            return len(self._connections)

    def wait_connected(self, timeout_s: float = 10, count: int = 1) -> None:
        """Until `count` connections are open (a reconnecting app holds two for a while)."""
        deadline = time.monotonic() + timeout_s
        while self.connected() < count:
            if time.monotonic() > deadline:
                raise NotConnected(f"no app connected over Socket Mode within {timeout_s} s")
            time.sleep(0.02)

    def deliver(
        self,
        kind: str,
        payload: Json,
        *,
        accepts_response_payload: bool = False,
        retry_attempt: int = 0,
        retry_reason: str = "",
        timeout_s: float = 10,
    ) -> Json:
        """Send one envelope to the newest connection; return the app's acknowledgement."""
        if kind not in KINDS:
            raise ValueError(f"unknown envelope type {kind!r} (one of {', '.join(KINDS)})")
        self.wait_connected(timeout_s)
        envelope_id = str(uuid.uuid4())
        envelope: Json = {
            "envelope_id": envelope_id,
            "payload": payload,
            "type": kind,
            "accepts_response_payload": accepts_response_payload,
        }
        if kind == "events_api":
            envelope |= {"retry_attempt": retry_attempt, "retry_reason": retry_reason}
        acks: queue.Queue[Json] = queue.Queue()
        with self._lock:
            self._acks[envelope_id] = acks
            connection = self._connections[-1]
        try:
            connection.send(json.dumps(envelope))
            return acks.get(timeout=timeout_s)
        except queue.Empty:
            raise NotConnected(f"the app did not acknowledge {kind} within {timeout_s} s") from None
        finally:
            with self._lock:
                self._acks.pop(envelope_id, None)

    def disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask every app to reconnect, as Slack does every few hours."""
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            message = {
                "type": "disconnect",
                "reason": reason,
                "debug_info": {"host": "sandbox-applink"},
            }
            connection.send(json.dumps(message))

    # --- the server side ------------------------------------------------------------------

    def _check_ticket(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlparse(request.path)
        ticket = (parse_qs(url.query).get("ticket") or [""])[0]
        with self._lock:
            valid = url.path == "/link/" and ticket in self._tickets
            self._tickets.discard(ticket)
        if not valid:
            return connection.respond(401, "invalid or used ticket: call apps.connections.open\n")
        return None

    def _serve(self, connection: ServerConnection) -> None:
        with self._lock:
            count = len(self._connections) + 1
        hello = {
            "type": "hello",
            "num_connections": count,
            "debug_info": {"host": "sandbox-applink", "approximate_connection_time": 18060},
            "connection_info": {"app_id": self.app_id},
        }
        connection.send(json.dumps(hello))
        with self._lock:
            self._connections.append(connection)
        try:
            for message in connection:
                try:
                    data = json.loads(message)
                except ValueError:
                    continue
                envelope_id = data.get("envelope_id") if isinstance(data, dict) else None
                with self._lock:
                    acks = self._acks.get(envelope_id) if envelope_id else None
                if acks is not None:
                    acks.put(data)
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                self._connections.remove(connection)

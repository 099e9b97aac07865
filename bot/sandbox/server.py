"""The sandbox: a world served over loopback to the product's real clients.

One `Sandbox` owns one throwaway CA, one request log and one fault injector, and runs one
listener per emulated API: `arm` (HTTPS), one Kubernetes API server per cluster (`k8s`, plain
HTTP, see kube.py), the Slack Web API (`slack`, plain HTTP, see slack.py) with its Socket
Mode server (`socket_mode`, see socket_mode.py), and whatever else registers with `_listen`.
Every HTTP listener shares the plumbing below, so logging, latency, faults and auth behave
the same for all of them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import shutil
import socket
import socketserver
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from bot import armid
from bot.sandbox.extra import missing

try:
    import trustme
except ModuleNotFoundError as exc:  # the [sandbox] extra
    raise missing(exc) from None

from bot.sandbox.arm import ArmApi
from bot.sandbox.faults import Faults
from bot.sandbox.kube import KubeApi, ProbePodTally, WorldClock, served_clusters
from bot.sandbox.metrics_batch import MetricsBatchApi
from bot.sandbox.runcommand import (
    RefusedPort,
    RunCommands,
    direct_access,
    is_private,
    private_server,
)
from bot.sandbox.slack import APP_ID, SlackApi
from bot.sandbox.socket_mode import SocketModeHub
from bot.sandbox.wire import Dispatch, ErrorBody, Request, Response, Stream
from bot.sandbox.world import World, load_world

log = logging.getLogger(__name__)

_HOST = "127.0.0.1"


@dataclass(frozen=True)
class RequestRecord:
    api: str
    method: str
    path: str
    query: dict[str, str]
    status: int
    started: float  # time.monotonic() when the request was read
    ended: float  # time.monotonic() just before the response was sent
    body: Any = None  # the request's parsed body (JSON, form fields), so tests can assert writes
    token: str | None = None  # the bearer token, else a `token` argument (Slack accepts both)
    response: Any = None  # the body answered (not a copy; None for streams)


class RequestLog:
    """Every request every listener answered; the benchmarks count calls and overlap from it."""

    def __init__(self) -> None:
        self._records: list[RequestRecord] = []
        self._lock = threading.Lock()

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def of(self, api: str) -> list[RequestRecord]:
        with self._lock:
            return [r for r in self._records if r.api == api]

    def clear(self) -> None:
        with self._lock:
            self._records.clear()


BodyParser = Callable[[str, bytes, str], Any]
"""(path, raw body, Content-Type) -> the request body; raises ValueError when malformed."""


@dataclass(frozen=True)
class Endpoint:
    """One emulated API as the shared HTTP plumbing sees it."""

    api: str
    dispatch: Dispatch
    error: ErrorBody  # the API's own error body for a status (400, 401, injected faults)
    parse: BodyParser | None = None  # None: JSON, or form fields (`_parse_body`)
    bearer_auth: bool = True  # False: the API checks credentials itself (Slack answers 200)
    clock: Callable[[], datetime] | None = None  # the server's own time, for `Date` headers


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real services; clients pool connections
    server: _Server

    def do_GET(self) -> None:
        self._serve()

    do_PUT = do_PATCH = do_POST = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.server.endpoint.api, *args)

    def date_time_string(self, timestamp: float | None = None) -> str:
        """`Date` in the emulated server's own time where it keeps one (a cluster's API
        server runs on the world's clock, which its objects' timestamps use too)."""
        clock = self.server.endpoint.clock
        if clock is None or timestamp is not None:
            return super().date_time_string(timestamp)
        return format_datetime(clock().astimezone(UTC), usegmt=True)

    def _serve(self) -> None:
        started = time.monotonic()
        srv = self.server
        split = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parse = srv.endpoint.parse or _parse_body
        try:
            body, malformed = parse(split.path, raw, self.headers.get("Content-Type") or ""), False
        except ValueError:
            body, malformed = None, True
        request = Request(self.command, unquote(split.path), query, body, self.headers)
        response = srv.endpoint.error(400, request) if malformed else self._respond(request)
        time.sleep(srv.faults.latency_s(srv.endpoint.api))
        srv.requests.add(
            RequestRecord(
                api=srv.endpoint.api,
                method=request.method,
                path=request.path,
                query=query,
                status=response.status,
                started=started,
                ended=time.monotonic(),
                body=request.body,
                token=_token(request),
                response=None if isinstance(response.body, Stream) else response.body,
            )
        )
        self._send(response)

    def _respond(self, request: Request) -> Response:
        srv = self.server
        if srv.endpoint.bearer_auth and not _bearer(request):
            return srv.endpoint.error(401, request)
        rule = srv.faults.take(srv.endpoint.api, request.method, request.path)
        if rule is not None:
            status, headers, body = srv.endpoint.error(rule.status, request)
            extra = rule.headers or {}
            names = {name.lower() for name in extra}  # the rule's spelling replaces the API's
            kept = {k: v for k, v in headers.items() if k.lower() not in names}
            return Response(status, {**kept, **extra}, body)
        try:
            return srv.endpoint.dispatch(request)
        except Exception:
            log.exception("sandbox %s failed on %s %s", srv.endpoint.api, request.method, self.path)
            return srv.endpoint.error(500, request)

    def _send(self, response: Response) -> None:
        if isinstance(response.body, Stream):
            self._send_stream(response)
            return
        payload = _payload(response.body)
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)

    def _send_stream(self, response: Response) -> None:
        """Chunked transfer encoding, one chunk per item as it comes (Kubernetes watches)."""
        chunks = response.body.chunks
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for chunk in chunks:
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        except OSError:  # the client went away (Watch.stop(), a timeout): drop the connection
            self.close_connection = True
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()


def _payload(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()


def _bearer(request: Request) -> str | None:
    scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _token(request: Request) -> str | None:
    """The credential a request carried: its bearer token, else a `token` argument."""
    token = _bearer(request)
    if token is None and isinstance(request.body, dict):
        token = request.body.get("token")
    if token is None:
        token = request.query.get("token")
    return token if isinstance(token, str) else None


def _parse_body(path: str, raw: bytes, content_type: str) -> Any:
    """JSON (ARM, Kubernetes) or form fields; raises ValueError. `path` is unused here."""
    if not raw:
        return None
    if "x-www-form-urlencoded" in content_type:
        return {k: v[0] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}
    return json.loads(raw)


class _Server(ThreadingHTTPServer):
    """Threaded HTTPS (or plain HTTP without a context) on loopback. TLS handshakes run in
    the request threads, so a slow or failing client never stalls the accept loop, and
    sleeps for latency overlap."""

    daemon_threads = True
    # The accept queue. socketserver's default of 5 overflows when a fleet's clients open
    # hundreds of connections at once: the kernel then drops their SYNs and each waits a
    # whole second to retransmit, which a benchmark reads as ARM latency. Real services
    # accept far deeper bursts; the kernel caps this at net.core.somaxconn.
    request_queue_size = 1024

    def __init__(
        self,
        endpoint: Endpoint,
        context: ssl.SSLContext | None,
        requests: RequestLog,
        faults: Faults,
    ) -> None:
        self.endpoint, self.context, self.requests, self.faults = (
            endpoint,
            context,
            requests,
            faults,
        )
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__((_HOST, 0), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can take seconds offline.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = _HOST, self.server_address[1]

    @property
    def scheme(self) -> str:
        return "http" if self.context is None else "https"

    def finish_request(self, request: Any, client_address: Any) -> None:
        sock = request
        if self.context is not None:
            try:
                sock = self.context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                log.debug("sandbox %s: TLS handshake failed: %s", self.endpoint.api, exc)
                return
        with self._tracked(sock):
            self.RequestHandlerClass(sock, client_address, self)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("sandbox %s: connection error", self.endpoint.api, exc_info=True)

    def close_connections(self) -> None:
        """End keep-alive connections, so no client is answered after `stop()`."""
        with self._open_lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    @contextlib.contextmanager
    def _tracked(self, sock: socket.socket) -> Iterator[None]:
        with self._open_lock:
            self._open.add(sock)
        try:
            yield
        finally:
            with self._open_lock:
                self._open.discard(sock)
            sock.close()


class Sandbox:
    """Serves a world (a `World`, or the path of a world file) to real clients.

    The world is copied, so writes served by one sandbox never leak into another.
    `kube_url_for(cluster_id)` is where kubeconfigs from `listClusterUserCredential` point;
    by default each cluster's own emulated API server (`kube_url`), unless the bot may not
    connect to it (a private cluster: its private FQDN; authorized IP ranges: a refused
    port; see runcommand.py). Run commands reach every cluster's API server over TLS, on
    a listener started when a command first needs it.
    """

    def __init__(
        self, world: World | str | Path, kube_url_for: Callable[[str], str] | None = None
    ) -> None:
        template = world if isinstance(world, World) else load_world(world)
        self.world = template.copy()
        self._ca = trustme.CA()
        self._requests = RequestLog()
        self._faults = Faults(self.world.data.get("faults"))
        self._servers: dict[str, _Server] = {}
        self._poll_s = _POLL_S
        self._kube: dict[str, KubeApi] = {}  # by armid.key(cluster id)
        self._clock = WorldClock(self.world.now)
        self._tmp: Path | None = None
        self.ca_path = ""
        self._lock = threading.Lock()
        self._refused: RefusedPort | None = None
        self.run_commands = RunCommands(
            self.world, self._command_kubeconfig, lambda: self.arm_url, self.clock
        )
        self.arm = ArmApi(
            self.world,
            kube_url_for or self._kubeconfig_server,
            self._ca.cert_pem.bytes(),
            self.run_commands,
        )
        self.metrics_batch = MetricsBatchApi(self.world)
        self.socket_mode = SocketModeHub(APP_ID)
        self.slack = SlackApi(
            self.world.now, lambda: self._requests.of("slack"), self.socket_mode.open_url
        )

    @property
    def arm_url(self) -> str:
        return self.url("arm")

    @property
    def metrics_url(self) -> str:
        """Azure Monitor's regional metrics endpoint, `https://{region}.metrics.monitor.azure.com`
        in Azure, as a template with `{region}` (see metrics_batch.py)."""
        return self.url("metrics") + "/{region}"

    @property
    def slack_url(self) -> str:
        """The emulated Slack Web API, as `WebClient(base_url=...)` wants it (ends in `/api/`)."""
        return self.url("slack") + "/api/"

    def url(self, api: str) -> str:
        server = self._servers.get(api)
        if server is None:
            raise RuntimeError(f"sandbox {api!r} is not running; call start() first")
        return f"{server.scheme}://{_HOST}:{server.server_port}"

    def clock(self) -> datetime:
        """The world's time: its `now` plus the wall time since `start()` (what the emulated
        API servers stamp objects with)."""
        return self._clock.current()

    def kube_url(self, cluster: str) -> str:
        """The emulated Kubernetes API server (plain HTTP) of a cluster, by alias or ARM id."""
        return self.url(_kube_listener(self._cluster_id(cluster)))

    def _kubeconfig_server(self, cluster_id: str) -> str:
        """Where a user kubeconfig points: the API server, or where the bot cannot connect."""
        if direct_access(self.world, cluster_id):
            return self.kube_url(cluster_id)
        body = self.world.resource(cluster_id)
        if body is not None and is_private(body):
            return private_server(body)
        with self._lock:
            if self._refused is None:
                self._refused = RefusedPort()
            return self._refused.url

    def _command_kubeconfig(self, cluster_id: str) -> dict[str, Any]:
        """The kubeconfig a run command's kubectl gets: the cluster's API server over TLS
        (kubectl sends a bearer token over HTTPS only), trusting the sandbox's CA."""
        name = f"k8s-tls:{armid.key(cluster_id)}"
        with self._lock:
            if name not in self._servers:
                api = self._kube[armid.key(self._cluster_id(cluster_id))]
                endpoint = Endpoint("k8s", api, api.error, clock=lambda: self._clock.current())
                self._listen(endpoint, name, tls=True)
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "cluster",
                    "cluster": {
                        "server": self.url(name),
                        "certificate-authority-data": base64.b64encode(
                            self._ca.cert_pem.bytes()
                        ).decode(),
                    },
                }
            ],
            "contexts": [{"name": "cluster", "context": {"cluster": "cluster", "user": "cmd"}}],
            "current-context": "cluster",
            "users": [{"name": "cmd", "user": {"token": "run-command-token"}}],
        }

    def _cluster_id(self, cluster: str) -> str:
        if cluster in self.world.clusters:
            return self.world.clusters[cluster]
        for cluster_id in served_clusters(self.world):
            if armid.key(cluster_id) == armid.key(cluster):
                return cluster_id
        known = ", ".join(sorted(self.world.clusters))
        raise KeyError(f"no cluster {cluster!r} in the world (aliases: {known})")

    def start(self) -> Sandbox:
        if self._servers:
            return self
        self._tmp = Path(tempfile.mkdtemp(prefix="aks-egress-sandbox-"))
        self.ca_path = str(self._tmp / "ca.pem")
        self._ca.cert_pem.write_to_path(self.ca_path)
        clusters = list(served_clusters(self.world))
        # Each listener's accept loop wakes every poll interval; hundreds of clusters (a fleet
        # benchmark) at 50 ms would spend the GIL on wake-ups, so the interval grows with them.
        self._poll_s = _POLL_S * max(1, len(clusters) // 10)
        self._listen(Endpoint("arm", self.arm, self.arm.error))
        # Logged, delayed and faulted as ARM is (`armLatencyMs`, `rules[].api: arm`): the
        # world format's latency covers "every ARM and metrics response".
        batch = self.metrics_batch
        self._listen(Endpoint("arm", batch, batch.error), "metrics")
        self._clock = WorldClock(self.world.now)
        for cluster_id in clusters:
            api = KubeApi(self.world, cluster_id, self._clock)
            self._kube[armid.key(cluster_id)] = api
            endpoint = Endpoint("k8s", api, api.error, clock=lambda: self._clock.current())
            self._listen(endpoint, _kube_listener(cluster_id), tls=False)
        slack = Endpoint("slack", self.slack, self.slack.error, self.slack.parse, bearer_auth=False)
        self._listen(slack, tls=False)
        self.slack.origin = self.url("slack")
        self.socket_mode.start(_HOST)
        return self

    def stop(self) -> None:
        self.run_commands.close()
        if self._refused is not None:
            self._refused.close()
            self._refused = None
        self.socket_mode.stop()
        for api in self._kube.values():
            api.close()  # ends watches in flight
        self._kube.clear()
        for server in self._servers.values():  # every loop told at once: one poll to stop all
            server._BaseServer__shutdown_request = True  # type: ignore[attr-defined]
        for server in self._servers.values():
            server.shutdown()
            server.server_close()
            server.close_connections()
        self._servers.clear()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def faults(self) -> Faults:
        """The live fault injector (`faults.add(rule)` adds a `faults.rules` entry)."""
        return self._faults

    def pods(self, cluster: str) -> list[dict[str, Any]]:
        """The pods a cluster's API server holds now (by alias or ARM id)."""
        return self._kube[armid.key(self._cluster_id(cluster))].pods()

    def probe_pods(self) -> dict[str, ProbePodTally]:
        """By cluster ARM id: the probe pods its API server saw created and deleted, and
        the most at once, over every client of this sandbox (all worker processes)."""
        return {api.cluster_id: api.probe_tally() for api in self._kube.values()}

    def calls(self, api: str = "arm") -> list[RequestRecord]:
        return self._requests.of(api)

    def count(self, api: str = "arm") -> int:
        return len(self._requests.of(api))

    def reset_log(self) -> None:
        self._requests.clear()

    def _listen(self, endpoint: Endpoint, name: str | None = None, tls: bool = True) -> None:
        """Serve one emulated API on its own port, with the shared CA, log and faults.

        `name` (default: the API) tells listeners of one API apart (`url(name)`); requests
        are logged under `endpoint.api` whatever the name.
        """
        context = None
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._ca.issue_cert(_HOST, "localhost").configure_cert(context)
        server = _Server(endpoint, context, self._requests, self._faults)
        name = name or endpoint.api
        threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": self._poll_s},
            name=f"sandbox-{name}",
            daemon=True,
        ).start()
        self._servers[name] = server


_POLL_S = 0.05


def _kube_listener(cluster_id: str) -> str:
    return f"k8s:{armid.key(cluster_id)}"

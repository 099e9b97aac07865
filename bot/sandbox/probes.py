"""Probe pods: what the world says curl reports (world-format.md, `probes`), and how that
outcome shows through the Kubernetes API: the pod's states and its log.

Pure functions of a pod and the world; `kube.py` decides when each state is reached.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
import re
from collections import Counter
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import urlsplit, urlunsplit

from bot import armid
from bot.model import Json
from bot.sandbox import routing
from bot.sandbox.world import World

PROBE_LABEL = ("app.kubernetes.io/name", "aks-egress-probe")
POOL_LABELS = ("kubernetes.azure.com/agentpool", "agentpool")
# How long a probe pod stays Pending/Running before it completes, when the world's
# `faults.probeSeconds` is absent: short, so tests stay fast, long enough to watch.
DEFAULT_PROBE_SECONDS = 0.5
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"
_CURL_VERSION = "7.88.1"
_CONTAINER_ID = "containerd://"

# curl's error buffer for an exit code when the world gives no `errormsg` ({host}, {port},
# {ms}, {proxy} filled in), in the wording of curl 7.88 (see fixtures/curl).
_ERRORS = {
    3: "URL using bad/illegal format or missing URL",
    5: "Could not resolve proxy: {proxy}",
    6: "Could not resolve host: {host}",
    7: "Failed to connect to {host} port {port} after {ms} ms: Couldn't connect to server",
    16: "Error in the HTTP2 framing layer",
    18: "Transferred a partial file",
    22: "The requested URL returned error: 403",
    23: "Failure writing output to destination",
    26: "Failed to open/read local data from file/application",
    28: "Failed to connect to {host} port {port} after {ms} ms: Timeout was reached",
    35: "OpenSSL SSL_connect: SSL_ERROR_SYSCALL in connection to {host}:{port} ",
    47: "Maximum (50) redirects followed",
    52: "Empty reply from server",
    55: "Failed sending data to the peer",
    56: "Recv failure: Connection reset by peer",
    58: "Problem with the local SSL certificate",
    60: "SSL certificate problem: unable to get local issuer certificate",
    61: "Unrecognized or bad HTTP Content or Transfer-Encoding",
    77: "Problem with the SSL CA cert (path? access rights?)",
    90: "SSL public key does not match pinned public key",
    91: "SSL server certificate status verification FAILED",
    92: "Stream error in the HTTP/2 framing layer",
    97: "Proxy handshake error",
    98: "SSL Client Certificate required",
}
_DEFAULT_PORTS = {"https": 443, "http": 80, "telnet": 23, "ftp": 21, "ftps": 990}


@dataclass(frozen=True)
class Outcome:
    """One `probes` entry (or `probeDefault`) as the emulator uses it."""

    exit_code: int = 0
    write_out: Json | None = None
    stderr: str | None = None
    pod_status: str | None = None

    @classmethod
    def of(cls, entry: Json) -> Outcome:
        return cls(
            exit_code=int(entry.get("exitCode", 0)),
            write_out=entry.get("writeOut"),
            stderr=entry.get("stderr"),
            pod_status=entry.get("podStatus"),
        )


# --- reading a probe pod ------------------------------------------------------------------


def is_probe(pod: Json) -> bool:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return labels.get(PROBE_LABEL[0]) == PROBE_LABEL[1]


def argv(pod: Json) -> list[str]:
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    first = containers[0]
    return [str(a) for a in (first.get("command") or []) + (first.get("args") or [])]


def target_url(pod: Json) -> str | None:
    """The last element of the first container's command + args that contains `://`."""
    return next((a for a in reversed(argv(pod)) if "://" in a), None)


def pinned_pool(pod: Json) -> str | None:
    selector = (pod.get("spec") or {}).get("nodeSelector") or {}
    return next((selector[k] for k in POOL_LABELS if selector.get(k)), None)


def node_pool(node: Json) -> str | None:
    labels = (node.get("metadata") or {}).get("labels") or {}
    return next((labels[k] for k in POOL_LABELS if labels.get(k)), None)


def normalize_url(url: str) -> str:
    """URLs compare as strings once the `/` an empty path implies is added."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.path or not parts.netloc:
        return url
    return urlunsplit(parts._replace(path="/"))


# --- choosing the outcome -----------------------------------------------------------------


def first_agent_pool(world: World, cluster_id: str) -> str | None:
    cluster = world.resource(cluster_id) or {}
    profiles = (cluster.get("properties") or {}).get("agentPoolProfiles") or []
    return profiles[0].get("name") if profiles else None


def cluster_names(world: World, cluster_id: str) -> set[str]:
    """What a probe entry's `cluster` may say for this cluster: an alias (as the world
    format says), or, leniently, the cluster's name or ARM id."""
    names = {
        alias for alias, cid in world.clusters.items() if armid.key(cid) == armid.key(cluster_id)
    }
    names |= {cluster_id.lower(), cluster_id.rstrip("/").rsplit("/", 1)[-1].lower()}
    return names


def choose(world: World, cluster_id: str, url: str, pool: str | None) -> tuple[Outcome, str | None]:
    """The outcome for a probe of `url` from `pool` (None: the pod pins no pool), and the pool
    the pod ends up on (for a pod that pins none: the first agent pool when only its entries
    matched, else None: any node)."""
    want = normalize_url(url)
    names = cluster_names(world, cluster_id)
    entries = [
        e
        for e in world.data.get("probes") or []
        if normalize_url(str(e.get("url", ""))) == want
        and (e.get("cluster") is None or _same_cluster(e["cluster"], names))
        and e.get("pod") is None  # inside a pod only (ephemeral.py)
    ]
    if pool is not None:
        entries = [e for e in entries if e.get("agentPool") is None or _same(e["agentPool"], pool)]
    else:
        unpinned = [e for e in entries if e.get("agentPool") is None]
        first = first_agent_pool(world, cluster_id)
        if not unpinned and first is not None:
            pool = first
            unpinned = [e for e in entries if _same(e.get("agentPool"), first)]
        entries = unpinned
    entries = [e for e in entries if _route_applies(world, cluster_id, url, pool, e)]
    if not entries:
        default = world.data.get("probeDefault")
        return (Outcome.of(default) if default else Outcome()), pool
    # Most specific wins; among equals the first listed (max keeps the first maximum).
    best = max(
        entries,
        key=lambda e: (
            (e.get("cluster") is not None)
            + (e.get("agentPool") is not None)
            + (e.get("nextHopType") is not None)
        ),
    )
    return Outcome.of(best), pool


def _route_applies(world: World, cluster_id: str, url: str, pool: str | None, entry: Json) -> bool:
    """An entry with `nextHopType` holds only while the pool's subnet routes the URL host's
    address (`dns`) to that next hop type, in the route tables as now served."""
    wanted = entry.get("nextHopType")
    if wanted is None:
        return True
    address = target(url, world.data.get("dns") or {}).ip
    subnet = routing.pool_subnet(world, cluster_id, pool)
    return str(wanted).lower() == routing.next_hop_type(world, subnet, address).lower()


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.lower() == b.lower()


def _same_cluster(value: str, names: set[str]) -> bool:
    return value in names or value.lower() in names


# --- the log: what the probe container prints ---------------------------------------------


@dataclass(frozen=True)
class Target:
    url: str
    host: str
    port: int
    ip: str
    https: bool
    path: str


def target(url: str, dns: Json) -> Target:
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower(), 80)
    except ValueError:
        parts, host, port = urlsplit(""), "", 80
    return Target(
        url=url,
        host=host,
        port=port,
        ip=resolve(host, dns),
        https=parts.scheme.lower() in ("https", "ftps"),
        path=(parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
    )


def resolve(host: str, dns: Json) -> str:
    """The world's `dns` answer, the host itself if it is an address, else a stable public
    address made up from the name (the probe connected somewhere)."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        pass
    for name, addresses in (dns or {}).items():
        if name.lower().rstrip(".") == host.lower().rstrip(".") and addresses:
            return str(addresses[0])
    digest = hashlib.sha256(host.encode()).digest()
    return f"20.{40 + digest[0] % 200}.{digest[1]}.{4 + digest[2] % 250}"


def _option(args: list[str], *names: str) -> str | None:
    """The value of the last `--name value` / `--name=value` / `-xvalue` option."""
    found = None
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                found = args[i + 1]
            elif name.startswith("--") and arg.startswith(name + "="):
                found = arg[len(name) + 1 :]
            elif not name.startswith("--") and arg.startswith(name) and len(arg) > len(name):
                found = arg[len(name) :]
    return found


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def error_message(exit_code: int, where: Target, args: list[str]) -> str:
    """curl's error buffer (`errormsg`, the `curl: (N) …` line) for an exit code."""
    proxy = _option(args, "-x", "--proxy") or ""
    proxy_host = urlsplit(proxy if "://" in proxy else f"http://{proxy}").hostname or proxy
    wait = _seconds(_option(args, "--connect-timeout")) or _seconds(
        _option(args, "-m", "--max-time")
    )
    ms = int((wait if wait is not None else 300) * 1000) + 1 if exit_code == 28 else 3
    redirects = _option(args, "--max-redirs") or "50"
    text = _ERRORS.get(exit_code, "Unknown error")
    if exit_code == 47:
        text = f"Maximum ({redirects}) redirects followed"
    return text.format(host=where.host, port=where.port, ms=ms, proxy=proxy_host)


def minimal_write_out(outcome: Outcome, where: Target, args: list[str]) -> Json:
    """The `%{json}` object a world that gives none gets (world-format.md)."""
    failed = outcome.exit_code != 0
    return {
        "errormsg": error_message(outcome.exit_code, where, args) if failed else None,
        "exitcode": outcome.exit_code,
        "http_code": 0 if failed else 200,
    }


def default_stderr(outcome: Outcome, where: Target, write_out: Json, args: list[str]) -> str:
    """A short, plausible `curl -v` transcript for an outcome the world gives no stderr for."""
    code = outcome.exit_code
    message = write_out.get("errormsg") or error_message(code, where, args)
    if code in (5, 6):
        lines = [f"* {message}", "* Closing connection 0"]
    elif code in (7, 28):
        lines = [f"*   Trying {where.ip}:{where.port}..."]
        if code == 7:
            lines.append(f"* connect to {where.ip} port {where.port} failed: Connection refused")
        lines += [f"* {message}", "* Closing connection 0"]
    else:
        lines = [
            f"*   Trying {where.ip}:{where.port}...",
            f"* Connected to {where.host} ({where.ip}) port {where.port} (#0)",
        ]
        if where.https:
            lines.append("* ALPN: offers h2,http/1.1")
            if code not in (35, 60):
                lines.append("* SSL connection using TLSv1.3 / TLS_AES_256_GCM_SHA384")
        if code == 0:
            status = int(write_out.get("http_code") or write_out.get("response_code") or 200)
            try:
                phrase = HTTPStatus(status).phrase
            except ValueError:
                phrase = ""
            lines += [
                f"> GET {where.path} HTTP/1.1\r",
                f"> Host: {where.host}\r",
                f"> User-Agent: curl/{_CURL_VERSION}\r",
                "> Accept: */*\r",
                "> \r",
                f"< HTTP/1.1 {status} {phrase}".rstrip() + "\r",
                "< Content-Length: 0\r",
                "< \r",
                f"* Connection #0 to host {where.host} left intact",
            ]
        else:
            lines += [f"* {message}", "* Closing connection 0"]
    if code != 0:
        lines.append(f"curl: ({code}) {message}")
    return "\n".join(lines) + "\n"


_WRITE_OUT_TOKEN = re.compile(r"%%|%\{([^}]*)\}|%header\{[^}]*\}|\\[nrt\\]")
_ESCAPES = {"\\n": "\n", "\\r": "\r", "\\t": "\t", "\\\\": "\\"}


def render_write_out(template: str, write_out: Json) -> str:
    """curl's `--write-out` template: `%{json}`, `%{variable}`, `%%` and `\\n`-style escapes."""

    def one(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "%%":
            return "%"
        if token in _ESCAPES:
            return _ESCAPES[token]
        name = match.group(1)
        if name == "json":
            return json.dumps(write_out, separators=(",", ":"), ensure_ascii=False)
        value = write_out.get(name) if name is not None else None
        return "" if value is None else str(value)

    return _WRITE_OUT_TOKEN.sub(one, template)


def probe_log(outcome: Outcome, url: str, args: list[str], dns: Json) -> str:
    """What the probe container prints: curl's stderr, then its write-out on stdout (the
    product asks for `%{json}\\n`; a pod without `--write-out` gets that too)."""
    where = target(url, dns)
    write_out = outcome.write_out or minimal_write_out(outcome, where, args)
    stderr = outcome.stderr
    if stderr is None:
        stderr = default_stderr(outcome, where, write_out, args)
    if stderr and not stderr.endswith("\n"):
        stderr += "\n"
    template = _option(args, "-w", "--write-out")
    if template is None or template.startswith("@"):
        template = "%{json}\n"
    return stderr + render_write_out(template, write_out)


def termination_message(log: str) -> str:
    """What `terminationMessagePolicy: FallbackToLogsOnError` copies from a failed
    container's log: its last 80 lines, at most 2048 bytes (the kubelet's limits)."""
    tail = "".join(log.splitlines(keepends=True)[-80:]).encode()
    return tail[-2048:].decode(errors="ignore")


# --- messages of the kubelet and the scheduler --------------------------------------------


def image_pull_message(reason: str, image: str, dns: Json) -> str:
    if reason == "ImagePullBackOff":
        return f'Back-off pulling image "{image}"'
    ref, registry, repo, tag = _image_reference(image)
    ip = resolve(registry, dns)
    return (
        f'failed to pull and unpack image "{ref}": failed to resolve reference "{ref}": '
        f'failed to do request: Head "https://{registry}/v2/{repo}/manifests/{tag}": '
        f"dial tcp {ip}:443: i/o timeout"
    )


def _image_reference(image: str) -> tuple[str, str, str, str]:
    """(fully qualified reference, registry host, repository, tag) as containerd sees it."""
    ref = image.split("@", 1)[0]
    slash, colon = ref.rfind("/"), ref.rfind(":")
    name, tag = (ref[:colon], ref[colon + 1 :]) if colon > slash else (ref, "latest")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return f"{name}:{tag}", first, rest, tag
    repo = name if rest else f"library/{name}"
    return f"docker.io/{repo}:{tag}", "registry-1.docker.io", repo, tag


def config_error_message(pod: Json) -> str:
    meta = pod["metadata"]
    container = (pod["spec"].get("containers") or [{}])[0].get("name", "")
    return (
        "container has runAsNonRoot and image has non-numeric user (curl_user), cannot verify "
        f'user is non-root (pod: "{meta["name"]}_{meta["namespace"]}({meta["uid"]})", '
        f"container: {container})"
    )


def unschedulable_message(nodes: list[Json], pod: Json) -> str:
    """The scheduler's FitError for this pod on these nodes."""
    if not nodes:
        return "no nodes available to schedule pods"
    spec = pod.get("spec") or {}
    selector = spec.get("nodeSelector") or {}
    tolerations = spec.get("tolerations") or []
    counts: Counter[str] = Counter()
    insufficient = "Insufficient cpu"
    for node in nodes:
        labels = (node.get("metadata") or {}).get("labels") or {}
        if any(labels.get(k) != v for k, v in selector.items()):
            counts["node(s) didn't match Pod's node affinity/selector"] += 1
            continue
        taint = next(
            (
                t
                for t in (node.get("spec") or {}).get("taints") or []
                if t.get("effect") in ("NoSchedule", "NoExecute")
                and not any(_tolerates(tol, t) for tol in tolerations)
            ),
            None,
        )
        if taint is not None:
            counts[
                f"node(s) had untolerated taint {{{taint['key']}: {taint.get('value', '')}}}"
            ] += 1
        else:
            counts[insufficient] += 1
    total = len(nodes)
    reasons = ", ".join(sorted(f"{n} {r}" for r, n in counts.items()))
    preemption = []
    if counts[insufficient]:
        preemption.append(f"{counts[insufficient]} No preemption victims found for incoming pod")
    if total - counts[insufficient]:
        preemption.append(
            f"{total - counts[insufficient]} Preemption is not helpful for scheduling"
        )
    return (
        f"0/{total} nodes are available: {reasons}. preemption: 0/{total} nodes are available: "
        f"{', '.join(sorted(preemption))}."
    )


def _tolerates(toleration: Json, taint: Json) -> bool:
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if not toleration.get("key"):
        return toleration.get("operator") == "Exists"
    if toleration["key"] != taint.get("key"):
        return False
    return toleration.get("operator") == "Exists" or toleration.get("value", "") == taint.get(
        "value", ""
    )


# --- the pod's states ---------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    node: str
    host_ip: str
    pod_ip: str


def _condition(
    kind: str, status: bool, at: str, reason: str | None = None, message: str | None = None
) -> Json:
    out: Json = {
        "type": kind,
        "status": "True" if status else "False",
        "lastProbeTime": None,
        "lastTransitionTime": at,
    }
    if reason:
        out["reason"] = reason
    if message:
        out["message"] = message
    return out


def _container(pod: Json) -> Json:
    return (pod["spec"].get("containers") or [{}])[0]


def _container_status(
    pod: Json, state: Json, *, ready: bool, started: bool, cid: str | None
) -> Json:
    container = _container(pod)
    image = container.get("image", "")
    out: Json = {
        "name": container.get("name", ""),
        "state": state,
        "lastState": {},
        "ready": ready,
        "restartCount": 0,
        "image": image,
        "imageID": f"{image.split(':')[0]}@sha256:{_digest(image)}" if cid else "",
        "started": started,
    }
    if cid:
        out["containerID"] = cid
    return out


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def container_id(pod: Json) -> str:
    return _CONTAINER_ID + _digest(pod["metadata"]["uid"])


def _ips(place: Placement) -> Json:
    return {
        "hostIP": place.host_ip,
        "hostIPs": [{"ip": place.host_ip}],
        "podIP": place.pod_ip,
        "podIPs": [{"ip": place.pod_ip}],
    }


def _with_status(pod: Json, status: Json, node: str | None = None) -> Json:
    out = copy.deepcopy(pod)
    if node:
        out["spec"]["nodeName"] = node
    qos = (pod.get("status") or {}).get("qosClass")
    out["status"] = {**status, **({"qosClass": qos} if qos else {})}
    return out


def creating(pod: Json, place: Placement, at: str) -> Json:
    """Scheduled, sandbox being created, image being pulled: Pending, ContainerCreating."""
    created = pod["metadata"]["creationTimestamp"]
    unready = "containers with unready status: [" + _container(pod).get("name", "") + "]"
    return _with_status(
        pod,
        {
            "phase": "Pending",
            "conditions": [
                _condition("PodReadyToStartContainers", False, at),
                _condition("Initialized", True, created),
                _condition("Ready", False, created, "ContainersNotReady", unready),
                _condition("ContainersReady", False, created, "ContainersNotReady", unready),
                _condition("PodScheduled", True, at),
            ],
            "hostIP": place.host_ip,
            "hostIPs": [{"ip": place.host_ip}],
            "startTime": at,
            "containerStatuses": [
                _container_status(
                    pod,
                    {"waiting": {"reason": "ContainerCreating"}},
                    ready=False,
                    started=False,
                    cid=None,
                )
            ],
        },
        node=place.node,
    )


def waiting(pod: Json, place: Placement, reason: str, message: str, at: str) -> Json:
    """The container will not start (image pull, config): stays Pending with the reason."""
    out = copy.deepcopy(pod)
    status = out["status"]
    status["conditions"][0] = _condition("PodReadyToStartContainers", True, at)
    status.update(_ips(place))
    status["containerStatuses"] = [
        _container_status(
            pod,
            {"waiting": {"reason": reason, "message": message}},
            ready=False,
            started=False,
            cid=None,
        )
    ]
    return out


def running(pod: Json, place: Placement, at: str) -> Json:
    out = copy.deepcopy(pod)
    status = out["status"]
    status["phase"] = "Running"
    status["conditions"] = [
        _condition("PodReadyToStartContainers", True, at),
        status["conditions"][1],
        _condition("Ready", True, at),
        _condition("ContainersReady", True, at),
        status["conditions"][4],
    ]
    status.update(_ips(place))
    status["containerStatuses"] = [
        _container_status(
            pod, {"running": {"startedAt": at}}, ready=True, started=True, cid=container_id(pod)
        )
    ]
    return out


def completed(pod: Json, place: Placement, exit_code: int, log: str, at: str) -> Json:
    """curl ended: Succeeded (exit 0) or Failed, as the kubelet reports a finished container."""
    out = copy.deepcopy(pod)
    status = out["status"]
    why = "PodCompleted" if exit_code == 0 else "PodFailed"
    status["phase"] = "Succeeded" if exit_code == 0 else "Failed"
    status["conditions"] = [
        _condition("PodReadyToStartContainers", False, at),
        status["conditions"][1],
        _condition("Ready", False, at, why),
        _condition("ContainersReady", False, at, why),
        status["conditions"][4],
    ]
    started = ((pod["status"].get("containerStatuses") or [{}])[0].get("state") or {}).get(
        "running"
    ) or {}
    terminated: Json = {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error"}
    if (
        exit_code != 0
        and _container(pod).get("terminationMessagePolicy") == "FallbackToLogsOnError"
    ):
        terminated["message"] = termination_message(log)
    terminated |= {
        "startedAt": started.get("startedAt", at),
        "finishedAt": at,
        "containerID": container_id(pod),
    }
    status["containerStatuses"] = [
        _container_status(
            pod, {"terminated": terminated}, ready=False, started=False, cid=container_id(pod)
        )
    ]
    return out


def deadline_exceeded(pod: Json, place: Placement, at: str) -> Json:
    """activeDeadlineSeconds ran out before curl ever ran: Failed, reason DeadlineExceeded."""
    out = copy.deepcopy(pod)
    status = out["status"]
    status["phase"] = "Failed"
    status["conditions"] = [
        _condition("PodReadyToStartContainers", False, at),
        status["conditions"][1],
        _condition("Ready", False, at, "PodFailed"),
        _condition("ContainersReady", False, at, "PodFailed"),
        status["conditions"][4],
        _condition("DisruptionTarget", True, at, "DeadlineExceeded", DEADLINE_MESSAGE),
    ]
    status.update(_ips(place))
    terminated = {"exitCode": 137, "reason": "Error", "finishedAt": at}
    status["containerStatuses"] = [
        _container_status(pod, {"terminated": terminated}, ready=False, started=False, cid=None)
    ]
    status["reason"] = "DeadlineExceeded"
    status["message"] = DEADLINE_MESSAGE
    return out


def unschedulable(pod: Json, message: str, at: str) -> Json:
    return _with_status(
        pod,
        {
            "phase": "Pending",
            "conditions": [_condition("PodScheduled", False, at, "Unschedulable", message)],
        },
    )

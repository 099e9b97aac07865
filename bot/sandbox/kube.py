"""The Kubernetes API server of one cluster, answered from a world (world-format.md,
`kubernetes`, `probes`, `probeDefault`, `faults.probeSeconds`).

`KubeApi(request)` serves the paths the official Python client (kubernetes 37) uses: the
version, nodes, pods (list across or within namespaces with label and field selectors, get,
create, delete, delete-collection, log, watch) and `metrics.k8s.io/v1beta1`. Bodies and
`Status` errors are shaped as the real API server's, because the product parses them with
the real client.

Pods created through the API are kept in memory. A *probe pod* (label
`app.kubernetes.io/name: aks-egress-probe`) is moved through the states a real probe pod
goes through (probes.py) on a schedule of `probeSeconds`: scheduled and ContainerCreating
at a tenth of it, Running (or stuck waiting) at half, completed at the full time. States
are applied lazily, by whichever request or watch looks first, stamped with the time they
were due, so nothing runs in the background. Every change bumps the resourceVersion and is
recorded as an event that watches stream as ADDED / MODIFIED / DELETED.

All state is guarded by one condition variable per cluster; stored objects are replaced,
never mutated, so a response can serialise them outside the lock.
"""

from __future__ import annotations

import bisect
import copy
import hashlib
import heapq
import ipaddress
import itertools
import json
import random
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from http import HTTPStatus
from typing import Any

from bot import armid
from bot.model import Json
from bot.sandbox import ephemeral, probes
from bot.sandbox.arm import SANDBOX_CLIENT
from bot.sandbox.kube_objects import OBJECT_FIELDS, Kind, WorldObjects, runs_cilium
from bot.sandbox.wire import Request, Response, Stream
from bot.sandbox.world import World

_JSON = {"Content-Type": "application/json"}
_TEXT = {"Content-Type": "text/plain"}
_METRICS = "metrics.k8s.io"
_METRICS_VERSION = f"{_METRICS}/v1beta1"
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # the apiserver's generateName alphabet
_WATCH_DEFAULT_S = 1800.0  # a watch without timeoutSeconds: the apiserver's 30 min cap
_MAX_EVENTS = 10_000
_NODE_IP = "10.224.0.4"
_CLUSTER_TYPE = "microsoft.containerservice/managedclusters"
_UNKNOWN_FORMAT = (
    "the body of the request was in an unknown format - accepted media types include: "
    "application/json, application/yaml, application/vnd.kubernetes.protobuf"
)
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


_RULES_REVIEW = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews"


def served_clusters(world: World) -> list[str]:
    """Every cluster that gets an API server: the aliased ones, every managedClusters
    resource in `arm`, every key of `kubernetes` (ids deduplicated, first spelling kept)."""
    ids = list(world.clusters.values())
    ids += [b["id"] for b in world.data["arm"] if str(b.get("type", "")).lower() == _CLUSTER_TYPE]
    ids += list((world.data.get("kubernetes") or {}).keys())
    seen: dict[str, str] = {}
    for cluster_id in ids:
        seen.setdefault(armid.key(cluster_id), cluster_id)
    return list(seen.values())


class WorldClock:
    """The world's time: its `now` plus the wall time elapsed since the sandbox started."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.origin = time.monotonic()

    def at(self, monotonic: float) -> datetime:
        return self.now + timedelta(seconds=monotonic - self.origin)

    def current(self) -> datetime:
        return self.at(time.monotonic())

    def stamp(self, monotonic: float | None = None) -> str:
        """RFC 3339 with seconds, as Kubernetes writes timestamps."""
        when = self.at(time.monotonic() if monotonic is None else monotonic)
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- Status bodies ------------------------------------------------------------------------


def status(
    code: int,
    reason: str,
    message: str,
    details: Json | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body: Json = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details is not None:
        body["details"] = details
    body["code"] = code
    return Response(code, {**_JSON, **(headers or {})}, body)


def ok(body: Any, code: int = 200) -> Response:
    return Response(code, dict(_JSON), body)


def not_found_path() -> Response:
    return status(404, "NotFound", "the server could not find the requested resource", {})


def bad_request(message: str) -> Response:
    return status(400, "BadRequest", message)


def method_not_allowed() -> Response:
    return status(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
        {},
    )


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, name: str, group: str = "") -> Response:
    details: Json = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = resource
    return status(404, "NotFound", f'{_qualified(resource, group)} "{name}" not found', details)


def already_exists(resource: str, name: str) -> Response:
    return status(
        409,
        "AlreadyExists",
        f'{resource} "{name}" already exists',
        {"name": name, "kind": resource},
    )


def invalid(kind: str, name: str, field: str, detail: str, reason: str) -> Response:
    return status(
        422,
        "Invalid",
        f'{kind} "{name}" is invalid: {field}: {detail}',
        {
            "name": name,
            "kind": kind,
            "causes": [{"reason": reason, "message": detail, "field": field}],
        },
    )


# --- routing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """A request path as the apiserver reads it. `group` is None for non-resource paths
    (`/version`, `/api`, `/apis`), "" for the core group."""

    path: str
    group: str | None = None
    version: str | None = None
    resource: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    too_deep: bool = False


def route(path: str) -> Route:
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return Route(path)
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest:
        return Route(path, group, version, namespace=namespace)
    return Route(
        path,
        group,
        version,
        resource=rest[0],
        namespace=namespace,
        name=rest[1] if len(rest) > 1 else None,
        subresource=rest[2] if len(rest) > 2 else None,
        too_deep=len(rest) > 3,
    )


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def verb(method: str, where: Route, query: Mapping[str, str]) -> str:
    """The RBAC verb of a request, as 403 messages name it."""
    method = method.upper()
    if method in ("GET", "HEAD"):
        if where.name:
            return "get"
        return "watch" if _truthy(query.get("watch")) else "list"
    if method == "DELETE":
        return "delete" if where.name else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


# --- selectors ----------------------------------------------------------------------------


class SelectorError(ValueError):
    """A label or field selector the apiserver would reject (400)."""


_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_SET_REQUIREMENT = re.compile(r"^(\S+)\s+(in|notin)\s+\(([^)]*)\)$")

LabelTest = Callable[[Mapping[str, str]], bool]


def _split_top(text: str) -> list[str]:
    """Split on commas outside parentheses (`a in (x,y),b=c`)."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        current += char
    parts.append(current)
    return parts


def label_matcher(text: str) -> LabelTest:
    """`k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`, comma = AND."""
    tests: list[LabelTest] = []
    for raw in _split_top(text or ""):
        part = raw.strip()
        if not part:
            continue
        tests.append(_label_requirement(part))
    return lambda labels: all(test(labels) for test in tests)


def _label_requirement(part: str) -> LabelTest:
    def check(key: str, *values: str) -> None:
        if not _LABEL_KEY.match(key) or not all(_LABEL_VALUE.match(v) for v in values):
            raise SelectorError(f"unable to parse requirement: {part}")

    match = _SET_REQUIREMENT.match(part)
    if match:
        key, op = match.group(1), match.group(2)
        values = {v.strip() for v in match.group(3).split(",") if v.strip()}
        check(key, *values)
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if part.startswith("!"):
        key = part[1:].strip()
        check(key)
        return lambda labels: key not in labels
    for op in ("!=", "==", "="):
        if op in part:
            key, value = (s.strip() for s in part.split(op, 1))
            check(key, value)
            if op == "!=":
                return lambda labels: labels.get(key) != value
            return lambda labels: labels.get(key) == value
    check(part)
    return lambda labels: part in labels


def _meta(obj: Json) -> Json:
    return obj.get("metadata") or {}


def _bool(value: Any) -> str:
    return "true" if value else "false"


_POD_FIELDS: dict[str, Callable[[Json], Any]] = {
    "metadata.name": lambda p: _meta(p).get("name"),
    "metadata.namespace": lambda p: _meta(p).get("namespace"),
    "spec.nodeName": lambda p: (p.get("spec") or {}).get("nodeName"),
    "spec.restartPolicy": lambda p: (p.get("spec") or {}).get("restartPolicy"),
    "spec.schedulerName": lambda p: (p.get("spec") or {}).get("schedulerName"),
    "spec.serviceAccountName": lambda p: (p.get("spec") or {}).get("serviceAccountName"),
    "spec.hostNetwork": lambda p: _bool((p.get("spec") or {}).get("hostNetwork")),
    "status.phase": lambda p: (p.get("status") or {}).get("phase"),
    "status.podIP": lambda p: (p.get("status") or {}).get("podIP"),
    "status.nominatedNodeName": lambda p: (p.get("status") or {}).get("nominatedNodeName"),
}
_NODE_FIELDS: dict[str, Callable[[Json], Any]] = {
    "metadata.name": lambda n: _meta(n).get("name"),
    "spec.unschedulable": lambda n: _bool((n.get("spec") or {}).get("unschedulable")),
}
_METRICS_FIELDS: dict[str, Callable[[Json], Any]] = {
    "metadata.name": lambda m: _meta(m).get("name"),
    "metadata.namespace": lambda m: _meta(m).get("namespace"),
}


def field_matcher(text: str, fields: Mapping[str, Callable[[Json], Any]]) -> Callable[[Json], bool]:
    """`f=v`, `f==v`, `f!=v`, comma = AND, over the fields the resource supports."""
    tests: list[tuple[Callable[[Json], Any], str, bool]] = []
    for raw in (text or "").split(","):
        part = raw.strip()
        if not part:
            continue
        op = next((o for o in ("!=", "==", "=") if o in part), None)
        if op is None:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        name, value = (s.strip() for s in part.split(op, 1))
        if name not in fields:
            raise SelectorError(f"field label not supported: {name}")
        tests.append((fields[name], value, op == "!="))
    return lambda obj: all(((get(obj) or "") == value) != negate for get, value, negate in tests)


def matcher(
    query: Mapping[str, str], fields: Mapping[str, Callable[[Json], Any]]
) -> Callable[[Json], bool]:
    labels = label_matcher(query.get("labelSelector") or "")
    by_field = field_matcher(query.get("fieldSelector") or "", fields)
    return lambda obj: labels(_meta(obj).get("labels") or {}) and by_field(obj)


# --- the emulator -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Event:
    rv: int
    resource: str
    type: str  # ADDED, MODIFIED, DELETED
    old: Json | None
    new: Json


@dataclass(frozen=True)
class ProbePodTally:
    """Probe pods one cluster has seen, for the benchmarks and tests that must show the
    workers' cap from the cluster's side: every worker process may talk to one sandbox, so
    this counts what all of them did, not what one of them believes."""

    created: int = 0
    deleted: int = 0
    peak: int = 0  # most probe pods that existed at once (created, not yet deleted)

    @property
    def present(self) -> int:
        return self.created - self.deleted


@dataclass(frozen=True)
class _ProbeRun:
    """What a probe pod will show: decided when it is created."""

    outcome: probes.Outcome
    place: probes.Placement
    log: str
    message: str  # the kubelet's or scheduler's message for a podStatus outcome

    def steps(self) -> list[tuple[float, str]]:
        """(fraction of probeSeconds, state) in order."""
        match self.outcome.pod_status:
            case None:
                return [(0.1, "creating"), (0.5, "running"), (1.0, "completed")]
            case "Unschedulable":
                return [(0.1, "unschedulable")]
            case "DeadlineExceeded":
                return [(0.1, "creating"), (1.0, "deadline")]
            case _:
                return [(0.1, "creating"), (0.5, "waiting")]

    def apply(self, state: str, pod: Json, at: str) -> Json:
        if state == "creating":
            return probes.creating(pod, self.place, at)
        if state == "running":
            return probes.running(pod, self.place, at)
        if state == "completed":
            return probes.completed(pod, self.place, self.outcome.exit_code, self.log, at)
        if state == "deadline":
            return probes.deadline_exceeded(pod, self.place, at)
        if state == "unschedulable":
            return probes.unschedulable(pod, self.message, at)
        return probes.waiting(pod, self.place, self.outcome.pod_status or "", self.message, at)

    def log_error(self, container: str, pod_name: str) -> str | None:
        """podStatus outcomes never ran curl: the log answers 400 (world-format.md)."""
        reason = self.outcome.pod_status
        if reason is None:
            return None
        text = {
            "ImagePullBackOff": "trying and failing to pull image",
            "ErrImagePull": "image can't be pulled",
            "CreateContainerConfigError": "CreateContainerConfigError",
        }.get(reason, "ContainerCreating")
        return f'container "{container}" in pod "{pod_name}" is waiting to start: {text}'


class KubeApi:
    """The emulated API server of one cluster."""

    api = "k8s"

    def __init__(self, world: World, cluster_id: str, clock: WorldClock | None = None) -> None:
        self.world = world
        self.cluster_id = cluster_id
        self.clock = clock or WorldClock(world.now)
        spec = world.kubernetes_for(cluster_id) or {}
        faults = world.data.get("faults") or {}
        self.metrics_server = spec.get("metricsServer", True) is not False
        self.probe_seconds = float(faults.get("probeSeconds", probes.DEFAULT_PROBE_SECONDS))
        self._dns = world.data.get("dns") or {}
        self._cond = threading.Condition()
        self._closed = False
        self._rv = _highest_rv(spec)
        self._version = self._version_info(spec.get("version"))
        self._nodes = sorted(
            (self._stored("Node", n) for n in spec.get("nodes") or []),
            key=lambda n: _meta(n).get("name", ""),
        )
        self._pods: dict[tuple[str, str], Json] = {}
        for pod in spec.get("pods") or []:
            stored = self._stored("Pod", pod)
            self._pods[(_meta(stored).get("namespace", "default"), _meta(stored)["name"])] = stored
        self._namespaces_authored = {
            _meta(ns)["name"]: self._stored("Namespace", ns) for ns in spec.get("namespaces") or []
        }
        self._world_objects = WorldObjects(
            spec, runs_cilium(world.resource(cluster_id)), self._stored
        )
        self._node_metrics = copy.deepcopy(spec.get("nodeMetrics") or [])
        self._pod_metrics = copy.deepcopy(spec.get("podMetrics") or [])
        self._events: list[_Event] = []
        self._event_rvs: list[int] = []
        self._expired_rv = 0  # events at or below this were dropped; older watches get 410
        self._timers: list[tuple[float, int, tuple[str, str], str, str]] = []
        self._seq = itertools.count()
        # by pod uid; an ephemeral container's by "uid/container"
        self._runs: dict[str, _ProbeRun | ephemeral.EphemeralRun] = {}
        self._placed: Counter[str | None] = Counter()
        self._random = random.Random()
        self._probe_tally = ProbePodTally()

    # --- entry points ---------------------------------------------------------------------

    # What the caller may do, as SelfSubjectRulesReview reports it in every namespace (tests
    # set this to play a bot missing rights).
    rules: tuple[Json, ...] = ({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},)

    def __call__(self, request: Request) -> Response:
        with self._cond:
            self._advance()
        where = route(request.path)
        method = request.method.upper()
        if method == "POST" and request.path.rstrip("/") == _RULES_REVIEW:
            return self._rules_review(request.body)
        if where.group is None:
            return self._non_resource(method, where)
        if where.too_deep:
            return not_found_path()
        if where.group == _METRICS:
            return self._metrics(method, where, request.query)
        kind = self._world_objects.kind(where.group, where.version or "", where.resource)
        if kind is not None and where.subresource is None:
            return self._world_object(method, where, request.query, kind)
        if where.group != "" or where.version != "v1":
            return not_found_path()
        return self._core(method, where, request)

    def _rules_review(self, body: Any) -> Response:
        """https://kubernetes.io/docs/reference/kubernetes-api/authorization-resources/self-subject-rules-review-v1/"""
        spec = (body or {}).get("spec") or {} if isinstance(body, dict) else {}
        return ok(
            {
                "kind": "SelfSubjectRulesReview",
                "apiVersion": "authorization.k8s.io/v1",
                "metadata": {"creationTimestamp": None},
                "spec": spec,
                "status": {
                    "resourceRules": [dict(r) for r in self.rules],
                    "nonResourceRules": [],
                    "incomplete": False,
                },
            },
            201,
        )

    def error(self, code: int, request: Request) -> Response:
        """The apiserver's Status for a status code: 401s, bad bodies and injected faults."""
        where = route(request.path)
        what = verb(request.method, where, request.query)
        resource, group = where.resource or "", where.group or ""
        if code == 401:
            return status(401, "Unauthorized", "Unauthorized")
        if code == 403:
            return self._forbidden(where, what)
        if code == 404:
            if where.name and resource:
                return not_found(resource, where.name, group)
            return not_found_path()
        if code == 409:
            name = where.name or _meta(request.body if isinstance(request.body, dict) else {}).get(
                "name", ""
            )
            if request.method.upper() == "POST":
                return already_exists(resource, name)
            return status(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": the '
                "object has been modified; please apply your changes to the latest version and "
                "try again",
                {"name": name, "kind": resource},
            )
        if code == 429:
            return status(
                429,
                "TooManyRequests",
                "Too many requests, please try again later.",
                {"retryAfterSeconds": 1},
                {"Retry-After": "1"},
            )
        if code == 400:
            return bad_request(_UNKNOWN_FORMAT)
        if code == 500:
            return status(
                500,
                "InternalError",
                "Internal error occurred: etcdserver: request timed out",
                {"causes": [{"message": "etcdserver: request timed out"}]},
            )
        if code == 503:
            if group == _METRICS:
                return status(
                    503,
                    "ServiceUnavailable",
                    f"the server is currently unable to handle the request "
                    f"(get {_qualified(resource, group)})",
                    {
                        "group": group,
                        "kind": resource,
                        "causes": [
                            {"reason": "UnexpectedServerResponse", "message": "service unavailable"}
                        ],
                    },
                )
            return status(
                503, "ServiceUnavailable", "the server is currently unable to handle the request"
            )
        if code == 504:
            return status(
                504,
                "Timeout",
                "the server was unable to return a response in the time allotted, but may still "
                "be processing the request",
            )
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = f"HTTP {code}"
        return status(code, phrase.replace(" ", "").replace("-", ""), phrase)

    def _forbidden(self, where: Route, what: str) -> Response:
        """RBAC's denial, naming the user, verb, resource, API group and scope."""
        user = f'User "{SANDBOX_CLIENT}"'
        if where.group is None or not where.resource:
            path = "/" + "/".join(p for p in where.path.split("/") if p)
            return status(403, "Forbidden", f'forbidden: {user} cannot {what} path "{path}"', {})
        group = where.group
        resource = where.resource
        if where.namespace is None and resource == "namespaces" and where.name:
            scope = "at the cluster scope"
        elif where.namespace is not None:
            scope = f'in the namespace "{where.namespace}"'
        else:
            scope = "at the cluster scope"
        subject = _qualified(resource, group) + (f' "{where.name}"' if where.name else "")
        full = f"{resource}/{where.subresource}" if where.subresource else resource
        details: Json = {}
        if where.name:
            details["name"] = where.name
        if group:
            details["group"] = group
        details["kind"] = resource
        return status(
            403,
            "Forbidden",
            f'{subject} is forbidden: {user} cannot {what} resource "{full}" in API group '
            f'"{group}" {scope}',
            details,
        )

    def close(self) -> None:
        """End every watch in flight (the sandbox is stopping)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # --- read access for tests ------------------------------------------------------------

    def pods(self) -> list[Json]:
        with self._cond:
            self._advance()
            return [self._pods[k] for k in sorted(self._pods)]

    def probe_tally(self) -> ProbePodTally:
        with self._cond:
            return self._probe_tally

    # --- non-resource paths and discovery --------------------------------------------------

    def _non_resource(self, method: str, where: Route) -> Response:
        if method != "GET":
            return method_not_allowed()
        path = "/" + "/".join(p for p in where.path.split("/") if p)
        if path == "/version":
            return ok(self._version)
        if path == "/api":
            return ok(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": "10.0.0.1:443"}
                    ],
                }
            )
        if path == "/apis":
            groups = [self._metrics_group()] if self.metrics_server else []
            return ok({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        if path == f"/apis/{_METRICS}" and self.metrics_server:
            return ok({"kind": "APIGroup", "apiVersion": "v1", **self._metrics_group()})
        return not_found_path()

    @staticmethod
    def _metrics_group() -> Json:
        version = {"groupVersion": _METRICS_VERSION, "version": "v1beta1"}
        return {"name": _METRICS, "versions": [version], "preferredVersion": version}

    @staticmethod
    def _resource_list(
        group_version: str, resources: list[tuple[str, str, bool, list[str]]]
    ) -> Json:
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": [
                {
                    "name": name,
                    "singularName": "",
                    "namespaced": namespaced,
                    "kind": kind,
                    "verbs": verbs,
                }
                for name, kind, namespaced, verbs in resources
            ],
        }

    def _version_info(self, authored: Json | None) -> Json:
        """`/version`: as authored, else from the cluster's ARM `kubernetesVersion`; fields the
        client requires are filled in."""
        info = dict(authored or {})
        if not info:
            props = (self.world.resource(self.cluster_id) or {}).get("properties") or {}
            text = str(
                props.get("currentKubernetesVersion") or props.get("kubernetesVersion") or "1.30.0"
            )
            major, minor, *_ = [*text.split("."), "0", "0"]
            info = {"major": major, "minor": minor, "gitVersion": f"v{text}"}
        git = str(info.get("gitVersion", "v0.0.0"))
        built = (self.world.now - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
        defaults = {
            "gitCommit": hashlib.sha256(git.encode()).hexdigest()[:40],
            "gitTreeState": "clean",
            "buildDate": built,
            "goVersion": "go1.23.6",
            "compiler": "gc",
            "platform": "linux/amd64",
        }
        return {
            **{k: info[k] for k in ("major", "minor", "gitVersion") if k in info},
            **defaults,
            **info,
        }

    # --- core v1 --------------------------------------------------------------------------

    def _core(self, method: str, where: Route, request: Request) -> Response:
        query = request.query
        resource, name, sub, namespace = (
            where.resource,
            where.name,
            where.subresource,
            where.namespace,
        )
        if resource is None:
            if method != "GET" or namespace is not None:
                return not_found_path()
            return ok(
                self._resource_list(
                    "v1",
                    [
                        ("namespaces", "Namespace", False, ["get", "list"]),
                        ("nodes", "Node", False, ["get", "list", "watch"]),
                        (
                            "pods",
                            "Pod",
                            True,
                            ["create", "delete", "deletecollection", "get", "list", "watch"],
                        ),
                        ("pods/log", "Pod", True, ["get"]),
                        ("pods/status", "Pod", True, ["get"]),
                    ],
                )
            )
        if resource in ("nodes", "namespaces") and namespace is None and sub is None:
            if method != "GET":
                return method_not_allowed()
            if resource == "namespaces":
                return self._namespace(name) if name else self._namespaces(query)
            return self._get("nodes", None, name) if name else self._list("nodes", None, query)
        if resource != "pods":
            return not_found_path()
        if name is None:
            if method == "GET":
                return self._list("pods", namespace, query)
            if method == "POST" and namespace is not None:
                return self._create_pod(namespace, request.body, query)
            if method == "DELETE" and namespace is not None:
                return self._delete_pods(namespace, query)
            return method_not_allowed()
        if namespace is None:
            return not_found_path()
        if sub is None:
            if method == "GET":
                return self._get("pods", namespace, name)
            if method == "DELETE":
                return self._delete_pod(namespace, name, request.body, query)
            return method_not_allowed()
        if sub == "status":
            return self._get("pods", namespace, name) if method == "GET" else method_not_allowed()
        if sub == "log":
            return self._log(namespace, name, query) if method == "GET" else method_not_allowed()
        if sub == "ephemeralcontainers":
            return self._ephemeral(method, namespace, name, request)
        return not_found_path()  # exec, attach, portforward: upgrades the sandbox does not speak

    def _objects(self, resource: str) -> list[Json]:
        """Caller holds the lock. In etcd key order, as the apiserver lists them."""
        if resource == "nodes":
            return list(self._nodes)
        return [self._pods[k] for k in sorted(self._pods)]

    def _get(self, resource: str, namespace: str | None, name: str) -> Response:
        with self._cond:
            found = next(
                (
                    o
                    for o in self._objects(resource)
                    if _meta(o).get("name") == name
                    and (namespace is None or _meta(o).get("namespace") == namespace)
                ),
                None,
            )
        return ok(found) if found is not None else not_found(resource, name)

    def _list(self, resource: str, namespace: str | None, query: Mapping[str, str]) -> Response:
        fields = _POD_FIELDS if resource == "pods" else _NODE_FIELDS
        try:
            match = matcher(query, fields)
        except SelectorError as exc:
            return bad_request(str(exc))

        def visible(obj: Json | None) -> bool:
            return (
                obj is not None
                and (namespace is None or _meta(obj).get("namespace") == namespace)
                and match(obj)
            )

        if _truthy(query.get("watch")):
            return self._watch(resource, visible, query)
        with self._cond:
            items = [_item(o) for o in self._objects(resource) if visible(o)]
            rv = self._rv
        kind = "PodList" if resource == "pods" else "NodeList"
        return ok(
            {
                "kind": kind,
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(rv)},
                "items": items,
            }
        )

    def _namespaces(self, query: Mapping[str, str]) -> Response:
        with self._cond:
            names = (
                {ns for ns, _ in self._pods}
                | {"default", "kube-system", "kube-public", "kube-node-lease"}
                | set(self._namespaces_authored)
            )
            rv = self._rv
        try:
            match = matcher(query, OBJECT_FIELDS)
        except SelectorError as exc:
            return bad_request(str(exc))
        items = [self._namespace_object(n) for n in sorted(names)]
        return ok(
            {
                "kind": "NamespaceList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(rv)},
                "items": [_item(n) for n in items if match(n)],
            }
        )

    def _namespace(self, name: str) -> Response:
        """Namespaces are implicit: every name exists (pods may be created in any)."""
        return ok(self._namespace_object(name))

    def _namespace_object(self, name: str) -> Json:
        if name in self._namespaces_authored:
            return copy.deepcopy(self._namespaces_authored[name])
        return {
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": {
                "name": name,
                "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.cluster_id}/namespaces/{name}")),
                "resourceVersion": "1",
                "creationTimestamp": (self.world.now - timedelta(days=30)).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                ),
                "labels": {"kubernetes.io/metadata.name": name},
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }

    # --- pods: create, delete -------------------------------------------------------------

    def _create_pod(self, namespace: str, body: Any, query: Mapping[str, str]) -> Response:
        if not isinstance(body, dict):
            return bad_request(_UNKNOWN_FORMAT)
        if body.get("kind") not in (None, "Pod"):
            return bad_request(
                f"the object provided is unrecognized (must be of type Pod): {body.get('kind')}"
            )
        meta = body.get("metadata") or {}
        if meta.get("namespace") not in (None, "", namespace):
            return bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        given = meta.get("name")
        if not given and not meta.get("generateName"):
            return invalid(
                "Pod",
                "",
                "metadata.name",
                "Required value: name or generateName is required",
                "FieldValueRequired",
            )
        if given and (len(given) > 253 or not _NAME.match(given)):
            return invalid(
                "Pod",
                given,
                "metadata.name",
                f'Invalid value: "{given}": a lowercase RFC 1123 subdomain must consist of lower '
                "case alphanumeric characters, '-' or '.', and must start and end with an "
                "alphanumeric character (e.g. 'example.com', regex used for validation is "
                "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
                "FieldValueInvalid",
            )
        if not (body.get("spec") or {}).get("containers"):
            return invalid(
                "Pod",
                given or meta["generateName"],
                "spec.containers",
                "Required value",
                "FieldValueRequired",
            )
        dry_run = bool(query.get("dryRun"))
        with self._cond:
            self._advance()
            name = given or self._generate_name(namespace, meta["generateName"])
            if (namespace, name) in self._pods:
                return already_exists("pods", name)
            created = time.monotonic()
            pod = _defaulted(body, namespace, name, str(uuid.uuid4()), self.clock.stamp(created))
            if dry_run:
                return ok({**pod, "metadata": {**pod["metadata"], "resourceVersion": ""}}, 201)
            self._record("pods", "ADDED", None, pod)
            if probes.is_probe(pod):
                self._start_probe(pod, created)
            stored = self._pods[(namespace, name)]
        return ok(stored, 201)

    def _generate_name(self, namespace: str, prefix: str) -> str:
        while True:
            name = prefix[:58] + "".join(self._random.choices(_NAME_CHARS, k=5))
            if (namespace, name) not in self._pods:
                return name

    def _delete_pod(
        self, namespace: str, name: str, body: Any, query: Mapping[str, str]
    ) -> Response:
        grace = _grace(body, query)
        with self._cond:
            self._advance()
            if (namespace, name) not in self._pods:
                return not_found("pods", name)
            gone = self._remove((namespace, name), grace)
        return ok(gone)

    def _delete_pods(self, namespace: str, query: Mapping[str, str]) -> Response:
        try:
            match = matcher(query, _POD_FIELDS)
        except SelectorError as exc:
            return bad_request(str(exc))
        grace = _grace(None, query)
        with self._cond:
            self._advance()
            keys = [k for k in sorted(self._pods) if k[0] == namespace and match(self._pods[k])]
            gone = [_item(self._remove(k, grace)) for k in keys]
            rv = self._rv
        return ok(
            {
                "kind": "PodList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(rv)},
                "items": gone,
            }
        )

    def _remove(self, key: tuple[str, str], grace: int | None) -> Json:
        """Caller holds the lock. Deletes at once (no kubelet to wait for)."""
        pod = self._pods[key]
        gone = copy.deepcopy(pod)
        meta = gone["metadata"]
        meta["deletionTimestamp"] = self.clock.stamp()
        meta["deletionGracePeriodSeconds"] = (
            grace
            if grace is not None
            else (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        )
        self._record("pods", "DELETED", pod, gone)
        self._runs.pop(meta.get("uid", ""), None)
        return gone

    # --- services, config maps, policies (kube_objects.py) ---------------------------------

    def _world_object(
        self, method: str, where: Route, query: Mapping[str, str], kind: Kind
    ) -> Response:
        if method != "GET":
            return method_not_allowed()
        try:
            match = matcher(query, OBJECT_FIELDS)
        except SelectorError as exc:
            return bad_request(str(exc))
        with self._cond:
            rv = self._rv
        return self._world_objects.answer(
            kind, where.namespace, where.name, match, rv, ok, not_found
        )

    # --- ephemeral containers (ephemeral.py) ----------------------------------------------

    def _ephemeral(self, method: str, namespace: str, name: str, request: Request) -> Response:
        """GET the pod; PATCH or PUT a grown `spec.ephemeralContainers`."""
        if method == "GET":
            return self._get("pods", namespace, name)
        if method not in ("PATCH", "PUT"):
            return method_not_allowed()
        content_type = "application/json" if method == "PUT" else ""
        content_type = request.headers.get("Content-Type") or content_type
        with self._cond:
            self._advance()
            pod = self._pods.get((namespace, name))
            if pod is None:
                return not_found("pods", name)
            try:
                wanted = ephemeral.requested(pod, request.body, content_type)
            except ephemeral.PatchRejected as exc:
                if exc.status != 422:
                    return status(
                        exc.status, HTTPStatus(exc.status).phrase.replace(" ", ""), exc.message
                    )
                return invalid("Pod", name, exc.field, exc.message, "FieldValueForbidden")
            before = len(ephemeral.names(pod))
            new = copy.deepcopy(pod)
            new["spec"]["ephemeralContainers"] = [
                *pod["spec"].get("ephemeralContainers", []),
                *(ephemeral.defaulted(c) for c in wanted[before:]),
            ]
            for container in wanted[before:]:
                new = self._start_ephemeral(new, container)
            if len(wanted) > before:
                self._record("pods", "MODIFIED", pod, new)
            stored = self._pods[(namespace, name)]
        return ok(stored)

    def _start_ephemeral(self, pod: Json, container: Json) -> Json:
        """Caller holds the lock. Decide the outcome, schedule the container's states."""
        meta = pod["metadata"]
        url = ephemeral.target_url(container)
        key = f"{meta['namespace']}/{meta['name']}"
        outcome = (
            ephemeral.choose(self.world, self.cluster_id, url, key)
            if url
            else probes.Outcome(exit_code=2, stderr="curl: no URL specified!\n", write_out={})
        )
        log = outcome.stderr or ""
        if url and outcome.pod_status is None:
            # the product's resolve-judge-curl script, as in a probe pod
            outcome, log = probes.container_run(outcome, url, ephemeral.argv(container), self._dns)
        elif url:
            log = probes.probe_log(outcome, url, ephemeral.argv(container)[1:], self._dns)
        run = ephemeral.EphemeralRun(
            container=str(container["name"]),
            image=str(container.get("image", "")),
            outcome=outcome,
            log=log,
            starts=(pod.get("status") or {}).get("phase") == "Running",
        )
        run_key = f"{meta['uid']}/{run.container}"
        self._runs[run_key] = run
        now = time.monotonic()
        for fraction, state in run.steps():
            due = now + fraction * self.probe_seconds
            heapq.heappush(
                self._timers,
                (due, next(self._seq), (meta["namespace"], meta["name"]), run_key, state),
            )
        return run.apply("waiting", pod, self.clock.stamp(now))

    def _ephemeral_log(self, pod: Json, container: str, query: Mapping[str, str]) -> Response:
        with self._cond:
            run = self._runs.get(f"{_meta(pod).get('uid')}/{container}")
        if not isinstance(run, ephemeral.EphemeralRun):
            return Response(200, dict(_TEXT), "")
        problem = run.log_error(_meta(pod).get("name", ""), pod)
        if problem:
            return bad_request(problem)
        return Response(200, dict(_TEXT), _tail(run.output(pod), query))

    # --- pods: log ------------------------------------------------------------------------

    def _log(self, namespace: str, name: str, query: Mapping[str, str]) -> Response:
        with self._cond:
            pod = self._pods.get((namespace, name))
            run = self._runs.get(_meta(pod).get("uid", "")) if pod is not None else None
        if pod is None:
            return not_found("pods", name)
        containers = [c.get("name", "") for c in (pod.get("spec") or {}).get("containers") or []]
        container = query.get("container")
        if container and container in ephemeral.names(pod):
            return self._ephemeral_log(pod, container, query)
        if not container:
            if len(containers) != 1:
                return bad_request(
                    f"a container name must be specified for pod {name}, choose one of: "
                    f"[{' '.join(containers)}]"
                )
            container = containers[0]
        elif container not in containers:
            return bad_request(f"container {container} is not valid for pod {name}")
        problem = (run.log_error(container, name) if run else None) or _log_problem(pod, container)
        if problem:
            return bad_request(problem)
        phase = (pod.get("status") or {}).get("phase")
        text = run.log if run is not None and phase in ("Succeeded", "Failed") else ""
        return Response(200, dict(_TEXT), _tail(text, query))

    # --- probe pods -----------------------------------------------------------------------

    def _start_probe(self, pod: Json, created: float) -> None:
        """Caller holds the lock. Decide the outcome and schedule the pod's states."""
        url = probes.target_url(pod)
        args = probes.argv(pod)[1:]
        if url is None:
            outcome = probes.Outcome(
                exit_code=2,
                stderr="curl: no URL specified!\ncurl: try 'curl --help' "
                "or 'curl --manual' for more information\n",
                write_out={},
            )
            pool = probes.pinned_pool(pod)
            log = outcome.stderr or ""
        else:
            outcome, pool = probes.choose(self.world, self.cluster_id, url, probes.pinned_pool(pod))
            if outcome.pod_status is None:
                outcome, log = probes.container_run(outcome, url, probes.argv(pod), self._dns)
            else:
                log = probes.probe_log(outcome, url, args, self._dns)
        place = self._place(pool)
        message = ""
        if outcome.pod_status == "Unschedulable":
            message = probes.unschedulable_message(self._nodes, pod)
        elif outcome.pod_status in ("ImagePullBackOff", "ErrImagePull"):
            image = (pod["spec"]["containers"][0]).get("image", "")
            message = probes.image_pull_message(outcome.pod_status, image, self._dns)
        elif outcome.pod_status == "CreateContainerConfigError":
            message = probes.config_error_message(pod)
        run = _ProbeRun(outcome, place, log, message)
        uid = pod["metadata"]["uid"]
        self._runs[uid] = run
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        for fraction, state in run.steps():
            due = created + fraction * self.probe_seconds
            heapq.heappush(self._timers, (due, next(self._seq), key, uid, state))

    def _place(self, pool: str | None) -> probes.Placement:
        """A node of the pool (round robin), its address and a pod address on it; a pool the
        world has no nodes for gets a made-up AKS node."""
        nodes = [n for n in self._nodes if pool is None or _same(probes.node_pool(n), pool)]
        turn = self._placed[pool]
        self._placed[pool] += 1
        if not nodes:
            digits = (
                int(hashlib.sha256(f"{self.cluster_id}/{pool}".encode()).hexdigest(), 16) % 10**8
            )
            return probes.Placement(
                f"aks-{(pool or 'nodepool1').lower()}-{digits:08d}-vmss000000",
                _NODE_IP,
                _pod_ip(None, _NODE_IP, turn),
            )
        node = nodes[turn % len(nodes)]
        addresses = (node.get("status") or {}).get("addresses") or []
        host_ip = next((a["address"] for a in addresses if a.get("type") == "InternalIP"), _NODE_IP)
        return probes.Placement(
            _meta(node)["name"],
            host_ip,
            _pod_ip((node.get("spec") or {}).get("podCIDR"), host_ip, turn),
        )

    def _advance(self) -> None:
        """Caller holds the lock. Apply every probe-pod state that is due."""
        now = time.monotonic()
        changed = False
        while self._timers and self._timers[0][0] <= now:
            due, _, key, run_key, state = heapq.heappop(self._timers)
            pod, run = self._pods.get(key), self._runs.get(run_key)
            if pod is None or run is None or _meta(pod).get("uid") != run_key.split("/")[0]:
                continue
            self._record("pods", "MODIFIED", pod, run.apply(state, pod, self.clock.stamp(due)))
            changed = True
        if changed:
            self._cond.notify_all()

    def _record(self, resource: str, kind: str, old: Json | None, new: Json) -> None:
        """Caller holds the lock. Store a new version (a fresh dict) and log its event."""
        self._rv += 1
        new["metadata"]["resourceVersion"] = str(self._rv)
        key = (new["metadata"]["namespace"], new["metadata"]["name"])
        if kind == "DELETED":
            self._pods.pop(key, None)
        else:
            self._pods[key] = new
        if kind != "MODIFIED" and probes.is_probe(new):
            t = self._probe_tally
            if kind == "ADDED":
                self._probe_tally = replace(
                    t, created=t.created + 1, peak=max(t.peak, t.present + 1)
                )
            else:
                self._probe_tally = replace(t, deleted=t.deleted + 1)
        self._events.append(_Event(self._rv, resource, kind, old, new))
        self._event_rvs.append(self._rv)
        if len(self._events) > _MAX_EVENTS:
            drop = len(self._events) // 2
            self._expired_rv = self._event_rvs[drop - 1]
            del self._events[:drop], self._event_rvs[:drop]
        self._cond.notify_all()

    # --- watch ----------------------------------------------------------------------------

    def _watch(
        self, resource: str, visible: Callable[[Json | None], bool], query: Mapping[str, str]
    ) -> Response:
        try:
            timeout = float(query.get("timeoutSeconds") or 0) or _WATCH_DEFAULT_S
        except ValueError:
            return bad_request(f"invalid timeoutSeconds: {query.get('timeoutSeconds')}")
        since = query.get("resourceVersion") or ""
        with self._cond:
            if since in ("", "0"):
                # No version: the current objects first, as synthetic ADDED events.
                initial = [("ADDED", o) for o in self._objects(resource) if visible(o)]
                cursor = self._rv
            else:
                try:
                    cursor = int(since)
                except ValueError:
                    return bad_request(f'invalid resource version: "{since}"')
                initial = []
                if cursor < self._expired_rv:
                    expired = {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Failure",
                        "message": f"too old resource version: {cursor} ({self._expired_rv + 1})",
                        "reason": "Expired",
                        "code": 410,
                    }
                    initial = [("ERROR", expired)]
                    timeout = 0
        deadline = time.monotonic() + timeout
        return Response(
            200, dict(_JSON), Stream(self._stream(resource, visible, initial, cursor, deadline))
        )

    def _stream(
        self,
        resource: str,
        visible: Callable[[Json | None], bool],
        initial: list[tuple[str, Json]],
        cursor: int,
        deadline: float,
    ) -> Iterator[bytes]:
        for kind, obj in initial:
            yield _event_line(kind, obj)
        while True:
            with self._cond:
                while True:
                    self._advance()
                    start = bisect.bisect_right(self._event_rvs, cursor)
                    batch = [e for e in self._events[start:] if e.resource == resource]
                    cursor = self._rv
                    now = time.monotonic()
                    if batch or self._closed or now >= deadline:
                        break
                    wait = deadline - now
                    if self._timers:
                        wait = min(wait, max(self._timers[0][0] - now, 0.001))
                    self._cond.wait(wait)
                closed = self._closed
            for event in batch:
                line = _translate(event, visible)
                if line is not None:
                    yield line
            if closed or time.monotonic() >= deadline:
                return

    # --- metrics.k8s.io -------------------------------------------------------------------

    def _metrics(self, method: str, where: Route, query: Mapping[str, str]) -> Response:
        if not self.metrics_server or where.version != "v1beta1":
            return not_found_path()
        if method != "GET":
            return method_not_allowed()
        if where.resource is None:
            return ok(
                self._resource_list(
                    _METRICS_VERSION,
                    [
                        ("nodes", "NodeMetrics", False, ["get", "list"]),
                        ("pods", "PodMetrics", True, ["get", "list"]),
                    ],
                )
            )
        if where.subresource is not None:
            return not_found_path()
        try:
            match = matcher(query, _METRICS_FIELDS)
        except SelectorError as exc:
            return bad_request(str(exc))
        if where.resource == "nodes" and where.namespace is None:
            items, kind = self._node_metrics, "NodeMetrics"
        elif where.resource == "pods":
            items = [
                m for m in self._pod_metrics if where.namespace in (None, _meta(m).get("namespace"))
            ]
            kind = "PodMetrics"
        else:
            return not_found_path()
        if where.name is not None:
            found = next((m for m in items if _meta(m).get("name") == where.name), None)
            if found is None:
                shown = f"{where.namespace}/{where.name}" if where.namespace else where.name
                return status(
                    404,
                    "NotFound",
                    f'{kind.lower()}.{_METRICS} "{shown}" not found',
                    {"name": where.name, "group": _METRICS, "kind": where.resource},
                )
            return ok({"kind": kind, "apiVersion": _METRICS_VERSION, **found})
        return ok(
            {
                "kind": f"{kind}List",
                "apiVersion": _METRICS_VERSION,
                "metadata": {},
                "items": [m for m in items if match(m)],
            }
        )

    # --- world objects --------------------------------------------------------------------

    def _stored(self, kind: str, authored: Json) -> Json:
        """A world object as the apiserver returns it: kind, uid, resourceVersion and
        creationTimestamp filled in when the author left them out."""
        obj = copy.deepcopy(authored)
        obj.setdefault("apiVersion", "v1")
        obj.setdefault("kind", kind)
        meta = obj.setdefault("metadata", {})
        if kind == "Pod":
            meta.setdefault("namespace", "default")
        where = f"{self.cluster_id}/{kind}/{meta.get('namespace', '')}/{meta.get('name', '')}"
        meta.setdefault("uid", str(uuid.uuid5(uuid.NAMESPACE_URL, where)))
        if "resourceVersion" not in meta:
            self._rv += 1
            meta["resourceVersion"] = str(self._rv)
        meta.setdefault(
            "creationTimestamp", (self.world.now - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
        )
        return obj


# --- helpers ------------------------------------------------------------------------------


def _highest_rv(spec: Json) -> int:
    """Start above every resourceVersion the world authored, so new versions sort after."""
    highest = 1000
    for section in ("nodes", "pods"):
        for obj in spec.get(section) or []:
            text = str(_meta(obj).get("resourceVersion", ""))
            if text.isdigit():
                highest = max(highest, int(text))
    return highest


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.lower() == b.lower()


def _item(obj: Json) -> Json:
    """List items come without kind and apiVersion, as the apiserver sends them."""
    return {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}


def _event_line(kind: str, obj: Json) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


def _translate(event: _Event, visible: Callable[[Json | None], bool]) -> bytes | None:
    """An event as a filtered watch sees it: objects entering the selection are ADDED,
    objects leaving it DELETED (as the apiserver's watch cache does)."""
    was, now = visible(event.old), visible(event.new)
    if event.type == "DELETED":
        return _event_line("DELETED", event.new) if was or now else None
    if event.type == "ADDED":
        return _event_line("ADDED", event.new) if now else None
    if was and now:
        return _event_line("MODIFIED", event.new)
    if now:
        return _event_line("ADDED", event.new)
    if was:
        return _event_line("DELETED", event.new)
    return None


def _grace(body: Any, query: Mapping[str, str]) -> int | None:
    value = query.get("gracePeriodSeconds")
    if value is None and isinstance(body, dict):
        value = body.get("gracePeriodSeconds")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _tail(text: str, query: Mapping[str, str]) -> str:
    """`tailLines` then `limitBytes`, as the kubelet applies them."""
    tail = query.get("tailLines")
    if tail and tail.isdigit():
        text = "".join(text.splitlines(keepends=True)[-int(tail) :]) if int(tail) else ""
    limit = query.get("limitBytes")
    if limit and limit.isdigit():
        text = text.encode()[: int(limit)].decode(errors="ignore")
    return text


def _log_problem(pod: Json, container: str) -> str | None:
    """Why the kubelet refuses a container's log (its validateContainerLogStatus), or None.
    An unscheduled pod has no kubelet to ask: the apiserver returns an empty log."""
    name = _meta(pod).get("name", "")
    if not (pod.get("spec") or {}).get("nodeName"):
        return None
    statuses = {s.get("name"): s for s in (pod.get("status") or {}).get("containerStatuses") or []}
    found = statuses.get(container)
    if found is None:
        return f'container "{container}" in pod "{name}" is not available'
    state = found.get("state") or {}
    if "running" in state:
        return None
    if "terminated" in state:
        if state["terminated"].get("containerID") or found.get("containerID"):
            return None
        return f'container "{container}" in pod "{name}" is terminated'
    waiting = state.get("waiting")
    if waiting is not None:
        reason = waiting.get("reason", "")
        text = {
            "ErrImagePull": "image can't be pulled",
            "ImagePullBackOff": "trying and failing to pull image",
        }.get(reason, reason)
        return f'container "{container}" in pod "{name}" is waiting to start: {text}'
    return f'container "{container}" in pod "{name}" is waiting to start - no logs yet'


def _pod_ip(pod_cidr: str | None, host_ip: str, turn: int) -> str:
    """An address for the n-th probe pod on a node: from its pod CIDR (overlay, kubenet),
    else next to the node's own address (Azure CNI gives pods node-subnet addresses)."""
    if pod_cidr:
        try:
            network = ipaddress.ip_network(pod_cidr, strict=False)
            if network.num_addresses > 16:
                return str(network[10 + turn % (network.num_addresses - 12)])
        except ValueError:
            pass
    try:
        base = ipaddress.ip_address(host_ip)
        return str(base + 10 + turn % 200)
    except ValueError:
        return "10.244.0.10"


def _latest(image: str) -> bool:
    ref = image.split("@", 1)[0]
    tail = ref.rsplit("/", 1)[-1]
    return ":" not in tail or tail.endswith(":latest")


def _qos(spec: Json) -> str:
    resources = [c.get("resources") or {} for c in spec.get("containers") or []]
    if all(not (r.get("requests") or r.get("limits")) for r in resources):
        return "BestEffort"
    for r in resources:
        limits, requests = r.get("limits") or {}, r.get("requests") or {}
        for what in ("cpu", "memory"):
            if limits.get(what) is None or requests.get(what, limits[what]) != limits[what]:
                return "Burstable"
    return "Guaranteed"


def _defaulted(body: Json, namespace: str, name: str, uid: str, created: str) -> Json:
    """A created pod as the apiserver stores it: identity, defaults, admission's tolerations,
    and `status.phase: Pending`."""
    pod = copy.deepcopy(body)
    pod["apiVersion"], pod["kind"] = "v1", "Pod"
    meta = pod.setdefault("metadata", {})
    meta.update(name=name, namespace=namespace, uid=uid, creationTimestamp=created)
    for key in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
        meta.pop(key, None)
    spec = pod.setdefault("spec", {})
    for key, value in (
        ("restartPolicy", "Always"),
        ("terminationGracePeriodSeconds", 30),
        ("dnsPolicy", "ClusterFirst"),
        ("securityContext", {}),
        ("schedulerName", "default-scheduler"),
        ("serviceAccountName", "default"),
        ("priority", 0),
        ("enableServiceLinks", True),
        ("preemptionPolicy", "PreemptLowerPriority"),
    ):
        spec.setdefault(key, value)
    spec["serviceAccount"] = spec["serviceAccountName"]
    tolerations = spec.setdefault("tolerations", [])
    tolerates_all = any(not t.get("key") and t.get("operator") == "Exists" for t in tolerations)
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not tolerates_all and not any(t.get("key") == key for t in tolerations):
            tolerations.append(
                {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            )
    for container in spec.get("containers") or []:
        container.setdefault("resources", {})
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault(
            "imagePullPolicy", "Always" if _latest(container.get("image", "")) else "IfNotPresent"
        )
    pod["status"] = {"phase": "Pending", "qosClass": _qos(spec)}
    return pod

"""The application pod's own view (`--pod`): the objects its egress policies and DNS depend
on, and a probe run inside its network namespace as an ephemeral container.

An ephemeral container is what `kubectl debug` adds: it shares the pod's network namespace,
so its curl meets the pod's NetworkPolicies, DNS settings and sidecars. It cannot be
removed afterwards (it stays in the pod's spec, terminated), and adding one needs the
`pods/ephemeralcontainers` `patch` permission, so the product only does it where the
cluster's `inPodProbe` setting allows it
(https://kubernetes.io/docs/concepts/workloads/pods/ephemeral-containers/).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from bot.collect.calls import ContextPool
from bot.collect.kube import READ_TIMEOUT, KubeConnection, explain, status_message
from bot.collect.probe import STUCK, ProbeSettings, container_security, probe_command
from bot.evidence import Json, PodView, ProbeRun
from bot.redact import redact_url

CONTAINER_PREFIX = "aks-egress-probe-"
KUBE_SYSTEM = "kube-system"
COREDNS_CUSTOM = "coredns-custom"
_RAW: dict[str, Any] = {"_preload_content": False, "_request_timeout": READ_TIMEOUT}


class PodViewReader:
    """Reads, each optional: a refusal is noted in `refused`, never raised."""

    def __init__(self, connection: KubeConnection):
        self.core = k8s.CoreV1Api(connection.api)
        self.net = k8s.NetworkingV1Api(connection.api)
        self.custom = k8s.CustomObjectsApi(connection.api)

    def coredns_custom(self) -> tuple[Json | None, str | None]:
        """CoreDNS's custom ConfigMap (AKS: forward zones, upstreams); (None, why) if refused."""
        return coredns_result(
            lambda: json.loads(
                self.core.read_namespaced_config_map(COREDNS_CUSTOM, KUBE_SYSTEM, **_RAW).data
            )
        )

    def view(self, namespace: str) -> PodView:
        reads: dict[str, Callable[[], Any]] = {
            "namespaces": lambda: self.core.list_namespace(**_RAW),
            "dns_services": lambda: self.core.list_namespaced_service(KUBE_SYSTEM, **_RAW),
            "network_policies": lambda: self.net.list_namespaced_network_policy(namespace, **_RAW),
            "cilium_policies": lambda: self.custom.list_namespaced_custom_object(
                "cilium.io", "v2", namespace, "ciliumnetworkpolicies", **_RAW
            ),
            "cilium_clusterwide": lambda: self.custom.list_cluster_custom_object(
                "cilium.io", "v2", "ciliumclusterwidenetworkpolicies", **_RAW
            ),
        }
        with ContextPool(len(reads), thread_name_prefix="podview") as pool:
            futures = {key: pool.submit(call) for key, call in reads.items()}
            return pod_view({key: _json(future) for key, future in futures.items()})


def _json(future: Future[Any]) -> Callable[[], Json]:
    return lambda: json.loads(future.result().data)


def coredns_result(call: Callable[[], Json]) -> tuple[Json | None, str | None]:
    """coredns-custom from `call` (direct, or a run command's output, runcommand.py), which
    raises ApiException: (None, None) when absent, (None, why) when refused."""
    try:
        return call(), None
    except ApiException as exc:
        if exc.status == 404:
            return None, None
        return None, explain(exc, f"read configmap {KUBE_SYSTEM}/{COREDNS_CUSTOM}")


def pod_view(reads: dict[str, Callable[[], Json]]) -> PodView:
    """The pod view from its lists (field name -> a call giving the list's JSON or raising
    ApiException): a refusal is noted in `refused`, a missing Cilium CRD leaves None."""
    view = PodView()
    for key, call in reads.items():
        try:
            items = call().get("items") or []
        except ApiException as exc:
            if exc.status == 404 and key.startswith("cilium"):
                continue  # the CRD is not installed: not Azure CNI powered by Cilium
            view.refused[key] = explain(exc, f"list {key.replace('_', ' ')}")
            continue
        setattr(view, key, items)
    return view


def ephemeral_container(url: str, name: str, settings: ProbeSettings, rules: list[str]) -> Json:
    """The probe pod's container, as an ephemeral one: same image, the same resolve-judge-
    curl command under the destination policy, same hardening (ephemeral containers may
    not set resources or ports)."""
    return {
        "name": name,
        "image": settings.image,
        "imagePullPolicy": "IfNotPresent",
        "command": probe_command(url, rules, settings),
        "securityContext": container_security(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


class InPodProbe:
    """curl inside the application pod: add the container, watch it end, read its log."""

    def __init__(self, connection: KubeConnection, settings: ProbeSettings):
        self.core = k8s.CoreV1Api(connection.api)
        self.settings = settings

    def run(self, url: str, pod: Json, pool: str | None, rules: list[str]) -> ProbeRun:
        """curl `url` inside `pod`; `rules`: the destination policy (probe_rules)."""
        meta = pod.get("metadata") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        base: dict[str, Any] = {
            "url": redact_url(url),
            "pool": pool,
            "image": self.settings.image,
            "inside": key,
        }
        try:
            return self._run(url, pod, base, rules)
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            message = f"the API server stopped answering ({type(exc).__name__})"
            return ProbeRun(pod=key, failure="ApiError", message=message, **base)

    def _run(self, url: str, pod: Json, base: dict[str, Any], rules: list[str]) -> ProbeRun:
        meta = pod.get("metadata") or {}
        namespace, pod_name = str(meta.get("namespace")), str(meta.get("name"))
        key = f"{namespace}/{pod_name}"
        name = CONTAINER_PREFIX + secrets.token_hex(3)
        container = ephemeral_container(url, name, self.settings, rules)
        body = {"spec": {"ephemeralContainers": [container]}}
        try:
            # A dict body goes as a strategic merge patch, as kubectl debug sends it.
            self.core.patch_namespaced_pod_ephemeralcontainers(
                pod_name, namespace, body, _request_timeout=READ_TIMEOUT, _preload_content=False
            )
        except ApiException as exc:
            failure = {403: "Forbidden", 422: "Invalid"}.get(exc.status, "ApiError")
            return ProbeRun(pod=key, failure=failure, message=status_message(exc), **base)
        try:
            state = self._wait(namespace, pod_name, name)
            node = (pod.get("spec") or {}).get("nodeName")
            if "terminated" not in state:
                waiting = (state.get("waiting") or {}).get("reason") or "ContainerCreating"
                return ProbeRun(
                    pod=key,
                    failure="Timeout" if waiting not in STUCK else waiting,
                    message=f"the ephemeral container {name} is still waiting ({waiting})",
                    node=node,
                    **base,
                )
            log = self.core.read_namespaced_pod_log(
                pod_name,
                namespace,
                container=name,
                limit_bytes=65536,
                _request_timeout=READ_TIMEOUT,
            )
            return ProbeRun(
                pod=key, exit_code=state["terminated"].get("exitCode"), log=log, node=node, **base
            )
        except ApiException as exc:
            return ProbeRun(pod=key, failure="ApiError", message=status_message(exc), **base)

    def _wait(self, namespace: str, pod_name: str, name: str) -> Json:
        """Follow the pod with one watch until the container ends or cannot start."""
        state: Json = {}
        stream = watch.Watch()
        try:
            for event in stream.stream(
                self.core.list_namespaced_pod,
                namespace,
                field_selector=f"metadata.name={pod_name}",
                timeout_seconds=self.settings.deadline_s,
                _request_timeout=(5, self.settings.deadline_s + 5),
                # The API's JSON as it is: an application pod need not fit the client's models.
                deserialize=False,
            ):
                state = _state(event.get("object") or {}, name)
                reason = (state.get("waiting") or {}).get("reason")
                if "terminated" in state or reason in STUCK:
                    return state
        finally:
            stream.stop()
        return state


def _state(pod: Json, name: str) -> Json:
    for status in (pod.get("status") or {}).get("ephemeralContainerStatuses") or []:
        if status.get("name") == name:
            return status.get("state") or {}
    return {}

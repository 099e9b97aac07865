"""Probe pods: curl from inside the cluster, one hardened pod per node pool, in parallel.

A probe pod costs four API calls: create, one watch until it ends, its log, delete. The
pod is always deleted, and every run first deletes probe pods older than a few minutes, so
a worker killed between create and delete leaves nothing behind for long. The URL is an
argv element of curl, never part of a shell line.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from kubernetes import client as k8s
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from bot.collect.calls import ContextPool
from bot.collect.kube import READ_TIMEOUT, KubeConnection, status_message
from bot.config import ProbeSettings
from bot.destination import REFUSED_EXIT, REFUSED_MARK
from bot.evidence import POOL_LABEL, PROBE_LABEL, PROBE_NAME, ProbeRun
from bot.model import Json
from bot.redact import redact_url

RUN_LABEL = "aks-egress.io/run-id"
PROBE_POOL_LABEL = "aks-egress.io/pool"  # the pool a probe pod was pinned to
# A container waiting for one of these will not start without a change: stop waiting.
STUCK = {"ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError", "InvalidImageName"}
NONROOT_UID = 65532


# The probe container resolves the host itself, as a pod of the cluster does, applies the
# destination policy's first-match rules (bot/destination.probe_rules) to every address,
# and only then runs curl pinned to those addresses with `--resolve`: no second lookup
# that a hostile DNS server could answer differently (rebinding). A constant script: the
# host, port, rules and curl's arguments are its positional parameters, never its text.
# argv: HOST PORT RULE... -- CURL_ARG...
RESOLVE_SCRIPT = r"""set -f
h=$1; p=$2; shift 2; rules=
while [ "$#" -gt 0 ] && [ "$1" != -- ]; do rules="$rules $1"; shift; done
[ "$#" -gt 0 ] && shift
num() { IFS=.; set -- $1; IFS=' '; echo $(( ($1 << 24) + ($2 << 16) + ($3 << 8) + $4 )); }
verdict() {
  a=$(num "$1")
  for r in $rules; do
    c=${r#*:}; l=${c#*/}
    m=$(( l == 0 ? 0 : (4294967295 << (32 - l)) & 4294967295 ))
    if [ $(( a & m )) -eq $(( $(num "${c%/*}") & m )) ]; then echo "$r"; return; fi
  done
  echo allow:public
}
addrs=
for a in $(getent ahostsv4 "$h" | while read -r ip rest; do echo "$ip"; done); do
  case " $addrs " in *" $a "*) ;; *) addrs="$addrs $a" ;; esac
done
if [ -z "$addrs" ]; then
  echo "* aks-egress: $h does not resolve inside the cluster" >&2
  echo "curl: (6) Could not resolve host: $h" >&2
  echo '{"exitcode":6,"errormsg":"Could not resolve host: '"$h"'","http_code":0}'
  exit 6
fi
refused=
for a in $addrs; do
  v=$(verdict "$a")
  echo "* aks-egress: $h resolves to $a: ${v%%:*}" >&2
  case $v in deny:*) refused="$refused $a=${v#deny:}" ;; esac
done
if [ -n "$refused" ]; then
  echo "@MARK@$refused"
  exit @EXIT@
fi
pin=$(echo $addrs | tr ' ' ,)
exec curl --resolve "$h:$p:$pin" "$@"
""".replace("@MARK@", REFUSED_MARK).replace("@EXIT@", str(REFUSED_EXIT))
# Every probe: no URL globbing, only the three protocols, no redirect (a redirect would
# leave the judged destination). `--max-redirs 0` with no `-L` keeps curl on the first hop.
CURL_HARDENING = ("--globoff", "--proto", "=http,https,telnet", "--max-redirs", "0")


def curl_args(url: str, settings: ProbeSettings) -> list[str]:
    """One `-v` (repeated -v switches curl ≥ 8.10 to trace output) and the %{json} write-out."""
    return [
        *CURL_HARDENING,
        "-sS",
        "-v",
        "-o",
        "/dev/null",
        "--connect-timeout",
        str(settings.connect_timeout_s),
        "--max-time",
        str(settings.max_time_s),
        "--write-out",
        "%{json}\n",
        "--url",
        url,
    ]


def container_security() -> Json:
    """The probe container's security context, in a probe pod or inside an application pod."""
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": NONROOT_UID,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def probe_command(url: str, rules: list[str], settings: ProbeSettings) -> list[str]:
    """The container's command: resolve, judge, then curl (see RESOLVE_SCRIPT)."""
    parts = urlsplit(url)
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme, 0)
    host = parts.hostname or ""
    return [
        "/bin/sh",
        "-c",
        RESOLVE_SCRIPT,
        "aks-egress-probe",
        host,
        str(port),
        *rules,
        "--",
        *curl_args(url, settings),
    ]


def probe_pod(
    url: str, pool: str | None, run_id: str, settings: ProbeSettings, rules: list[str]
) -> Json:
    """The probe pod: non-root, read-only, no capabilities, no token, small and short-lived."""
    spec: Json = {
        "restartPolicy": "Never",
        "activeDeadlineSeconds": settings.deadline_s,
        "terminationGracePeriodSeconds": 0,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [
            {"key": "CriticalAddonsOnly", "operator": "Exists", "effect": "NoSchedule"},
            {
                "key": "kubernetes.azure.com/scalesetpriority",
                "operator": "Equal",
                "value": "spot",
                "effect": "NoSchedule",
            },
        ],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": NONROOT_UID,
            "runAsGroup": NONROOT_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "probe",
                "image": settings.image,
                "imagePullPolicy": "IfNotPresent",
                "command": probe_command(url, rules, settings),
                "resources": {
                    "requests": {"cpu": "10m", "memory": "16Mi"},
                    "limits": {"cpu": "100m", "memory": "64Mi"},
                },
                "securityContext": container_security(),
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }
        ],
    }
    if pool:
        spec["nodeSelector"][POOL_LABEL] = pool
    labels = {
        PROBE_LABEL: PROBE_NAME,
        "app.kubernetes.io/managed-by": "aks-egress",
        RUN_LABEL: run_id,
    }
    if pool:
        labels[PROBE_POOL_LABEL] = pool
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "aks-egress-probe-",
            "namespace": settings.namespace,
            "labels": labels,
            "annotations": {"aks-egress.io/url": redact_url(url)},
        },
        "spec": spec,
    }


def stuck_reason(pod: Json) -> tuple[str, str] | None:
    """Why a pod will never run curl (reason, message), or None while it still may."""
    status = pod.get("status") or {}
    if status.get("reason") == "DeadlineExceeded":
        return "DeadlineExceeded", status.get("message") or ""
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "Unschedulable":
            return "Unschedulable", condition.get("message") or ""
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in STUCK:
            return waiting["reason"], waiting.get("message") or ""
    return None


def finished(pod: Json) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def exit_code(pod: Json) -> int | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (cs.get("state") or {}).get("terminated")
        if terminated is not None:
            return terminated.get("exitCode")
    return None


def probe_result(
    pod: Json, name: str, base: dict[str, Any], settings: ProbeSettings, log: Callable[[], str]
) -> ProbeRun:
    """What a probe pod came to once it finished, got stuck or ran out of time; `log`
    reads its log (only for a pod that finished; raises ApiException when refused). `base`
    holds url, pool and image."""
    node = (pod.get("spec") or {}).get("nodeName")
    stuck = stuck_reason(pod)
    if stuck:
        return ProbeRun(pod=name, failure=stuck[0], message=stuck[1], **base, node=node)
    if not finished(pod):
        return ProbeRun(
            pod=name,
            failure="Timeout",
            message=f"the pod did not finish within {settings.deadline_s} s",
            **base,
        )
    try:
        text = log()
    except ApiException as exc:  # curl ran, but what it printed cannot be read
        return ProbeRun(pod=name, failure="ApiError", message=status_message(exc), **base)
    return ProbeRun(pod=name, exit_code=exit_code(pod), log=text, node=node, **base)


def refused_run(url: str, reason: str, settings: ProbeSettings) -> ProbeRun:
    """The destination policy refused `url` before any pod: a refusal, not a failure."""
    return ProbeRun(
        url=redact_url(url),
        pool=None,
        pod=f"{settings.namespace}/-",
        image=settings.image,
        failure="Refused",
        message=reason,
    )


class ProbeRunner:
    def __init__(
        self,
        connection: KubeConnection,
        settings: ProbeSettings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        gate: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
    ):
        self.core = k8s.CoreV1Api(connection.api)
        self.settings = settings
        self.clock = clock
        self.gate = gate

    def remove_leftovers(self) -> int:
        """Delete probe pods a killed run left behind (older than `leftover_after_s`).

        Age is judged by the API server's clock (its `Date` header), the clock that stamped
        the pods: it runs beside this run's own probes, and a worker whose clock is off
        must not take a pod created a moment ago for a leftover.
        """
        ns = self.settings.namespace
        try:
            response = self.core.list_namespaced_pod(
                ns,
                label_selector=f"{PROBE_LABEL}={PROBE_NAME}",
                _preload_content=False,
                _request_timeout=READ_TIMEOUT,
            )
            pods = json.loads(response.data).get("items") or []
        except ApiException:
            return 0
        cutoff = self._server_now(response) - timedelta(seconds=self.settings.leftover_after_s)
        removed = 0
        for pod in pods:
            created = (pod.get("metadata") or {}).get("creationTimestamp")
            if created and datetime.fromisoformat(created.replace("Z", "+00:00")) <= cutoff:
                self._delete(pod["metadata"]["name"])
                removed += 1
        return removed

    def _server_now(self, response: Any) -> datetime:
        """The API server's time from its `Date` header; this process's clock without one."""
        date = (getattr(response, "headers", None) or {}).get("Date")
        if date:
            with contextlib.suppress(TypeError, ValueError):
                return parsedate_to_datetime(date)
        return self.clock()

    def run(self, url: str, pools: list[str | None], rules: list[str]) -> list[ProbeRun]:
        """Probe `url` from each pool; `rules`: the destination policy (probe_rules)."""
        run_id = secrets.token_hex(4)
        with ContextPool(max(1, len(pools)), thread_name_prefix="probe") as pool:
            return list(pool.map(lambda p: self.probe(url, p, run_id, rules), pools))

    def refused(self, url: str, reason: str) -> ProbeRun:
        return refused_run(url, reason, self.settings)

    def probe(self, url: str, pool: str | None, run_id: str, rules: list[str]) -> ProbeRun:
        with self.gate():  # the cluster's cap on probe pods, when a worker runs it
            return self._probe(url, pool, run_id, rules)

    def _probe(self, url: str, pool: str | None, run_id: str, rules: list[str]) -> ProbeRun:
        body = probe_pod(url, pool, run_id, self.settings, rules)
        base = {"url": redact_url(url), "pool": pool, "image": self.settings.image}
        ns = self.settings.namespace
        try:
            created = json.loads(
                self.core.create_namespaced_pod(
                    ns, body, _preload_content=False, _request_timeout=READ_TIMEOUT
                ).data
            )
        except ApiException as exc:
            reason = "Forbidden" if exc.status == 403 else "ApiError"
            return ProbeRun(pod=f"{ns}/-", failure=reason, message=status_message(exc), **base)
        name = created["metadata"]["name"]
        try:
            pod, _ = self._wait(name, created)
            return probe_result(
                pod,
                f"{ns}/{name}",
                base,
                self.settings,
                lambda: self.core.read_namespaced_pod_log(
                    name, ns, container="probe", limit_bytes=65536, _request_timeout=READ_TIMEOUT
                ),
            )
        except ApiException as exc:
            return ProbeRun(
                pod=f"{ns}/{name}", failure="ApiError", message=status_message(exc), **base
            )
        finally:
            self._delete(name)

    def _wait(self, name: str, pod: Json) -> tuple[Json, tuple[str, str] | None]:
        """Follow the pod with one watch until curl has finished or cannot start."""
        if finished(pod) or (stuck := stuck_reason(pod)):
            return pod, stuck_reason(pod)
        stream = watch.Watch()
        try:
            for event in stream.stream(
                self.core.list_namespaced_pod,
                self.settings.namespace,
                field_selector=f"metadata.name={name}",
                timeout_seconds=self.settings.deadline_s + 15,
                _request_timeout=(5, self.settings.deadline_s + 20),
            ):
                pod = self.core.api_client.sanitize_for_serialization(event["object"])
                stuck = stuck_reason(pod)
                if finished(pod) or stuck:
                    return pod, stuck
        finally:
            stream.stop()
        return pod, None

    def _delete(self, name: str) -> None:
        # Already gone, or the next run's leftover sweep will take it.
        with contextlib.suppress(ApiException):
            self.core.delete_namespaced_pod(
                name,
                self.settings.namespace,
                grace_period_seconds=0,
                _preload_content=False,
                _request_timeout=READ_TIMEOUT,
            )


def probe_pools(nodes: list[Json], only_node: str | None = None) -> list[str]:
    """Linux node pools with a node to run on (only the named node's pool when given)."""
    pools: dict[str, None] = {}
    for node in nodes:
        meta = node.get("metadata") or {}
        labels = meta.get("labels") or {}
        if labels.get("kubernetes.io/os", "linux") != "linux" or POOL_LABEL not in labels:
            continue
        if only_node is None or meta.get("name") == only_node:
            pools.setdefault(labels[POOL_LABEL])
    return list(pools)

"""The cluster side through Azure's run command, for API servers the bot cannot connect to.

A private cluster's API server has only a private endpoint
(https://learn.microsoft.com/azure/aks/private-clusters), and authorized IP ranges can
leave the bot out of a public one
(https://learn.microsoft.com/azure/aks/api-server-authorized-ip-ranges). ARM's run command
(`az aks command invoke`, https://learn.microsoft.com/azure/aks/access-private-cluster;
REST: https://learn.microsoft.com/rest/api/aks/managed-clusters/run-command) still gets in:
AKS starts a pod in the cluster that runs a shell command with kubectl, with the files of a
base64 zip `context` in its working folder, and with the caller's rights (an Entra ID
cluster takes the caller's token for the AKS server application as `clusterToken`).

Each command costs tens of seconds, so a check uses at most two, side by side: one reads
everything (scripts/read.sh: nodes, pods, metrics.k8s.io, the --pod) as the raw API JSON
the direct reads get; one runs all probe pods (scripts/probe.sh, with the specs
bot/collect/probe.py builds) and deletes them whatever happens. Every value reaches the
shell as a file of the context, never on the command line. A new kind of cluster read
(bot/steps.py `Need`) is added here too: a part of scripts/read.sh and of `read_all`.
"""

from __future__ import annotations

import base64
import io
import ipaddress
import json
import re
import secrets
import threading
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import HttpResponseError
from azure.mgmt.containerservice.models import RunCommandRequest, RunCommandResult
from kubernetes.client.exceptions import ApiException

from bot.armid import ArmId
from bot.collect.calls import ContextPolling, ContextPool
from bot.collect.clients import AzureClients
from bot.collect.kube import (
    AKS_SERVER_SCOPE,
    KubeUnavailable,
    explain,
    read_metrics,
    read_pod,
    status_message,
)
from bot.collect.podview import coredns_result, pod_view
from bot.collect.probe import (
    PROBE_POOL_LABEL,
    STUCK,
    ProbeSettings,
    probe_pod,
    probe_result,
)
from bot.evidence import Json, KubeEvidence, PodView, ProbeRun
from bot.redact import redact_url

if TYPE_CHECKING:
    from bot.runtime import Runtime

# The actions run command needs beyond the read role's (the 403 finding names them).
RUN_COMMAND_READS = {
    "run command result": "Microsoft.ContainerService/managedClusters/commandResults/read",
}
RUN_COMMAND_ACTION = "Microsoft.ContainerService/managedClusters/runCommand/action"
_POLL_S = 1.0  # how often the result is asked for while the command runs
# kubectl's "Error from server (Reason): message" -> the API status it stands for.
_REASONS = {
    "BadRequest": 400,
    "Unauthorized": 401,
    "Forbidden": 403,
    "NotFound": 404,
    "MethodNotAllowed": 405,
    "Conflict": 409,
    "Invalid": 422,
    "TooManyRequests": 429,
    "InternalError": 500,
    "ServiceUnavailable": 503,
    "Timeout": 504,
}
_FROM_SERVER = re.compile(r"Error from server \((\w+)\): (.*)")
# Kubernetes object names (DNS-1123): what may reach a script, even as a quoted variable.
# The reads of scripts/read.sh (the --pod is `target`).
ALL_PARTS = frozenset(
    {"nodes", "pods", "node-metrics", "pod-metrics", "target", "coredns", "pod-view"}
)
_POD_VIEW = (
    "namespaces",
    "dns_services",
    "network_policies",
    "cilium_policies",
    "cilium_clusterwide",
)
_NAME = re.compile(r"^[a-z0-9]([-.a-z0-9]{0,251}[a-z0-9])?$")


class CommandFailed(KubeUnavailable):
    """A run command could not do its job; the message says why, `fix` what to run."""

    def __init__(self, message: str, fix: list[str] | None = None, reason: str = "failed"):
        super().__init__(message)
        self.fix = fix or []
        self.reason = reason


@dataclass(frozen=True)
class Part:
    """One kubectl call of a command: its exit status, output and error output."""

    status: int | None
    out: str = ""
    err: str = ""

    def text(self) -> str:
        """The output; an ApiException like the client's when kubectl failed."""
        if self.status != 0:
            raise self.api_error()
        return self.out

    def json(self) -> Json:
        """The output as JSON; an ApiException like the client's when kubectl failed."""
        if self.status != 0:
            raise self.api_error()
        try:
            body = json.loads(self.out)
        except ValueError:
            raise ApiException(status=0, reason="unreadable output from kubectl") from None
        return body if isinstance(body, dict) else {}

    def api_error(self) -> ApiException:
        match = _FROM_SERVER.search(self.err)
        if match is None:
            reason = self.err.strip().splitlines()[-1] if self.err.strip() else "kubectl failed"
            return ApiException(status=0, reason=reason)
        exc = ApiException(status=_REASONS.get(match.group(1), 0), reason=match.group(1))
        exc.body = json.dumps({"message": match.group(2).strip()})
        return exc


@dataclass
class Sections:
    """A command's output, cut at its marker lines (scripts/lib.sh)."""

    parts: dict[str, Part] = field(default_factory=dict)
    headers: list[tuple[list[str], str]] = field(default_factory=list)  # (words, text after)
    complete: bool = False  # the script got to its end

    @classmethod
    def parse(cls, logs: str, marker: str) -> Sections:
        found = cls()
        chunks = ("\n" + logs).split(f"\n{marker} ")
        outs: dict[str, tuple[int | None, str]] = {}
        for chunk in chunks[1:]:
            header, _, text = chunk.partition("\n")
            words = header.split(" ")
            found.headers.append((words, text))
            if words[0] == "out" and len(words) == 3:
                outs[words[1]] = (int(words[2]) if words[2].isdigit() else None, text)
            elif words[0] == "err" and len(words) == 2 and words[1] in outs:
                status, out = outs[words[1]]
                found.parts[words[1]] = Part(status, out, text)
            elif words[0] == "end":
                found.complete = True
        return found

    def part(self, name: str) -> Part:
        return self.parts.get(name) or Part(None, err="not run (the command stopped early)")

    def marks(self, kind: str) -> list[tuple[list[str], str]]:
        """(words, text after) of every header of one kind (`create-failed FILE`)."""
        return [(words, text) for words, text in self.headers if words[0] == kind]


@dataclass(frozen=True)
class Reads:
    nodes: list[Json]
    pods: list[Json] | None
    node_metrics: list[Json] | None
    pod_metrics: list[Json] | None
    metrics_refusal: str | None
    target: Json | None
    partial: list[str]
    coredns: Json | None = None
    view: PodView | None = None


class RunCommand:
    """Run commands on one cluster; counts them (the report's `stats.runCommands`)."""

    def __init__(
        self,
        clients: AzureClients,
        credential: TokenCredential,
        cluster_id: str,
        timeout_s: float,
        not_connected: str = "",
    ):
        self.clients = clients
        self.credential = credential
        self.id = ArmId.parse(cluster_id)
        self.timeout_s = timeout_s
        self.count = 0
        self._lock = threading.Lock()  # the reads and the probes run side by side
        self.cluster = self._read_cluster()
        self.why = _why(self.cluster, not_connected)

    @classmethod
    def of(cls, runtime: Runtime, cluster_id: str, not_connected: str) -> RunCommand:
        """Run commands with the runtime's Azure clients and the configured timeout."""
        return cls(
            runtime.clients,
            runtime.credential,
            cluster_id,
            runtime.probe.run_command_timeout_s,
            not_connected,
        )

    @property
    def how(self) -> str:
        """How the cluster was reached, as KUBE_ACCESS says it."""
        return f"Azure run command: {self.why}"

    def _read_cluster(self) -> Json:
        """The cluster's body (private? Entra ID? run command disabled? its pools); empty
        when it cannot be read: the command is tried all the same."""
        try:
            cluster = self.clients.containers(self.id.subscription).managed_clusters.get(
                self.id.resource_group, self.id.name
            )
        except HttpResponseError:
            return {}
        return cluster.as_dict() if hasattr(cluster, "as_dict") else dict(cluster)

    def check_enabled(self) -> None:
        """A cluster with run command disabled says so in its body: no command is tried."""
        profile = (self.cluster.get("properties") or {}).get("apiServerAccessProfile") or {}
        if profile.get("disableRunCommand") is True:
            raise CommandFailed(
                "Azure run command is disabled on this cluster "
                "(apiServerAccessProfile.disableRunCommand), so the bot cannot reach its "
                "API server at all. Enable run command, or run the bot where it can reach "
                "the API server (inside the VNet, or from an authorized IP range).",
                [*self._enable_fix(), *self._admit_fix(profile)],
                "runCommandDisabled",
            )

    def _admit_fix(self, profile: Json) -> list[str]:
        """For a public API server with authorized IP ranges: the bot's egress address
        added to them. The flag replaces the whole list, so the current ranges go with it
        (https://learn.microsoft.com/azure/aks/api-server-authorized-ip-ranges); values
        from the cluster are used only when each is an IP network."""
        if profile.get("enablePrivateCluster"):
            return []
        try:
            kept = [str(ipaddress.ip_network(r, strict=False)) for r in _authorized_ranges(profile)]
        except (TypeError, ValueError):
            return []
        if not kept:
            return []
        return [
            f"az aks update -g {self.id.resource_group} -n {self.id.name} "
            f"--api-server-authorized-ip-ranges {','.join(kept)},<bot-egress-cidr>"
        ]

    def _enable_fix(self) -> list[str]:
        return [f"az aks update -g {self.id.resource_group} -n {self.id.name} --enable-run-command"]

    def run(self, script: str, files: dict[str, str]) -> Sections:
        """Run one of scripts/ with `files` in its context; its output, cut at markers."""
        marker = f"==aks-egress-{secrets.token_hex(8)}=="
        context = {
            **files,
            "marker": marker,
            "lib.sh": _script("lib.sh"),
            script: _script(script),
        }
        request = RunCommandRequest(
            command=f"sh ./{script}", context=_zip(context), cluster_token=self._token()
        )
        with self._lock:
            self.count += 1
        aks = self.clients.containers(self.id.subscription)
        try:
            poller = aks.managed_clusters.begin_run_command(
                self.id.resource_group, self.id.name, request, polling=ContextPolling(_POLL_S)
            )
        except HttpResponseError as exc:
            raise self._refused(exc) from None
        try:
            poller.wait(timeout=self.timeout_s)
            result = poller.result() if poller.done() else None
        except HttpResponseError as exc:
            # What the service answers when the command's pod never runs: "did not start
            # within 30s" (KubernetesPerformanceError) or a 404 for the command
            # (https://learn.microsoft.com/troubleshoot/azure/azure-kubernetes/connectivity/resolve-az-aks-command-invoke-failures).
            if exc.status_code == 403:
                raise self._refused(exc) from None
            error = getattr(exc, "error", None)
            raise pod_failed(getattr(error, "message", None) or str(exc), self.id) from None
        if result is None:
            raise CommandFailed(
                f"Azure run command did not finish within {self.timeout_s:.0f} s (the command "
                "pod may be waiting for a node, or the cluster is slow). Its probe pods delete "
                "themselves when it ends; run the check again, or raise "
                "AKS_EGRESS_RUN_COMMAND_TIMEOUT_S.",
                reason="timeout",
            )
        return command_output(result, marker, self.id)

    def _token(self) -> str | None:
        """An Entra ID cluster needs the caller's token for the AKS server application."""
        if (self.cluster.get("properties") or {}).get("aadProfile"):
            return self.credential.get_token(AKS_SERVER_SCOPE).token
        return None

    def _refused(self, exc: HttpResponseError) -> CommandFailed:
        error = getattr(exc, "error", None)
        code = getattr(error, "code", None) or exc.reason
        message = getattr(error, "message", None) or str(exc)
        scope = self.id.raw
        if exc.status_code == 403:
            return CommandFailed(
                f"Azure refused the run command (403 {code}): the bot's identity needs "
                f"{RUN_COMMAND_ACTION} and {RUN_COMMAND_READS['run command result']} on the "
                "cluster (the aks-egress reader role holds both; only private clusters and "
                "clusters whose authorized IP ranges leave the bot out need them).",
                [
                    "az role assignment create --assignee <bot-identity-client-id> "
                    f"--role 'aks-egress reader' --scope {scope}"
                ],
                "runCommandForbidden",
            )
        if exc.status_code == 400 and "disable" in message.lower():
            return CommandFailed(
                f"Azure run command is disabled on this cluster ({code}: {message}).",
                self._enable_fix(),
                "runCommandDisabled",
            )
        return CommandFailed(
            f"Azure run command failed ({exc.status_code} {code}: {message}); run the check again.",
            reason="runCommandError",
        )


def pod_failed(why: str, cluster: ArmId | None = None) -> CommandFailed:
    """The command's own pod never ran: what to look at."""
    fix = ["kubectl get events -n aks-command --sort-by=.lastTimestamp   # from inside the VNet"]
    if cluster is not None:
        fix.insert(
            0,
            f"az aks nodepool list -g {cluster.resource_group} --cluster-name {cluster.name} "
            "-o table   # a node with room, no taint the pod does not tolerate",
        )
    return CommandFailed(
        f"Azure run command failed ({_first_line(why)}): its pod in the aks-command namespace "
        "could not run (no node with room for it, a taint it does not tolerate, an image "
        "pull failure, or a policy that refuses it).",
        fix,
        "commandPodFailed",
    )


def command_output(result: RunCommandResult, marker: str, cluster: ArmId | None = None) -> Sections:
    """A finished command's output, cut at its markers; CommandFailed when its pod did not
    run or its script stopped before the end."""
    if result.provisioning_state != "Succeeded":
        raise pod_failed(result.reason or str(result.provisioning_state), cluster)
    logs = result.logs or ""
    sections = Sections.parse(logs, marker)
    if not sections.complete:
        tail = logs.strip().splitlines()[-3:]
        raise CommandFailed(
            "The run command stopped before the end of its script "
            f"(exit code {result.exit_code}): {' / '.join(tail) or 'no output'}.",
            reason="commandFailed",
        )
    return sections


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0]


def read_nodes(command: RunCommand) -> list[Json]:
    """The node list alone (the daily SNAT summary names nodes with it)."""
    return read_all(command, None, frozenset({"nodes"})).nodes


def _nodes(out: Sections) -> list[Json]:
    try:
        return out.part("nodes").json().get("items") or []
    except ApiException as exc:
        raise KubeUnavailable(explain(exc, "list nodes")) from None


def read_all(command: RunCommand, pod: str | None, parts: frozenset[str] = ALL_PARTS) -> Reads:
    """The reads `parts` names (nodes always; the --pod as `target`) in one command, judged
    as the direct reads are: only the node list is essential."""
    files = {
        "parts": "".join(f"{part}\n" for part in sorted(parts | {"nodes"})),
        "target": _target(pod) if parts & {"target", "pod-view"} else "",
    }
    out = command.run("read.sh", files)
    partial: list[str] = []
    nodes = _nodes(out)
    pods: list[Json] | None = None
    if "pods" in parts:
        try:
            pods = out.part("pods").json().get("items") or []
        except ApiException as exc:
            partial.append(explain(exc, "list pods"))
    node_metrics = pod_metrics = refusal = None
    if "node-metrics" in parts:
        node_metrics, refusal = _metrics(out.part("node-metrics"), "nodes", partial)
        pod_metrics, _ = _metrics(out.part("pod-metrics"), "pods", partial)
    target = None
    if pod and "target" in parts:
        namespace, _, name = pod.partition("/")
        try:
            target = read_pod(out.part("target").json, namespace, name)
        except KubeUnavailable as exc:
            partial.append(str(exc))
    coredns = None
    if "coredns" in parts:
        coredns, refused = coredns_result(out.part("coredns").json)
        partial += [refused] if refused else []
    view = None
    if pod and "pod-view" in parts:
        view = pod_view({key: out.part(key).json for key in _POD_VIEW})
        partial += list(view.refused.values())
    return Reads(nodes, pods, node_metrics, pod_metrics, refusal, target, partial, coredns, view)


def _target(pod: str | None) -> str:
    """The --pod as the scripts read it: its namespace, then its name, a line each."""
    if not pod:
        return ""
    namespace, _, name = pod.partition("/")
    return f"{_checked(namespace)}\n{_checked(name)}\n"


def _checked(name: str) -> str:
    """Names reach the scripts as files and quoted variables only; still, only names."""
    if not _NAME.match(name):
        raise CommandFailed(f"{name!r} is no Kubernetes name", reason="badName")
    return name


def _metrics(part: Part, plural: str, partial: list[str]) -> tuple[list[Json] | None, str | None]:
    try:
        return read_metrics(part.json, plural)
    except KubeUnavailable as exc:
        partial.append(str(exc))
        return None, None


def run_probes(
    command: RunCommand,
    url: str,
    pools: list[str],
    pod: str | None,
    settings: ProbeSettings,
    rules: list[str],
) -> list[ProbeRun]:
    """All probe pods of a check in one command: one spec per node pool (the script keeps
    those with a Linux node, or the --pod's node's pool), each as probe.py builds it: the
    same hardened resolve-judge-curl command under the destination policy's `rules`."""
    run_id = secrets.token_hex(4)
    specs = {f"pool-{i}.json": pool for i, pool in enumerate(pools)}
    files = {
        name: json.dumps(probe_pod(url, pool, run_id, settings, rules))
        for name, pool in specs.items()
    }
    files |= {
        "unpinned.json": json.dumps(probe_pod(url, None, run_id, settings, rules)),
        "specs.tsv": "".join(f"{pool}\t{name}\n" for name, pool in specs.items()),
        "target": _target(pod),
        "namespace": _checked(settings.namespace),
        "run-id": run_id,
        "deadline": str(settings.deadline_s),
        "leftover-after": str(settings.leftover_after_s),
        "stuck": "".join(f"{reason}\n" for reason in sorted(STUCK)),
    }
    out = command.run("probe.sh", files)
    ns = settings.namespace
    runs = []
    for words, text in out.marks("create-failed"):
        refused = Part(1, err=text).api_error()
        runs.append(
            ProbeRun(
                url=redact_url(url),
                pool=specs.get(words[1]) if len(words) > 1 else None,
                pod=f"{ns}/-",
                image=settings.image,
                failure="Forbidden" if refused.status == 403 else "ApiError",
                message=status_message(refused),
            )
        )
    try:
        pods = out.part("pods").json().get("items") or []
    except ApiException as exc:
        raise KubeUnavailable(explain(exc, "list the probe pods")) from None
    for created in pods:
        name = created["metadata"]["name"]
        pool = ((created.get("metadata") or {}).get("labels") or {}).get(PROBE_POOL_LABEL)
        base = {"url": redact_url(url), "pool": pool, "image": settings.image}
        log = out.part(f"log:{name}")
        runs.append(probe_result(created, f"{ns}/{name}", base, settings, log.text))
    return runs


def read_cluster(
    command: RunCommand,
    pod: str | None,
    url: str | None,
    parts: frozenset[str],
    settings: ProbeSettings,
    rules: list[str],
) -> KubeEvidence:
    """The cluster side of a check in at most two commands, side by side: the reads the
    steps need (`parts`), and (with a URL) the probes. Only the node list is essential; a
    failed probe command narrows the check (`partial`)."""
    command.check_enabled()
    with ContextPool(2, thread_name_prefix="run-command") as pool:
        probes_f = None
        if url is not None:
            pools = linux_pools(command.cluster)
            probes_f = pool.submit(run_probes, command, url, pools, pod, settings, rules)
        reads = read_all(command, pod, parts)
        probes: list[ProbeRun] = []
        partial = list(reads.partial)
        if probes_f is not None:
            try:
                probes = probes_f.result()
            except KubeUnavailable as exc:
                partial.append(f"the probe through Azure run command failed: {exc}")
    return KubeEvidence(
        how=command.how,
        nodes=reads.nodes,
        pods=reads.pods or [],
        node_metrics=reads.node_metrics,
        pod_metrics=reads.pod_metrics,
        metrics_refusal=reads.metrics_refusal,
        target_pod=pod,
        target_pod_body=reads.target,
        probes=probes,
        partial=partial,
        pod_view=reads.view,
        coredns_custom=reads.coredns,
        run_commands=command.count,
    )


def _authorized_ranges(profile: Json) -> list[Any]:
    """The API server's authorized ranges (the REST body spells the key either way)."""
    return list(profile.get("authorizedIPRanges") or profile.get("authorizedIpRanges") or [])


def _why(cluster: Json, not_connected: str) -> str:
    """Why the bot goes through run command, from the cluster's API server access profile."""
    profile = (cluster.get("properties") or {}).get("apiServerAccessProfile") or {}
    if profile.get("enablePrivateCluster"):
        return "the API server is private"
    if _authorized_ranges(profile):
        return "the API server's authorized IP ranges leave the bot out"
    return f"the bot cannot connect to the API server ({not_connected or 'no answer'})"


def probe_through_run_command(
    runtime: Runtime,
    cluster_id: str,
    url: str,
    only: list[str | None] | None,
    why: str,
    rules: list[str],
) -> tuple[list[ProbeRun], list[str | None]]:
    """The probe alone through one run command (the appliance bypass's before and after):
    from `only`'s pools, else every Linux pool with a node; and the pools it ran in."""
    command = RunCommand.of(runtime, cluster_id, why)
    command.check_enabled()
    pools = linux_pools(command.cluster) if only is None else [p for p in only if p]
    runs = run_probes(command, url, pools, None, runtime.probe, rules)
    return runs, only if only is not None else list(dict.fromkeys(r.pool for r in runs))


def linux_pools(cluster: Json | None) -> list[str]:
    """The cluster's Linux agent pools (the probe command keeps those with a node)."""
    profiles = ((cluster or {}).get("properties") or {}).get("agentPoolProfiles") or []
    return [
        p["name"]
        for p in profiles
        if p.get("name") and (p.get("osType") or "Linux").lower() == "linux"
    ]


def _script(name: str) -> str:
    return resources.files("bot.collect").joinpath("scripts", name).read_text()


def _zip(files: dict[str, str]) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return base64.b64encode(buffer.getvalue()).decode()

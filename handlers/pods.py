"""Checklist step 3b: the user's own pod (`--pod`), before blaming the network for it.

A pod that is not Running and Ready cannot reach anything, whatever the path allows. This
names the reason the way a person reads `kubectl describe`: CrashLoopBackOff with the last
exit, the image that cannot be pulled, OOMKilled, the scheduler's message for a Pending pod,
a container that cannot be created, or the containers that are running but not ready.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.codes import finding
from bot.evidence import KubeEvidence
from bot.model import Finding, Json
from handlers import k8s

IMAGE_PULL = {
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "ErrImageNeverPull",
    "RegistryUnavailable",
    "SignatureValidationFailed",
}
CANNOT_CREATE = {
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "PreCreateHookError",
    "PostStartHookError",
    "ContainerCannotRun",
}
STARTING = {"ContainerCreating", "PodInitializing"}
# Registries an AKS cluster reaches through its required egress anyway.
AZURE_REGISTRIES = ("mcr.microsoft.com", ".azurecr.io", ".azurecr.cn", ".azurecr.us")
MAX_MESSAGE = 500


@dataclass
class Diagnosis:
    """Why a pod is not Running and Ready: a headline reason and the sentences behind it."""

    reason: str  # CrashLoopBackOff, ImagePullBackOff, OOMKilled, Unschedulable, NotReady, …
    problems: list[str]
    containers: list[Json] = field(default_factory=list)
    fix: list[str] = field(default_factory=list)


def check(kube: KubeEvidence) -> list[Finding]:
    if not kube.target_pod:
        return []
    namespace, name = k8s.split_key(kube.target_pod)
    key = f"{namespace}/{name}"
    pod = kube.target_pod_body
    if pod is None:
        return [
            finding(
                "POD_NOT_RUNNING",
                f"Pod {key} does not exist: the API server has no pod {name} in namespace "
                f"{namespace}. Check the name (pods of a Deployment carry a generated suffix) "
                "and the namespace.",
                resource=f"/api/v1/namespaces/{namespace}/pods/{name}",
                evidence={"pod": key, "reason": "NotFound"},
                fix=[f"kubectl get pods --namespace {namespace}"],
                about_endpoint=True,
            )
        ]
    diagnosis = diagnose(pod)
    if diagnosis is None:
        return []
    phase = (pod.get("status") or {}).get("phase") or "Unknown"
    node = (pod.get("spec") or {}).get("nodeName")
    pools = {k8s.name_of(n): k8s.node_pool(n) for n in kube.nodes}
    pool = pools.get(node) if node else None
    state = "Running but not Ready" if phase == "Running" else phase
    where = f" on node {node}" + (f" (pool {pool})" if pool else "") if node else ""
    return [
        finding(
            "POD_NOT_RUNNING",
            f"Pod {key}{where} is {state}: {'; '.join(diagnosis.problems)}. "
            "It cannot reach any endpoint until it runs.",
            resource=k8s.api_path(pod, "pod"),
            evidence={
                "pod": key,
                "phase": phase,
                "reason": diagnosis.reason,
                "node": node,
                "pool": pool,
                "containers": diagnosis.containers,
            },
            fix=[k8s.kubectl_pod("describe", key), *diagnosis.fix],
            about_endpoint=True,
        )
    ]


def diagnose(pod: Json) -> Diagnosis | None:
    """None when the pod is Running and Ready; otherwise what stops it, most telling first."""
    status = pod.get("status") or {}
    phase = status.get("phase") or "Unknown"
    ready = k8s.condition(pod, "Ready") or {}
    if phase == "Running" and ready.get("status") == "True":
        return None
    key = k8s.pod_key(pod)

    if phase == "Succeeded":
        return Diagnosis("Completed", ["all its containers exited successfully; it runs no more"])
    if meta_deleting := k8s.meta(pod).get("deletionTimestamp"):
        return Diagnosis("Terminating", [f"it is being deleted (since {meta_deleting})"])
    scheduled = k8s.condition(pod, "PodScheduled")
    if scheduled and scheduled.get("status") == "False":
        reason = scheduled.get("reason") or "Unschedulable"
        message = scheduled.get("message") or "no message from the scheduler"
        return Diagnosis(
            reason,
            [f"the scheduler cannot place it ({reason}): {message.rstrip('.')}"],
            fix=[
                "kubectl get nodes --output custom-columns=NAME:.metadata.name,"
                f"{k8s.POOL_COLUMN},TAINTS:.spec.taints[*].key"
            ],
        )
    if phase == "Failed" and status.get("reason"):
        reason = status["reason"]
        message = status.get("message") or ""
        return Diagnosis(reason, [f"the pod failed ({reason})" + _colon(message)])

    containers: list[Json] = []
    problems: list[str] = []
    fixes: list[str] = []
    reasons: list[str] = []
    unready: list[str] = []
    for cstatus in k8s.container_statuses(pod):
        name = cstatus.get("name") or "?"
        if cstatus.get("ready") or _completed(cstatus):
            continue
        info = _container(pod, key, cstatus)
        containers.append(info.evidence)
        if info.reason is None:
            unready.append(name)
            continue
        reasons.append(info.reason)
        problems.append(info.problem)
        fixes.extend(f for f in info.fix if f not in fixes)
    if unready:
        problems.append(
            f"container(s) {k8s.join_names(unready)} running but not ready "
            "(readiness probe failing or still starting)"
        )
        fixes.extend(k8s.kubectl_pod("logs", key, "--container", n) for n in unready[:3])
    if problems:
        return Diagnosis(reasons[0] if reasons else "NotReady", problems, containers, fixes)
    message = ready.get("message") or ready.get("reason")
    if phase == "Running":
        return Diagnosis(
            ready.get("reason") or "NotReady",
            [f"its Ready condition is {ready.get('status', 'absent')}" + _colon(message)],
        )
    if phase == "Pending":
        return Diagnosis("Pending", ["it is scheduled but its containers have not started yet"])
    return Diagnosis(phase, [f"phase {phase}" + _colon(message)])


@dataclass
class _Container:
    reason: str | None  # None: running, just not ready
    problem: str
    evidence: Json
    fix: list[str]


def _container(pod: Json, key: str, cstatus: Json) -> _Container:
    name = cstatus.get("name") or "?"
    state = cstatus.get("state") or {}
    waiting = state.get("waiting")
    terminated = state.get("terminated")
    last = (cstatus.get("lastState") or {}).get("terminated")
    restarts = cstatus.get("restartCount") or 0
    image = (k8s.spec_container(pod, name) or {}).get("image") or cstatus.get("image")
    evidence: Json = {"name": name, "image": image, "restartCount": restarts}
    logs_previous = k8s.kubectl_pod("logs", key, "--container", name, "--previous")

    if waiting:
        reason = waiting.get("reason") or "Waiting"
        message = _clip(waiting.get("message") or "")
        evidence.update(state="waiting", reason=reason, message=message or None)
        if last:
            evidence["lastTermination"] = _termination(last)
        if reason == "CrashLoopBackOff":
            exit_text = _exit_text(pod, name, last) if last else "no previous exit recorded"
            return _Container(
                reason,
                f"container {name} is in CrashLoopBackOff after {restarts} restart(s); "
                f"last exit: {exit_text}",
                evidence,
                [logs_previous],
            )
        if reason in IMAGE_PULL:
            problem = f'container {name} cannot pull image "{image}" ({reason})'
            if message:
                problem += f": {message}"
            fix = []
            if image and not _from_azure(image):
                problem += (
                    " — with egress locked down the nodes must be allowed to reach this "
                    "registry, or the image must come from your own ACR"
                )
                source = _qualified(image)
                fix.append(
                    f"az acr import --name <your-acr> --source {source} "
                    f"--image {source.split('/', 1)[1]}"
                )
            return _Container(reason, problem, evidence, fix)
        if reason in CANNOT_CREATE:
            return _Container(
                reason,
                f"container {name} cannot be created ({reason})" + _colon(message),
                evidence,
                [],
            )
        if reason in STARTING:
            return _Container(
                reason, f"container {name} is still starting ({reason})", evidence, []
            )
        return _Container(
            reason,
            f"container {name} is waiting ({reason})" + _colon(message),
            evidence,
            [],
        )
    if terminated:
        reason = terminated.get("reason") or "Terminated"
        evidence.update(state="terminated", **_termination(terminated))
        logs = k8s.kubectl_pod("logs", key, "--container", name)
        return _Container(
            reason,
            f"container {name} exited: {_exit_text(pod, name, terminated)}"
            + (f", after {restarts} restart(s)" if restarts else ""),
            evidence,
            [logs],
        )
    evidence.update(state="running" if state.get("running") else "unknown")
    return _Container(None, "", evidence, [])


def _completed(cstatus: Json) -> bool:
    """An init container (or a run-once container) that exited 0 did its job."""
    terminated = (cstatus.get("state") or {}).get("terminated") or {}
    return bool(terminated) and terminated.get("exitCode") == 0


def _termination(terminated: Json) -> Json:
    return {
        "reason": terminated.get("reason"),
        "exitCode": terminated.get("exitCode"),
        "finishedAt": terminated.get("finishedAt"),
    }


def _exit_text(pod: Json, container: str, terminated: Json) -> str:
    reason = terminated.get("reason") or "terminated"
    text = f"{reason} with exit code {terminated.get('exitCode')}"
    if terminated.get("finishedAt"):
        text += f" at {terminated['finishedAt']}"
    if reason == "OOMKilled":
        limit = k8s.container_limit(pod, container, "memory")
        text += (
            f" (memory limit {k8s.limit_text(pod, container, 'memory')})"
            if limit is not None
            else " (no memory limit: the node ran out)"
        )
    return text


def _from_azure(image: str) -> bool:
    registry = k8s.image_registry(image) or ""
    return registry == AZURE_REGISTRIES[0] or registry.endswith(AZURE_REGISTRIES[1:])


def _qualified(image: str) -> str:
    """A reference `az acr import --source` accepts: docker.io/library/… for Hub shorthands."""
    if k8s.image_registry(image):
        return image
    return f"docker.io/{image}" if "/" in image else f"docker.io/library/{image}"


def _colon(message: str | None) -> str:
    return f": {message.rstrip('.')}" if message else ""


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"

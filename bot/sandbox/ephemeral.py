"""Ephemeral containers: a probe inside an application pod's own network namespace
(world-format.md, `kubernetes` and `probes[].pod`), as `kubectl debug` adds one.

`PATCH /api/v1/namespaces/{ns}/pods/{name}/ephemeralcontainers` is accepted as the clients
send it: a strategic merge patch `{"spec": {"ephemeralContainers": [...]}}` (kubectl debug,
and the Python client for a dict body), a JSON merge patch of the same shape, or a JSON
patch (a list of `add` operations; the Python client for a list body). The API server only
lets the list grow: an existing ephemeral container can be neither removed nor changed
(https://kubernetes.io/docs/concepts/workloads/pods/ephemeral-containers/).

Pure functions of a pod and the world; `kube.py` decides when each state is reached.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from bot.sandbox import probes
from bot.sandbox.world import World

Json = dict[str, Any]

WAITING_REASONS = frozenset({"ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError"})
STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class PatchRejected(ValueError):
    """The API server refuses the patch: `status` 415, 422 or 400, `message` its words."""

    def __init__(self, status: int, message: str, field: str = "spec.ephemeralContainers"):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def requested(pod: Json, body: Any, content_type: str) -> list[Json]:
    """The pod's ephemeral containers after the patch (or PUT body), validated as the API
    server validates them; raises PatchRejected."""
    current = list((pod.get("spec") or {}).get("ephemeralContainers") or [])
    kind = content_type.split(";")[0].strip().lower()
    if kind == JSON_PATCH:
        wanted = _json_patch(current, body)
    elif kind in (STRATEGIC, MERGE, "application/json", ""):
        if not isinstance(body, dict):
            raise PatchRejected(400, "the body of the request was in an unknown format")
        given = (body.get("spec") or {}).get("ephemeralContainers")
        if given is None:
            return current
        if not isinstance(given, list):
            raise PatchRejected(400, "spec.ephemeralContainers must be a list")
        # Strategic merge keys the list by name (patchMergeKey); merge patch and PUT replace.
        wanted = _merge_by_name(current, given) if kind == STRATEGIC else list(given)
    else:
        raise PatchRejected(415, f"the media type {kind!r} is not supported for this request")
    _validate(pod, current, wanted)
    return wanted


def _json_patch(current: list[Json], ops: Any) -> list[Json]:
    if not isinstance(ops, list):
        raise PatchRejected(400, "a JSON patch is a list of operations")
    result = list(current)
    for op in ops:
        path = str((op or {}).get("path") or "")
        if (op or {}).get("op") != "add" or not path.startswith("/spec/ephemeralContainers"):
            raise PatchRejected(422, f"unsupported JSON patch operation on {path or '?'}")
        if path == "/spec/ephemeralContainers":
            result = list(op.get("value") or [])
        else:
            result.append(op.get("value"))
    return result


def _merge_by_name(current: list[Json], given: list[Json]) -> list[Json]:
    merged = {str(c.get("name")): c for c in current}
    for container in given:
        if not isinstance(container, dict):
            raise PatchRejected(400, "an ephemeral container must be an object")
        name = str(container.get("name"))
        merged[name] = {**merged.get(name, {}), **container}
    return list(merged.values())


def _validate(pod: Json, current: list[Json], wanted: list[Json]) -> None:
    names = {str(c.get("name")) for c in wanted if isinstance(c, dict)}
    for old in current:
        if old.get("name") not in names:
            raise PatchRejected(422, "Forbidden: existing ephemeral containers may not be removed")
        new = next(c for c in wanted if c.get("name") == old.get("name"))
        if new != old:
            raise PatchRejected(422, "Forbidden: existing ephemeral containers may not be changed")
    spec = pod.get("spec") or {}
    taken = [
        str(c.get("name"))
        for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])
    ]
    for container in wanted[len(current) :]:
        if not isinstance(container, dict) or not container.get("name"):
            raise PatchRejected(422, "Required value", "spec.ephemeralContainers[].name")
        name = str(container["name"])
        if name in taken:
            raise PatchRejected(
                422, f'Duplicate value: "{name}"', "spec.ephemeralContainers[].name"
            )
        taken.append(name)
        if not container.get("image"):
            raise PatchRejected(422, "Required value", "spec.ephemeralContainers[].image")
        for key in ("ports", "livenessProbe", "readinessProbe", "startupProbe", "lifecycle"):
            if container.get(key):
                raise PatchRejected(
                    422, f"Forbidden: cannot be set for an Ephemeral Container ({key})"
                )
    if len(wanted) > len(current) and not spec.get("nodeName"):
        # The kubelet of the pod's node starts ephemeral containers: no node, no kubelet.
        raise PatchRejected(
            422, "Forbidden: cannot add ephemeral containers to a pod that is not scheduled"
        )


def defaulted(container: Json) -> Json:
    out = copy.deepcopy(container)
    out.setdefault("terminationMessagePath", "/dev/termination-log")
    out.setdefault("terminationMessagePolicy", "File")
    out.setdefault("imagePullPolicy", "IfNotPresent")
    out.setdefault("resources", {})
    return out


def argv(container: Json) -> list[str]:
    return [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]


def target_url(container: Json) -> str | None:
    """As for probe pods: the last element of command + args that contains `://`."""
    return next((a for a in reversed(argv(container)) if "://" in a), None)


def choose(world: World, cluster_id: str, url: str, pod_key: str) -> probes.Outcome:
    """The outcome inside pod `ns/name`: only entries naming that pod apply; none →
    probeDefault (world-format.md, `probes`). Cluster set beats unset."""
    want = probes.normalize_url(url)
    names = probes.cluster_names(world, cluster_id)
    entries = [
        e
        for e in world.data.get("probes") or []
        if e.get("pod") == pod_key
        and probes.normalize_url(str(e.get("url", ""))) == want
        and (e.get("cluster") is None or str(e["cluster"]).lower() in names | {e["cluster"]})
    ]
    if not entries:
        default = world.data.get("probeDefault")
        return probes.Outcome.of(default) if default else probes.Outcome()
    return probes.Outcome.of(max(entries, key=lambda e: e.get("cluster") is not None))


@dataclass(frozen=True)
class EphemeralRun:
    """What one ephemeral container will show: decided when it is added."""

    container: str
    image: str
    outcome: probes.Outcome
    log: str
    starts: bool  # False: the pod is not Running, the kubelet never starts it

    def steps(self) -> list[tuple[float, str]]:
        """A `podStatus` outcome the kubelet reports as a waiting reason (image pull, config)
        keeps the container waiting; one that only a pod can reach (Unschedulable,
        DeadlineExceeded) ends it killed, exit 137, as the pod's own processes are."""
        if not self.starts:
            return []
        if self.outcome.pod_status in WAITING_REASONS:
            return [(0.5, "stuck")]
        return [(0.5, "running"), (1.0, "terminated")]

    def apply(self, state: str, pod: Json, at: str) -> Json:
        if state == "running":
            return with_state(pod, self.container, self.image, {"running": {"startedAt": at}})
        if state == "terminated":
            code = 137 if self.outcome.pod_status else self.outcome.exit_code
            started = _state(pod, self.container).get("running", {}).get("startedAt", at)
            terminated = {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "startedAt": started,
                "finishedAt": at,
                "containerID": _cid(pod, self.container),
            }
            return with_state(pod, self.container, self.image, {"terminated": terminated})
        reason = (self.outcome.pod_status if state == "stuck" else None) or "ContainerCreating"
        return with_state(pod, self.container, self.image, {"waiting": {"reason": reason}})

    def log_error(self, pod_name: str, pod: Json) -> str | None:
        state = _state(pod, self.container)
        if "terminated" in state or "running" in state:
            return None
        reason = (state.get("waiting") or {}).get("reason") or "ContainerCreating"
        return f'container "{self.container}" in pod "{pod_name}" is waiting to start: {reason}'

    def output(self, pod: Json) -> str:
        return self.log if "terminated" in _state(pod, self.container) else ""


def with_state(pod: Json, name: str, image: str, state: Json) -> Json:
    """The pod with its ephemeral container `name` in `state` (status entry added or set)."""
    out = copy.deepcopy(pod)
    status = out.setdefault("status", {})
    statuses = [s for s in status.get("ephemeralContainerStatuses") or [] if s.get("name") != name]
    running = "running" in state or "terminated" in state
    entry: Json = {
        "name": name,
        "state": state,
        "lastState": {},
        "ready": False,
        "restartCount": 0,
        "image": image,
        "imageID": "",
    }
    if running:
        entry["containerID"] = _cid(pod, name)
    statuses.append(entry)
    status["ephemeralContainerStatuses"] = statuses
    return out


def _state(pod: Json, name: str) -> Json:
    for s in (pod.get("status") or {}).get("ephemeralContainerStatuses") or []:
        if s.get("name") == name:
            return s.get("state") or {}
    return {}


def _cid(pod: Json, name: str) -> str:
    return probes.container_id({"metadata": {"uid": f"{pod['metadata'].get('uid')}/{name}"}})


def names(pod: Json) -> list[str]:
    return [str(c.get("name")) for c in (pod.get("spec") or {}).get("ephemeralContainers") or []]

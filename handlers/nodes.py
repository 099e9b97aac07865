"""Checklist intermittent step 3: node health and node/pod resource pressure.

A node that is NotReady or under pressure, or a pod at its limit, drops or slows
connections in ways that look like an egress fault. Every code gives one finding listing
every node or pod concerned, with its node pool, so a 50-node cluster stays readable.
Usage percentages are the ones `kubectl top node` prints (see handlers/k8s.py).
"""

from __future__ import annotations

from bot.codes import finding
from bot.evidence import KubeEvidence
from bot.model import Finding, Json
from handlers import k8s

PRESSURES = ("MemoryPressure", "DiskPressure", "PIDPressure")
RESOURCES = (("cpu", "NODE_CPU_HIGH", "CPU"), ("memory", "NODE_MEMORY_HIGH", "Memory"))


def check(kube: KubeEvidence) -> list[Finding]:
    findings: list[Finding] = []
    findings += _not_ready(kube.nodes)
    findings += _pressure(kube.nodes)
    if kube.node_metrics is None:
        findings.append(_metrics_unavailable(kube.metrics_refusal))
    else:
        findings += _node_usage(kube.nodes, kube.node_metrics)
    pods = _workload_pods(kube)
    pools = {k8s.name_of(n): k8s.node_pool(n) for n in kube.nodes}
    if kube.pod_metrics is not None:
        findings += _near_limit(pods, kube.pod_metrics, pools)
    findings += _oomkilled(pods, pools)
    return findings


def _where(name: str, pool: str | None) -> str:
    return f"{name} (pool {pool})" if pool else name


def _on(entry: Json) -> str:
    return f" on {_where(entry['node'], entry['pool'])}" if entry.get("node") else ""


def _resource(objs: list[Json], kind: str) -> str | None:
    """The one object a finding is about, or None when it lists several."""
    return k8s.api_path(objs[0], kind) if len(objs) == 1 else None


# -- node conditions -------------------------------------------------------------------


def _not_ready(nodes: list[Json]) -> list[Finding]:
    bad: list[Json] = []
    entries: list[Json] = []
    for node in nodes:
        ready = k8s.condition(node, "Ready")
        status = (ready or {}).get("status", "Unknown")
        if status == "True":
            continue
        bad.append(node)
        entries.append(
            {
                "node": k8s.name_of(node),
                "pool": k8s.node_pool(node),
                "ready": status,
                "reason": (ready or {}).get("reason"),
                "message": (ready or {}).get("message") or "the node reports no Ready condition",
                "since": (ready or {}).get("lastTransitionTime"),
            }
        )
    if not bad:
        return []
    lines = [
        f"{_where(e['node'], e['pool'])}: Ready={e['ready']}"
        + (f" ({e['reason']})" if e["reason"] else "")
        + (f" since {e['since']}" if e["since"] else "")
        + f": {e['message']}"
        for e in entries
    ]
    return [
        finding(
            "NODE_NOT_READY",
            f"{len(bad)} of {len(nodes)} node(s) NotReady: {'; '.join(lines)}. Pods on a "
            "NotReady node lose their network or get evicted, and new pods cannot start there.",
            resource=_resource(bad, "node"),
            evidence={"nodes": entries},
            fix=[f"kubectl describe node {e['node']}" for e in entries],
        )
    ]


def _pressure(nodes: list[Json]) -> list[Finding]:
    entries: list[Json] = []
    for node in nodes:
        for kind in PRESSURES:
            cond = k8s.condition(node, kind)
            if cond and cond.get("status") == "True":
                entries.append(
                    {
                        "node": k8s.name_of(node),
                        "pool": k8s.node_pool(node),
                        "condition": kind,
                        "reason": cond.get("reason"),
                        "message": cond.get("message"),
                        "since": cond.get("lastTransitionTime"),
                    }
                )
    if not entries:
        return []
    names = list(dict.fromkeys(e["node"] for e in entries))
    lines = [
        f"{_where(e['node'], e['pool'])}: {e['condition']}"
        + (f" since {e['since']}" if e["since"] else "")
        + (f" ({e['message']})" if e["message"] else "")
        for e in entries
    ]
    return [
        finding(
            "NODE_PRESSURE",
            f"{len(names)} node(s) report resource pressure: {'; '.join(lines)}. The kubelet "
            "evicts pods and refuses new ones on a node under pressure.",
            resource=k8s.api_path({"metadata": {"name": names[0]}}, "node")
            if len(names) == 1
            else None,
            evidence={"nodes": entries},
            fix=[f"kubectl describe node {name}" for name in names],
        )
    ]


def _metrics_unavailable(refusal: str | None) -> Finding:
    why = (
        f"RBAC forbids the bot to read metrics.k8s.io ({refusal})"
        if refusal
        else "The API server does not serve metrics.k8s.io (metrics-server missing or down)"
    )
    fix = (
        ["# grant get/list on nodes and pods in API group metrics.k8s.io to the bot's identity"]
        if refusal
        else [
            "kubectl get apiservice v1beta1.metrics.k8s.io",
            "kubectl get deployment metrics-server --namespace kube-system",
        ]
    )
    return finding(
        "METRICS_UNAVAILABLE",
        f"{why}, so node and pod CPU and memory use could not be checked: no NODE_CPU_HIGH, "
        "NODE_MEMORY_HIGH or POD_NEAR_LIMIT finding means 'not measured', not 'fine'.",
        resource="/apis/metrics.k8s.io/v1beta1",
        evidence={"forbidden": refusal} if refusal else {},
        fix=fix,
    )


# -- node usage ------------------------------------------------------------------------


def _node_usage(nodes: list[Json], metrics: list[Json]) -> list[Finding]:
    usage_by_node = {k8s.name_of(m): m.get("usage") or {} for m in metrics}
    findings = []
    for resource, code, label in RESOURCES:
        high: list[Json] = []
        entries: list[Json] = []
        for node in nodes:
            used = k8s.quantity(usage_by_node.get(k8s.name_of(node), {}).get(resource))
            allocatable = k8s.quantity(
                ((node.get("status") or {}).get("allocatable") or {}).get(resource)
            )
            if used is None or allocatable is None:
                continue  # kubectl top prints <unknown>
            pct = k8s.percent(used, allocatable)
            if pct is None or pct < k8s.HIGH_PERCENT:
                continue
            high.append(node)
            entries.append(
                {
                    "node": k8s.name_of(node),
                    "pool": k8s.node_pool(node),
                    "usage": k8s.amount_text(resource, used),
                    "allocatable": k8s.amount_text(resource, allocatable),
                    "percent": pct,
                }
            )
        if not entries:
            continue
        lines = [
            f"{_where(e['node'], e['pool'])} {e['usage']} of {e['allocatable']} = {e['percent']} %"
            for e in entries
        ]
        effect = (
            "pods there are throttled and connections time out"
            if resource == "cpu"
            else "the kubelet evicts pods and the kernel OOM-kills containers there"
        )
        findings.append(
            finding(
                code,
                f"{label} use is at or above {k8s.HIGH_PERCENT} % of allocatable on "
                f"{len(entries)} of {len(nodes)} node(s), as `kubectl top node` shows it: "
                f"{'; '.join(lines)}. Near the ceiling {effect}.",
                resource=_resource(high, "node"),
                evidence={"nodes": entries, "thresholdPercent": k8s.HIGH_PERCENT},
                fix=[
                    "kubectl top node",
                    f"kubectl top pod --all-namespaces --sort-by={resource}",
                    *(f"kubectl describe node {e['node']}" for e in entries),
                ],
            )
        )
    return findings


# -- pods ------------------------------------------------------------------------------


def _workload_pods(kube: KubeEvidence) -> list[Json]:
    """The cluster's pods plus the user's pod, without the bot's own probe pods."""
    pods = {k8s.pod_key(p): p for p in kube.pods}
    if kube.target_pod_body is not None:
        pods.setdefault(k8s.pod_key(kube.target_pod_body), kube.target_pod_body)
    return [p for p in pods.values() if not k8s.is_probe_pod(p)]


def _near_limit(
    pods: list[Json], metrics: list[Json], pools: dict[str, str | None]
) -> list[Finding]:
    by_key = {k8s.pod_key(p): p for p in pods}
    entries: list[Json] = []
    for item in metrics:
        pod = by_key.get(k8s.pod_key(item))
        if pod is None:
            continue
        node = (pod.get("spec") or {}).get("nodeName")
        for container in item.get("containers") or []:
            name = container.get("name")
            for resource in ("cpu", "memory"):
                limit = k8s.container_limit(pod, name, resource)
                used = k8s.quantity((container.get("usage") or {}).get(resource))
                if limit is None or used is None:
                    continue  # no limit: nothing to be near
                pct = k8s.percent(used, limit)
                if pct is None or pct < k8s.HIGH_PERCENT:
                    continue
                entries.append(
                    {
                        "pod": k8s.pod_key(pod),
                        "container": name,
                        "resource": resource,
                        "usage": k8s.amount_text(resource, used),
                        "limit": k8s.limit_text(pod, name, resource),
                        "percent": pct,
                        "node": node,
                        "pool": pools.get(node) if node else None,
                    }
                )
    if not entries:
        return []
    keys = list(dict.fromkeys(e["pod"] for e in entries))
    lines = [
        f"{e['pod']} container {e['container']} {e['resource']} {e['usage']} of limit "
        f"{e['limit']} = {e['percent']} %" + _on(e)
        for e in entries
    ]
    return [
        finding(
            "POD_NEAR_LIMIT",
            f"{len(entries)} container(s) in {len(keys)} pod(s) use at least "
            f"{k8s.HIGH_PERCENT} % of their limit: {'; '.join(lines)}. At the CPU limit a "
            "container is throttled (slow handshakes, timeouts); at the memory limit it is "
            "OOM-killed.",
            resource=_resource([by_key[keys[0]]], "pod") if len(keys) == 1 else None,
            evidence={"containers": entries, "thresholdPercent": k8s.HIGH_PERCENT},
            fix=[_top_pod(key) for key in keys],
        )
    ]


def _oomkilled(pods: list[Json], pools: dict[str, str | None]) -> list[Finding]:
    entries: list[Json] = []
    fixes: list[str] = []
    hit: list[Json] = []
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        for status in k8s.container_statuses(pod):
            terminated = k8s.oom_termination(status)
            if terminated is None:
                continue
            name = status.get("name") or "?"  # as pods.py names a nameless container
            limit = k8s.container_limit(pod, name, "memory")
            current = ((status.get("state") or {}).get("terminated") or {}) is terminated
            entries.append(
                {
                    "pod": k8s.pod_key(pod),
                    "container": name,
                    "when": terminated.get("finishedAt"),
                    "exitCode": terminated.get("exitCode"),
                    "memoryLimit": k8s.limit_text(pod, name, "memory") if limit else None,
                    "restartCount": status.get("restartCount", 0),
                    "node": node,
                    "pool": pools.get(node) if node else None,
                }
            )
            if not hit or hit[-1] is not pod:
                hit.append(pod)
                fixes.append(k8s.kubectl_pod("describe", k8s.pod_key(pod)))
            previous = () if current else ("--previous",)
            logs = k8s.kubectl_pod("logs", k8s.pod_key(pod), "--container", name, *previous)
            fixes.append(logs)
    if not entries:
        return []
    lines = [
        f"{e['pod']} container {e['container']} at {e['when'] or 'an unknown time'} "
        + (f"(memory limit {e['memoryLimit']}" if e["memoryLimit"] else "(no memory limit")
        + f", {e['restartCount']} restart(s))"
        + _on(e)
        for e in entries
    ]
    return [
        finding(
            "POD_OOMKILLED",
            f"{len(entries)} container(s) in {len(hit)} pod(s) were last terminated "
            f"OOMKilled: {'; '.join(lines)}. Each kill drops the container's open "
            "connections; repeated kills look like intermittent egress failures.",
            resource=_resource(hit, "pod"),
            evidence={"containers": entries},
            fix=fixes,
        )
    ]


def _top_pod(key: str) -> str:
    namespace, name = k8s.split_key(key)
    return f"kubectl top pod {name} --namespace {namespace} --containers"

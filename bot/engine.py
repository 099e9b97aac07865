"""Run one check: collect evidence, let each checklist handler judge it, build the report.

Azure and the cluster's own API server are read side by side; the probe pods start as soon
as the node list says which pools exist. The engine is the only place that knows the
checklist's handlers; the handlers know nothing of I/O and the collectors nothing of
verdicts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bot.codes import CATALOG, STEPS, finding
from bot.collect.azure import AzureCollector
from bot.collect.kube import KubeAccess, KubeNotConnected, KubeReader, KubeUnavailable, connect
from bot.collect.probe import ProbeRunner, probe_pools
from bot.collect.runcommand import CommandFailed, RunCommand, read_cluster
from bot.endpoint import Endpoint
from bot.evidence import AzureEvidence, KubeEvidence
from bot.model import ClusterSummary, Finding, Report, Stats
from bot.runtime import Runtime
from handlers import (
    access,
    advisor,
    cluster,
    firewall,
    loadbalancer,
    natgw,
    nodes,
    nsg,
    osdisk,
    pods,
    probe,
    routes,
    snat,
)
from handlers.cluster import egress_ips
from handlers.rootcause import order, root_cause

AZURE_STEPS: tuple[Callable[[AzureEvidence], list[Finding]], ...] = (
    cluster.check,
    routes.check,
    nsg.check,
    firewall.check,
    natgw.check,
    loadbalancer.check,
    access.check,
)
CLUSTER_STEPS: tuple[Callable[[KubeEvidence], list[Finding]], ...] = (
    lambda kube: probe.check(kube.probes),
    pods.check,
    nodes.check,
)
# The intermittent steps read Azure Monitor and name nodes: they need both sides.
INTERMITTENT_STEPS: tuple[Callable[[AzureEvidence, KubeEvidence | None], list[Finding]], ...] = (
    snat.check,
    osdisk.check,
    advisor.check,
)

# Checklist steps (bot.codes.STEPS) each batch of handlers decides.
AZURE_STEP_NAMES = ("cluster", "route", "nsg", "firewall", "egress")
CLUSTER_STEP_NAMES = ("probe", "resources", "snat", "disk", "advisor")
StepCallback = Callable[[tuple[str, ...], list[Finding]], None]
NoteCallback = Callable[[str], None]  # something a user waiting on the check should know

# What each --mode runs: the persistent checklist (is the path open?), the intermittent one
# (does it run out?), both, or only the SNAT step (`aks-egress snat`).
MODES: dict[str, frozenset[str]] = {
    "persistent": frozenset({"cluster", "route", "nsg", "firewall", "egress", "probe", "access"}),
    "intermittent": frozenset({"cluster", "snat", "resources", "disk", "advisor", "access"}),
    "snat": frozenset({"cluster", "snat", "access"}),
}
MODES["all"] = MODES["persistent"] | MODES["intermittent"]


@dataclass(frozen=True)
class CheckRequest:
    alias: str
    cluster_id: str
    endpoint: Endpoint | None = None
    pod: str | None = None  # namespace/name of the application pod, from --pod
    mode: str = "all"  # a key of MODES

    @property
    def steps(self) -> frozenset[str]:
        return MODES[self.mode]


class Engine:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.collector = AzureCollector(
            runtime.clients, runtime.resolver, vm_sizes=runtime.vm_sizes
        )

    def check(
        self,
        request: CheckRequest,
        on_steps: StepCallback | None = None,
        on_note: NoteCallback | None = None,
    ) -> Report:
        """Run the checklist; `on_steps` hears each batch of steps as it is decided,
        `on_note` why the cluster side will take longer (Azure run command)."""
        started = time.monotonic()
        arm_before = self.runtime.clients.counter.count
        steps = request.steps

        def wanted(found: list[Finding]) -> list[Finding]:
            return [f for f in found if CATALOG[f.code].step in steps]

        metrics_until = self.runtime.clock() if steps & {"snat", "disk", "advisor"} else None
        with ThreadPoolExecutor(2, thread_name_prefix="check") as pool:
            kube_f = pool.submit(self._cluster_side, request, on_note)
            ev = self.collector.collect(
                request.alias, request.cluster_id, request.endpoint, metrics_until
            )
            findings = wanted([f for step in AZURE_STEPS for f in step(ev)])
            if on_steps:
                on_steps(tuple(s for s in AZURE_STEP_NAMES if s in steps), findings)
            kube, kube_findings, k8s_calls, run_commands = kube_f.result()
        cluster_findings = list(kube_findings)
        if kube is not None:
            cluster_findings += [f for step in CLUSTER_STEPS for f in step(kube)]
        cluster_findings += [f for step in INTERMITTENT_STEPS for f in step(ev, kube)]
        cluster_findings = wanted(cluster_findings)
        if on_steps:
            on_steps(tuple(s for s in CLUSTER_STEP_NAMES if s in steps), cluster_findings)
        findings = order(findings + cluster_findings)
        network = ev.network_profile
        return Report(
            cluster=ClusterSummary(
                alias=request.alias,
                id=request.cluster_id,
                outbound_type=ev.outbound_type,
                network_plugin=network.get("networkPlugin"),
                network_plugin_mode=network.get("networkPluginMode"),
            ),
            endpoint=request.endpoint.url if request.endpoint else None,
            egress_ips=egress_ips(ev),
            findings=findings,
            root_cause=root_cause(findings),
            steps=tuple(name for name, _ in STEPS if name in steps),
            stats=Stats(
                arm_calls=self.runtime.clients.counter.count - arm_before,
                k8s_calls=k8s_calls,
                run_commands=run_commands,
                duration_ms=int((time.monotonic() - started) * 1000),
            ),
        )

    def _cluster_side(
        self, request: CheckRequest, on_note: NoteCallback | None
    ) -> tuple[KubeEvidence | None, list[Finding], int, int]:
        """Everything that needs the API server; its absence is a finding, not a failure.

        An API server the bot cannot connect to (private, or authorized IP ranges) is
        reached through Azure run command instead (bot/collect/runcommand.py)."""
        rt = self.runtime
        access: KubeAccess | None = None
        command: RunCommand | None = None
        try:
            try:
                access = connect(rt.access_plan(request.cluster_id), rt.clients, rt.credential)
                kube = self._read(access, request)
            except KubeNotConnected as exc:
                command = RunCommand(
                    rt.clients,
                    rt.credential,
                    request.cluster_id,
                    rt.probe.run_command_timeout_s,
                    str(exc),
                )
                if on_note:
                    on_note(
                        f"The cluster side goes through Azure run command ({command.why}): "
                        "it takes a minute or two longer."
                    )
                probing = request.endpoint is not None and "probe" in request.steps
                url = request.endpoint.url if request.endpoint and probing else None
                kube = read_cluster(command, request.pod, url, rt.probe)
        except KubeUnavailable as exc:
            how = command.how if command else access.how if access else None
            why = str(exc).rstrip(".") + "."
            if command:
                why = f"The bot went through Azure run command ({command.why}): {why}"
            unreachable = finding(
                "KUBE_UNREACHABLE",
                f"{why} The probe, pod and node checks did not run.",
                resource=request.cluster_id,
                evidence={
                    "how": how,
                    "error": str(exc),
                    **({"reason": exc.reason} if isinstance(exc, CommandFailed) else {}),
                },
                fix=exc.fix if isinstance(exc, CommandFailed) else [],
            )
            return None, [unreachable], _calls(access), command.count if command else 0
        finally:
            if access:
                access.close()
        runs = command.count if command else 0
        found = [
            finding(
                "KUBE_ACCESS",
                f"Reached the cluster's API server through {kube.access}.",
                resource=request.cluster_id,
                evidence={"how": kube.access, **({"runCommands": runs} if command else {})},
            )
        ]
        found += [
            finding(
                "KUBE_PARTIAL_ACCESS",
                f"{problem}. The checks that need it were skipped.",
                resource=request.cluster_id,
                evidence={"error": problem},
            )
            for problem in kube.partial
        ]
        return kube, found, _calls(access), runs

    def _read(self, access: KubeAccess, request: CheckRequest) -> KubeEvidence:
        """Nodes first (they name the pools to probe), then everything else at once.

        Only the node list is essential; a refused pod list or metrics read narrows the
        check (said in `partial`) but never throws away a probe that ran.
        """
        reader = KubeReader(access)
        runner = ProbeRunner(access, self.runtime.probe, self.runtime.clock)
        node_list = reader.nodes()
        namespace, _, name = (request.pod or "").partition("/")
        with ThreadPoolExecutor(6, thread_name_prefix="k8s") as pool:
            pods_f = pool.submit(reader.pods)
            node_metrics_f = pool.submit(reader.metrics, "nodes")
            pod_metrics_f = pool.submit(reader.metrics, "pods")
            target_f = pool.submit(reader.pod, namespace, name) if request.pod else None
            pool.submit(runner.remove_leftovers)
            probes_f = None
            partial: list[str] = []
            target = _optional(target_f, partial)
            if request.endpoint and "probe" in request.steps:
                only = (target or {}).get("spec", {}).get("nodeName") if request.pod else None
                pools = probe_pools(node_list, only) or ([None] if only is None else [])
                probes_f = pool.submit(runner.run, request.endpoint.url, pools)
            node_metrics, refusal = node_metrics_f.result()
            pod_metrics, _ = pod_metrics_f.result()
            return KubeEvidence(
                access=access.how,
                nodes=node_list,
                pods=_optional(pods_f, partial) or [],
                node_metrics=node_metrics,
                pod_metrics=pod_metrics,
                metrics_refusal=refusal,
                target_pod=request.pod,
                target_pod_body=target,
                probes=probes_f.result() if probes_f else [],
                partial=partial,
            )


def _calls(access: KubeAccess | None) -> int:
    return access.api.calls if access else 0


def _optional(future: Future | None, partial: list[str]) -> Any:
    """A read the check can do without: its refusal is noted, not raised."""
    if future is None:
        return None
    try:
        return future.result()
    except KubeUnavailable as exc:
        partial.append(str(exc))
        return None

"""Run one check: collect evidence, let each checklist handler judge it, build the report.

Azure and the cluster's own API server are read side by side, each only as far as the
mode's steps need (bot/steps.py); the probe pods start as soon as the node list says which
pools exist. The step registry knows the handlers; the handlers know nothing of I/O and
the collectors nothing of verdicts.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

from bot.codes import CATALOG
from bot.collect.azure import AzureCollector
from bot.collect.calls import ContextPool, tallied
from bot.collect.kube import KubeConnection, KubeNotConnected, KubeReader, KubeUnavailable, connect
from bot.collect.podview import InPodProbe, PodViewReader
from bot.collect.probe import ProbeRunner, probe_pools, refused_run
from bot.collect.runcommand import CommandFailed, RunCommand, read_cluster
from bot.destination import DestinationPolicy, cluster_policy, probe_rules
from bot.destination import judge as judge_destination
from bot.endpoint import Endpoint
from bot.evidence import KUBE_NEEDS, Evidence, KubeEvidence, KubeUnreached, Need, ProbeRun
from bot.model import ClusterSummary, Finding, Json, Report, Stats
from bot.redact import redact_url
from bot.runtime import Runtime
from bot.steps import Step, needs_of, steps_of
from handlers import k8s
from handlers.cluster import egress_ips
from handlers.explain import explain
from handlers.rootcause import order, root_cause

StepCallback = Callable[[tuple[str, ...], list[Finding]], None]
NoteCallback = Callable[[str], None]  # something a user waiting on the check should know
# Reads that look back over Azure Monitor's last day (and what comes with them).
_LOOKING_BACK = frozenset({Need.METRICS, Need.ADVISOR, Need.VM_SIZES})


@dataclass(frozen=True)
class CheckRequest:
    alias: str
    cluster_id: str
    endpoint: Endpoint | None = None
    pod: str | None = None  # namespace/name of the application pod, from --pod
    mode: str = "all"  # a key of bot.steps.MODES
    # Where the probe may aim (bot/destination.py); the cluster's own ranges are added here.
    policy: DestinationPolicy = field(default_factory=DestinationPolicy)

    @property
    def steps(self) -> tuple[Step, ...]:
        return steps_of(self.mode, self.pod)

    @property
    def needs(self) -> frozenset[Need]:
        return needs_of(self.steps)


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
        """Run the mode's steps (bot/steps.py) on the reads they need; `on_steps` hears
        each batch of steps as it is decided: Azure's as soon as Azure is read, the
        cluster's once the cluster side and the probe are in; `on_note` why the cluster
        side takes longer (it goes through Azure run command)."""
        with tallied() as arm_calls:  # this check's alone (others run in this process)
            report = self._check(request, on_steps, on_note)
        report.stats.arm_calls = arm_calls.count
        return report

    def _check(
        self,
        request: CheckRequest,
        on_steps: StepCallback | None,
        on_note: NoteCallback | None,
    ) -> Report:
        started = time.monotonic()
        steps, needs = request.steps, request.needs
        names = {step.name for step in steps}

        def judge(batch: list[Step], evidence: Evidence) -> list[Finding]:
            found = [f for step in batch for f in step.judge(evidence)]
            found = [f for f in found if CATALOG[f.code].step in names]
            if on_steps:
                on_steps(tuple(step.name for step in batch), found)
            return found

        metrics_until = self.runtime.clock() if needs & _LOOKING_BACK else None
        k8s_calls = run_commands = 0
        network_f: Future[tuple[Json, list[Json]]] = Future()

        def on_network(cluster: Json, subnets: list[Json]) -> None:
            if not network_f.done():
                network_f.set_result((cluster, subnets))

        with ContextPool(2, thread_name_prefix="check") as pool:
            kube_f = None
            if needs & KUBE_NEEDS:
                kube_f = pool.submit(self._cluster_side, request, network_f, on_note)
            try:
                ev = self.collector.collect(
                    request.alias,
                    request.cluster_id,
                    request.endpoint,
                    metrics_until,
                    needs,
                    on_network,
                )
            finally:
                # The probe side never waits on a read that failed: it falls back to the
                # policy without the cluster's own ranges (private ranges stay denied).
                on_network({}, [])
            evidence = Evidence(azure=ev)
            findings = judge([s for s in steps if not s.needs_cluster], evidence)
            if kube_f is not None:
                evidence.kube, evidence.unreached, k8s_calls, run_commands = kube_f.result()
        findings += judge([s for s in steps if s.needs_cluster], evidence)
        findings = order(explain(findings))
        network = ev.network_profile
        return Report(
            cluster=ClusterSummary(
                alias=request.alias,
                id=request.cluster_id,
                outbound_type=ev.outbound_type,
                network_plugin=network.get("networkPlugin"),
                network_plugin_mode=network.get("networkPluginMode"),
            ),
            endpoint=redact_url(request.endpoint.url) if request.endpoint else None,
            egress_ips=egress_ips(ev),
            findings=findings,
            root_cause=root_cause(findings),
            steps=tuple(step.name for step in steps),
            stats=Stats(
                k8s_calls=k8s_calls,
                run_commands=run_commands,
                duration_ms=int((time.monotonic() - started) * 1000),
            ),
        )

    def _cluster_side(
        self,
        request: CheckRequest,
        network_f: Future[tuple[Json, list[Json]]],
        on_note: NoteCallback | None,
    ) -> tuple[KubeEvidence | None, KubeUnreached | None, int, int]:
        """Everything that needs the API server; its absence is evidence, not a failure.

        An API server the bot cannot connect to (private, or authorized IP ranges) is
        reached through Azure run command instead (bot/collect/runcommand.py), under the
        same destination policy: the probe command's rules, or the refusal, come from it."""
        rt = self.runtime
        connection: KubeConnection | None = None
        command: RunCommand | None = None
        try:
            try:
                connection = connect(
                    rt.kube_connection_plan(request.cluster_id), rt.clients, rt.credential
                )
                kube = self._read(connection, request, network_f)
            except KubeNotConnected as exc:
                command = RunCommand.of(rt, request.cluster_id, str(exc))
                if on_note:
                    on_note(
                        f"The cluster side goes through Azure run command ({command.why}): "
                        "it takes a minute or two longer."
                    )
                url, rules, refusal = self._probe_url(request), [], None
                if url is not None and request.endpoint is not None:
                    # Node addresses are not known before the command reads them; they lie
                    # in the cluster's subnets, which the policy denies already.
                    policy = cluster_policy(request.policy, network_f.result(), [])
                    if found := judge_destination(request.endpoint, policy):
                        url, refusal = None, refused_run(request.endpoint.url, str(found), rt.probe)
                    else:
                        rules = probe_rules(policy)
                kube = read_cluster(command, request.pod, url, _parts(request), rt.probe, rules)
                if refusal is not None:
                    kube = replace(kube, probes=[refusal])
        except KubeUnavailable as exc:
            unreached = KubeUnreached(how=connection.how if connection else None, error=str(exc))
            if command:
                unreached = KubeUnreached(
                    how=command.how,
                    error=f"The bot went through Azure run command ({command.why}): {exc}",
                    reason=exc.reason if isinstance(exc, CommandFailed) else None,
                    fix=exc.fix if isinstance(exc, CommandFailed) else [],
                )
            return None, unreached, _calls(connection), command.count if command else 0
        finally:
            if connection:
                connection.close()
        return kube, None, _calls(connection), command.count if command else 0

    @staticmethod
    def _probe_url(request: CheckRequest) -> str | None:
        if request.endpoint is None or Need.PROBE not in request.needs:
            return None
        return request.endpoint.url

    def _read(
        self,
        connection: KubeConnection,
        request: CheckRequest,
        network_f: Future[tuple[Json, list[Json]]],
    ) -> KubeEvidence:
        """Nodes first (they name the pools to probe), then what the steps need at once.

        Only the node list is essential; a refused pod list or metrics read narrows the
        check (said in `partial`) but never throws away a probe that ran.
        """
        needs = request.needs
        reader = KubeReader(connection)
        gate = self.runtime.probe_gate
        runner = ProbeRunner(
            connection,
            self.runtime.probe,
            self.runtime.clock,
            gate=functools.partial(gate, request.cluster_id) if gate else nullcontext,
        )
        node_list = reader.nodes()
        namespace, name = k8s.split_key(request.pod or "")
        probe = self._probe_url(request) is not None
        with ContextPool(9, thread_name_prefix="k8s") as pool:
            pods_f = pool.submit(reader.pods) if Need.PODS in needs else None
            node_metrics_f = pod_metrics_f = None
            if Need.KUBE_METRICS in needs:
                node_metrics_f = pool.submit(reader.metrics, "nodes")
                pod_metrics_f = pool.submit(reader.metrics, "pods")
            target_f = None
            if request.pod and needs & {Need.PODS, Need.PROBE}:
                target_f = pool.submit(reader.pod, namespace, name)
            if Need.PROBE in needs:
                pool.submit(runner.remove_leftovers)
            view_reader = PodViewReader(connection)
            coredns_f = pool.submit(view_reader.coredns_custom) if Need.COREDNS in needs else None
            view_f = None
            if request.pod and Need.POD_VIEW in needs:
                view_f = pool.submit(view_reader.view, namespace)
            probes_f = in_pod_f = None
            partial: list[str] = []
            target = _optional(target_f, partial)
            if probe and request.endpoint:
                only = (target or {}).get("spec", {}).get("nodeName") if request.pod else None
                pools = probe_pools(node_list, only) or ([None] if only is None else [])
                policy = cluster_policy(request.policy, network_f.result(), node_list)
                if refusal := judge_destination(request.endpoint, policy):
                    refused = runner.refused(request.endpoint.url, str(refusal))
                    probes_f = pool.submit(lambda: [refused])
                else:
                    rules = probe_rules(policy)
                    probes_f = pool.submit(runner.run, request.endpoint.url, pools, rules)
                    if target is not None:
                        in_pod_f = pool.submit(
                            self._in_pod, connection, request, target, pools, rules
                        )
            node_metrics, refusal = node_metrics_f.result() if node_metrics_f else (None, None)
            pod_metrics, _ = pod_metrics_f.result() if pod_metrics_f else (None, None)
            coredns, coredns_refusal = coredns_f.result() if coredns_f else (None, None)
            view = view_f.result() if view_f else None
            partial += [coredns_refusal] if coredns_refusal else []
            partial += list(view.refused.values()) if view else []
            return KubeEvidence(
                how=connection.how,
                nodes=node_list,
                pods=_optional(pods_f, partial) or [],
                node_metrics=node_metrics,
                pod_metrics=pod_metrics,
                metrics_refusal=refusal,
                target_pod=request.pod,
                target_pod_body=target,
                probes=probes_f.result() if probes_f else [],
                partial=partial,
                in_pod_probe=in_pod_f.result() if in_pod_f else None,
                pod_view=view,
                coredns_custom=coredns,
            )

    def _in_pod(
        self,
        connection: KubeConnection,
        request: CheckRequest,
        target: Json,
        pools: list[str | None],
        rules: list[str],
    ) -> ProbeRun:
        """The probe inside --pod, when the cluster's `inPodProbe` allows it and the pod runs."""
        url = request.endpoint.url if request.endpoint else ""
        pool = pools[0] if pools else None
        base = {"url": redact_url(url), "pool": pool, "image": self.runtime.probe.image}
        key = request.pod or ""
        if not self.runtime.in_pod_probe(request.cluster_id):
            return ProbeRun(pod=key, inside=key, failure="Disabled", **base)
        phase = (target.get("status") or {}).get("phase") or "Unknown"
        if phase != "Running":
            return ProbeRun(
                pod=key, inside=key, failure="PodNotRunning", message=f"phase {phase}", **base
            )
        return InPodProbe(connection, self.runtime.probe).run(url, target, pool, rules)


def _parts(request: CheckRequest) -> frozenset[str]:
    """The reads of the run command's script (scripts/read.sh) the mode's steps need."""
    parts = {"nodes"}
    if Need.PODS in request.needs:
        parts.add("pods")
    if Need.KUBE_METRICS in request.needs:
        parts |= {"node-metrics", "pod-metrics"}
    if request.pod and request.needs & {Need.PODS, Need.PROBE}:
        parts.add("target")
    if Need.COREDNS in request.needs:
        parts.add("coredns")
    if request.pod and Need.POD_VIEW in request.needs:
        parts.add("pod-view")
    return frozenset(parts)


def _calls(connection: KubeConnection | None) -> int:
    return connection.api.calls if connection else 0


def _optional(future: Future | None, partial: list[str]) -> Any:
    """A read the check can do without: its refusal is noted, not raised."""
    if future is None:
        return None
    try:
        return future.result()
    except KubeUnavailable as exc:
        partial.append(str(exc))
        return None

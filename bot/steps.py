"""The checklist's step registry: every step declared once, in root-cause order.

The engine runs the steps a mode names, the live Slack checklist and the terminal report
list them, and the modes choose their reads from what the steps need, all from `STEPS`
(like K8sGPT's analyzer map). The order is the order a packet takes, which is the
root-cause order of finding-codes.md: the first error along it is the root cause.

How to add a step:
1. Write the handler in `handlers/` as a pure function of evidence; give it the one
   signature `def judge(ev: Evidence) -> list[Finding]` here (an adapter of a few lines
   when the handler takes `ev.azure` or `ev.kube` itself).
2. Add its finding codes to `bot/codes.py` (with `step=` its name) and
   docs/finding-codes.md.
3. Insert `Step(name, title, judge, needs)` into `STEPS` where its findings sit in the
   root-cause order (a pod's policies and its DNS path come before `route`).
4. `needs` says which reads it judges (`Need`): a mode that names the step makes those
   reads and no others. A step needing only Azure reads runs as soon as Azure is read;
   one needing anything of the cluster runs once the cluster side (and probe) is in.
   A new kind of read is a new `Need` (bot/evidence.py; the cluster's go in KUBE_NEEDS)
   served by a collector: Azure's in bot/collect/azure.py, the cluster's in
   `Engine._read`, each read only when a step needs it.
5. Add it to the `MODES` it belongs to. Slack, the terminal and JSON need nothing more.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bot.evidence import KUBE_NEEDS, Evidence, Need
from bot.model import Finding
from handlers import (
    access,
    advisor,
    cluster,
    dnspath,
    firewall,
    loadbalancer,
    natgw,
    netpol,
    nodes,
    nsg,
    osdisk,
    outbound,
    podprobe,
    pods,
    probe,
    routes,
    snat,
)

Judge = Callable[[Evidence], list[Finding]]


@dataclass(frozen=True)
class Step:
    name: str  # the `step` of its codes in bot/codes.py
    title: str
    judge: Judge
    needs: frozenset[Need]
    listed: bool = True  # shown as a line of the checklist even when it found nothing
    pod_only: bool = False  # about the user's --pod: run (and listed) only with one

    @property
    def needs_cluster(self) -> bool:
        """Judged once the cluster side is read; else as soon as Azure is."""
        return bool(self.needs & KUBE_NEEDS)


def _on_cluster(judge: Callable[..., list[Finding]]) -> Judge:
    """A step about the cluster's own objects: nothing to judge when it was unreachable."""
    return lambda ev: judge(ev.kube) if ev.kube is not None else []


def _probe(ev: Evidence) -> list[Finding]:
    """Probe pods are ordinary pods: their findings say which subnet (node or pod subnet)
    they sent from, so the outcome speaks for that path."""
    if ev.kube is None:
        return []
    found = probe.check(ev.kube.probes) + pods.check(ev.kube) + podprobe.check(ev.kube)
    return outbound.with_probe_sources(ev.azure, found)


def _needs(*needs: Need) -> frozenset[Need]:
    return frozenset({Need.CLUSTER, *needs})


STEPS: tuple[Step, ...] = (
    Step(
        "cluster",
        "Cluster and outbound type",
        # The component that really carries egress is decided on the path (which subnet
        # has what): read where a mode reads the path, else the outbound type's is assumed.
        lambda ev: cluster.check(ev.azure) + outbound.check(ev.azure),
        _needs(Need.OUTBOUND),
    ),
    Step(
        "netpol",
        "The pod's NetworkPolicies",
        lambda ev: netpol.check(ev.azure, ev.kube),
        _needs(Need.PATH, Need.PODS, Need.POD_VIEW),
        pod_only=True,
    ),
    Step(
        "dns",
        "Name resolution (DNS path)",
        lambda ev: dnspath.check(ev.azure, ev.kube),
        _needs(Need.PATH, Need.COREDNS),
    ),
    Step("route", "Route tables", lambda ev: routes.check(ev.azure), _needs(Need.PATH)),
    Step("nsg", "Network security groups", lambda ev: nsg.check(ev.azure), _needs(Need.PATH)),
    Step(
        "firewall",
        "Firewall / appliance",
        lambda ev: firewall.check(ev.azure),
        _needs(Need.PATH),
    ),
    Step(
        "egress",
        "NAT gateway / load balancer",
        lambda ev: natgw.check(ev.azure) + loadbalancer.check(ev.azure),
        _needs(Need.PATH, Need.OUTBOUND),
    ),
    Step(
        "probe",
        "Probe from inside the cluster",
        _probe,
        _needs(Need.NODES, Need.PODS, Need.PROBE),
    ),
    Step(
        "snat",
        "SNAT ports",
        lambda ev: snat.check(ev.azure, ev.kube),
        _needs(Need.OUTBOUND, Need.METRICS, Need.NODES),
    ),
    Step(
        "resources",
        "Node and pod resources",
        _on_cluster(nodes.check),
        _needs(Need.NODES, Need.PODS, Need.KUBE_METRICS),
    ),
    Step(
        "disk",
        "OS disk IO",
        lambda ev: osdisk.check(ev.azure, ev.kube),
        _needs(Need.SCALE_SETS, Need.METRICS, Need.VM_SIZES),
    ),
    Step(
        "advisor",
        "Azure Advisor",
        lambda ev: advisor.check(ev.azure, ev.kube),
        _needs(Need.ADVISOR),
    ),
    # What could not be read, Azure's and the cluster's: judged last, when both are in.
    Step("access", "Access to Azure and Kubernetes", access.check, _needs(Need.NODES), False),
)
BY_NAME: dict[str, Step] = {step.name: step for step in STEPS}
STEP_ORDER: dict[str, int] = {step.name: index for index, step in enumerate(STEPS)}

# What each --mode runs: the persistent checklist (is the path open?), the intermittent one
# (does it run out?), both, or only the SNAT step (`aks-egress snat`).
MODES: dict[str, frozenset[str]] = {
    "persistent": frozenset(
        {"cluster", "netpol", "dns", "route", "nsg", "firewall", "egress", "probe", "access"}
    ),
    "intermittent": frozenset({"cluster", "snat", "resources", "disk", "advisor", "access"}),
    "snat": frozenset({"cluster", "snat", "access"}),
}
MODES["all"] = MODES["persistent"] | MODES["intermittent"]


def steps_of(mode: str, pod: str | None = None) -> tuple[Step, ...]:
    """A mode's steps, in the one order; those about the user's pod only for a --pod."""
    return tuple(step for step in STEPS if step.name in MODES[mode] and (pod or not step.pod_only))


def needs_of(steps: Iterable[Step]) -> frozenset[Need]:
    return frozenset(need for step in steps for need in step.needs)

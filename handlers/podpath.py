"""The pod's own view and the DNS path, in root-cause order: the pod's policies, the DNS
servers, the probe inside the pod. `explain_dns` links a PROBE_DNS_FAILURE to the finding
that causes it."""

from __future__ import annotations

from dataclasses import replace

from bot.evidence import AzureEvidence, KubeEvidence
from bot.model import Finding
from handlers import dnspath, netpol, podprobe

DNS_CAUSES = ("NETPOL_DNS_DENY", "DNS_SERVER_BLOCKED")


def check(ev: AzureEvidence, kube: KubeEvidence | None) -> list[Finding]:
    found = netpol.check(ev, kube) + dnspath.check(ev, kube)
    if kube is not None:
        found += podprobe.check(kube)
    return found


def explain_dns(findings: list[Finding]) -> list[Finding]:
    """A name that does not resolve is explained by a DNS server the pod or the cluster
    cannot reach: the probe's finding names it (evidence `explainedBy`)."""
    causes = [f for f in findings if f.code in DNS_CAUSES]
    if not causes:
        return findings
    link = [{"code": f.code, "detail": f.detail} for f in causes]
    return [
        replace(f, evidence={**f.evidence, "explainedBy": link})
        if f.code == "PROBE_DNS_FAILURE"
        else f
        for f in findings
    ]

"""The pod's own view and the DNS path, in root-cause order: the pod's policies, the DNS
servers, the probe inside the pod. `explain_dns` links a PROBE_DNS_FAILURE to the finding
that causes it."""

from __future__ import annotations

from dataclasses import replace

from bot.evidence import AzureEvidence, KubeEvidence
from bot.model import Finding
from handlers import dnspath, netpol, podprobe


def check(ev: AzureEvidence, kube: KubeEvidence | None) -> list[Finding]:
    found = netpol.check(ev, kube) + dnspath.check(ev, kube)
    if kube is not None:
        found += podprobe.check(kube)
    return found


def explain_dns(findings: list[Finding]) -> list[Finding]:
    """A name that does not resolve is explained by a DNS server that cannot be reached: a
    DNS_SERVER_BLOCKED for the endpoint's zone explains every probe's failure, and the
    pod's NETPOL_DNS_DENY the failure seen from inside that pod. The probe's finding names
    them (evidence `explainedBy`)."""
    servers = [f for f in findings if f.code == "DNS_SERVER_BLOCKED" and f.about_endpoint]
    policies = [f for f in findings if f.code == "NETPOL_DNS_DENY"]
    if not servers and not policies:
        return findings

    def linked(f: Finding) -> Finding:
        if f.code != "PROBE_DNS_FAILURE":
            return f
        causes = (policies if f.evidence.get("inside") else []) + servers
        if not causes:
            return f
        link = [{"code": c.code, "detail": c.detail} for c in causes]
        return replace(f, evidence={**f.evidence, "explainedBy": link})

    return [linked(f) for f in findings]

"""Links a probe's failure to the finding that causes it (evidence `explainedBy`).

A name that does not resolve is explained by a DNS server that cannot be reached: a
DNS_SERVER_BLOCKED for the endpoint's zone explains every probe's failure, and the pod's
NETPOL_DNS_DENY the failure seen from inside that pod. A timeout seen from inside the pod is
explained by its NETPOL_EGRESS_DENY: the policy drops the SYN at the pod's own node, where a
fresh probe pod, which no policy selects, gets through.
"""

from __future__ import annotations

from dataclasses import replace

from bot.model import Finding

# probe code -> (cause code, whether it explains only the probe run inside the pod)
CAUSES: dict[str, tuple[tuple[str, bool], ...]] = {
    "PROBE_DNS_FAILURE": (("NETPOL_DNS_DENY", True), ("DNS_SERVER_BLOCKED", False)),
    "PROBE_TIMEOUT": (("NETPOL_EGRESS_DENY", True),),
}


def _causes(code: str, findings: list[Finding]) -> list[Finding]:
    if code == "DNS_SERVER_BLOCKED":
        return [f for f in findings if f.code == code and f.about_endpoint]
    return [f for f in findings if f.code == code]


def explain(findings: list[Finding]) -> list[Finding]:
    """The findings with each probe failure naming what causes it, where one does."""

    def linked(f: Finding) -> Finding:
        causes = [
            cause
            for code, inside_only in CAUSES.get(f.code, ())
            if f.evidence.get("inside") or not inside_only
            for cause in _causes(code, findings)
        ]
        if not causes:
            return f
        link = [{"code": c.code, "detail": c.detail} for c in causes]
        return replace(f, evidence={**f.evidence, "explainedBy": link})

    return [linked(f) for f in findings]

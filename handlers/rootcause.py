"""The one place that decides the root cause, from the catalog's path order.

The decisive error is the first along the path a packet takes (cluster → the pod's own
NetworkPolicies → name resolution (DNS path) → route → NSG → firewall → NAT gateway /
load balancer → probe → SNAT → resources); within a step a finding about the user's
endpoint beats one about AKS's own required egress.
"""

from __future__ import annotations

from bot.codes import CATALOG
from bot.model import Finding, Severity
from bot.steps import STEP_ORDER


def order(findings: list[Finding]) -> list[Finding]:
    """Findings in checklist order, stable within a step."""
    return sorted(findings, key=lambda f: STEP_ORDER[CATALOG[f.code].step])


def root_cause(findings: list[Finding]) -> str | None:
    errors = [f for f in findings if f.severity == Severity.ERROR]
    if not errors:
        return None
    decisive = min(
        errors,
        key=lambda f: (STEP_ORDER[CATALOG[f.code].step], not f.about_endpoint),
    )
    return decisive.code

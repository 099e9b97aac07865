"""Checklist step: what Azure Advisor already says about the cluster and its node resources.

`ev.advisor` holds `Microsoft.Advisor/recommendations` bodies (None: they were not read,
so nothing is said). A recommendation counts when the resource it is about is the cluster
(or below it) or lies in the cluster's node resource group: the resource is
`properties.resourceMetadata.resourceId`, else the part of the recommendation's id before
`/providers/Microsoft.Advisor/recommendations/`. One ADVISOR_RECOMMENDATION finding lists
them all, highest impact first, with their problem and solution text.
"""

from __future__ import annotations

from bot import armid
from bot.codes import finding
from bot.evidence import AzureEvidence, KubeEvidence
from bot.model import Finding, Json

IMPACT_ORDER = {"high": 0, "medium": 1, "low": 2}
MARKER = "/providers/microsoft.advisor/recommendations/"


def resource_of(rec: Json) -> str | None:
    """The resource a recommendation is about."""
    props = rec.get("properties") or {}
    resource = (props.get("resourceMetadata") or {}).get("resourceId")
    if resource:
        return str(resource)
    rec_id = rec.get("id") or ""
    at = rec_id.lower().find(MARKER)
    return rec_id[:at] if at > 0 else None


def _in_group(resource: str, subscription: str, group: str) -> bool:
    try:
        parsed = armid.ArmId.parse(resource)
    except ValueError:
        prefix = f"/subscriptions/{subscription}/resourcegroups/{group}".lower()
        return armid.key(resource) == prefix or armid.key(resource).startswith(prefix + "/")
    return (
        parsed.subscription.lower() == subscription.lower()
        and parsed.resource_group.lower() == group.lower()
    )


def concerns(ev: AzureEvidence, rec: Json) -> bool:
    """Whether a recommendation is about the cluster or its node resource group."""
    resource = resource_of(rec)
    if not resource:
        return False
    cluster = armid.key(ev.cluster_id)
    if armid.key(resource) == cluster or armid.key(resource).startswith(cluster + "/"):
        return True
    node_rg = ev.node_resource_group
    if not node_rg:
        return False
    return _in_group(resource, armid.ArmId.parse(ev.cluster_id).subscription, node_rg)


def _entry(rec: Json) -> Json:
    props = rec.get("properties") or {}
    short = props.get("shortDescription") or {}
    return {
        "id": rec.get("id"),
        "category": props.get("category"),
        "impact": props.get("impact"),
        "resource": resource_of(rec),
        "impactedField": props.get("impactedField"),
        "impactedValue": props.get("impactedValue"),
        "problem": short.get("problem"),
        "solution": short.get("solution"),
        "learnMoreLink": props.get("learnMoreLink"),
        "lastUpdated": props.get("lastUpdated"),
    }


def _fix(ev: AzureEvidence, entries: list[Json]) -> list[str]:
    lines = [f"az advisor recommendation list --ids {ev.cluster_id} --output table"]
    if ev.node_resource_group:
        lines.append(
            f"az advisor recommendation list --resource-group {ev.node_resource_group} "
            "--output table"
        )
    links = dict.fromkeys(e["learnMoreLink"] for e in entries if e["learnMoreLink"])
    return lines + [f"# {link}" for link in links]


def check(ev: AzureEvidence, kube: KubeEvidence | None) -> list[Finding]:
    if ev.advisor is None:
        return []
    seen: set[str] = set()
    entries = []
    for rec in ev.advisor:
        key = armid.key(rec.get("id") or "") or str(id(rec))
        if key in seen or not concerns(ev, rec):
            continue
        seen.add(key)
        entries.append(_entry(rec))
    if not entries:
        return []
    entries.sort(key=lambda e: (IMPACT_ORDER.get(str(e["impact"]).lower(), 3), e["category"] or ""))
    lines = []
    for e in entries:
        what = e["impactedValue"] or (e["resource"] or "").rsplit("/", 1)[-1]
        text = e["problem"] or "(no description)"
        if e["solution"] and e["solution"] != e["problem"]:
            text += f" → {e['solution']}"
        lines.append(f"[{e['impact'] or '?'} · {e['category'] or '?'}] {what}: {text}")
    cluster = armid.ArmId.parse(ev.cluster_id).name
    detail = (
        f"Azure Advisor has {len(entries)} recommendation(s) for {cluster} or its node "
        f"resources: " + "; ".join(lines)
    )
    return [
        finding(
            "ADVISOR_RECOMMENDATION",
            detail,
            resource=ev.cluster_id,
            evidence={"recommendations": entries},
            fix=_fix(ev, entries),
        )
    ]

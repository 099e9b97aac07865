"""What the bot could not read, said as findings so a partial check is never read as clean.

A 403 names the exact RBAC action and scope to grant; anything else names the status and
the error ARM returned after azure-core's retries. The cluster's API server: how it was
reached, or why not, and which of its reads were refused.
"""

from __future__ import annotations

from bot import armid
from bot.codes import finding
from bot.evidence import AzureEvidence, Evidence
from bot.model import Finding, Json
from handlers.nsg import undecided_groups
from handlers.shellsafe import arg


def local_accounts(ev: AzureEvidence) -> list[Finding]:
    """A cluster that keeps local accounts hands out cluster-admin certificates as its
    "user" credential when it has no Entra ID integration: whoever may call
    listClusterUserCredential (the bot too) holds the cluster.
    https://learn.microsoft.com/azure/aks/manage-local-accounts-managed-azure-ad"""
    if ev.props.get("disableLocalAccounts") is True:
        return []
    cluster = armid.ArmId.parse(ev.cluster_id)
    entra = bool(ev.props.get("aadProfile"))
    where = (
        f"--resource-group {arg(cluster.resource_group, 'arm_name', 'resource-group')} "
        f"--name {arg(cluster.name, 'arm_name', 'cluster')}"
    )
    fix = (
        []
        if entra
        else [
            f"az aks update {where} --enable-aad --aad-admin-group-object-ids ENTRA_ADMIN_GROUP_ID"
        ]
    )
    return [
        finding(
            "CLUSTER_LOCAL_ACCOUNTS",
            "Local accounts are enabled on this cluster"
            + (
                ": its user credential is still Entra ID, but the admin certificate exists."
                if entra
                else " and it has no Entra ID integration: its user kubeconfig, which the "
                "bot reads, is a cluster-admin certificate."
            )
            + " Disable local accounts so every access is an Entra ID identity.",
            resource=ev.cluster_id,
            evidence={
                "disableLocalAccounts": ev.props.get("disableLocalAccounts"),
                "entraIdIntegration": entra,
                "enableRBAC": ev.props.get("enableRBAC"),
            },
            fix=[*fix, f"az aks update {where} --disable-local-accounts"],
        )
    ]


def check(ev: Evidence) -> list[Finding]:
    return _azure(ev.azure) + _kube(ev)


def _kube(ev: Evidence) -> list[Finding]:
    cluster_id = ev.azure.cluster_id
    if ev.unreached is not None:
        return [
            finding(
                "KUBE_UNREACHABLE",
                f"{ev.unreached.error.rstrip('.')}. The probe, pod and node checks did not run.",
                resource=cluster_id,
                evidence={
                    "how": ev.unreached.how,
                    "error": ev.unreached.error,
                    **({"reason": ev.unreached.reason} if ev.unreached.reason else {}),
                },
                fix=list(ev.unreached.fix),
            )
        ]
    if ev.kube is None:
        return []
    found = [
        finding(
            "KUBE_ACCESS",
            f"Reached the cluster's API server through {ev.kube.how}.",
            resource=cluster_id,
            evidence={
                "how": ev.kube.how,
                **({"runCommands": ev.kube.run_commands} if ev.kube.run_commands else {}),
            },
        )
    ]
    return found + [
        finding(
            "KUBE_PARTIAL_ACCESS",
            f"{problem}. The checks that need it were skipped.",
            resource=cluster_id,
            evidence={"error": problem},
        )
        for problem in ev.kube.partial
    ]


def _azure(ev: AzureEvidence) -> list[Finding]:
    findings = local_accounts(ev)
    groups = undecided_groups(ev) if ev.failures else {}
    for failure in ev.failures:
        cost = ""
        if failure.what == "node scale sets" and groups:
            cost = " NSG rules naming application security groups could not be decided " + (
                "; ".join(f"({g}: pools {', '.join(p)})" for g, p in groups.items())
            )
            cost += ": the groups' members are the node NICs the scale sets describe."
        evidence: Json = {
            "read": failure.what,
            "scope": failure.resource,
            "status": failure.status,
            "code": failure.code,
            "message": failure.message,
        }
        if cost:
            evidence["undecidedApplicationSecurityGroups"] = groups
        if failure.status == 403:
            findings.append(
                finding(
                    "AZURE_ACCESS_DENIED",
                    f"The bot may not read the {failure.what} at {failure.resource} "
                    f"(403 {failure.code}), so that part of the path was not checked.{cost} "
                    f"Grant {failure.permission or 'read access'} on that scope.",
                    resource=failure.resource,
                    evidence={**evidence, "permission": failure.permission},
                    fix=[
                        "az role assignment create --assignee <bot-identity-client-id> "
                        "--role aks-egress-reader "
                        f"--scope {arg(failure.resource, 'arm_id', 'scope')}"
                    ],
                )
            )
        else:
            findings.append(
                finding(
                    "AZURE_READ_FAILED",
                    f"Reading the {failure.what} at {failure.resource} failed "
                    f"({failure.status} {failure.code}: {failure.message}), so that part of "
                    f"the path was not checked.{cost} Run the check again; if it persists, "
                    "check that the resource still exists.",
                    resource=failure.resource,
                    evidence=evidence,
                )
            )
    return findings

"""handlers/access.py: what the bot could not read or reach, said as findings (the access
step), so a partial check is never read as clean."""

from __future__ import annotations

from bot.evidence import AzureEvidence, Evidence, KubeEvidence, KubeUnreached, ReadFailure
from handlers import access

CLUSTER = (
    "/subscriptions/s/resourceGroups/rg-aks/providers/Microsoft.ContainerService/managedClusters/c"
)
SUBNET = (
    "/subscriptions/s/resourceGroups/rg-net/providers/Microsoft.Network/virtualNetworks/v/subnets/a"
)


def azure(**props: object) -> AzureEvidence:
    body = {"id": CLUSTER, "properties": {"disableLocalAccounts": True, **props}}
    return AzureEvidence(alias="c", cluster_id=CLUSTER, cluster=body)


def codes(found: list) -> list[str]:
    return [f.code for f in found]


def test_a_refused_read_names_the_permission_and_scope_to_grant() -> None:
    ev = azure()
    permission = "Microsoft.Network/virtualNetworks/subnets/read"
    ev.failures = [
        ReadFailure("subnet", SUBNET, 403, "AuthorizationFailed", "no", permission),
        ReadFailure("route table", SUBNET + "/x", 500, "InternalError", "boom"),
    ]
    denied, failed = access.check(Evidence(ev))
    assert denied.code == "AZURE_ACCESS_DENIED"
    assert "Grant Microsoft.Network/virtualNetworks/subnets/read on that scope" in denied.detail
    assert denied.fix == [
        "az role assignment create --assignee '<bot-identity-client-id>' --role aks-egress-reader "
        f"--scope {SUBNET}"
    ]
    assert denied.evidence["permission"] == "Microsoft.Network/virtualNetworks/subnets/read"
    assert failed.code == "AZURE_READ_FAILED"
    assert "(500 InternalError: boom)" in failed.detail and not failed.fix


def test_a_hostile_scope_is_withheld_from_the_fix() -> None:
    ev = azure()
    ev.failures = [ReadFailure("subnet", "/subscriptions/s; rm -rf /", 403, "Denied", "no")]
    [denied] = access.check(Evidence(ev))
    assert "rm -rf" not in denied.fix[0] and "'<scope: withheld" in denied.fix[0]


def test_local_accounts_without_entra_id_make_the_user_credential_admin() -> None:
    ev = azure(disableLocalAccounts=False)
    [found] = access.local_accounts(ev)
    assert found.code == "CLUSTER_LOCAL_ACCOUNTS"
    assert "cluster-admin certificate" in found.detail
    assert found.fix[0].startswith("az aks update --resource-group rg-aks --name c --enable-aad")
    assert (
        found.fix[-1] == "az aks update --resource-group rg-aks --name c --disable-local-accounts"
    )
    with_entra = access.local_accounts(
        azure(disableLocalAccounts=None, aadProfile={"managed": True})
    )
    assert with_entra[0].fix == [
        "az aks update --resource-group rg-aks --name c --disable-local-accounts"
    ]
    assert access.local_accounts(azure()) == []


def test_how_the_api_server_was_reached_and_what_it_refused() -> None:
    kube = KubeEvidence(how="kubeconfig context prod", partial=["pods list refused (403)"])
    reached, partial = access.check(Evidence(azure(), kube=kube))
    assert reached.code == "KUBE_ACCESS"
    assert reached.detail == "Reached the cluster's API server through kubeconfig context prod."
    assert reached.evidence == {"how": "kubeconfig context prod"}
    assert partial.code == "KUBE_PARTIAL_ACCESS"
    assert partial.detail == "pods list refused (403). The checks that need it were skipped."


def test_an_unreached_api_server_says_why_and_how_it_was_tried() -> None:
    unreached = KubeUnreached(
        how="Azure run command",
        error="Run command is disabled.",
        reason="disabled",
        fix=["az aks update --x"],
    )
    [found] = access.check(Evidence(azure(), unreached=unreached))
    assert codes([found]) == ["KUBE_UNREACHABLE"]
    assert found.detail == ("Run command is disabled. The probe, pod and node checks did not run.")
    assert found.evidence == {
        "how": "Azure run command",
        "error": "Run command is disabled.",
        "reason": "disabled",
    }
    assert found.fix == ["az aks update --x"]
    assert access.check(Evidence(azure())) == []

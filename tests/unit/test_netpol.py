"""The pod's-policies step as a pure function of the evidence: which flows it judges (the
endpoint; the DNS server of the pod's dnsPolicy), when policies act at all, and fixes that
are safe to paste whatever the cluster's labels say."""

from __future__ import annotations

import ipaddress
import json

from bot.endpoint import parse_endpoint
from bot.evidence import AzureEvidence, Destination, KubeEvidence, PodView
from handlers import netpol

DENY_ALL = {
    "metadata": {"name": "deny-all", "namespace": "web"},
    "spec": {"podSelector": {}, "policyTypes": ["Egress"]},
}
ONLY_KUBE_DNS = {
    "metadata": {"name": "dns-only", "namespace": "web"},
    "spec": {
        "podSelector": {},
        "policyTypes": ["Egress"],
        "egress": [
            {
                "to": [
                    {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                        },
                        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                    }
                ],
                "ports": [{"protocol": "UDP", "port": 53}],
            }
        ],
    },
}


def _pod(**spec: object) -> dict:
    labels = {"app": "api'; rm -rf / #", "pod-template-hash": "5b7d9c8f6"}
    return {"metadata": {"name": "api-0", "namespace": "web", "labels": labels}, "spec": spec}


def _evidence(policy_engine: str | None = "calico") -> AzureEvidence:
    endpoint = parse_endpoint("https://api.github.com")
    profile = {"networkPolicy": policy_engine} if policy_engine else {}
    address = ipaddress.IPv4Address("140.82.121.6")
    return AzureEvidence(
        alias="a",
        cluster_id="/subscriptions/s/resourceGroups/r/providers/"
        "Microsoft.ContainerService/managedClusters/c",
        cluster={"properties": {"networkProfile": profile}},
        endpoint=endpoint,
        destinations=[Destination("endpoint", "api.github.com", (address,), 443, "Https")],
    )


def _kube(pod: dict, *policies: dict) -> KubeEvidence:
    return KubeEvidence(
        how="test",
        target_pod="web/api-0",
        target_pod_body=pod,
        pod_view=PodView(network_policies=list(policies)),
    )


def _codes(found: list) -> list[str]:
    return [f.code for f in found]


def test_deny_all_denies_dns_then_the_endpoint_with_a_safe_fix():
    found = netpol.check(_evidence(), _kube(_pod(), DENY_ALL))
    assert _codes(found) == ["NETPOL_DNS_DENY", "NETPOL_EGRESS_DENY"]
    fix = found[1].fix[0]
    assert fix.startswith("kubectl apply -f - <<'EOF'\n") and fix.endswith("\nEOF")
    manifest = json.loads(fix.split("\n", 1)[1].rsplit("\n", 1)[0])
    assert manifest["spec"]["podSelector"]["matchLabels"] == {"app": "api'; rm -rf / #"}
    assert manifest["spec"]["egress"][0]["to"] == [{"ipBlock": {"cidr": "140.82.121.6/32"}}]


def test_dns_config_nameservers_are_the_pods_dns_server():
    pod = _pod(dnsPolicy="None", dnsConfig={"nameservers": ["10.9.9.9"]})
    found = netpol.check(_evidence(), _kube(pod, ONLY_KUBE_DNS))
    dns = next(f for f in found if f.code == "NETPOL_DNS_DENY")
    assert dns.evidence["dnsServer"] == "its dnsConfig nameservers"
    assert dns.evidence["destinations"][0]["address"] == "10.9.9.9"
    # ClusterFirst: kube-dns is allowed, so names resolve.
    assert "NETPOL_DNS_DENY" not in _codes(netpol.check(_evidence(), _kube(_pod(), ONLY_KUBE_DNS)))


def test_no_engine_or_host_network_means_no_verdict():
    assert netpol.check(_evidence(None), _kube(_pod(), DENY_ALL)) == []
    assert netpol.check(_evidence("none"), _kube(_pod(), DENY_ALL)) == []
    assert netpol.check(_evidence(), _kube(_pod(hostNetwork=True), DENY_ALL)) == []


def test_a_refused_policy_list_gives_no_verdict():
    kube = _kube(_pod(), DENY_ALL)
    assert kube.pod_view is not None
    kube.pod_view.refused["network_policies"] = "RBAC forbids the bot to list network policies"
    assert netpol.check(_evidence(), kube) == []

"""Checklist step "the pod's NetworkPolicies" (`--pod`): do the pod's own egress policies
let the endpoint, and its DNS server, through? The verdicts come from netpol_rules.py;
this module picks the flows (the endpoint's addresses and port; the DNS server of the
pod's `dnsPolicy`, after kube-dns's DNAT to the CoreDNS pods) and words the findings.

Policies only act where a policy engine enforces them: Azure Network Policy Manager,
Calico or Cilium (`networkProfile.networkPolicy`), or Azure CNI powered by Cilium
(`networkDataplane: cilium`). `networkPolicy` None, the default when it is not set, means
"network policies will not be enforced": they are stored and ignored
(https://learn.microsoft.com/javascript/api/@azure/arm-containerservice/knownnetworkpolicy,
https://learn.microsoft.com/azure/aks/use-network-policies). Pods on the host network share
the node's network namespace and are left out (the Kubernetes page: "NetworkPolicy behavior
for hostNetwork pods is undefined"; AKS's engines do not apply pod policies to them).
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
from dataclasses import dataclass

from bot import armid
from bot.codes import finding
from bot.evidence import AzureEvidence, KubeEvidence, PodView
from bot.model import Finding, Json
from handlers import k8s
from handlers.netpol_rules import CCNP, CNP, K8S_NP, Flow, Policy, Verdict, evaluate

ENGINES = frozenset({"azure", "calico", "cilium"})
# Labels a controller stamps on each pod: selecting by them would select one pod revision.
VOLATILE_LABELS = frozenset(
    {"pod-template-hash", "controller-revision-hash", "statefulset.kubernetes.io/pod-name"}
)
AZURE_DNS = "168.63.129.16"  # Azure's recursive resolver, what dnsPolicy Default uses
DNS_PORT = 53


@dataclass(frozen=True)
class PodContext:
    pod: Json
    key: str
    namespace: Json | None
    policies: list[Policy]
    namespaces: dict[str, Json]
    cilium: bool


def enforced(ev: AzureEvidence) -> bool:
    profile = ev.network_profile
    engine = str(profile.get("networkPolicy") or "").lower()
    return engine in ENGINES or str(profile.get("networkDataplane") or "").lower() == "cilium"


def context(ev: AzureEvidence, kube: KubeEvidence | None) -> PodContext | None:
    """The pod and the policies that may act on it; None when none can."""
    if kube is None or kube.pod_view is None or kube.target_pod_body is None:
        return None
    if not kube.pod_view.policies_known:
        return None  # a refused policy list: KUBE_PARTIAL_ACCESS says so; no guess
    pod = kube.target_pod_body
    if (pod.get("spec") or {}).get("hostNetwork") or not enforced(ev):
        return None
    view: PodView = kube.pod_view
    namespaces = {k8s.meta(n).get("name", ""): n for n in view.namespaces}
    policies = [Policy(K8S_NP, p) for p in view.network_policies]
    cilium = view.cilium_policies is not None
    policies += [Policy(CNP, p) for p in view.cilium_policies or []]
    policies += [Policy(CCNP, p) for p in view.cilium_clusterwide or []]
    ns_name = k8s.meta(pod).get("namespace", "default")
    return PodContext(pod, k8s.pod_key(pod), namespaces.get(ns_name), policies, namespaces, cilium)


def check(ev: AzureEvidence, kube: KubeEvidence | None) -> list[Finding]:
    ctx = context(ev, kube)
    if ctx is None or kube is None:
        return []
    endpoint = ev.endpoint
    by_name = endpoint is not None and not endpoint.is_ip
    found = _dns_findings(ctx, kube, ev, about_endpoint=by_name)
    if endpoint is None:
        return found
    addresses = [a for d in ev.destinations if not d.required for a in d.addresses]
    if not addresses and endpoint.is_ip:
        addresses = [ipaddress.IPv4Address(endpoint.host)]
    if not addresses and not ctx.cilium:
        return found  # a name that does not resolve: the probe says so
    fqdn = None if endpoint.is_ip else endpoint.host
    targets: list[ipaddress.IPv4Address | None] = [*addresses] or [None]
    flows = [Flow(address=a, port=endpoint.port, fqdn=fqdn) for a in targets]
    verdicts = [evaluate(ctx.policies, ctx.pod, ctx.namespace, f, ctx.namespaces) for f in flows]
    if all(v.allowed is False for v in verdicts):
        found.append(_egress_denied(ctx, endpoint.host, endpoint.port, flows, verdicts))
    elif not any(v.allowed for v in verdicts):
        found.append(_undecided(ctx, f"TCP {endpoint.host}:{endpoint.port}", verdicts))
    return found


def _undecided(ctx: PodContext, what: str, verdicts: list[Verdict]) -> Finding:
    """Said, not guessed: which rules could not be judged and why."""
    isolating = sorted({p for v in verdicts for p in v.isolating})
    reasons = sorted({u for v in verdicts for u in v.undecided})
    return finding(
        "NETPOL_UNDECIDED",
        f"Pod {ctx.key} is isolated for egress by {_names(isolating)}; no rule clearly allows "
        f"{what}, and these cannot be judged from the API's objects: {'; '.join(reasons)}. "
        "The probe inside the pod settles it.",
        resource=k8s.api_path(ctx.pod, "pod"),
        evidence={"pod": ctx.key, "isolatingPolicies": isolating, "undecided": reasons},
    )


def _egress_denied(
    ctx: PodContext, host: str, port: int, flows: list[Flow], verdicts: list[Verdict]
) -> Finding:
    isolating = sorted({p for v in verdicts for p in v.isolating})
    denying = sorted({p for v in verdicts for p in v.denying})
    unseen = sorted({p for v in verdicts for p in v.unseen_fqdns})
    addresses = [str(f.address) for f in flows if f.address]
    target = f"{host}:{port}" + (f" ({', '.join(addresses)})" if addresses else "")
    if denying:
        why = (
            f"Cilium egressDeny rules match it and win over every allow: {', '.join(denying)}. "
            "Narrow or remove the deny rule; an allow rule cannot override it."
        )
        fix = list(dict.fromkeys(f"kubectl edit {_kind_arg(name)}" for name in denying))
    else:
        why = f"none of their egress rules allows TCP to {target}."
        if unseen:
            # Cilium, "DNS based" policy: toFQDNs learns addresses from the DNS answers its
            # proxy sees (https://docs.cilium.io/en/stable/security/policy/language/#dns-based).
            why += (
                f" {', '.join(unseen)} names {host} in toFQDNs, but no port-53 rule of its "
                "policies has `rules: dns`, so Cilium's DNS proxy never sees the lookup and "
                f"never learns {host}'s addresses: the DNS rule needs `rules: {{dns: "
                "[{matchPattern: '*'}]}`."
            )
        fix = [_allow_fix(ctx, host, port, addresses)]
    return finding(
        "NETPOL_EGRESS_DENY",
        f"Pod {ctx.key} is isolated for egress by {_names(isolating)}, and {why} Its "
        "connections are dropped at its own node, whatever the Azure path allows.",
        resource=k8s.api_path(ctx.pod, "pod"),
        evidence={
            "pod": ctx.key,
            "isolatingPolicies": isolating,
            "denyingRules": denying,
            "fqdnRulesWithoutDnsProxy": unseen,
            "flow": {"host": host, "addresses": addresses, "port": port, "protocol": "TCP"},
            "undecided": sorted({u for v in verdicts for u in v.undecided}),
        },
        fix=fix,
        about_endpoint=True,
    )


def _names(policies: list[str]) -> str:
    return ", ".join(policies) if policies else "its policies"


def _kind_arg(rule: str) -> str:
    """`ns/name (egressDeny rule 1)` → the kubectl object argument, shell-quoted."""
    name = rule.split(" (", 1)[0]
    namespace, _, bare = name.rpartition("/")
    if namespace:
        return f"ciliumnetworkpolicy {shlex.quote(bare)} --namespace {shlex.quote(namespace)}"
    return f"ciliumclusterwidenetworkpolicy {shlex.quote(bare)}"


def selector_labels(pod: Json) -> dict[str, str]:
    """The pod's stable labels: what a policy for 'this workload' selects."""
    labels = k8s.meta(pod).get("labels") or {}
    return {str(k): str(v) for k, v in labels.items() if k not in VOLATILE_LABELS}


def _policy_name(host: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", f"allow-egress-{host.lower()}").strip("-")
    return name[:63].rstrip("-")


def _allow_fix(ctx: PodContext, host: str, port: int, addresses: list[str]) -> str:
    """The smallest policy that allows the flow: this workload, these addresses (/32) or
    this name, this port. Policies add up, so adding one changes nothing else."""
    meta = {"name": _policy_name(host), "namespace": k8s.meta(ctx.pod).get("namespace")}
    labels = selector_labels(ctx.pod)
    if ctx.cilium:
        to = (
            {"toFQDNs": [{"matchName": host}]}
            if not _is_ip(host)
            else {"toCIDR": [f"{a}/32" for a in addresses]}
        )
        body: Json = {
            "apiVersion": "cilium.io/v2",
            "kind": "CiliumNetworkPolicy",
            "metadata": meta,
            "spec": {
                "endpointSelector": {"matchLabels": labels},
                "egress": [
                    {**to, "toPorts": [{"ports": [{"port": str(port), "protocol": "TCP"}]}]},
                    # toFQDNs learns addresses from the DNS answers Cilium's proxy sees.
                    {
                        "toEndpoints": [
                            {
                                "matchLabels": {
                                    "k8s:io.kubernetes.pod.namespace": "kube-system",
                                    "k8s:k8s-app": "kube-dns",
                                }
                            }
                        ],
                        "toPorts": [
                            {
                                "ports": [{"port": "53", "protocol": "ANY"}],
                                "rules": {"dns": [{"matchPattern": "*"}]},
                            }
                        ],
                    },
                ],
            },
        }
    else:
        body = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta,
            "spec": {
                "podSelector": {"matchLabels": labels},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [{"ipBlock": {"cidr": f"{a}/32"}} for a in addresses],
                        "ports": [{"protocol": "TCP", "port": port}],
                    }
                ],
            },
        }
    return apply_command(body)


def apply_command(body: Json) -> str:
    """`kubectl apply` of a manifest on standard input. The here-document's quoted
    delimiter keeps the shell from expanding anything in it, and JSON quotes every value."""
    return f"kubectl apply -f - <<'EOF'\n{json.dumps(body, indent=2)}\nEOF"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


# -- DNS -----------------------------------------------------------------------------------


def dns_flows(ctx: PodContext, kube: KubeEvidence, ev: AzureEvidence) -> tuple[str, list[Flow]]:
    """Where the pod sends its DNS queries (UDP 53), by its dnsPolicy: kube-dns's pods
    (ClusterFirst, after the service's DNAT), the node's servers (Default), or only its
    dnsConfig.nameservers (None); other policies add those nameservers to their own
    (https://kubernetes.io/docs/concepts/services-networking/dns-pod-service/)."""
    spec = ctx.pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    extra = [str(s) for s in (spec.get("dnsConfig") or {}).get("nameservers") or []]
    own = [_external(s) for s in extra if _is_ip(s)]
    if policy == "None":
        return "its dnsConfig nameservers", own
    if policy == "Default":
        servers = vnet_dns_servers(ev) or [AZURE_DNS]
        flows = [_external(s) for s in servers] + own
        return "the node's DNS servers (dnsPolicy Default)", flows
    service = (
        next((s for s in kube.pod_view.dns_services if k8s.meta(s).get("name") == "kube-dns"), None)
        if kube.pod_view
        else None
    )
    selector = ((service or {}).get("spec") or {}).get("selector") or {"k8s-app": "kube-dns"}
    target = _target_port(service)
    pods = [
        p
        for p in kube.pods
        if k8s.meta(p).get("namespace") == "kube-system"
        and all((k8s.meta(p).get("labels") or {}).get(k) == v for k, v in selector.items())
    ]
    if not pods:  # the pod list was not read: stand in with the selector's labels
        pods = [{"metadata": {"name": "coredns", "namespace": "kube-system", "labels": selector}}]
    ns = ctx.namespaces.get("kube-system") or {
        "metadata": {
            "name": "kube-system",
            "labels": {"kubernetes.io/metadata.name": "kube-system"},
        }
    }
    flows = []
    for pod in pods:
        port = target if isinstance(target, int) else _named(pod, target) or DNS_PORT
        ip = (pod.get("status") or {}).get("podIP")
        address = ipaddress.IPv4Address(ip) if ip and _is_ip(ip) else None
        flows.append(
            Flow(
                address,
                port,
                "UDP",
                pod=pod,
                namespace=ns,
                in_cluster=True,
                cidr_sees_pods=not ctx.cilium,
            )
        )
    return "kube-dns (CoreDNS in kube-system)", flows + own


def _external(server: str) -> Flow:
    return Flow(ipaddress.IPv4Address(server), DNS_PORT, "UDP")


def _target_port(service: Json | None) -> int | str:
    for port in ((service or {}).get("spec") or {}).get("ports") or []:
        if str(port.get("protocol") or "TCP").upper() == "UDP":
            target = port.get("targetPort", port.get("port"))
            return int(target) if str(target).isdigit() else str(target)
    return DNS_PORT


def _named(pod: Json, name: str) -> int | None:
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == name:
                return int(port.get("containerPort") or DNS_PORT)
    return None


def vnet_dns_servers(ev: AzureEvidence) -> list[str]:
    """The custom DNS servers of the node subnets' VNets (`dhcpOptions.dnsServers`)."""
    servers: list[str] = []
    for subnet_id in ev.node_subnet_ids():
        vnet = ev.vnets.get(armid.key(armid.ArmId.parse(subnet_id).parent_id())) or {}
        for server in ((vnet.get("properties") or {}).get("dhcpOptions") or {}).get(
            "dnsServers"
        ) or []:
            if _is_ip(str(server)) and str(server) not in servers:
                servers.append(str(server))
    return servers


def _dns_findings(
    ctx: PodContext, kube: KubeEvidence, ev: AzureEvidence, about_endpoint: bool
) -> list[Finding]:
    server, flows = dns_flows(ctx, kube, ev)
    if not flows:
        return []
    verdicts = [evaluate(ctx.policies, ctx.pod, ctx.namespace, f, ctx.namespaces) for f in flows]
    if any(v.allowed for v in verdicts):
        return []
    if not all(v.allowed is False for v in verdicts):
        return [_undecided(ctx, f"UDP 53 to {server}", verdicts)]
    isolating = sorted({p for v in verdicts for p in v.isolating})
    return [
        finding(
            "NETPOL_DNS_DENY",
            f"Pod {ctx.key} is isolated for egress by {_names(isolating)}, and none of their "
            f"rules allows UDP port 53 to {server}: no name resolves from the pod, so every "
            "connection by name fails before it starts.",
            resource=k8s.api_path(ctx.pod, "pod"),
            evidence={
                "pod": ctx.key,
                "isolatingPolicies": isolating,
                "dnsServer": server,
                "dnsPolicy": (ctx.pod.get("spec") or {}).get("dnsPolicy") or "ClusterFirst",
                "destinations": [
                    {
                        "pod": k8s.pod_key(f.pod) if f.pod else None,
                        "address": str(f.address) if f.address else None,
                        "port": f.port,
                    }
                    for f in flows
                ],
            },
            fix=[_dns_fix(ctx, flows)],
            about_endpoint=about_endpoint,
        )
    ]


def _dns_fix(ctx: PodContext, flows: list[Flow]) -> str:
    meta = {"name": "allow-egress-dns", "namespace": k8s.meta(ctx.pod).get("namespace")}
    ports = [{"protocol": p, "port": DNS_PORT} for p in ("UDP", "TCP")]
    if any(f.in_cluster for f in flows):
        to: list[Json] = [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                },
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ]
    else:
        to = [{"ipBlock": {"cidr": f"{f.address}/32"}} for f in flows if f.address]
    body = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta,
        "spec": {
            "podSelector": {"matchLabels": selector_labels(ctx.pod)},
            "policyTypes": ["Egress"],
            "egress": [{"to": to, "ports": ports}],
        },
    }
    return apply_command(body)

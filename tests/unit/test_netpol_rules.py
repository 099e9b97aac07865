"""The NetworkPolicy evaluator against a small reference of the Kubernetes semantics
(https://kubernetes.io/docs/concepts/services-networking/network-policies/), and Cilium's
rules by example.

The reference is written from the documentation's sentences, as plainly as possible: a pod
is isolated for egress when a policy selecting it has Egress in policyTypes (or egress
rules and no policyTypes); then a flow is allowed when some rule of some selecting
Egress policy allows it; a rule allows when its peers (none: all) contain the address
(ipBlock cidr minus except) and its ports (none: all) contain the port and protocol.
"""

from __future__ import annotations

import ipaddress
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.netpol_rules import CCNP, CNP, K8S_NP, Flow, Policy, evaluate, fqdn_matches

POD = {"metadata": {"name": "api-1", "namespace": "web", "labels": {"app": "api"}}}
NAMESPACE = {"metadata": {"name": "web", "labels": {"kubernetes.io/metadata.name": "web"}}}
CIDRS = ["0.0.0.0/0", "10.0.0.0/8", "20.0.0.0/8", "20.1.0.0/16", "20.1.2.0/24", "20.1.2.3/32"]
ADDRESSES = ["10.1.1.1", "20.1.2.3", "20.1.2.4", "20.9.9.9", "52.1.1.1"]
PORTS = [53, 80, 443, 8080, 8443]


def _in(address: str, cidr: str) -> bool:
    """Membership by integer masks: independent of the evaluator's ipaddress use."""
    base, _, bits = cidr.partition("/")
    mask = (0xFFFFFFFF << (32 - int(bits))) & 0xFFFFFFFF if int(bits) else 0
    return int(ipaddress.IPv4Address(address)) & mask == int(ipaddress.IPv4Address(base)) & mask


ip_blocks = st.builds(
    lambda cidr, exc: {"ipBlock": {"cidr": cidr, **({"except": exc} if exc else {})}},
    st.sampled_from(CIDRS),
    st.lists(st.sampled_from(CIDRS[1:]), max_size=2),
)
ports = st.builds(
    lambda proto, port, end: {
        **({"protocol": proto} if proto else {}),
        **({"port": port} if port is not None else {}),
        **({"endPort": end} if end is not None and port is not None else {}),
    },
    st.sampled_from([None, "TCP", "UDP"]),
    st.one_of(st.none(), st.sampled_from(PORTS)),
    st.one_of(st.none(), st.sampled_from([80, 443, 9000])),
)
rules = st.builds(
    lambda to, ps: {**({"to": to} if to is not None else {}), **({"ports": ps} if ps else {})},
    st.one_of(st.none(), st.lists(ip_blocks, min_size=1, max_size=2)),
    st.one_of(st.none(), st.lists(ports, max_size=2)),
)
policies = st.builds(
    lambda name, selects, types, egress: {
        "metadata": {"name": name, "namespace": "web"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "api" if selects else "other"}},
            **({"policyTypes": types} if types is not None else {}),
            **({"egress": egress} if egress is not None else {}),
        },
    },
    st.text("abc", min_size=1, max_size=3),
    st.booleans(),
    st.sampled_from([None, ["Ingress"], ["Egress"], ["Ingress", "Egress"]]),
    st.one_of(st.none(), st.lists(rules, max_size=3)),
)
flows = st.builds(
    lambda a, p, proto: Flow(ipaddress.IPv4Address(a), p, proto),
    st.sampled_from(ADDRESSES),
    st.sampled_from(PORTS),
    st.sampled_from(["TCP", "UDP"]),
)


def reference(bodies: list[dict], flow: Flow) -> bool:
    selecting = [
        b["spec"] for b in bodies if b["spec"]["podSelector"]["matchLabels"]["app"] == "api"
    ]
    egress = [
        s
        for s in selecting
        if ("Egress" in s["policyTypes"] if "policyTypes" in s else bool(s.get("egress")))
    ]
    if not egress:
        return True
    address = str(flow.address)

    def peer_ok(rule: dict) -> bool:
        if not rule.get("to"):
            return True
        return any(
            _in(address, p["ipBlock"]["cidr"])
            and not any(_in(address, e) for e in p["ipBlock"].get("except", []))
            for p in rule["to"]
        )

    def port_ok(rule: dict) -> bool:
        if not rule.get("ports"):
            return True
        for p in rule["ports"]:
            if p.get("protocol", "TCP") != flow.protocol:
                continue
            if "port" not in p:
                return True
            if p["port"] == flow.port or p["port"] <= flow.port <= p.get("endPort", -1):
                return True
        return False

    return any(peer_ok(r) and port_ok(r) for s in egress for r in s.get("egress") or [])


def verdict(bodies: list[dict], flow: Flow) -> bool | None:
    return evaluate([Policy(K8S_NP, b) for b in bodies], POD, NAMESPACE, flow).allowed


@settings(max_examples=300, deadline=None)
@given(st.lists(policies, max_size=4), flows)
def test_matches_the_reference(bodies, flow):
    assert verdict(bodies, flow) is reference(bodies, flow)


@settings(max_examples=150, deadline=None)
@given(st.lists(policies, min_size=1, max_size=4), policies, flows)
def test_union_adding_a_policy_to_an_isolated_pod_never_removes_an_allow(bodies, extra, flow):
    before = evaluate([Policy(K8S_NP, b) for b in bodies], POD, NAMESPACE, flow)
    if before.isolated and before.allowed:
        assert verdict([*bodies, extra], flow) is True


@settings(max_examples=150, deadline=None)
@given(st.lists(policies, max_size=4), flows, st.randoms())
def test_order_of_policies_does_not_matter(bodies, flow, rnd: random.Random):
    shuffled = list(bodies)
    rnd.shuffle(shuffled)
    assert verdict(shuffled, flow) is verdict(bodies, flow)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(CIDRS[1:]), st.sampled_from(PORTS))
def test_except_takes_its_addresses_out_of_the_block(excluded, port):
    body = {
        "metadata": {"name": "p", "namespace": "web"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "api"}},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": [excluded]}}]}],
        },
    }
    for address in ADDRESSES:
        flow = Flow(ipaddress.IPv4Address(address), port)
        assert verdict([body], flow) is (not _in(address, excluded))


def test_ingress_only_policy_does_not_isolate_and_no_policy_allows_all():
    ingress = {
        "metadata": {"name": "in", "namespace": "web"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "egress": [{"to": []}]},
    }
    result = evaluate([Policy(K8S_NP, ingress)], POD, NAMESPACE, Flow(None, 443))
    assert not result.isolated and result.allowed is True


def test_policy_in_another_namespace_does_not_select():
    other = {
        "metadata": {"name": "deny", "namespace": "batch"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"]},
    }
    assert not evaluate([Policy(K8S_NP, other)], POD, NAMESPACE, Flow(None, 443)).isolated


def _dns_policy(peer: dict, port: object = 53) -> Policy:
    return Policy(
        K8S_NP,
        {
            "metadata": {"name": "dns", "namespace": "web"},
            "spec": {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [{"to": [peer], "ports": [{"protocol": "UDP", "port": port}]}],
            },
        },
    )


COREDNS = {
    "metadata": {
        "name": "coredns-1",
        "namespace": "kube-system",
        "labels": {"k8s-app": "kube-dns"},
    },
    "spec": {"containers": [{"ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"}]}]},
}
KUBE_SYSTEM = {"metadata": {"name": "kube-system", "labels": {"team": "platform"}}}


def _to_coredns(port: int = 53) -> Flow:
    return Flow(None, port, "UDP", pod=COREDNS, namespace=KUBE_SYSTEM, in_cluster=True)


def test_selector_peers_match_pods_not_internet_addresses():
    both = {"namespaceSelector": {"matchLabels": {"team": "platform"}}, "podSelector": {}}
    assert evaluate([_dns_policy(both)], POD, NAMESPACE, _to_coredns()).allowed is True
    outside = Flow(ipaddress.IPv4Address("8.8.8.8"), 53, "UDP")
    assert evaluate([_dns_policy(both)], POD, NAMESPACE, outside).allowed is False
    # A podSelector alone stays in the policy's own namespace.
    same_ns = {"podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}
    assert evaluate([_dns_policy(same_ns)], POD, NAMESPACE, _to_coredns()).allowed is False


def test_named_port_resolves_against_the_destination_pod_or_is_undecided():
    peer = {"namespaceSelector": {}}
    assert evaluate([_dns_policy(peer, "dns")], POD, NAMESPACE, _to_coredns()).allowed is True
    internet = Flow(ipaddress.IPv4Address("8.8.8.8"), 53, "UDP")
    cidr = {"ipBlock": {"cidr": "0.0.0.0/0"}}
    result = evaluate([_dns_policy(cidr, "dns")], POD, NAMESPACE, internet)
    assert result.allowed is None and "named port 'dns'" in result.undecided[0]


# -- Cilium ----------------------------------------------------------------------------------


def _cnp(spec: dict, kind: str = CNP, namespace: str | None = "web") -> Policy:
    meta = {"name": "c", **({"namespace": namespace} if namespace else {})}
    return Policy(kind, {"metadata": meta, "spec": spec})


GH = Flow(ipaddress.IPv4Address("140.82.121.6"), 443, fqdn="api.github.com")


def test_cilium_fqdn_patterns_stay_within_one_label():
    assert fqdn_matches({"matchPattern": "*.contoso.com"}, "api.contoso.com")
    assert not fqdn_matches({"matchPattern": "*.contoso.com"}, "eu.api.contoso.com")
    assert not fqdn_matches({"matchPattern": "*.contoso.com"}, "contoso.com")
    assert fqdn_matches({"matchPattern": "**.contoso.com"}, "eu.api.contoso.com")
    assert fqdn_matches({"matchPattern": "*"}, "anything.example")
    assert fqdn_matches({"matchPattern": "api-*.contoso.com"}, "api-eu.contoso.com")
    assert fqdn_matches({"matchName": "API.github.com."}, "api.github.com")


def test_cilium_egress_deny_wins_and_empty_rule_denies():
    allow = _cnp({"endpointSelector": {}, "egress": [{"toEntities": ["world"]}]})
    deny = _cnp(
        {
            "endpointSelector": {"matchLabels": {"k8s:io.kubernetes.pod.namespace": "web"}},
            "egressDeny": [{"toCIDR": ["140.82.0.0/16"]}],
        },
        CCNP,
        None,
    )
    assert evaluate([allow], POD, NAMESPACE, GH).allowed is True
    result = evaluate([allow, deny], POD, NAMESPACE, GH)
    assert result.allowed is False and result.denying == ["c (egressDeny rule 1)"]
    default_deny = _cnp({"endpointSelector": {}, "egress": [{}]})
    assert evaluate([default_deny], POD, NAMESPACE, GH).allowed is False


def test_cilium_cidr_set_except_ports_and_default_deny_switch():
    spec = {
        "endpointSelector": {"matchLabels": {"app": "api"}},
        "egress": [
            {
                "toCIDRSet": [{"cidr": "140.82.0.0/16", "except": ["140.82.121.0/24"]}],
                "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}],
            }
        ],
    }
    assert evaluate([_cnp(spec)], POD, NAMESPACE, GH).allowed is False
    spec["egress"][0]["toCIDRSet"][0]["except"] = []
    assert evaluate([_cnp(spec)], POD, NAMESPACE, GH).allowed is True
    spec["egress"][0]["toPorts"][0]["ports"][0]["port"] = "8443"
    assert evaluate([_cnp(spec)], POD, NAMESPACE, GH).allowed is False
    spec["enableDefaultDeny"] = {"egress": False}
    assert evaluate([_cnp(spec)], POD, NAMESPACE, GH).allowed is True


def test_clusterwide_policy_selects_by_namespace_label():
    other_ns = {"k8s:io.kubernetes.pod.namespace": "batch"}
    spec = {"endpointSelector": {"matchLabels": other_ns}, "egress": [{}]}
    assert not evaluate([_cnp(spec, CCNP, None)], POD, NAMESPACE, GH).isolated
    spec["endpointSelector"]["matchLabels"] = {"k8s:io.kubernetes.pod.namespace": "web"}
    assert evaluate([_cnp(spec, CCNP, None)], POD, NAMESPACE, GH).isolated


def test_cilium_fqdn_needs_the_dns_proxy_rule():
    fqdn_rule = {
        "toFQDNs": [{"matchName": "api.github.com"}],
        "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}],
    }
    dns_rule = {
        "toEndpoints": [{"matchLabels": {"k8s:k8s-app": "kube-dns"}}],
        "toPorts": [{"ports": [{"port": "53", "protocol": "ANY"}], "rules": {"dns": [{}]}}],
    }
    blind = _cnp({"endpointSelector": {}, "egress": [fqdn_rule]})
    verdict = evaluate([blind], POD, NAMESPACE, GH)
    assert verdict.allowed is False and verdict.unseen_fqdns == [f"{blind.name} (egress rule 1)"]
    seen = _cnp({"endpointSelector": {}, "egress": [fqdn_rule, dns_rule]})
    verdict = evaluate([seen], POD, NAMESPACE, GH)
    assert verdict.allowed is True and not verdict.unseen_fqdns


def test_cilium_dns_rule_without_l7_rules_leaves_fqdn_blind():
    """A port-53 rule without `rules.dns` lets lookups through unproxied: toFQDNs still learns
    nothing (Cilium, DNS based policy, https://docs.cilium.io/en/stable/security/policy/
    language/#dns-based); world pod/cilium-tofqdns-dns-rule-without-l7.yaml."""
    fqdn_rule = {
        "toFQDNs": [{"matchName": "api.github.com"}],
        "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}],
    }
    plain_dns = {
        "toEndpoints": [{"matchLabels": {"k8s:k8s-app": "kube-dns"}}],
        "toPorts": [{"ports": [{"port": "53", "protocol": "ANY"}]}],
    }
    verdict = evaluate(
        [_cnp({"endpointSelector": {}, "egress": [fqdn_rule, plain_dns]})], POD, NAMESPACE, GH
    )
    assert verdict.allowed is False and len(verdict.unseen_fqdns) == 1


def test_cidr_peers_see_pods_except_under_cilium():
    block = {"ipBlock": {"cidr": "10.224.0.0/16"}}
    coredns = Flow(ipaddress.IPv4Address("10.224.0.5"), 53, "UDP", pod=COREDNS, in_cluster=True)
    assert evaluate([_dns_policy(block)], POD, NAMESPACE, coredns).allowed is True
    under_cilium = Flow(
        coredns.address, 53, "UDP", pod=COREDNS, in_cluster=True, cidr_sees_pods=False
    )
    assert evaluate([_dns_policy(block)], POD, NAMESPACE, under_cilium).allowed is False

"""Does a pod's egress policy let one flow out? Kubernetes NetworkPolicies, as the API
defines them, and Cilium's policies where the cluster runs Azure CNI powered by Cilium.

Kubernetes (https://kubernetes.io/docs/concepts/services-networking/network-policies/):

* A policy selects the pods of its own namespace that its `podSelector` matches. It applies
  to egress when `policyTypes` lists `Egress`, or, without `policyTypes`, when it has
  egress rules (the API server's defaulting).
* A pod no egress policy selects is not isolated: everything is allowed. A selected pod may
  send only what at least one rule of one selecting policy allows: the union, never an
  intersection, and nothing denies.
* A rule without `to` allows every destination; without `ports` every port. A peer is an
  `ipBlock` (its `cidr` minus its `except`), or a `podSelector` and/or `namespaceSelector`
  (pods of the policy's namespace, of the selected namespaces, or both at once). Selector
  peers select pods: an address outside the cluster never matches them.
* A port has a protocol (TCP unless set), a number or a name, and optionally `endPort`. A
  named port is the destination pod's container port of that name and protocol; where the
  destination is no known pod, it cannot be decided.

Cilium (https://docs.cilium.io/en/stable/security/policy/language/ and
https://docs.cilium.io/en/stable/security/policy/intro/#policy-enforcement-modes):
CiliumNetworkPolicy (namespaced) and CiliumClusterwideNetworkPolicy select endpoints with
`endpointSelector` (labels; `k8s:io.kubernetes.pod.namespace` is the pod's namespace). A
policy with `egress` or `egressDeny` rules puts the endpoint in default deny for egress
(unless `enableDefaultDeny.egress: false`). Allow rules (`toCIDR`, `toCIDRSet` with
`except`, `toEntities`, `toEndpoints`, `toFQDNs`, each with optional `toPorts`) add up with
Kubernetes NetworkPolicies' rules; an `egressDeny` rule that matches wins over every allow.
A rule with neither a peer nor ports allows nothing (`egress: [{}]` is Cilium's default
deny). `toFQDNs` patterns follow Cilium's matchpattern: `*` stands for any run of DNS
characters within one label, `*` alone for every name, and a leading `**.` for one or more
labels (pkg/fqdn/matchpattern).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]

K8S_NP = "NetworkPolicy"
CNP = "CiliumNetworkPolicy"
CCNP = "CiliumClusterwideNetworkPolicy"
NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
NAMESPACE_LABELS_PREFIX = "io.cilium.k8s.namespace.labels."
# Entities that stand for an address outside the cluster (Cilium's `world` family).
WORLD_ENTITIES = frozenset({"world", "world-ipv4", "all"})
CLUSTER_ENTITIES = frozenset({"cluster", "all"})


@dataclass(frozen=True)
class Flow:
    """One connection the pod makes, as the destination pod (after the service's DNAT) or
    an address outside the cluster receives it."""

    address: ipaddress.IPv4Address | None
    port: int
    protocol: str = "TCP"  # TCP, UDP, SCTP
    fqdn: str | None = None  # the name the pod looked up (Cilium toFQDNs)
    pod: Json | None = None  # the destination pod, when it is one
    namespace: Json | None = None  # the destination pod's namespace object
    in_cluster: bool = False  # a pod or service address, not the internet
    # Whether CIDR peers (ipBlock) see a pod by its address. Azure NPM and Calico match pod
    # IPs; Cilium's CIDR selectors leave out everything it manages ("CIDR rules do not
    # apply to traffic where both sides are managed by Cilium", policy language, toCIDR).
    cidr_sees_pods: bool = True


@dataclass(frozen=True)
class Policy:
    """A NetworkPolicy or Cilium policy as the API returns it, with its kind."""

    kind: str
    body: Json

    @property
    def name(self) -> str:
        meta = self.body.get("metadata") or {}
        if self.kind == CCNP:
            return str(meta.get("name", ""))
        return f"{meta.get('namespace', 'default')}/{meta.get('name', '')}"

    @property
    def namespace(self) -> str | None:
        if self.kind == CCNP:
            return None
        return str((self.body.get("metadata") or {}).get("namespace") or "default")

    def specs(self) -> list[Json]:
        """Cilium policies carry `spec` and/or `specs`; Kubernetes ones `spec`."""
        out = [self.body["spec"]] if isinstance(self.body.get("spec"), dict) else []
        if self.kind != K8S_NP:
            out += [s for s in self.body.get("specs") or [] if isinstance(s, dict)]
        return out


@dataclass
class Verdict:
    """What the pod's policies make of one flow. `allowed` is None when undecidable."""

    isolating: list[str] = field(default_factory=list)  # policies selecting it for egress
    allowing: list[str] = field(default_factory=list)  # "policy (egress rule N)"
    denying: list[str] = field(default_factory=list)  # Cilium egressDeny rules that match
    undecided: list[str] = field(default_factory=list)  # why a rule could not be judged
    # Cilium toFQDNs rules that would allow the flow if the pod's DNS went through Cilium's
    # DNS proxy (a port-53 rule with `rules.dns`), which none of its policies sends it to.
    unseen_fqdns: list[str] = field(default_factory=list)

    @property
    def isolated(self) -> bool:
        return bool(self.isolating)

    @property
    def allowed(self) -> bool | None:
        if self.denying:
            return False
        if not self.isolated or self.allowing:
            return True
        return None if self.undecided else False


# -- label selectors -----------------------------------------------------------------------


def selector_matches(selector: Json | None, labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector: matchLabels AND matchExpressions; `{}` matches everything."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(str(key)) != str(value):
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op = str(expr.get("key", "")), str(expr.get("operator", ""))
        values = {str(v) for v in expr.get("values") or []}
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False
    return True


def _labels(obj: Json | None) -> dict[str, str]:
    labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
    return {str(k): str(v) for k, v in labels.items()}


def cilium_labels(pod: Json, namespace: Json | None) -> dict[str, str]:
    """The labels Cilium gives a pod's endpoint: its own, its namespace's name and labels."""
    labels = _labels(pod)
    ns_name = str((pod.get("metadata") or {}).get("namespace") or "default")
    labels[NAMESPACE_LABEL] = ns_name
    for key, value in _labels(namespace).items():
        labels[NAMESPACE_LABELS_PREFIX + key] = value
    return labels


def _strip_source(selector: Json | None) -> Json:
    """Cilium selector keys may carry a source prefix (`k8s:`, `any:`): drop it."""
    selector = selector or {}

    def bare(key: str) -> str:
        return key.split(":", 1)[1] if re.match(r"^(k8s|any|reserved|container):", key) else key

    return {
        "matchLabels": {bare(str(k)): v for k, v in (selector.get("matchLabels") or {}).items()},
        "matchExpressions": [
            {**e, "key": bare(str(e.get("key", "")))}
            for e in selector.get("matchExpressions") or []
        ],
    }


# -- which policies select the pod ---------------------------------------------------------


def selects(policy: Policy, pod: Json, namespace: Json | None) -> bool:
    pod_ns = str((pod.get("metadata") or {}).get("namespace") or "default")
    if policy.kind == K8S_NP:
        spec = policy.specs()[0] if policy.specs() else {}
        selected = selector_matches(spec.get("podSelector"), _labels(pod))
        return policy.namespace == pod_ns and selected
    if policy.kind == CNP and policy.namespace != pod_ns:
        return False
    labels = cilium_labels(pod, namespace)
    return any(
        "endpointSelector" in spec
        and selector_matches(_strip_source(spec.get("endpointSelector")), labels)
        for spec in policy.specs()
    )


def isolates_egress(policy: Policy, spec: Json) -> bool:
    if policy.kind == K8S_NP:
        types = spec.get("policyTypes")
        if types is not None:
            return "Egress" in types
        return bool(spec.get("egress"))
    if (spec.get("enableDefaultDeny") or {}).get("egress") is False:
        return False
    return "egress" in spec or "egressDeny" in spec


# -- evaluating a flow ---------------------------------------------------------------------


def evaluate(
    policies: Iterable[Policy],
    pod: Json,
    namespace: Json | None,
    flow: Flow,
    namespaces: Mapping[str, Json] | None = None,
) -> Verdict:
    """The verdict of all the pod's policies on one flow (union of allows, deny wins)."""
    verdict = Verdict()
    namespaces = namespaces or {}
    selecting = [
        (policy, [s for s in policy.specs() if _spec_selects(policy, s, pod, namespace)])
        for policy in policies
        if selects(policy, pod, namespace)
    ]
    # toFQDNs only knows the addresses of names whose DNS answers Cilium's DNS proxy saw:
    # the pod's DNS must pass through a rule with `toPorts.rules.dns`.
    dns_seen = any(
        (port.get("rules") or {}).get("dns")
        for policy, specs in selecting
        if policy.kind != K8S_NP
        for spec in specs
        for rule in spec.get("egress") or []
        for port in rule.get("toPorts") or []
    )
    for policy, specs in selecting:
        if any(isolates_egress(policy, s) for s in specs):
            verdict.isolating.append(policy.name)
        for spec in specs:
            if policy.kind == K8S_NP and not isolates_egress(policy, spec):
                continue  # an Ingress-only policy's egress rules do not apply
            for index, rule in enumerate(spec.get("egress") or []):
                where = f"{policy.name} (egress rule {index + 1})"
                if policy.kind == K8S_NP:
                    decided = _k8s_rule(rule, policy, flow, namespaces)
                else:
                    decided = _cilium_rule(rule, policy, flow, namespaces, dns_seen)
                    if (
                        not dns_seen
                        and decided is not True
                        and _cilium_rule(rule, policy, flow, namespaces, fqdns=True) is True
                    ):
                        verdict.unseen_fqdns.append(where)
                _note(verdict.allowing, verdict.undecided, where, decided)
            for index, rule in enumerate(spec.get("egressDeny") or []):
                where = f"{policy.name} (egressDeny rule {index + 1})"
                decided = _cilium_rule(rule, policy, flow, namespaces, fqdns=False)
                _note(verdict.denying, verdict.undecided, where, decided)
    return verdict


def _spec_selects(policy: Policy, spec: Json, pod: Json, namespace: Json | None) -> bool:
    if policy.kind == K8S_NP:
        return True
    return "endpointSelector" in spec and selector_matches(
        _strip_source(spec.get("endpointSelector")), cilium_labels(pod, namespace)
    )


def _note(hits: list[str], undecided: list[str], where: str, decided: bool | str) -> None:
    if decided is True:
        hits.append(where)
    elif isinstance(decided, str):
        undecided.append(f"{where}: {decided}")


Decided = bool | str  # True matches, False does not, a string: why it cannot be decided


def _k8s_rule(rule: Json, policy: Policy, flow: Flow, namespaces: Mapping[str, Json]) -> Decided:
    ports = _k8s_ports(rule.get("ports"), flow)
    if ports is False:
        return False
    peers = rule.get("to")
    if not peers:
        return ports
    results = [_k8s_peer(peer, policy, flow, namespaces) for peer in peers]
    peer = True if True in results else next((r for r in results if isinstance(r, str)), False)
    if peer is False:
        return False
    if isinstance(ports, str):
        return ports
    return peer


def _k8s_peer(peer: Json, policy: Policy, flow: Flow, namespaces: Mapping[str, Json]) -> Decided:
    if "ipBlock" in peer:
        if flow.in_cluster and not flow.cidr_sees_pods:
            return False
        return in_ip_block(flow.address, peer["ipBlock"])
    if not flow.in_cluster:
        return False  # selectors select pods; an address outside the cluster is none
    if flow.pod is None:
        return "the destination pod is not known, so its labels cannot be matched"
    dest_ns = str((flow.pod.get("metadata") or {}).get("namespace") or "default")
    ns_obj = flow.namespace or namespaces.get(dest_ns)
    if "namespaceSelector" in peer:
        ns_labels = _labels(ns_obj) or _implicit_ns(dest_ns)
        if not selector_matches(peer["namespaceSelector"], ns_labels):
            return False
    elif dest_ns != policy.namespace:
        return False
    if "podSelector" in peer:
        return selector_matches(peer["podSelector"], _labels(flow.pod))
    return True


def _implicit_ns(name: str) -> dict[str, str]:
    """Every namespace carries this label (Kubernetes ≥ 1.22), even when not listed."""
    return {"kubernetes.io/metadata.name": name}


def in_ip_block(address: ipaddress.IPv4Address | None, block: Json) -> bool:
    if address is None:
        return False
    try:
        if address not in ipaddress.ip_network(str(block.get("cidr")), strict=False):
            return False
        return not any(
            address in ipaddress.ip_network(str(e), strict=False) for e in block.get("except") or []
        )
    except ValueError:
        return False


def _k8s_ports(ports: list[Json] | None, flow: Flow) -> Decided:
    if not ports:
        return True
    undecided: str | None = None
    for entry in ports:
        protocol = str(entry.get("protocol") or "TCP").upper()
        if protocol != flow.protocol.upper():
            continue
        port = entry.get("port")
        if port is None:
            return True
        number = _number(port)
        if number is None:
            resolved = named_port(str(port), protocol, flow.pod)
            if resolved is None:
                undecided = (
                    f"named port {port!r} resolves against the destination pod's container "
                    "ports, and the destination is no known pod"
                )
                continue
            number = resolved
        end = _number(entry.get("endPort"))
        if number == flow.port or (end is not None and number <= flow.port <= end):
            return True
    return undecided or False


def named_port(name: str, protocol: str, pod: Json | None) -> int | None:
    if pod is None:
        return None
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == name and str(port.get("protocol") or "TCP").upper() == protocol:
                return _number(port.get("containerPort"))
    return None


def _number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


# -- Cilium rules --------------------------------------------------------------------------

_PEER_KEYS = ("toCIDR", "toCIDRSet", "toEntities", "toEndpoints", "toFQDNs", "toServices")


def _cilium_rule(
    rule: Json, policy: Policy, flow: Flow, namespaces: Mapping[str, Json], fqdns: bool
) -> Decided:
    """One allow (or deny) rule; `fqdns`: whether its toFQDNs can match (allow rules only,
    and only when the pod's DNS is visible to Cilium's proxy)."""
    has_peer = any(k in rule for k in _PEER_KEYS)
    ports = _cilium_ports(rule.get("toPorts"), flow) if "toPorts" in rule else True
    if not has_peer and "toPorts" not in rule:
        return False  # `{}`: selects nothing (default deny)
    if ports is not True:
        return ports
    if not has_peer:
        return True
    results: list[Decided] = []
    cidr_address = None if flow.in_cluster else flow.address  # CIDRs select outside only
    for cidr in rule.get("toCIDR") or []:
        results.append(in_ip_block(cidr_address, {"cidr": cidr}))
    for block in rule.get("toCIDRSet") or []:
        results.append(in_ip_block(cidr_address, block))
    for entity in rule.get("toEntities") or []:
        results.append(_entity(str(entity), flow))
    for selector in rule.get("toEndpoints") or []:
        results.append(_cilium_endpoint(selector, policy, flow, namespaces))
    if fqdns and not flow.in_cluster:
        for fqdn in rule.get("toFQDNs") or []:
            results.append(fqdn_matches(fqdn, flow.fqdn))
    if rule.get("toServices"):
        results.append("toServices selects Kubernetes services, which the bot does not map")
    if True in results:
        return True
    return next((r for r in results if isinstance(r, str)), False)


def _entity(entity: str, flow: Flow) -> Decided:
    if flow.in_cluster:
        return entity in CLUSTER_ENTITIES
    return entity in WORLD_ENTITIES


def _cilium_endpoint(
    selector: Json, policy: Policy, flow: Flow, namespaces: Mapping[str, Json]
) -> Decided:
    if not flow.in_cluster:
        return False
    if flow.pod is None:
        return "the destination pod is not known, so its labels cannot be matched"
    dest_ns = str((flow.pod.get("metadata") or {}).get("namespace") or "default")
    bare = _strip_source(selector)
    labels = cilium_labels(flow.pod, flow.namespace or namespaces.get(dest_ns))
    # In a namespaced policy a selector without the namespace label stays in that namespace.
    pinned = NAMESPACE_LABEL in bare["matchLabels"] or any(
        e.get("key") == NAMESPACE_LABEL for e in bare["matchExpressions"]
    )
    if policy.kind == CNP and not pinned and dest_ns != policy.namespace:
        return False
    return selector_matches(bare, labels)


def _cilium_ports(to_ports: list[Json] | None, flow: Flow) -> Decided:
    for entry in to_ports or []:
        for port in entry.get("ports") or []:
            protocol = str(port.get("protocol") or "ANY").upper()
            if protocol not in ("ANY", flow.protocol.upper()):
                continue
            number = _number(port.get("port"))
            if port.get("port") in (None, "", "0", 0):
                return True
            if number is None:
                named = named_port(str(port.get("port")), flow.protocol.upper(), flow.pod)
                if named is None:
                    return f"named port {port.get('port')!r} cannot be resolved"
                number = named
            end = _number(port.get("endPort"))
            if number == flow.port or (end is not None and number <= flow.port <= end):
                return True
    return False


def fqdn_pattern(pattern: str) -> re.Pattern[str]:
    """Cilium's matchPattern as a regular expression (pkg/fqdn/matchpattern)."""
    text = pattern.lower().rstrip(".")
    if text == "*":
        return re.compile(r"^.+$|^$")
    prefix = ""
    if text.startswith("**."):
        prefix, text = r"([-a-z0-9_]+\.)+", text[3:]
    body = ".".join(
        "[-a-z0-9_]*".join(re.escape(p) for p in label.split("*")) for label in text.split(".")
    )
    return re.compile(f"^{prefix}{body}$")


def fqdn_matches(selector: Json, name: str | None) -> bool:
    if not name:
        return False
    host = name.lower().rstrip(".")
    if selector.get("matchName"):
        return host == str(selector["matchName"]).lower().rstrip(".")
    if selector.get("matchPattern"):
        return bool(fqdn_pattern(str(selector["matchPattern"])).match(host))
    return False

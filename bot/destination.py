"""Where the probe may be aimed: the destination policy, applied to every entry point.

Any member of an authorized channel can aim curl at any address from every node pool of a
production cluster, so the probe is an SSRF primitive unless its target is judged. One
function decides, `judge`; every entry point (CLI, slash command, mentions, buttons,
modals, the bypass) calls it, and the probe pod itself applies `probe_rules` to the
addresses the name resolves to *inside the cluster* (see bot/collect/probe.py), so a name
cannot be re-pointed between the check and the use.

Always denied: link-local (169.254.0.0/16: the instance metadata service), Azure's platform
address 168.63.129.16, loopback, 0.0.0.0/8, multicast and reserved space, the cluster's own
pod and service CIDRs, node and pod subnets and nodes, its API server and cluster-internal
names. Private ranges (RFC 1918, RFC 6598 shared space) are denied unless the operator
allow-lists prefixes for the cluster (`allowPrivatePrefixes`), because checking egress to
on-premises over a VPN is legitimate. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.endpoint import Endpoint

IPv4Network = ipaddress.IPv4Network
IPv4Address = ipaddress.IPv4Address

# (network, why) in the order a refusal names them. Azure's virtual public IP 168.63.129.16
# serves DHCP, DNS and health probes to every VM:
# https://learn.microsoft.com/azure/virtual-network/what-is-ip-address-168-63-129-16
ALWAYS_DENIED: tuple[tuple[IPv4Network, str], ...] = (
    (IPv4Network("169.254.0.0/16"), "link-local (the instance metadata service)"),
    (IPv4Network("168.63.129.16/32"), "Azure's platform address 168.63.129.16"),
    (IPv4Network("127.0.0.0/8"), "loopback"),
    (IPv4Network("0.0.0.0/8"), "'this network' (0.0.0.0/8)"),
    (IPv4Network("224.0.0.0/4"), "multicast"),
    (IPv4Network("240.0.0.0/4"), "reserved address space"),
)
PRIVATE: tuple[tuple[IPv4Network, str], ...] = (
    (IPv4Network("10.0.0.0/8"), "private (RFC 1918)"),
    (IPv4Network("172.16.0.0/12"), "private (RFC 1918)"),
    (IPv4Network("192.168.0.0/16"), "private (RFC 1918)"),
    (IPv4Network("100.64.0.0/10"), "shared address space (RFC 6598)"),
)
# Names that only mean something inside a cluster (CoreDNS answers them with cluster
# addresses), and the search-path suffixes a pod appends to a single-label name.
INTERNAL_SUFFIXES = (".svc", ".cluster.local", ".svc.cluster.local", ".local", ".internal")
INTERNAL_NAMES = frozenset({"kubernetes", "localhost", "metadata", "metadata.azure.internal"})
# Plain TCP connect tests (telnet://) may aim at these ports unless configured otherwise:
# databases, brokers, mail and web ports; not the kubelet (10250), etcd or node exporters.
DEFAULT_TELNET_PORTS = frozenset(
    {21, 22, 25, 80, 443, 465, 587, 1433, 1521, 3306, 5432, 5671, 5672, 6379, 6380, 8080}
    | {8443, 9092, 9093, 27017}
)
# What the probe container prints (one line) and exits with when it refuses an address.
REFUSED_MARK = "aks-egress-refused:"
REFUSED_EXIT = 100
OPERATOR_HINT = "the bot's operators can allow it per cluster in aks-egress.yaml"


@dataclass(frozen=True)
class Refusal:
    """Why a destination is refused, and what an operator can do about it (if anything)."""

    reason: str
    remedy: str

    def __str__(self) -> str:
        return f"{self.reason}; {self.remedy}"


@dataclass(frozen=True)
class DestinationPolicy:
    """What one request may probe on one cluster."""

    allow_private: tuple[IPv4Network, ...] = ()
    telnet_ports: frozenset[int] = DEFAULT_TELNET_PORTS
    # The cluster's own ranges and names (from its ARM body, subnets and nodes).
    cluster_ranges: tuple[tuple[IPv4Network, str], ...] = ()
    cluster_names: tuple[str, ...] = ()

    def with_cluster(
        self, cluster: Mapping[str, Any], subnets: Iterable[Mapping[str, Any]] = ()
    ) -> DestinationPolicy:
        """This policy plus the cluster's pod and service CIDRs, subnets and API server."""
        ranges = list(self.cluster_ranges)
        props = cluster.get("properties") or {}
        network = props.get("networkProfile") or {}
        for key, what in (
            ("podCidr", "the cluster's pod CIDR"),
            ("podCidrs", "the cluster's pod CIDR"),
            ("serviceCidr", "the cluster's service CIDR"),
            ("serviceCidrs", "the cluster's service CIDR"),
        ):
            ranges += [(n, what) for n in _networks(network.get(key))]
        for subnet in subnets:
            sp = subnet.get("properties") or {}
            prefixes = [sp.get("addressPrefix"), *(sp.get("addressPrefixes") or [])]
            ranges += [(n, "the cluster's node or pod subnet") for n in _networks(prefixes)]
        names = list(self.cluster_names)
        names += [str(props[k]).lower() for k in ("fqdn", "privateFQDN") if props.get(k)]
        return DestinationPolicy(
            self.allow_private, self.telnet_ports, tuple(dict.fromkeys(ranges)), tuple(names)
        )

    def with_addresses(self, addresses: Iterable[str], what: str) -> DestinationPolicy:
        """This policy plus single addresses (the nodes' own)."""
        extra = [(IPv4Network(f"{a}/32"), what) for a in addresses if _address(a)]
        return DestinationPolicy(
            self.allow_private,
            self.telnet_ports,
            tuple(dict.fromkeys([*self.cluster_ranges, *extra])),
            self.cluster_names,
        )


def judge(
    endpoint: Endpoint, policy: DestinationPolicy, addresses: Sequence[IPv4Address] = ()
) -> Refusal | None:
    """The one decision: may the probe aim at `endpoint` (resolving to `addresses`)?

    A literal IPv4 host is judged as its own address. A name is refused when it is
    cluster-internal, or when ANY of its addresses is refused: a name that resolves to a mix
    of public and internal addresses could be answered with the internal one.
    """
    if endpoint.scheme == "telnet" and endpoint.port not in policy.telnet_ports:
        allowed = ", ".join(str(p) for p in sorted(policy.telnet_ports))
        return Refusal(
            f"plain TCP tests (telnet://) may aim at ports {allowed}, not {endpoint.port}",
            f"{OPERATOR_HINT} (`telnetPorts`)",
        )
    host = endpoint.host.rstrip(".")
    if refusal := judge_name(host, policy):
        return refusal
    own = _address(host)
    for address in [own] if own else list(addresses):
        if refusal := judge_address(address, policy, host):
            return refusal
    return None


def judge_name(host: str, policy: DestinationPolicy) -> Refusal | None:
    """Cluster-internal names: the API server, Services, single labels on the search path."""
    host = host.lower().rstrip(".")
    if _address(host):
        return None
    internal = (
        host in INTERNAL_NAMES
        or "." not in host
        or host.endswith(INTERNAL_SUFFIXES)
        or host in policy.cluster_names
    )
    if internal:
        return Refusal(
            f"{host} is a name inside the cluster (its API server, a Service or a name the "
            "pod's DNS search path would complete), not an endpoint outside it",
            "the probe only tests egress; this cannot be allowed",
        )
    return None


def judge_address(
    address: IPv4Address, policy: DestinationPolicy, host: str | None = None
) -> Refusal | None:
    """One address: the always-denied ranges and the cluster's own win over any allow-list."""
    shown = str(address) if host in (None, str(address)) else f"{host} ({address})"
    for network, why in (*ALWAYS_DENIED, *policy.cluster_ranges):
        if address in network:
            return Refusal(
                f"{shown} is {why} ({network}), which the probe never reaches",
                "this cannot be allowed",
            )
    if any(address in net for net in policy.allow_private):
        return None
    for network, why in PRIVATE:
        if address in network:
            return Refusal(
                f"{shown} is a {why} address ({network})",
                f"{OPERATOR_HINT} (`allowPrivatePrefixes`, e.g. [{network}])",
            )
    return None


def cluster_policy(
    policy: DestinationPolicy,
    network: tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]],
    nodes: Sequence[Mapping[str, Any]],
) -> DestinationPolicy:
    """The request's policy plus the cluster's own ranges, API server and node addresses."""
    cluster, subnets = network
    node_ips = [
        a.get("address", "")
        for node in nodes
        for a in (node.get("status") or {}).get("addresses") or []
        if a.get("type") in ("InternalIP", "ExternalIP")
    ]
    return policy.with_cluster(cluster, subnets).with_addresses(node_ips, "a node of the cluster")


def probe_rules(policy: DestinationPolicy) -> list[str]:
    """The policy as first-match rules for the probe pod (`deny:CIDR` / `allow:CIDR`): what
    it applies to the addresses it resolves before curl may connect. Anything unmatched is
    public, and allowed."""
    rules = [f"deny:{net}" for net, _ in (*ALWAYS_DENIED, *policy.cluster_ranges)]
    rules += [f"allow:{net}" for net in policy.allow_private]
    rules += [f"deny:{net}" for net, _ in PRIVATE]
    return list(dict.fromkeys(rules))


def parse_prefixes(values: Iterable[Any]) -> tuple[IPv4Network, ...]:
    """`allowPrivatePrefixes` entries; ValueError names an entry that is not a CIDR."""
    out = []
    for value in values:
        try:
            out.append(IPv4Network(str(value), strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an IPv4 prefix such as 10.50.0.0/16") from None
    return tuple(out)


def _address(text: str) -> IPv4Address | None:
    try:
        return IPv4Address(text)
    except ValueError:
        return None


def _networks(value: Any) -> list[IPv4Network]:
    values = value if isinstance(value, list) else [value]
    out = []
    for item in values:
        try:
            out.append(IPv4Network(str(item), strict=False))
        except ValueError:
            continue  # absent or IPv6: nothing an IPv4 probe could reach
    return out


@dataclass(frozen=True)
class PolicyConfig:
    """A cluster's policy settings from aks-egress.yaml."""

    allow_private: tuple[IPv4Network, ...] = ()
    allow_private_user_groups: tuple[str, ...] = ()  # empty: the prefixes apply to everyone
    telnet_ports: frozenset[int] = field(default=DEFAULT_TELNET_PORTS)

    def policy(self, in_groups: bool = True) -> DestinationPolicy:
        """The policy for a requester; `in_groups`: a member of `allowPrivateUserGroups`
        (or no Slack user at all: the CLI on an operator's terminal)."""
        allowed = self.allow_private if in_groups or not self.allow_private_user_groups else ()
        return DestinationPolicy(allow_private=allowed, telnet_ports=self.telnet_ports)

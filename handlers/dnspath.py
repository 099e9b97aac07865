"""Checklist step "name resolution": can the DNS servers the cluster depends on be reached
on port 53 from the node subnets? Those are the VNet's custom `dhcpOptions.dnsServers`
(CoreDNS forwards to them through the node's resolv.conf) and the `forward` targets of
CoreDNS's `coredns-custom` ConfigMap
(https://learn.microsoft.com/azure/aks/coredns-custom). Each is judged on UDP and TCP 53
by the same route, NSG and firewall evaluators as the endpoint.

Azure's own resolver 168.63.129.16 is left out: it is reached through the host, not
through the subnet's routes (https://learn.microsoft.com/azure/virtual-network/what-is-ip-address-168-63-129-16).
A server blocked on UDP is an error (nothing resolves through it); TCP is reported with it.
`explain_dns` then links a PROBE_DNS_FAILURE to the finding that causes it.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass, replace

from bot import armid
from bot.codes import finding
from bot.evidence import AzureEvidence, Destination, KubeEvidence
from bot.model import Finding, Json
from handlers import firewall
from handlers.netpol import AZURE_DNS, vnet_dns_servers
from handlers.nsg import Denial, allow_commands, nsgs_on_path
from handlers.nsg_rules import Flow, evaluate
from handlers.path import Hop, address_context, firewall_with_ip, route_for


@dataclass(frozen=True)
class Server:
    address: ipaddress.IPv4Address
    port: int
    source: str  # where the cluster gets it from
    zone: str  # "." for every name, else the forwarded zone


def forward_targets(config_map: Json | None) -> list[Server]:
    """`forward FROM TO...` directives of every Corefile snippet in coredns-custom, with the
    zone of the server block they sit in (`.override` snippets join the default `.` block):
    plain and dns:// IPv4 targets (tls:// goes to port 853 over TCP and is left out)."""
    servers: list[Server] = []
    for key, text in ((config_map or {}).get("data") or {}).items():
        for zone, args in _forwards(str(text)):
            for target in args[1:]:
                if target.startswith("tls://"):
                    continue
                host, _, port = target.removeprefix("dns://").partition(":")
                try:
                    address = ipaddress.IPv4Address(host)
                except ValueError:
                    continue  # a name: resolved by the node, not judged here
                server = Server(
                    address, int(port) if port.isdigit() else 53, f"coredns-custom ({key})", zone
                )
                if server not in servers:
                    servers.append(server)
    return servers


def _forwards(corefile: str) -> list[tuple[str, list[str]]]:
    """(zone, arguments) of each forward directive: lines and braces, comments dropped."""
    text = re.sub(r"#[^\n]*", "", corefile).replace("{", "\n{\n").replace("}", "\n}\n")
    found: list[tuple[str, list[str]]] = []
    blocks: list[list[str]] = []
    last: list[str] = []
    for line in text.splitlines():
        words = line.split()
        if words == ["{"]:
            blocks.append(last)
        elif words == ["}"]:
            if blocks:
                blocks.pop()
        elif words:
            last = words
            if words[0] == "forward" and len(words) > 2:
                # FROM narrows the server block's zone; "." keeps the block's.
                header = [words[1]] if words[1] != "." else blocks[0] if blocks else ["."]
                zone = header[0].removeprefix("dns://").split(":")[0].rstrip(".") or "."
                found.append((zone, words[1:]))
    return found


def servers(ev: AzureEvidence, kube: KubeEvidence | None) -> list[Server]:
    found = [
        Server(ipaddress.IPv4Address(s), 53, "the VNet's custom DNS servers", ".")
        for s in vnet_dns_servers(ev)
    ]
    found += forward_targets(kube.coredns_custom if kube else None)
    return [s for s in found if str(s.address) != AZURE_DNS]


@dataclass(frozen=True)
class Block:
    """One thing on the path that stops the server's traffic, with its resource and fix."""

    what: str
    resource: str | None
    fix: tuple[str, ...] = ()


def check(ev: AzureEvidence, kube: KubeEvidence | None) -> list[Finding]:
    host = ev.endpoint.host.lower().rstrip(".") if ev.endpoint else None
    by_name = ev.endpoint is not None and not ev.endpoint.is_ip
    out = []
    for server in servers(ev, kube):
        udp, tcp = _blocked(ev, server, "Udp"), _blocked(ev, server, "Tcp")
        if not udp:
            continue
        what = "; ".join(b.what for b in udp)
        also = "TCP is blocked too" if tcp else "TCP is not blocked"
        zone = "every name" if server.zone == "." else f"names in {server.zone}"
        about = (
            by_name
            and host is not None
            and (server.zone == "." or host == server.zone or host.endswith("." + server.zone))
        )
        fix = list(dict.fromkeys(c for b in udp + tcp for c in b.fix))
        out.append(
            finding(
                "DNS_SERVER_BLOCKED",
                f"DNS server {server.address}:{server.port} ({server.source}, for {zone}) is "
                f"not reachable on UDP from the node subnet: {what} ({also}). Lookups CoreDNS "
                "sends there time out, so those names do not resolve in the cluster.",
                resource=udp[0].resource,
                evidence={
                    "server": str(server.address),
                    "port": server.port,
                    "source": server.source,
                    "zone": server.zone,
                    "udp": [b.what for b in udp],
                    "tcp": [b.what for b in tcp],
                },
                fix=fix,
                about_endpoint=bool(about),
            )
        )
    return out


def _blocked(ev: AzureEvidence, server: Server, protocol: str) -> list[Block]:
    """What stops this protocol to the server from each node subnet (empty: nothing).

    Only a user route with next hop None counts as a drop: a private address outside the
    VNet may be reached through a gateway whose BGP routes no route table shows."""
    out: list[Block] = []
    dest = Destination(
        label=f"DNS server {server.address}",
        fqdn=None,
        addresses=(server.address,),
        port=server.port,
        protocol=protocol,
    )
    own = firewall_with_ip(ev, str(server.address))
    if own is not None and firewall.dns_proxy(ev, own) is False:
        # The VNet points its DNS at the firewall, which answers only as a DNS proxy.
        out.append(
            Block(
                f"it is Azure Firewall {own.get('name')}'s private IP, and its DNS proxy is "
                "off: the firewall listens on port 53 only with DNS proxy enabled",
                own.get("id"),
                (firewall.enable_dns_proxy_fix(own),),
            )
        )
    for subnet_id in ev.node_subnet_ids():
        ctx = address_context(ev, subnet_id)
        route = route_for(ev, subnet_id, server.address)
        if route.next_hop_type == "None" and route.source == "User":
            fix: tuple[str, ...] = ()
            if route.route_id:
                rt = armid.ArmId.parse(route.route_id)
                fix = (
                    "az network route-table route delete --resource-group "
                    f"{shlex.quote(rt.resource_group)} --route-table-name "
                    f"{shlex.quote(rt.parent_name)} --name {shlex.quote(rt.name)}",
                )
            out.append(
                Block(
                    f"route {route.route_name} ({route.prefix}) has next hop None and drops it",
                    route.route_id,
                    fix,
                )
            )
            continue
        source = ev.source_address(subnet_id)
        if source is not None:
            for nsg in nsgs_on_path(ev, subnet_id):
                decision = evaluate(nsg, Flow(source, server.address, server.port, protocol), ctx)
                if decision.access == "Deny":
                    denial = Denial(nsg, dest, str(server.address), decision)
                    out.append(
                        Block(
                            f"NSG {nsg.get('name')} rule {decision.rule_name} "
                            f"(priority {decision.priority}) denies {protocol.upper()} "
                            f"{server.port}",
                            decision.nsg_id,
                            tuple(allow_commands(nsg, decision, [denial], "allow-dns")),
                        )
                    )
        # A query to the firewall's own address is answered by its DNS proxy, not filtered
        # by its rules as forwarded traffic is.
        if route.next_hop_type == "VirtualAppliance" and own is None:
            fw = firewall_with_ip(ev, route.next_hop_ip)
            if fw is not None:
                hop = Hop(dest, subnet_id, server.address, route)
                verdict = firewall.evaluate_hop(ev, fw, hop, {})
                if verdict is not None and not verdict.allowed:  # None: its rules unread
                    rule = verdict.rule_name or "its default deny"
                    out.append(
                        Block(
                            f"firewall {fw.get('name')} denies {protocol.upper()} "
                            f"{server.port} ({rule})",
                            fw.get("id"),
                        )
                    )
    return out


def explain_dns(findings: list[Finding]) -> list[Finding]:
    """A name that does not resolve is explained by a DNS server that cannot be reached: a
    DNS_SERVER_BLOCKED for the endpoint's zone explains every probe's failure, and the
    pod's NETPOL_DNS_DENY the failure seen from inside that pod. The probe's finding names
    them (evidence `explainedBy`)."""
    servers = [f for f in findings if f.code == "DNS_SERVER_BLOCKED" and f.about_endpoint]
    policies = [f for f in findings if f.code == "NETPOL_DNS_DENY"]
    if not servers and not policies:
        return findings

    def linked(f: Finding) -> Finding:
        if f.code != "PROBE_DNS_FAILURE":
            return f
        causes = (policies if f.evidence.get("inside") else []) + servers
        if not causes:
            return f
        link = [{"code": c.code, "detail": c.detail} for c in causes]
        return replace(f, evidence={**f.evidence, "explainedBy": link})

    return [linked(f) for f in findings]

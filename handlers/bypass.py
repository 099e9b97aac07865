"""Checklist step 4: the guarded appliance bypass, as pure decisions on evidence.

The quickest proof that a firewall or other appliance is what blocks an endpoint is to
route that endpoint around it for a few minutes and probe again. This module decides what
such a test would change and whether it *can* mean anything (the plan), and what the two
probes prove (the verdict). Applying, reverting and locking live in bot/bypass/.

Azure behaviour this relies on (cited where decided below):
- Routes: longest prefix wins, a user route beats a system route of the same prefix, and a
  `/32` route beats `0.0.0.0/0` without touching it — "Virtual network traffic routing",
  https://learn.microsoft.com/azure/virtual-network/virtual-networks-udr-overview
- Next hop `Internet` sends traffic to Azure's internet edge; it only gets out with a
  public source address: an explicit outbound method or default outbound access —
  https://learn.microsoft.com/azure/virtual-network/ip-services/default-outbound-access
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bot import armid
from bot.codes import finding
from bot.evidence import AzureEvidence, ProbeRun
from bot.model import Finding
from handlers.outbound import APPLIANCE_HOPS, DESCRIPTION, Egress, EgressPath
from handlers.outbound import paths as outbound_paths
from handlers.path import route_for, route_table, subnet_prefix
from handlers.probe import classify, parse_log, tried_addresses

ROUTE_PREFIX = "aks-egress-bypass-"
# More addresses than this and the name is a CDN or a pool that rotates: routing a few of
# them proves little, routing hundreds would be a second default route.
MAX_ADDRESSES = 8
# --all-traffic: the two halves of the IPv4 space beat 0.0.0.0/0 by prefix length, so the
# existing default route (the appliance's) is never modified, only outranked.
ALL_TRAFFIC = ("0.0.0.0/1", "128.0.0.0/1")
# Probe outcomes that say the appliance may be what fails the endpoint (the Slack summary
# offers a bypass for these roots, on a UDR path).
APPLIANCE_ROOTS = frozenset(
    {"FIREWALL_ENDPOINT_BLOCKED", "NVA_UNKNOWN", "PROBE_FIREWALL_DENY_HTTP"}
)
UDR_PROBE_ROOTS = frozenset({"PROBE_TIMEOUT", "PROBE_CONNECTION_RESET"})
SECURITY_WARNING = (
    "While the bypass lasts, traffic from the cluster to {what} leaves without the "
    "appliance's filtering, inspection and logging."
)


@dataclass(frozen=True)
class RouteAdd:
    name: str
    address_prefix: str
    next_hop_type: str = "Internet"

    def to_json(self) -> dict[str, str]:
        return {
            "name": self.name,
            "addressPrefix": self.address_prefix,
            "nextHopType": self.next_hop_type,
        }


@dataclass(frozen=True)
class TableChange:
    id: str
    add: tuple[RouteAdd, ...]
    subnets: tuple[str, ...]
    pools: tuple[str, ...]
    kubenet: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "add": [r.to_json() for r in self.add],
            "subnets": list(self.subnets),
            "pools": list(self.pools),
            "kubenet": self.kubenet,
        }


@dataclass(frozen=True)
class BypassPlan:
    feasible: bool
    reason: str
    route_tables: tuple[TableChange, ...] = ()
    warnings: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()
    minutes: int = 10
    pools: tuple[str, ...] = ()  # the pools to probe again (those behind the changed tables)
    outbound: dict[str, str] = field(default_factory=dict)  # subnet id -> its way out
    source_prefixes: tuple[str, ...] = ()  # the changed subnets' address prefixes
    port: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "feasible": self.feasible,
            "reason": self.reason,
            "routeTables": [t.to_json() for t in self.route_tables],
            "warnings": list(self.warnings),
            "addresses": list(self.addresses),
            "minutes": self.minutes,
            "pools": list(self.pools),
            "sourcePrefixes": list(self.source_prefixes),
            "port": self.port,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BypassPlan:
        tables = tuple(
            TableChange(
                id=t["id"],
                add=tuple(
                    RouteAdd(r["name"], r["addressPrefix"], r["nextHopType"]) for r in t["add"]
                ),
                subnets=tuple(t.get("subnets") or ()),
                pools=tuple(t.get("pools") or ()),
                kubenet=bool(t.get("kubenet")),
            )
            for t in data.get("routeTables") or []
        )
        return cls(
            feasible=bool(data["feasible"]),
            reason=str(data["reason"]),
            route_tables=tables,
            warnings=tuple(data.get("warnings") or ()),
            addresses=tuple(data.get("addresses") or ()),
            minutes=int(data.get("minutes") or 10),
            pools=tuple(data.get("pools") or ()),
            source_prefixes=tuple(data.get("sourcePrefixes") or ()),
            port=data.get("port"),
        )


# --- what the probe saw -----------------------------------------------------------------


def probe_code(runs: Sequence[ProbeRun]) -> str | None:
    """The worst PROBE_* code over the pools (an error anywhere is the one to explain)."""
    codes = [
        "PROBE_FAILED_TO_RUN" if r.failure else classify(r.exit_code, parse_log(r.log or "")[1])
        for r in runs
    ]
    failing = [c for c in codes if c != "PROBE_OK"]
    return failing[0] if failing else (codes[0] if codes else None)


def probe_addresses(runs: Sequence[ProbeRun]) -> tuple[list[str], bool]:
    """The addresses the endpoint resolved to *inside the cluster*, as the probes connected
    or tried them (`%{json}` remote_ip and curl's `Trying` lines), in order; and whether the
    pools saw different sets (a name that changes its answers)."""
    ordered: dict[str, None] = {}
    per_run: list[frozenset[str]] = []
    for run in runs:
        verbose, out = parse_log(run.log or "")
        seen = tried_addresses(verbose)
        remote = str((out or {}).get("remote_ip") or "")
        if remote:
            seen.append(remote)
        ipv4 = [a for a in seen if _ipv4(a)]
        ordered.update(dict.fromkeys(ipv4))
        if ipv4:
            per_run.append(frozenset(ipv4))
    return list(ordered), len(set(per_run)) > 1


def _ipv4(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv4Address)
    except ValueError:
        return False


# --- the plan ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A subnet the cluster's traffic leaves from (node or pod subnet) and the way out of
    what a route sends from it to next hop Internet, per pool path on it."""

    subnet_id: str
    paths: tuple[EgressPath, ...]

    @property
    def pools(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.pool.name for p in self.paths))

    def way_out(self) -> str | None:
        """How next hop Internet leaves this subnet, or None when some pool's traffic
        cannot: handlers/outbound.py's precedence without the appliance route (a NAT
        gateway on the subnet, instance-level public IPs, the load balancer's outbound
        rules for node addresses, default outbound access unless the subnet is private:
        https://learn.microsoft.com/azure/virtual-network/ip-services/default-outbound-access).
        """
        ways = [p.internet for p in self.paths]
        if any(w in (None, Egress.NONE) for w in ways):
            return None
        return " and ".join(dict.fromkeys(DESCRIPTION[w] for w in ways if w is not None))


def sources(ev: AzureEvidence) -> list[Source]:
    """Node subnets and, where pools have them (Azure CNI with `podSubnetID`), pod subnets:
    pods' packets leave with pod-subnet addresses and take that subnet's routes."""
    found: dict[str, list[EgressPath]] = {}
    for path in outbound_paths(ev):
        found.setdefault(armid.key(path.subnet_id), []).append(path)
    return [Source(group[0].subnet_id, tuple(group)) for group in found.values()]


def plan(
    ev: AzureEvidence,
    addresses: Sequence[str],
    incident: str,
    *,
    before: str | None,
    minutes: int,
    all_traffic: bool = False,
    allow_all_traffic: bool = False,
    changing: bool = False,
    port: int | None = None,
) -> BypassPlan:
    """What a bypass would change and whether the test can mean anything.

    Only the route tables of the subnets the pods and nodes send from are touched, and
    only where the route for an endpoint address now leads to an appliance. Nothing is
    ever modified or removed: a `/32` per address (or, with --all-traffic, the two `/1`
    halves) is added with next hop `Internet`, named `aks-egress-bypass-<incident>-<n>`.
    Kubenet's route table carries AKS's own pod routes; they stay as they are.
    """
    warnings: list[str] = []
    if all_traffic and not allow_all_traffic:
        return BypassPlan(
            False,
            "--all-traffic is not allowed for this cluster (configuration bypass."
            "allowAllTraffic is false): bypass the endpoint's addresses instead.",
            minutes=minutes,
        )
    if before == "PROBE_OK":
        return BypassPlan(
            False,
            "The probe already reaches the endpoint through the current path: a bypass "
            "has nothing to prove.",
            minutes=minutes,
        )
    if before == "PROBE_DNS_FAILURE" or (not addresses and not all_traffic):
        return BypassPlan(
            False,
            "The probe saw no address for the endpoint inside the cluster (its name does not "
            "resolve there): a route cannot test that; fix name resolution first.",
            minutes=minutes,
        )
    wanted = list(dict.fromkeys(addresses))
    if len(wanted) > MAX_ADDRESSES and not all_traffic:
        warnings.append(
            f"The endpoint resolves to {len(wanted)} addresses inside the cluster (a CDN or a "
            f"rotating pool): only the first {MAX_ADDRESSES} are routed, and the probe may "
            "reach one that is not."
        )
        wanted = wanted[:MAX_ADDRESSES]
    if changing and not all_traffic:
        warnings.append(
            "The pools resolved the endpoint to different addresses: its answers change, "
            "so a probe may reach an address that is not routed around the appliance."
        )
    prefixes = list(ALL_TRAFFIC) if all_traffic else [f"{a}/32" for a in wanted]
    probe_for = [ipaddress.IPv4Address("203.0.113.1")] if all_traffic else wanted

    tables: dict[str, tuple[str, list[Source]]] = {}
    outbound: dict[str, str] = {}
    blocked: list[Source] = []
    for source in sources(ev):
        table = route_table(ev, source.subnet_id)
        if table is None:
            continue
        hops = [
            route_for(ev, source.subnet_id, ipaddress.IPv4Address(str(a)), table) for a in probe_for
        ]
        if not any(h.next_hop_type in APPLIANCE_HOPS for h in hops):
            continue
        way_out = source.way_out()
        if way_out is None:
            blocked.append(source)
            continue
        outbound[source.subnet_id] = way_out
        tables.setdefault(armid.key(table["id"]), (table["id"], []))[1].append(source)

    if blocked:
        names = ", ".join(armid.ArmId.parse(s.subnet_id).name for s in blocked)
        return BypassPlan(
            False,
            f"This test cannot work: subnet {names} has no NAT gateway, no load-balancer "
            "outbound rule for its nodes and no instance-level public IPs, and sets "
            "defaultOutboundAccess false, so next hop Internet has no way out whatever the "
            "appliance does. To make the test meaningful, give the subnet an explicit "
            "outbound path for the test (for example a temporary NAT gateway: az network "
            "vnet subnet update --nat-gateway …), or test the appliance from its own logs.",
            addresses=tuple(wanted),
            minutes=minutes,
        )
    if not tables:
        return BypassPlan(
            False,
            "Nothing to bypass: from the subnets the pods and nodes send from, the route for "
            "the endpoint does not lead to an appliance (no UDR path to a firewall or NVA).",
            addresses=tuple(wanted),
            minutes=minutes,
        )
    kubenet = (ev.network_plugin or "").lower() == "kubenet"
    changes = []
    n = 0
    for table_id, srcs in tables.values():
        adds = []
        for prefix in prefixes:
            n += 1
            adds.append(RouteAdd(route_name(incident, n), prefix))
        changes.append(
            TableChange(
                id=table_id,
                add=tuple(adds),
                subnets=tuple(s.subnet_id for s in srcs),
                pools=tuple(dict.fromkeys(p for s in srcs for p in s.pools)),
                kubenet=kubenet,
            )
        )
    what = "every internet address" if all_traffic else ", ".join(wanted)
    warnings.insert(0, SECURITY_WARNING.format(what=what))
    if kubenet:
        warnings.append(
            "kubenet: the route table also holds AKS's own pod routes; they are left as they "
            "are, the bypass only adds routes and its revert removes only those."
        )
    if any("default outbound access" in w for w in outbound.values()):
        warnings.append(
            "The test leaves through Azure's default outbound access, whose public address "
            "is Azure's, not yours: an endpoint that allow-lists your egress IPs may refuse it."
        )
    if all_traffic:
        warnings.append(
            "--all-traffic: 0.0.0.0/1 and 128.0.0.0/1 send every internet-bound address "
            "around the appliance (they outrank its 0.0.0.0/0 route, which stays as it is)."
        )
    ways = "; ".join(f"{armid.ArmId.parse(s).name}: {w}" for s, w in outbound.items())
    count = sum(len(c.add) for c in changes)
    reason = (
        f"Add {count} route(s) with next hop Internet to {len(changes)} route table(s) for "
        f"{minutes} minute(s), then probe again from the same pools. Way out: {ways}."
    )
    pools = tuple(dict.fromkeys(p for c in changes for p in c.pools))
    source_prefixes = tuple(
        p for c in changes for s in c.subnets if (p := subnet_prefix(ev, s)) is not None
    )
    return BypassPlan(
        True,
        reason,
        tuple(changes),
        tuple(warnings),
        tuple(wanted),
        minutes,
        pools,
        outbound,
        source_prefixes,
        port,
    )


def route_name(incident: str, n: int) -> str:
    """`aks-egress-bypass-<incident>-<n>`: recognisably the bot's, unique per incident."""
    return f"{ROUTE_PREFIX}{incident.lower()}-{n}"


# --- the verdict ------------------------------------------------------------------------


def verdict(
    plan_: BypassPlan, before: str | None, after: str | None, findings: Sequence[str] = ()
) -> Finding:
    """What the two probes prove, with where to look next.

    `findings` are the codes the check reported, so a cleared appliance points at the
    next suspects on the path.
    """
    evidence: dict[str, Any] = {
        "routeTables": [t.id for t in plan_.route_tables],
        "addresses": list(plan_.addresses),
        "before": before,
        "after": after,
    }
    if not plan_.feasible or after is None:
        return finding("BYPASS_NOT_POSSIBLE", plan_.reason, evidence=evidence, about_endpoint=True)
    subnets = [s for t in plan_.route_tables for s in t.subnets]
    where = ", ".join(plan_.source_prefixes) or ", ".join(
        armid.ArmId.parse(s).name for s in subnets
    )
    addresses = ", ".join(plan_.addresses) or "the endpoint's addresses"
    if plan_.port:
        addresses += f" port {plan_.port}"
    if after == "PROBE_OK":
        return finding(
            "BYPASS_PROVES_APPLIANCE",
            f"Through the appliance the probe saw {before}; routed around it, the endpoint "
            "answered. The appliance's configuration is the cause: look in its logs for "
            f"denied flows from subnet(s) {where} to {addresses}.",
            evidence=evidence,
            fix=[
                "Allow the endpoint on the appliance (for Azure Firewall: an application rule "
                "for its FQDN, or a network rule for its addresses and port), then re-run the "
                "check.",
            ],
            about_endpoint=True,
        )
    suspects = [c for c in findings if c not in ("BYPASS_CLEARS_APPLIANCE",)][:5]
    return finding(
        "BYPASS_CLEARS_APPLIANCE",
        f"The probe failed through the appliance ({before}) and around it ({after}): the "
        "appliance is not (only) the cause for this endpoint. Next suspects: "
        + (", ".join(suspects) if suspects else "the endpoint itself, NSGs, DNS")
        + ".",
        evidence=evidence,
        about_endpoint=True,
    )


def offers_bypass(root_cause: str | None, outbound_type: str | None) -> bool:
    """Whether the summary offers the Bypass appliance button for this root cause."""
    if root_cause in APPLIANCE_ROOTS:
        return True
    return root_cause in UDR_PROBE_ROOTS and outbound_type == "userDefinedRouting"

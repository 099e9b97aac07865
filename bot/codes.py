"""The finding-code catalog: one place for each code's severity, checklist step and title.

Codes are a public contract (users grep for them, runbooks link to them); a code is never
renamed. docs/finding-codes.md documents every code listed here, and a test keeps the two
in step. A code's `step` names its checklist step in bot/steps.py, whose order is the
root-cause order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.model import Finding, Severity


@dataclass(frozen=True)
class Code:
    code: str
    severity: Severity
    step: str  # a step of bot/steps.py
    title: str


def _catalog(*codes: Code) -> dict[str, Code]:
    return {c.code: c for c in codes}


E, W, INFO, OK = Severity.ERROR, Severity.WARNING, Severity.INFO, Severity.OK

CATALOG: dict[str, Code] = _catalog(
    Code("OUTBOUND_TYPE", INFO, "cluster", "Outbound type and network plugin"),
    Code("EGRESS_IPS", INFO, "cluster", "Public IPs egress leaves through"),
    Code(
        "OUTBOUND_TYPE_OVERRIDDEN",
        W,
        "cluster",
        "A method of higher precedence bypasses the outbound type",
    ),
    Code("CLUSTER_NOT_RUNNING", E, "cluster", "The cluster is not running"),
    Code("NETPOL_EGRESS_DENY", E, "netpol", "The pod's NetworkPolicies deny the endpoint"),
    Code("NETPOL_DNS_DENY", E, "netpol", "The pod's NetworkPolicies leave out its DNS server"),
    Code("NETPOL_UNDECIDED", INFO, "netpol", "The pod's policies cannot be judged for the flow"),
    Code("DNS_SERVER_BLOCKED", E, "dns", "A DNS server the cluster depends on is unreachable"),
    Code("ROUTE_TABLE_MISSING", E, "route", "Node subnet has no route table"),
    Code("ROUTE_DEFAULT_MISSING", E, "route", "Route table has no 0.0.0.0/0 route"),
    Code("ROUTE_DEFAULT_NOT_APPLIANCE", E, "route", "Default route does not lead to an appliance"),
    Code("ROUTE_BLACKHOLE", E, "route", "The endpoint's route drops traffic (next hop None)"),
    Code("ROUTE_ENDPOINT_OVERRIDE", INFO, "route", "A specific route wins for the endpoint"),
    Code("KUBENET_ROUTE_HIJACK", E, "route", "Custom default route in kubenet's route table"),
    Code("NSG_OUTBOUND_DENY", E, "nsg", "An NSG denies traffic to the endpoint"),
    Code("NSG_REQUIRED_EGRESS_DENY", E, "nsg", "An NSG denies egress AKS itself needs"),
    Code("NVA_UNKNOWN", W, "firewall", "Next hop is an appliance that is no Azure Firewall"),
    Code("FIREWALL_ENDPOINT_BLOCKED", E, "firewall", "The firewall does not allow the endpoint"),
    Code("FIREWALL_REQUIRED_FQDN_BLOCKED", E, "firewall", "The firewall blocks FQDNs AKS requires"),
    Code("FIREWALL_ENDPOINT_ALLOWED", OK, "firewall", "The firewall allows the endpoint"),
    Code("BYPASS_PROVES_APPLIANCE", E, "firewall", "Around the appliance the endpoint works"),
    Code("BYPASS_CLEARS_APPLIANCE", INFO, "firewall", "It fails around the appliance too"),
    Code("BYPASS_NOT_POSSIBLE", INFO, "firewall", "A bypass cannot test anything here"),
    Code("NATGW_SUBNET_NOT_ASSOCIATED", E, "egress", "Node subnet has no NAT gateway"),
    Code("NATGW_NO_PUBLIC_IP", E, "egress", "NAT gateway has no public IP or prefix"),
    Code("LB_NO_OUTBOUND_IPS", E, "egress", "Load balancer has no outbound IPs or rule"),
    Code("LB_OUTBOUND_PORTS_OVERCOMMITTED", W, "egress", "Fixed SNAT ports do not fit scale-out"),
    Code("PROBE_OK", OK, "probe", "The endpoint answered the probe"),
    Code("PROBE_DNS_FAILURE", E, "probe", "The endpoint's name does not resolve in the cluster"),
    Code("PROBE_PROXY_FAILURE", E, "probe", "A proxy on the path failed"),
    Code("PROBE_CONNECT_REFUSED", E, "probe", "The connection was refused"),
    Code("PROBE_TIMEOUT", E, "probe", "The connection timed out"),
    Code("PROBE_TLS_FAILURE", E, "probe", "The TLS handshake failed"),
    Code("PROBE_CONNECTION_RESET", E, "probe", "The connection was reset or closed"),
    Code("PROBE_FIREWALL_DENY_HTTP", E, "probe", "Azure Firewall denied the HTTP request (470)"),
    Code("PROBE_HTTP_GATEWAY_ERROR", E, "probe", "A gateway or proxy failed (HTTP 502/504)"),
    Code("PROBE_HTTP_CLIENT_ERROR", W, "probe", "The request was refused (HTTP 4xx)"),
    Code("PROBE_HTTP_SERVER_ERROR", W, "probe", "The endpoint failed (HTTP 5xx)"),
    Code("PROBE_FAILED_TO_RUN", E, "probe", "The probe pod could not run"),
    Code("PROBE_POD_DIFFERS", W, "probe", "The pod sees something other than a fresh probe pod"),
    Code("POD_NOT_RUNNING", E, "probe", "The application pod is not running"),
    Code("SNAT_EXHAUSTED", E, "snat", "SNAT ports exhausted"),
    Code("SNAT_HIGH", W, "snat", "SNAT port use is high"),
    Code("SNAT_OK", OK, "snat", "SNAT port use is fine"),
    Code("SNAT_NO_DATA", INFO, "snat", "No SNAT data"),
    Code("NATGW_SNAT_FAILED", E, "snat", "NAT gateway SNAT connections failed"),
    Code("NATGW_PACKET_DROPS", W, "snat", "NAT gateway dropped packets"),
    Code("NODE_NOT_READY", E, "resources", "A node is NotReady"),
    Code("NODE_PRESSURE", W, "resources", "A node reports resource pressure"),
    Code("NODE_CPU_HIGH", W, "resources", "Node CPU is high"),
    Code("NODE_MEMORY_HIGH", W, "resources", "Node memory is high"),
    Code("POD_NEAR_LIMIT", W, "resources", "A pod is near its limit"),
    Code("POD_OOMKILLED", W, "resources", "A container was OOMKilled"),
    Code("METRICS_UNAVAILABLE", INFO, "resources", "metrics.k8s.io is not served"),
    Code("OSDISK_IO_HIGH", W, "disk", "OS disk IO is saturated"),
    Code("OSDISK_NOT_EPHEMERAL", INFO, "disk", "Managed OS disks where ephemeral would fit"),
    Code("ADVISOR_RECOMMENDATION", INFO, "advisor", "Azure Advisor recommendation"),
    Code("AZURE_ACCESS_DENIED", W, "access", "The bot may not read a resource it needs"),
    Code("AZURE_READ_FAILED", W, "access", "An Azure read failed after retries"),
    Code("KUBE_ACCESS", INFO, "access", "How the bot reached the cluster's API server"),
    Code("CLUSTER_LOCAL_ACCOUNTS", W, "access", "Local accounts: the user credential may be admin"),
    Code("KUBE_UNREACHABLE", W, "access", "The cluster's API server cannot be used"),
    Code("KUBE_PARTIAL_ACCESS", W, "access", "The bot could not read part of the cluster"),
)


def finding(code: str, detail: str = "", **kwargs: Any) -> Finding:
    """Build a finding whose severity and title come from the catalog, never retyped."""
    entry = CATALOG[code]
    title = kwargs.pop("title", entry.title)
    return Finding(code=code, severity=entry.severity, title=title, detail=detail, **kwargs)

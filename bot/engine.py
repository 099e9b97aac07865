"""Run one check: collect evidence, let each checklist handler judge it, build the report.

The engine is the only place that knows the checklist's order of handlers; the handlers
know nothing of I/O and the collectors nothing of verdicts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from bot.collect.azure import AzureCollector
from bot.collect.clients import AzureClients
from bot.endpoint import Endpoint, Resolver
from bot.evidence import AzureEvidence
from bot.model import ClusterSummary, Finding, Report, Stats
from handlers import access, cluster, firewall, loadbalancer, natgw, nsg, routes
from handlers.cluster import egress_ips
from handlers.rootcause import order, root_cause

AZURE_STEPS: tuple[Callable[[AzureEvidence], list[Finding]], ...] = (
    cluster.check,
    routes.check,
    nsg.check,
    firewall.check,
    natgw.check,
    loadbalancer.check,
    access.check,
)


@dataclass(frozen=True)
class CheckRequest:
    alias: str
    cluster_id: str
    endpoint: Endpoint | None = None


class Engine:
    def __init__(self, clients: AzureClients, resolver: Resolver):
        self.clients = clients
        self.collector = AzureCollector(clients, resolver)

    def check(self, request: CheckRequest) -> Report:
        started = time.monotonic()
        calls_before = self.clients.counter.count
        ev = self.collector.collect(request.alias, request.cluster_id, request.endpoint)
        findings = order([f for step in AZURE_STEPS for f in step(ev)])
        network = ev.network_profile
        return Report(
            cluster=ClusterSummary(
                alias=request.alias,
                id=request.cluster_id,
                outbound_type=ev.outbound_type,
                network_plugin=network.get("networkPlugin"),
                network_plugin_mode=network.get("networkPluginMode"),
            ),
            endpoint=request.endpoint.url if request.endpoint else None,
            egress_ips=egress_ips(ev),
            findings=findings,
            root_cause=root_cause(findings),
            stats=Stats(
                arm_calls=self.clients.counter.count - calls_before,
                duration_ms=int((time.monotonic() - started) * 1000),
            ),
        )

"""Where a check's parts come from: real Azure, or a sandbox world on loopback.

The same engine runs either way; only the credential, the ARM endpoint, the resolver and
the alias map differ. In world mode the sandbox serves the world over HTTPS and the real
SDK clients talk to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from azure.core.credentials import TokenCredential

from bot import armid
from bot.collect.azure import VmSizeCache
from bot.collect.clients import AzureClients, Endpoints
from bot.collect.kube import KubeConnectionPlan
from bot.config import ClusterConfig, ClusterRef, ProbeSettings, Settings, policy_config
from bot.destination import PolicyConfig
from bot.endpoint import DnsResolver, MapResolver, Resolver
from bot.sandbox.world import World, WorldError

if TYPE_CHECKING:
    from bot.sandbox.server import Sandbox


class UnknownCluster(LookupError):
    """No cluster with that alias; the message lists the ones that exist."""


def _wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    clients: AzureClients
    credential: TokenCredential
    resolver: Resolver
    aliases: dict[str, str]  # alias -> cluster ARM id
    subscription: str | None
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    configured: dict[str, ClusterRef] = field(default_factory=dict)
    clock: Callable[[], datetime] = _wall_clock
    sandbox: Sandbox | None = None
    vm_sizes: VmSizeCache = field(default_factory=VmSizeCache)  # lives across checks
    # Held around each probe pod, by cluster id: the workers' cap (bot/probe_slots.py).
    probe_gate: Callable[[str], AbstractContextManager[None]] | None = None
    # inPodProbe where a cluster's configuration does not set it: off for real clusters, on
    # for sandbox worlds; `in_pod_set` holds the configured values by armid.key(cluster id).
    in_pod_default: bool = False
    in_pod_set: dict[str, bool] = field(default_factory=dict)

    def in_pod_probe(self, cluster_id: str) -> bool:
        """May the probe run inside the --pod (an ephemeral container) on this cluster?"""
        return self.in_pod_set.get(armid.key(cluster_id), self.in_pod_default)

    def policy_config(self, alias: str) -> PolicyConfig:
        """The cluster's destination-policy settings (defaults when it has none)."""
        ref = self.configured.get(alias)
        return ref.policy if ref else PolicyConfig()

    def kube_connection_plan(self, cluster_id: str) -> KubeConnectionPlan:
        """How to reach this cluster's API server, from its configuration entry if any."""
        for ref in self.configured.values():
            if armid.same(ref.id, cluster_id):
                return KubeConnectionPlan(cluster_id, ref.kubeconfig_context, ref.in_cluster)
        return KubeConnectionPlan(cluster_id)

    def cluster_id(
        self,
        alias: str | None,
        resource_group: str | None = None,
        name: str | None = None,
        subscription: str | None = None,
    ) -> tuple[str, str]:
        """(alias, ARM id) for an alias or an explicit resource group and name."""
        if resource_group and name:
            sub = subscription or self.subscription
            if not sub:
                raise UnknownCluster(
                    "--subscription is needed with --resource-group/--name "
                    "(or set AZURE_SUBSCRIPTION_ID)"
                )
            return name, armid.cluster_id(sub, resource_group, name)
        if alias in self.aliases:
            return alias, self.aliases[alias]
        known = ", ".join(sorted(self.aliases)) or "none are configured"
        raise UnknownCluster(f"unknown cluster alias {alias!r}; known aliases: {known}")


def sandbox_runtime(
    world: World,
    arm_url: str,
    ca_path: str,
    probe: ProbeSettings,
    clock: Callable[[], datetime] = _wall_clock,
    sandbox: Sandbox | None = None,
    metrics_url: str | None = None,
) -> Runtime:
    """A runtime that talks to a sandbox serving `world`, possibly in another process;
    `metrics_url` is its Azure Monitor metrics endpoint (`Sandbox.metrics_url`), without
    which the summary's batched metrics reads fall back to one read per resource."""
    from bot.sandbox.credential import StaticTokenCredential

    credential = StaticTokenCredential()
    endpoints = Endpoints(arm_url, ca_path)
    if metrics_url is not None:
        endpoints = Endpoints(arm_url, ca_path, metrics_url)
    return Runtime(
        configured=world_cluster_config(world),
        clients=AzureClients(credential, endpoints),
        credential=credential,
        resolver=MapResolver(world.data.get("dns") or {}),
        aliases=dict(world.clusters),
        subscription=world.subscription_id,
        probe=probe,
        clock=clock,
        sandbox=sandbox,
        in_pod_default=True,
    )


def world_cluster_config(world: World) -> dict[str, ClusterRef]:
    """The aks-egress.yaml keys a world sets for its clusters (our `clusterConfig`)."""
    out = {}
    for alias, entry in (world.data.get("clusterConfig") or {}).items():
        cluster_id = world.clusters.get(alias)
        if cluster_id is None:
            continue
        cid = armid.ArmId.parse(cluster_id)
        try:
            policy = policy_config(entry)
        except ValueError as exc:
            raise WorldError(f"clusterConfig.{alias}.{exc}") from None
        out[alias] = ClusterRef(
            alias=alias,
            subscription=cid.subscription,
            resource_group=cid.resource_group,
            name=cid.name,
            policy=policy,
            pod_namespaces=tuple(entry.get("podNamespaces") or ()),
        )
    return out


def attach(sandbox: Sandbox, probe: ProbeSettings) -> Runtime:
    """A runtime on a sandbox this process is serving (its clock, its world)."""
    return sandbox_runtime(
        sandbox.world,
        sandbox.arm_url,
        sandbox.ca_path,
        probe,
        sandbox.clock,
        sandbox,
        metrics_url=sandbox.metrics_url,
    )


@contextmanager
def open_runtime(world: Path | None, settings: Settings | None = None) -> Iterator[Runtime]:
    settings = settings or Settings()
    if world is not None:
        from bot.sandbox.server import Sandbox  # needs the [sandbox] extra

        with Sandbox(world) as sandbox:
            runtime = attach(sandbox, settings.probe_settings())
            # A configuration beside a world may still turn the in-pod probe off per alias.
            for alias, ref in ClusterConfig.load(settings.config).clusters.items():
                if ref.in_pod_probe is not None and alias in runtime.aliases:
                    runtime.in_pod_set[armid.key(runtime.aliases[alias])] = ref.in_pod_probe
            try:
                yield runtime
            finally:
                runtime.clients.close()
        return
    from azure.identity import DefaultAzureCredential

    config = ClusterConfig.load(settings.config)
    credential = DefaultAzureCredential()
    clients = AzureClients(credential)
    try:
        yield Runtime(
            clients=clients,
            credential=credential,
            resolver=DnsResolver(),
            aliases={alias: ref.id for alias, ref in config.clusters.items()},
            subscription=settings.azure_subscription_id,
            probe=settings.probe_settings(),
            configured=config.clusters,
            in_pod_set={
                armid.key(ref.id): ref.in_pod_probe
                for ref in config.clusters.values()
                if ref.in_pod_probe is not None
            },
        )
    finally:
        clients.close()

"""Where a check's parts come from: real Azure, or a sandbox world on loopback.

The same engine runs either way; only the credential, the ARM endpoint, the resolver and
the alias map differ. In world mode the sandbox serves the world over HTTPS and the real
SDK clients talk to it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bot.collect.clients import AzureClients, Endpoints
from bot.config import ClusterConfig, Settings
from bot.endpoint import DnsResolver, MapResolver, Resolver
from bot.sandbox.server import Sandbox


class UnknownCluster(LookupError):
    """No cluster with that alias; the message lists the ones that exist."""


@dataclass
class Runtime:
    clients: AzureClients
    resolver: Resolver
    aliases: dict[str, str]  # alias -> cluster ARM id
    subscription: str | None
    sandbox: Sandbox | None = None

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
            return name, (
                f"/subscriptions/{sub}/resourceGroups/{resource_group}"
                f"/providers/Microsoft.ContainerService/managedClusters/{name}"
            )
        if alias in self.aliases:
            return alias, self.aliases[alias]
        known = ", ".join(sorted(self.aliases)) or "none are configured"
        raise UnknownCluster(f"unknown cluster alias {alias!r}; known aliases: {known}")


@contextmanager
def open_runtime(world: Path | None, settings: Settings | None = None) -> Iterator[Runtime]:
    settings = settings or Settings()
    if world is not None:
        from bot.sandbox.credential import StaticTokenCredential

        with Sandbox(world) as sandbox:
            clients = AzureClients(
                StaticTokenCredential(), Endpoints(sandbox.arm_url, sandbox.ca_path)
            )
            try:
                yield Runtime(
                    clients=clients,
                    resolver=MapResolver(sandbox.world.data.get("dns") or {}),
                    aliases=dict(sandbox.world.clusters),
                    subscription=sandbox.world.data["subscriptionId"],
                    sandbox=sandbox,
                )
            finally:
                clients.close()
        return
    from azure.identity import DefaultAzureCredential

    config = ClusterConfig.load(settings.aks_egress_config)
    clients = AzureClients(DefaultAzureCredential())
    try:
        yield Runtime(
            clients=clients,
            resolver=DnsResolver(),
            aliases={alias: ref.id for alias, ref in config.clusters.items()},
            subscription=settings.azure_subscription_id,
        )
    finally:
        clients.close()

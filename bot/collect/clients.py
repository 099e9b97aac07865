"""Azure SDK clients, one set per subscription, pointed at Azure or at the sandbox.

The hub network (firewall, route tables) often lives in another subscription than the
cluster, so clients are made per subscription on first use. Every HTTP attempt is counted
by a pipeline policy, which is what the report's `stats.armCalls` and the benchmarks show.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.mgmt.advisor import AdvisorManagementClient
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.containerservice import ContainerServiceClient
from azure.mgmt.monitor import MonitorManagementClient
from azure.mgmt.network import NetworkManagementClient

from bot.metrics import count_call


class AzureCallMetrics(SansIOHTTPPolicy):  # type: ignore[type-arg]
    """Counts every ARM attempt and its failures (a per-retry policy of each SDK client)."""

    def on_response(self, request: Any, response: Any) -> None:
        count_call("azure", response.http_response.status_code >= 400)

    def on_exception(self, request: Any) -> None:
        count_call("azure", True)


class CallCounter(SansIOHTTPPolicy):
    """Counts every request sent, retries included."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def on_request(self, request: Any) -> None:
        with self._lock:
            self.count += 1


@dataclass(frozen=True)
class Endpoints:
    """Where ARM is: Azure's public cloud by default, the sandbox in tests and demos."""

    base_url: str | None = None
    ca_path: str | None = None


class AzureClients:
    def __init__(self, credential: TokenCredential, endpoints: Endpoints | None = None):
        self.credential = credential
        self.endpoints = endpoints or Endpoints()
        self.counter = CallCounter()
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], Any] = {}

    def _make(self, cls: type, subscription: str) -> Any:
        key = (cls.__name__, subscription.lower())
        with self._lock:
            if key not in self._cache:
                kwargs: dict[str, Any] = {"per_retry_policies": [self.counter, AzureCallMetrics()]}
                if self.endpoints.base_url:
                    kwargs["base_url"] = self.endpoints.base_url
                if self.endpoints.ca_path:
                    kwargs["connection_verify"] = self.endpoints.ca_path
                self._cache[key] = cls(self.credential, subscription, **kwargs)
            return self._cache[key]

    def containers(self, subscription: str) -> ContainerServiceClient:
        return self._make(ContainerServiceClient, subscription)

    def network(self, subscription: str) -> NetworkManagementClient:
        return self._make(NetworkManagementClient, subscription)

    def compute(self, subscription: str) -> ComputeManagementClient:
        return self._make(ComputeManagementClient, subscription)

    def monitor(self, subscription: str) -> MonitorManagementClient:
        return self._make(MonitorManagementClient, subscription)

    def advisor(self, subscription: str) -> AdvisorManagementClient:
        return self._make(AdvisorManagementClient, subscription)

    def close(self) -> None:
        with self._lock:
            for client in self._cache.values():
                client.close()
            self._cache.clear()

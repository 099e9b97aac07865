"""Azure SDK clients, one set per subscription, pointed at Azure or at the sandbox.

The hub network (firewall, route tables) often lives in another subscription than the
cluster, so clients are made per subscription on first use. Every HTTP attempt is counted
by a pipeline policy: per check for the report's `stats.armCalls` (bot/collect/calls.py),
per process for the benchmarks.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from azure.core.credentials import TokenCredential
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.core.pipeline.transport import RequestsTransport
from azure.mgmt.advisor import AdvisorManagementClient
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.containerservice import ContainerServiceClient
from azure.mgmt.monitor import MonitorManagementClient
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.monitor.querymetrics import MetricsClient
from urllib3.util.retry import Retry

from bot.collect import calls
from bot.collect.throttle import SubscriptionPacer
from bot.metrics import count_call


class AzureCallMetrics(SansIOHTTPPolicy):  # type: ignore[type-arg]
    """Counts every ARM attempt and its failures (a per-retry policy of each SDK client)."""

    def on_response(self, request: Any, response: Any) -> None:
        count_call("azure", response.http_response.status_code >= 400)

    def on_exception(self, request: Any) -> None:
        count_call("azure", True)


class CallCounter(SansIOHTTPPolicy):
    """Counts every request sent, retries included: all of the process's (`count`, for the
    benchmarks) and the running check's own (its `calls.tallied()` block)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def on_request(self, request: Any) -> None:
        with self._lock:
            self.count += 1
        tally = calls.current()
        if tally is not None:
            tally.add()


# Azure Monitor's regional metrics data plane, where the metrics batch API lives
# (https://learn.microsoft.com/azure/azure-monitor/metrics/migrate-to-batch-api).
METRICS_URL = "https://{region}.metrics.monitor.azure.com"


@dataclass(frozen=True)
class Endpoints:
    """Where ARM and Azure Monitor's regional metrics endpoints are: Azure's public cloud
    by default, the sandbox in tests and demos. `metrics_url` has a `{region}` field."""

    base_url: str | None = None
    ca_path: str | None = None
    metrics_url: str = METRICS_URL


class AzureClients:
    def __init__(self, credential: TokenCredential, endpoints: Endpoints | None = None):
        self.credential = credential
        self.endpoints = endpoints or Endpoints()
        self.counter = CallCounter()
        self.pacer = SubscriptionPacer()
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], Any] = {}
        self._session = _pooled_session()

    def _make(self, cls: type, subscription: str | None) -> Any:
        key = (cls.__name__, (subscription or "").lower())
        with self._lock:
            if key not in self._cache:
                kwargs: dict[str, Any] = {
                    "per_retry_policies": [self.counter, AzureCallMetrics(), self.pacer]
                }
                if self.endpoints.base_url:
                    kwargs["base_url"] = self.endpoints.base_url
                if self.endpoints.ca_path:
                    kwargs["connection_verify"] = self.endpoints.ca_path
                kwargs["transport"] = self._transport()
                scope = () if subscription is None else (subscription,)
                self._cache[key] = cls(self.credential, *scope, **kwargs)
            return self._cache[key]

    def _transport(self) -> RequestsTransport:
        """Every client's requests go through the one pooled session."""
        return RequestsTransport(
            session=self._session,
            session_owner=False,
            connection_verify=self.endpoints.ca_path or True,
        )

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

    def metrics_batch(self, region: str) -> MetricsClient:
        """The metrics batch client of one region (azure-monitor-querymetrics). Its calls
        are counted as ARM's are but not paced with them: the data plane is not throttled
        by ARM's per-subscription bucket."""
        key = ("MetricsClient", region.lower())
        with self._lock:
            if key not in self._cache:
                self._cache[key] = MetricsClient(
                    self.endpoints.metrics_url.format(region=region.lower()),
                    self.credential,
                    per_retry_policies=[self.counter, AzureCallMetrics()],
                    transport=self._transport(),
                )
            return self._cache[key]

    def resource_graph(self) -> ResourceGraphClient:
        """Tenant-wide: one query reads every subscription the identity can read."""
        return self._make(ResourceGraphClient, None)

    def close(self) -> None:
        with self._lock:
            for client in self._cache.values():
                client.close()
            self._cache.clear()
            self._session.close()


# Connections kept open to ARM: a fleet summary has a few hundred reads in flight, and
# requests' default pool of 10 would open (and TLS-handshake) a new connection for each
# read past the tenth.
POOL_SIZE = 512


class EnvironmentOnce(requests.Session):
    """A session that reads the environment's proxies and CA bundle once per origin, not
    on every request as requests does with `trust_env` (a fleet summary sends thousands:
    the proxy variables, `no_proxy` and the netrc lookup were 3-4 % of its CPU, py-spy).

    What requests takes from the environment stays: HTTP(S)_PROXY / ALL_PROXY and NO_PROXY
    per origin, and REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE where TLS verification is on but
    no bundle is given. ~/.netrc is no longer read: its basic auth would replace the
    bearer token every Azure request carries."""

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False  # requests' per-request reads off; the ones kept are below
        self._proxies: dict[str, dict[str, str]] = {}
        self._bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")

    def merge_environment_settings(
        self, url: str | bytes | None, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        parts = urlsplit(url.decode() if isinstance(url, bytes) else url or "")
        origin = f"{parts.scheme}://{parts.netloc}"
        if (found := self._proxies.get(origin)) is None:
            found = self._proxies[origin] = requests.utils.get_environ_proxies(origin)
        if verify is True or verify is None:
            verify = self._bundle or verify
        return super().merge_environment_settings(
            url, {**found, **(proxies or {})}, stream, verify, cert
        )


def _pooled_session() -> requests.Session:
    """One session for every client (every subscription talks to the same ARM host), set up
    as azure-core sets up its own: no retries in urllib3, the pipeline's RetryPolicy retries."""
    session = EnvironmentOnce()
    adapter = requests.adapters.HTTPAdapter(
        pool_connections=4,
        pool_maxsize=POOL_SIZE,
        max_retries=Retry(total=False, redirect=False, raise_on_status=False),
    )
    for scheme in ("https://", "http://"):
        session.mount(scheme, adapter)
    return session

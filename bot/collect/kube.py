"""Reaching a cluster's API server, and reading nodes, pods and metrics from it.

The connection (KubeConnection), in order of preference: a kubeconfig context named in the
configuration; the in-cluster service account when the bot runs in that same cluster; or Azure's
`listClusterUserCredential`, with an Entra ID token from azure-identity for clusters whose
kubeconfig would otherwise shell out to kubelogin. Responses are read as the API's JSON
(`_preload_content=False`) so handlers and the report see what `kubectl get -o json` shows.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import urllib3
import yaml
from azure.core.credentials import TokenCredential
from azure.core.exceptions import HttpResponseError
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from bot import metrics
from bot.armid import ArmId
from bot.collect.clients import AzureClients
from bot.model import Json

# The Entra ID application of the AKS API server (what kubelogin asks a token for).
AKS_SERVER_SCOPE = "6dae42f8-4368-4678-94ff-3960e28e3630/.default"
READ_TIMEOUT = (5, 30)


class KubeUnavailable(Exception):
    """The API server cannot be reached or refuses the bot; the message says what to do."""


class KubeNotConnected(KubeUnavailable):
    """No connection to the API server at all (a private cluster's name does not resolve,
    authorized IP ranges drop the packets): Azure's run command may still get in."""


class CountingApiClient(k8s.ApiClient):
    """Counts every request, which is what the report's `stats.k8sCalls` shows."""

    def __init__(self, configuration: k8s.Configuration):
        if configuration.retries is None:
            # A failed connection is not retried: an API server the bot cannot connect to
            # (private, or authorized IP ranges) must fail fast so run command can take over.
            configuration.retries = urllib3.Retry(total=3, connect=0)
        super().__init__(configuration)
        self._lock = threading.Lock()
        self.calls = 0

    def call_api(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.calls += 1
        try:
            result = super().call_api(*args, **kwargs)
        except Exception:
            metrics.count_call("kubernetes", True)
            raise
        metrics.count_call("kubernetes", False)
        return result


@dataclass
class KubeConnection:
    """A live client for one cluster's API server and how it was reached (what KUBE_ACCESS
    reports): reachability, not the RBAC the bot holds there."""

    api: CountingApiClient
    how: str

    def close(self) -> None:
        self.api.close()


@dataclass(frozen=True)
class KubeConnectionPlan:
    """How to reach one cluster: from its configuration entry and where the bot runs."""

    cluster_id: str
    kubeconfig_context: str | None = None
    in_cluster: bool = False


def connect(
    plan: KubeConnectionPlan, clients: AzureClients, credential: TokenCredential
) -> KubeConnection:
    if plan.kubeconfig_context:
        cfg = k8s.Configuration()
        try:
            k8s_config.load_kube_config(context=plan.kubeconfig_context, client_configuration=cfg)
        except (k8s_config.ConfigException, OSError) as exc:
            raise KubeUnavailable(
                f"kubeconfig context {plan.kubeconfig_context!r} cannot be loaded ({exc}); "
                "fix the context name in the configuration or drop it to use Azure credentials"
            ) from None
        return KubeConnection(
            CountingApiClient(cfg), f"kubeconfig context {plan.kubeconfig_context}"
        )
    if plan.in_cluster:
        cfg = k8s.Configuration()
        try:
            k8s_config.load_incluster_config(client_configuration=cfg)
        except k8s_config.ConfigException as exc:
            raise KubeUnavailable(f"in-cluster service account unavailable ({exc})") from None
        return KubeConnection(CountingApiClient(cfg), "in-cluster service account")
    return _via_azure(plan.cluster_id, clients, credential)


# yaml.safe_load's loader in C when PyYAML has libyaml: a fleet summary parses a kubeconfig
# per cluster, and the pure-Python parser was 4 % of its CPU (py-spy).
_SAFE = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _via_azure(
    cluster_id: str, clients: AzureClients, credential: TokenCredential
) -> KubeConnection:
    cid = ArmId.parse(cluster_id)
    try:
        result = clients.containers(
            cid.subscription
        ).managed_clusters.list_cluster_user_credentials(cid.resource_group, cid.name)
    except HttpResponseError as exc:
        action = "Microsoft.ContainerService/managedClusters/listClusterUserCredential/action"
        hint = f"grant {action} on the cluster" if exc.status_code == 403 else "try again"
        raise KubeUnavailable(
            f"Azure refused the cluster user credentials ({exc.status_code} {exc.reason}); {hint}"
        ) from None
    raw = result.kubeconfigs[0].value
    kubeconfig = yaml.load(raw if isinstance(raw, bytes | str) else bytes(raw), Loader=_SAFE)
    how = "Azure (listClusterUserCredential)"
    for user in kubeconfig.get("users") or []:
        spec = user.get("user") or {}
        if "exec" in spec or "auth-provider" in spec:
            # Entra ID clusters: the token kubelogin would fetch, straight from azure-identity.
            user["user"] = {"token": credential.get_token(AKS_SERVER_SCOPE).token}
            how = "Azure (listClusterUserCredential, Entra ID token)"
    cfg = k8s.Configuration()
    k8s_config.load_kube_config_from_dict(kubeconfig, client_configuration=cfg)
    return KubeConnection(CountingApiClient(cfg), how)


class KubeReader:
    """The cluster reads of one check; each returns the API's JSON."""

    def __init__(self, connection: KubeConnection):
        self.core = k8s.CoreV1Api(connection.api)
        self.custom = k8s.CustomObjectsApi(connection.api)

    def nodes(self) -> list[Json]:
        return _guard("list nodes", lambda: _items(self.core.list_node(**_RAW)))

    def pods(self) -> list[Json]:
        return _guard("list pods", lambda: _items(self.core.list_pod_for_all_namespaces(**_RAW)))

    def metrics(self, plural: str) -> tuple[list[Json] | None, str | None]:
        return read_metrics(
            lambda: self.custom.list_cluster_custom_object(
                "metrics.k8s.io", "v1beta1", plural, _request_timeout=READ_TIMEOUT
            ),
            plural,
        )

    def pod(self, namespace: str, name: str) -> Json | None:
        return read_pod(
            lambda: json.loads(self.core.read_namespaced_pod(name, namespace, **_RAW).data),
            namespace,
            name,
        )


def read_metrics(call: Callable[[], Json], plural: str) -> tuple[list[Json] | None, str | None]:
    """(items, None); (None, None) when metrics.k8s.io is not served (metrics-server
    missing or down); (None, why) when RBAC refuses it. Metrics are optional evidence:
    their absence never stops the rest of the check. `call` reads them directly or from a
    run command's output (runcommand.py) and raises ApiException."""
    try:
        body = call()
    except ApiException as exc:
        if exc.status == 403:
            return None, status_message(exc)
        if exc.status in (404, 503):
            return None, None
        raise KubeUnavailable(explain(exc, f"read {plural} metrics")) from None
    return body.get("items") or [], None


def read_pod(call: Callable[[], Json], namespace: str, name: str) -> Json | None:
    """The user's pod (--pod); None when there is no such pod."""
    try:
        return call()
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise KubeUnavailable(explain(exc, f"read pod {namespace}/{name}")) from None


_RAW = {"_preload_content": False, "_request_timeout": READ_TIMEOUT}


def _items(response: Any) -> list[Json]:
    return json.loads(response.data).get("items") or []


def _guard(doing: str, call: Callable[[], list[Json]]) -> list[Json]:
    try:
        return call()
    except ApiException as exc:
        raise KubeUnavailable(explain(exc, doing)) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise KubeNotConnected(
            f"the API server does not answer ({type(exc).__name__}): for a private cluster run "
            "the bot inside its network (or a peered one), or check authorized IP ranges"
        ) from None


def explain(exc: ApiException, doing: str) -> str:
    """One sentence on why the API server refused, and what to do about it."""
    if exc.status == 401:
        return (
            f"the API server rejected the bot's credentials to {doing} (401): they expired "
            "or are wrong; refresh them"
        )
    if exc.status == 403:
        message = status_message(exc)
        return (
            f"RBAC forbids the bot to {doing}: {message}; bind the aks-egress ClusterRole "
            "to its identity"
        )
    return f"the API server failed to {doing} ({exc.status} {exc.reason})"


def status_message(exc: ApiException) -> str:
    """The Kubernetes Status message of an API error, else its HTTP reason."""
    try:
        return json.loads(exc.body or "{}").get("message") or str(exc.reason)
    except (ValueError, AttributeError):
        return str(exc.reason)

"""The sandbox's ARM endpoint driven by the real Azure SDK clients over HTTPS.

These pin what the product relies on: the SDKs accept the sandbox's TLS and bodies, errors
surface as the same azure-core exceptions as in production, and faults behave as the world
says (retries, throttling, latency that overlaps under concurrency).
"""

from __future__ import annotations

import base64
import copy
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, ServiceRequestError
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.containerservice import ContainerServiceClient
from azure.mgmt.monitor import MonitorManagementClient
from azure.mgmt.network import NetworkManagementClient

from bot.sandbox.arm import ArmApi
from bot.sandbox.credential import StaticTokenCredential
from bot.sandbox.server import Sandbox
from bot.sandbox.world import World, load_world, parse_world

WORLDS = Path(__file__).resolve().parents[1] / "worlds"
WORLD = WORLDS / "udr-firewall-allowed.yaml"
CLUSTER_RG, CLUSTER = "rg-platform-prod-weu", "aks-platform-prod-weu"
NET_RG, HUB_RG = "rg-platform-network-weu", "rg-hub-network-weu"
NODE_RG = "MC_rg-platform-prod-weu_aks-platform-prod-weu_westeurope"
CREDENTIAL = StaticTokenCredential()


@pytest.fixture(scope="module")
def world() -> World:
    return load_world(WORLD)


def with_faults(world: World, **faults: Any) -> World:
    data = copy.deepcopy(world.data)
    data["faults"] = faults
    return parse_world(data, "faulty")


@pytest.fixture(scope="module")
def sandbox(world: World) -> Iterator[Sandbox]:
    with Sandbox(with_faults(world)) as running:
        yield running


@pytest.fixture
def arm(sandbox: Sandbox) -> Sandbox:
    sandbox.reset_log()
    return sandbox


def clients(sandbox: Sandbox) -> dict[str, Any]:
    """The construction the product uses in sandbox mode: base_url plus connection_verify."""
    kwargs = {"base_url": sandbox.arm_url, "connection_verify": sandbox.ca_path}
    sub = sandbox.world.subscription_id
    return {
        "aks": ContainerServiceClient(CREDENTIAL, sub, **kwargs),
        "network": NetworkManagementClient(CREDENTIAL, sub, **kwargs),
        "compute": ComputeManagementClient(CREDENTIAL, sub, **kwargs),
    }


@pytest.fixture
def aks(arm: Sandbox) -> ContainerServiceClient:
    return clients(arm)["aks"]


@pytest.fixture
def network(arm: Sandbox) -> NetworkManagementClient:
    return clients(arm)["network"]


def test_managed_cluster_round_trips_as_rest_json(
    aks: ContainerServiceClient, arm: Sandbox
) -> None:
    cluster = aks.managed_clusters.get(CLUSTER_RG, CLUSTER)
    assert cluster.properties.network_profile.outbound_type == "userDefinedRouting"
    assert cluster.as_dict() == arm.world.resource(cluster.id)
    assert cluster.as_dict()["properties"]["networkProfile"]["networkPluginMode"] == "overlay"
    shallow = dict(cluster)  # one level only: nested values stay SDK models
    assert not isinstance(shallow["properties"], dict)
    assert [(c.method, c.status) for c in arm.calls()] == [("GET", 200)]


def test_egress_endpoints(aks: ContainerServiceClient) -> None:
    categories = list(
        aks.managed_clusters.list_outbound_network_dependencies_endpoints(CLUSTER_RG, CLUSTER)
    )
    assert "apiserver" in [c.category for c in categories]


def test_user_credential_kubeconfig(arm: Sandbox, aks: ContainerServiceClient) -> None:
    result = aks.managed_clusters.list_cluster_user_credentials(CLUSTER_RG, CLUSTER)
    kubeconfig = yaml.safe_load(result.kubeconfigs[0].value)  # the SDK already base64-decoded it
    assert kubeconfig["users"][0]["user"] == {"token": "sandbox-token"}
    cluster = kubeconfig["clusters"][0]["cluster"]
    assert cluster["server"] == arm.kube_url("platform-prod")
    assert base64.b64decode(cluster["certificate-authority-data"]) == Path(arm.ca_path).read_bytes()


def test_network_reads(network: NetworkManagementClient, arm: Sandbox) -> None:
    subnet = network.subnets.get(NET_RG, "vnet-spoke-platform-weu", "snet-aks-nodes")
    assert subnet.properties.route_table.id.endswith("/routeTables/rt-aks-platform-weu")
    routes = network.route_tables.get(NET_RG, "rt-aks-platform-weu").properties.routes
    assert [r.properties.next_hop_ip_address for r in routes] == ["10.0.0.4", None]
    nsg = network.network_security_groups.get(NET_RG, "nsg-snet-aks-platform-weu")
    assert nsg.properties.security_rules[0].name == "AllowHubInbound"
    assert [f.name for f in network.azure_firewalls.list_all()] == ["afw-hub-weu"]
    groups = network.firewall_policy_rule_collection_groups.list(HUB_RG, "afwp-hub-weu")
    assert sorted(g.name for g in groups) == [
        "DefaultNetworkRuleCollectionGroup",
        "rcg-aks-platform",
    ]
    pip = network.public_ip_addresses.get(HUB_RG, "pip-afw-hub-weu")
    assert pip.properties.ip_address == "20.101.18.206"
    tags = network.service_tags.list("westeurope")
    assert tags.cloud == "Public"
    assert tags["values"][0]["name"] == "AzureCloud.westeurope"  # `.values` is Mapping.values
    assert [v.name for v in network.virtual_networks.list(NET_RG)] == ["vnet-spoke-platform-weu"]
    assert arm.count() == 8


def test_compute_scale_sets(arm: Sandbox) -> None:
    scale_sets = list(clients(arm)["compute"].virtual_machine_scale_sets.list(NODE_RG))
    assert [s.name for s in scale_sets] == ["aks-system-73920154-vmss"]


def test_unknown_resource_is_resource_not_found(network: NetworkManagementClient) -> None:
    with pytest.raises(ResourceNotFoundError) as caught:
        network.public_ip_addresses.get(HUB_RG, "pip-gone")
    assert caught.value.error.code == "ResourceNotFound"
    assert (
        "'Microsoft.Network/publicIPAddresses/pip-gone' under resource group"
        in caught.value.message
    )


def test_route_writes_apply_and_other_writes_are_forbidden(world: World) -> None:
    with Sandbox(world) as fresh:
        network = clients(fresh)["network"]
        route = {"properties": {"addressPrefix": "20.50.1.10/32", "nextHopType": "Internet"}}
        created = network.routes.begin_create_or_update(
            NET_RG, "rt-aks-platform-weu", "bypass", route
        ).result()
        assert created.properties.provisioning_state == "Succeeded"
        table = network.route_tables.get(NET_RG, "rt-aks-platform-weu")
        assert [r.name for r in table.properties.routes][-1] == "bypass"
        network.routes.begin_delete(NET_RG, "rt-aks-platform-weu", "bypass").result()
        assert len(network.route_tables.get(NET_RG, "rt-aks-platform-weu").properties.routes) == 2
        with pytest.raises(HttpResponseError) as caught:
            network.network_security_groups.begin_delete(
                NET_RG, "nsg-snet-aks-platform-weu"
            ).result()
        assert caught.value.status_code == 403
        assert "'Microsoft.Network/networkSecurityGroups/delete'" in caught.value.message
        writes = [(c.method, c.status, c.body) for c in fresh.calls() if c.method != "GET"]
        assert writes == [("PUT", 201, route), ("DELETE", 200, None), ("DELETE", 403, None)]
    assert world.resource(f"{table.id}/routes/bypass") is None  # the template is untouched


def test_forbidden_fault_rule(world: World) -> None:
    rule = {"api": "arm", "method": "GET", "pathContains": "/AZUREFIREWALLS", "status": 403}
    with (
        Sandbox(with_faults(world, rules=[rule])) as faulty,
        pytest.raises(HttpResponseError) as caught,
    ):
        list(clients(faulty)["network"].azure_firewalls.list_all())
    assert caught.value.status_code == 403
    assert caught.value.error.code == "AuthorizationFailed"


def test_throttling_is_retried_transparently(world: World) -> None:
    rule = {
        "method": "GET",
        "pathContains": "/managedClusters/",
        "status": 429,
        "headers": {"Retry-After": "1"},
        "times": 1,
    }
    with Sandbox(with_faults(world, rules=[rule])) as faulty:
        cluster = clients(faulty)["aks"].managed_clusters.get(CLUSTER_RG, CLUSTER)
        assert cluster.name == CLUSTER
        assert [c.status for c in faulty.calls()] == [429, 200]
        first, second = faulty.calls()
    assert second.started - first.ended >= 0.9  # the SDK honoured Retry-After


def test_latency_overlaps_under_concurrency(world: World) -> None:
    with Sandbox(with_faults(world, armLatencyMs=200)) as slow:
        aks = clients(slow)["aks"]
        began = time.monotonic()
        with ThreadPoolExecutor(5) as pool:
            names = list(
                pool.map(lambda _: aks.managed_clusters.get(CLUSTER_RG, CLUSTER).name, range(5))
            )
        elapsed = time.monotonic() - began
        calls = slow.calls()
    assert names == [CLUSTER] * 5
    assert all(c.ended - c.started >= 0.2 for c in calls)
    assert max(c.started for c in calls) < min(c.ended for c in calls)  # all five in flight at once
    assert elapsed < 0.6, elapsed


def test_bearer_token_is_required(arm: Sandbox) -> None:
    sub = arm.world.subscription_id
    url = f"{arm.arm_url}/subscriptions/{sub}/providers/Microsoft.Network/azureFirewalls"
    answer = requests.get(url, params={"api-version": "2026-03-01"}, verify=arm.ca_path, timeout=5)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "AuthenticationFailed"


def test_clients_without_the_sandbox_ca_refuse_it(arm: Sandbox) -> None:
    untrusting = ContainerServiceClient(
        CREDENTIAL, arm.world.subscription_id, base_url=arm.arm_url, retry_total=0
    )
    with pytest.raises(ServiceRequestError):
        untrusting.managed_clusters.get(CLUSTER_RG, CLUSTER)


def test_ca_file_is_removed_on_stop(world: World) -> None:
    sandbox = Sandbox(world).start()
    ca_path = Path(sandbox.ca_path)
    assert ca_path.is_file()
    sandbox.stop()
    assert not ca_path.exists()


def test_metrics_filter_merge_split_and_definitions() -> None:
    with Sandbox(WORLDS / "natgw-managed-snat-failed.yaml") as sandbox:
        natgw = next(r for r in sandbox.world.data["arm"] if r["type"].endswith("/natGateways"))
        monitor = MonitorManagementClient(
            CREDENTIAL,
            sandbox.world.subscription_id,
            base_url=sandbox.arm_url,
            connection_verify=sandbox.ca_path,
        )
        failed = monitor.metrics.list(
            natgw["id"],
            metricnames="SNATConnectionCount",
            filter="ConnectionState eq 'failed'",
            timespan="PT24H",
            aggregation="Total",
        )
        merged = monitor.metrics.list(natgw["id"], metricnames="snatconnectioncount")
        split = monitor.metrics.list(natgw["id"], filter="ConnectionState eq '*'")
        definitions = list(monitor.metric_definitions.list(natgw["id"]))
        with pytest.raises(ResourceNotFoundError):
            monitor.metrics.list(natgw["id"] + "-gone")
    (series,) = failed.value[0].timeseries
    assert [(m.name.value, m.value) for m in series.metadatavalues] == [
        ("connectionstate", "Failed"),  # Azure lower-cases dimension names, not values
        ("protocol", "6"),
    ]
    assert sum(p.total for p in series.data) == 188 + 1542 + 407
    assert failed.namespace == "microsoft.network/natgateways"
    (all_states,) = merged.value[0].timeseries
    assert all_states.data[16].total == 412776 + 188
    assert len(split.value[0].timeseries) == 2
    assert "SNATConnectionCount" in [d.name.value for d in definitions]


# --- the handler without sockets --------------------------------------------------------


def test_handler_routes_case_insensitively_and_keeps_ids_as_written(world: World) -> None:
    api = ArmApi(world.copy())
    cluster_id = world.clusters["platform-prod"]
    status, _, body = api.handle(
        "GET",
        cluster_id.lower().replace("managedclusters", "MANAGEDCLUSTERS"),
        {"api-version": "x"},
    )
    assert status == 200 and body["id"] == cluster_id
    status, _, body = api.handle("GET", cluster_id + "/agentpools", {"api-version": "x"})
    assert status == 200 and [p["name"] for p in body["value"]] == ["system"]


def test_handler_errors(world: World) -> None:
    api = ArmApi(world.copy())
    cluster_id = world.clusters["platform-prod"]
    assert api.handle("GET", cluster_id, {})[0] == 400  # ARM insists on api-version
    status, _, body = api.handle(
        "GET", cluster_id + "-gone/outboundNetworkDependenciesEndpoints", {"api-version": "x"}
    )
    assert status == 404 and body["error"]["code"] == "ResourceNotFound"
    status, _, body = api.handle(
        "GET", cluster_id.replace("ContainerService", "Network") + "/subnets", {"api-version": "x"}
    )
    assert status == 404
    status, _, body = api.handle(
        "POST", cluster_id + "/listClusterAdminCredential", {"api-version": "x"}
    )
    assert status == 403
    action = "Microsoft.ContainerService/managedClusters/listClusterAdminCredential/action"
    assert (
        f"'{action}' over scope '{cluster_id}/listClusterAdminCredential'"
        in body["error"]["message"]
    )


def test_route_table_put_patch_delete(world: World) -> None:
    api = ArmApi(world.copy())
    q = {"api-version": "2026-03-01"}
    group = f"/subscriptions/{world.subscription_id}/resourceGroups/{NET_RG}"
    table_id = f"{group}/providers/Microsoft.Network/routeTables/rt-new"
    put = {
        "location": "westeurope",
        "properties": {
            "routes": [
                {
                    "name": "r",
                    "properties": {"addressPrefix": "0.0.0.0/0", "nextHopType": "Internet"},
                }
            ]
        },
    }
    status, _, body = api.handle("PUT", table_id, q, put)
    assert status == 201
    assert body["properties"]["routes"][0]["id"] == f"{table_id}/routes/r"
    assert api.handle("GET", f"{table_id}/routes/r", q)[0] == 200
    status, _, body = api.handle("PATCH", table_id, q, {"tags": {"owner": "bot"}})
    assert status == 200 and body["tags"] == {"owner": "bot"} and body["properties"]["routes"]
    bad = {"properties": {"addressPrefix": "0.0.0.0/0", "nextHopType": "VirtualAppliance"}}
    assert api.handle("PUT", f"{table_id}/routes/nva", q, bad)[0] == 400
    assert api.handle("DELETE", table_id, q)[0] == 200
    assert api.handle("DELETE", table_id, q)[0] == 204
    assert api.handle("GET", f"{table_id}/routes/r", q)[0] == 404

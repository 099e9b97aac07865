"""Route-table writes in the sandbox (world-format.md, `arm`) and probe entries that hold only
while a route has a given next hop type (`probes`, `nextHopType`).

The writes go through the real azure-mgmt-network client over HTTPS, as the bypass does;
the probe outcomes are chosen by the emulator's own functions.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceModifiedError
from azure.mgmt.network import NetworkManagementClient

from bot.sandbox import probes
from bot.sandbox.arm import ArmApi
from bot.sandbox.credential import StaticTokenCredential
from bot.sandbox.server import Sandbox
from bot.sandbox.world import World, load_world, parse_world

WORLD = Path(__file__).resolve().parents[1] / "worlds" / "udr-firewall-bypass.yaml"
RG, TABLE = "rg-batch-network-weu", "rt-aks-batch-weu"
URL = "http://files.example.org"
Q = {"api-version": "2026-01-01"}


@pytest.fixture(scope="module")
def world() -> World:
    return load_world(WORLD)


@pytest.fixture(scope="module")
def sandbox(world: World) -> Iterator[Sandbox]:
    with Sandbox(world) as running:
        yield running


def network(sandbox: Sandbox) -> NetworkManagementClient:
    return NetworkManagementClient(
        StaticTokenCredential(),
        world_subscription(sandbox.world),
        base_url=sandbox.arm_url,
        connection_verify=sandbox.ca_path,
        polling_interval=0,
    )


def world_subscription(world: World) -> str:
    return world.subscription_id


def table_id(world: World) -> str:
    return (
        f"/subscriptions/{world.subscription_id}/resourceGroups/{RG}"
        f"/providers/Microsoft.Network/routeTables/{TABLE}"
    )


def cluster_id(world: World) -> str:
    return world.clusters["batch-prod"]


def http_code(world: World) -> int:
    outcome, _ = probes.choose(world, cluster_id(world), URL, "batch")
    return int((outcome.write_out or {}).get("http_code", 0))


def test_route_write_changes_what_the_probe_sees_and_delete_restores(sandbox: Sandbox) -> None:
    client = network(sandbox)
    world = sandbox.world
    before = client.route_tables.get(RG, TABLE)
    assert http_code(world) == 470  # 93.184.215.14 -> 0.0.0.0/0 -> VirtualAppliance
    route = {"properties": {"addressPrefix": "93.184.215.14/32", "nextHopType": "Internet"}}
    created = client.routes.begin_create_or_update(
        RG, TABLE, "aks-egress-bypass-t-1", route, headers={"If-None-Match": "*"}
    ).result()
    assert created.provisioning_state == "Succeeded" and created.etag
    after = client.route_tables.get(RG, TABLE)
    assert after.etag != before.etag  # the table's state changed
    assert http_code(world) == 200  # the /32 wins: next hop Internet
    # If-Match with a stale etag is refused, as ARM does (412), and changes nothing.
    with pytest.raises((ResourceModifiedError, HttpResponseError)) as caught:
        client.routes.begin_delete(
            RG, TABLE, "aks-egress-bypass-t-1", headers={"If-Match": before.etag}
        ).result()
    assert caught.value.status_code == 412
    assert http_code(world) == 200
    client.routes.begin_delete(
        RG, TABLE, "aks-egress-bypass-t-1", headers={"If-Match": created.etag}
    ).result()
    assert http_code(world) == 470
    restored = client.route_tables.get(RG, TABLE).as_dict()
    original = before.as_dict()
    for body in (restored, original):
        body.pop("etag")
    assert restored == original
    writes = [(c.method, c.status) for c in sandbox.calls() if c.method != "GET"]
    assert writes == [("PUT", 201), ("DELETE", 412), ("DELETE", 200)]


def test_conditional_headers_on_the_handler(world: World) -> None:
    api = ArmApi(world.copy())
    tid = table_id(world)
    body: dict[str, Any] = {"properties": {"addressPrefix": "1.2.3.4/32", "nextHopType": "None"}}
    status, _, _ = api.handle("PUT", f"{tid}/routes/x", Q, body, {"If-Match": "*"})
    assert status == 412  # If-Match * needs the route to exist
    status, _, created = api.handle("PUT", f"{tid}/routes/x", Q, body, {"If-None-Match": "*"})
    assert status == 201
    assert api.handle("PUT", f"{tid}/routes/x", Q, body, {"If-None-Match": "*"})[0] == 412
    assert api.handle("PUT", f"{tid}/routes/x", Q, body, {"If-Match": created["etag"]})[0] == 200
    status, _, err = api.handle("DELETE", f"{tid}/routes/x", Q, None, {"if-match": 'W/"old"'})
    assert status == 412 and err["error"]["code"] == "PreconditionFailed"
    assert api.handle("DELETE", f"{tid}/routes/x", Q)[0] == 200
    assert api.handle("DELETE", f"{tid}/routes/x", Q)[0] == 204
    missing = tid.replace(TABLE, "rt-none")
    assert api.handle("PUT", f"{missing}/routes/x", Q, body)[0] == 404
    status, _, err = api.handle("DELETE", tid, Q)
    assert status == 400 and err["error"]["code"] == "InUseRouteTableCannotBeDeleted"
    nsg = tid.replace("routeTables/" + TABLE, "networkSecurityGroups/nsg-snet-aks-batch-weu")
    status, _, err = api.handle("PUT", nsg, Q, {"properties": {}})
    assert status == 403 and err["error"]["code"] == "AuthorizationFailed"


def _with(world: World, mutate: Any) -> World:
    data = copy.deepcopy(world.data)
    mutate(data)
    return parse_world(data, "variant")


def test_next_hop_type_follows_longest_prefix_and_system_routes(world: World) -> None:
    def table_routes(data: dict[str, Any]) -> list[dict[str, Any]]:
        body = next(b for b in data["arm"] if b["name"] == TABLE)
        routes: list[dict[str, Any]] = body["properties"]["routes"]
        return routes

    # No user route for the address at all: the 0.0.0.0/0 system route (Internet).
    no_default = _with(
        world,
        lambda d: table_routes(d).pop(0),
    )
    assert http_code(no_default) == 200

    # A service-tag route covering the address beats 0.0.0.0/0 by prefix length.
    def tagged(d: dict[str, Any]) -> None:
        d["serviceTags"] = [
            {"name": "Edge", "id": "Edge", "properties": {"addressPrefixes": ["93.184.0.0/16"]}}
        ]
        table_routes(d).append(
            {"name": "edge", "properties": {"addressPrefix": "Edge", "nextHopType": "Internet"}}
        )

    assert http_code(_with(world, tagged)) == 200

    # An address inside the VNet: VnetLocal, so neither entry applies -> probeDefault.
    def local(d: dict[str, Any]) -> None:
        d["dns"]["files.example.org"] = ["10.241.0.50"]
        d["probeDefault"] = {"exitCode": 7}

    outcome, _ = probes.choose(_with(world, local), cluster_id(world), URL, "batch")
    assert outcome.exit_code == 7

    # Without nextHopType on the second entry, the entry with it is the more specific one.
    def plain(d: dict[str, Any]) -> None:
        d["probes"][1].pop("nextHopType")
        d["probes"].reverse()

    assert http_code(_with(world, plain)) == 470

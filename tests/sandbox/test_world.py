"""World files: loading, the errors authors see, and the ARM index the sandbox serves from."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.sandbox.world import World, WorldError, load_world, parse_world

WORLDS = Path(__file__).resolve().parents[1] / "worlds"
WORLD_FILES = sorted(p for p in WORLDS.glob("*.yaml") if p.name != "expected.yaml")
SUB = "00000000-1111-2222-3333-444444444444"
RG = f"/subscriptions/{SUB}/resourceGroups/rg-net/providers"
VNET = f"{RG}/Microsoft.Network/virtualNetworks/vnet"
AKS_RG = f"/subscriptions/{SUB}/resourceGroups/rg-aks/providers"
CLUSTER = f"{AKS_RG}/Microsoft.ContainerService/managedClusters/aks"


def minimal(**extra: Any) -> dict[str, Any]:
    """The smallest valid world: one cluster with one agent pool, plus one VNet."""
    return {
        "now": "2026-11-27T09:30:00Z",
        "subscriptionId": SUB,
        "clusters": {"prod": CLUSTER},
        "arm": [
            {
                "id": CLUSTER,
                "name": "aks",
                "type": "Microsoft.ContainerService/managedClusters",
                "properties": {"agentPoolProfiles": [{"name": "system", "count": 3}]},
            },
            {
                "id": VNET,
                "name": "vnet",
                "type": "Microsoft.Network/virtualNetworks",
                "properties": {
                    "subnets": [
                        {
                            "name": "nodes",
                            "id": f"{VNET}/subnets/nodes",
                            "properties": {"addressPrefix": "10.0.0.0/22"},
                        }
                    ]
                },
            },
        ],
        **extra,
    }


def write(tmp_path: Path, name: str, data: Any) -> Path:
    path = tmp_path / name
    path.write_text(
        yaml.safe_dump(data, sort_keys=False) if name.endswith(".yaml") else json.dumps(data)
    )
    return path


@pytest.mark.parametrize("path", WORLD_FILES, ids=lambda p: p.name)
def test_every_shared_world_loads(path: Path) -> None:
    world = load_world(path)
    assert world.now.tzinfo is not None and world.now.utcoffset().total_seconds() == 0
    for cluster_id in world.clusters.values():
        assert world.resource(cluster_id) is not None


def test_json_world_loads(tmp_path: Path) -> None:
    world = load_world(write(tmp_path, "w.json", minimal()))
    assert world.clusters == {"prod": CLUSTER}


def test_unknown_top_level_key_names_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, "x.yaml", minimal(foo=1))
    with pytest.raises(WorldError) as caught:
        load_world(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: unknown top-level key 'foo' (allowed: now, subscriptionId,")


def test_bad_arm_id_names_its_key_path(tmp_path: Path) -> None:
    data = minimal()
    data["arm"].append(
        {"id": f"{VNET}b", "name": "vnetb", "type": "Microsoft.Network/virtualNetworks"}
    )
    data["arm"].append({"id": "/subscription/typo/rg", "name": "x", "type": "Microsoft.Network/x"})
    with pytest.raises(
        WorldError, match=r"x\.yaml: arm\[3\]\.id: '/subscription/typo/rg' does not match"
    ):
        load_world(write(tmp_path, "x.yaml", data))


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text('now: "2026-11-27T09:30:00Z"\nsubscriptionId: x\nclusters: {prod: [\n')
    with pytest.raises(WorldError, match=r"broken\.yaml: line 4, column 1: invalid YAML"):
        load_world(path)


def test_cluster_alias_must_name_a_cluster_in_arm() -> None:
    data = minimal()
    data["clusters"]["stale"] = CLUSTER + "-gone"
    with pytest.raises(
        WorldError, match=r"<world>: clusters\.stale: .* is not a Microsoft\.ContainerService"
    ):
        parse_world(data)


def test_duplicate_ids_are_an_error_whatever_their_case() -> None:
    data = minimal()
    data["arm"].append(
        {**data["arm"][1], "id": VNET.upper().replace("/SUBSCRIPTIONS", "/subscriptions")}
    )
    with pytest.raises(WorldError, match=r"arm\[2\]\.id: .* duplicates arm\[1\]\.id"):
        parse_world(data)


def test_unquoted_timestamps_stay_strings(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    text = yaml.safe_dump(minimal(), sort_keys=False).replace(
        "'2026-11-27T09:30:00Z'", "2026-11-27T09:30:00Z"
    )
    path.write_text(text)
    assert load_world(path).data["now"] == "2026-11-27T09:30:00Z"


def test_lookups_ignore_case() -> None:
    world = load_world(WORLDS / "natgw-managed-snat-failed.yaml")
    natgw = next(r for r in world.data["arm"] if r["type"] == "Microsoft.Network/natGateways")
    assert "/resourceGroups/MC_" in natgw["id"]
    assert "/resourcegroups/mc_" in next(iter(world.data["metrics"]))
    assert world.metrics_for(natgw["id"])
    assert world.resource(natgw["id"].lower()) is natgw
    assert world.resource(natgw["id"].upper().replace("/SUBSCRIPTIONS", "/subscriptions")) is natgw
    cluster_id = next(iter(world.clusters.values()))
    assert world.egress_endpoints_for(cluster_id.lower())
    assert world.kubernetes_for(cluster_id.upper()) is not None


def test_subnet_is_served_from_its_vnet() -> None:
    world = parse_world(minimal())
    subnet = world.resource(f"{VNET}/SUBNETS/nodes")
    assert subnet is not None
    assert subnet["properties"]["addressPrefix"] == "10.0.0.0/22"
    assert subnet["type"] == "Microsoft.Network/virtualNetworks/subnets"
    assert world.collection(f"{VNET}/subnets") == [subnet]


def test_agent_pool_is_served_from_the_cluster_profile() -> None:
    world = parse_world(minimal())
    pool = world.resource(f"{CLUSTER}/agentPools/system")
    assert pool == {
        "id": f"{CLUSTER}/agentPools/system",
        "name": "system",
        "type": "Microsoft.ContainerService/managedClusters/agentPools",
        "properties": {"count": 3},
    }
    assert world.collection(f"{CLUSTER}/agentpools") == [pool]


def test_child_listed_on_its_own_wins() -> None:
    data = minimal()
    own = {
        "id": f"{VNET}/subnets/nodes",
        "name": "nodes",
        "type": "Microsoft.Network/virtualNetworks/subnets",
        "properties": {"addressPrefix": "10.9.0.0/24"},
    }
    data["arm"].insert(0, own)
    world = parse_world(data)
    assert world.resource(f"{VNET}/subnets/nodes") is own
    assert world.collection(f"{VNET}/subnets") == [own]


def test_collections_by_resource_group_and_subscription() -> None:
    world = parse_world(minimal())
    vnet = world.resource(VNET)
    assert world.collection(f"{RG}/microsoft.network/VIRTUALNETWORKS") == [vnet]
    assert world.collection(
        f"/subscriptions/{SUB}/providers/Microsoft.Network/virtualNetworks"
    ) == [vnet]
    assert world.collection(f"{RG}/Microsoft.Network/routeTables") is None


def test_put_and_delete_keep_parent_and_child_in_step() -> None:
    world = parse_world(minimal())
    subnet = {
        "name": "pods",
        "id": f"{VNET}/subnets/pods",
        "properties": {"addressPrefix": "10.1.0.0/16"},
    }
    assert world.put(subnet) is True
    vnet = world.resource(VNET)
    assert [s["name"] for s in vnet["properties"]["subnets"]] == ["nodes", "pods"]
    assert world.put({**subnet, "properties": {"addressPrefix": "10.2.0.0/16"}}) is False
    assert world.resource(f"{VNET}/subnets/pods")["properties"]["addressPrefix"] == "10.2.0.0/16"
    assert world.delete(f"{VNET}/subnets/nodes") is True
    assert [s["name"] for s in world.resource(VNET)["properties"]["subnets"]] == ["pods"]
    assert world.delete(VNET) is True
    assert world.resource(f"{VNET}/subnets/pods") is None
    assert world.delete(VNET) is False


def test_copy_is_independent() -> None:
    world = parse_world(minimal())
    clone = world.copy()
    clone.delete(VNET)
    assert world.resource(VNET) is not None
    assert isinstance(clone, World)


def test_writes_never_mutate_bodies_already_handed_out() -> None:
    world = parse_world(minimal())
    before = world.resource(VNET)
    snapshot = copy.deepcopy(before)
    world.put({"name": "pods", "id": f"{VNET}/subnets/pods", "properties": {}})
    assert before == snapshot

"""bot/armid.py: ARM ids compared as ARM compares them (case-insensitively) and taken apart
into their subscription, group, types and names."""

from __future__ import annotations

import pytest

from bot import armid

SUBNET = (
    "/subscriptions/S1/resourceGroups/RG-Net/providers/Microsoft.Network/"
    "virtualNetworks/vnet-a/subnets/snet-b"
)


def test_ids_are_the_same_whatever_their_casing_and_slashes() -> None:
    assert armid.key(SUBNET) == armid.key(SUBNET.lower().replace("/subnets/", "//subnets/") + "/")
    assert armid.same(SUBNET, SUBNET.upper())
    assert not armid.same(SUBNET, None) and not armid.same(None, None)


def test_a_resource_id_taken_apart() -> None:
    rid = armid.ArmId.parse(SUBNET)
    assert (rid.subscription, rid.resource_group, rid.provider) == (
        "S1",
        "RG-Net",
        "Microsoft.Network",
    )
    assert (rid.name, rid.parent_name) == ("snet-b", "vnet-a")
    assert rid.type == "Microsoft.Network/virtualNetworks/subnets"
    assert rid.parent_id() == SUBNET.rsplit("/subnets/", 1)[0]


@pytest.mark.parametrize(
    "bad",
    [
        "/subscriptions/s/providers/Microsoft.Network/virtualNetworks/v",  # no group
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks",
        "not an id",
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets",
    ],
)
def test_anything_else_is_refused_with_the_reason(bad: str) -> None:
    with pytest.raises(ValueError, match="ARM"):
        armid.ArmId.parse(bad)


def test_paths_and_collections() -> None:
    collection = armid.parse(SUBNET.rsplit("/", 1)[0])
    assert collection is not None and collection.is_collection
    assert collection.resource_type == "Microsoft.Network/virtualNetworks/subnets"
    assert collection.parent is not None and collection.parent.path.endswith("/vnet-a")
    assert collection.child("x", "y").path.endswith("/subnets/x/y") is False
    subnet = armid.parse(SUBNET)
    assert subnet is not None and subnet.path == SUBNET and not subnet.is_collection
    scoped = armid.parse("/subscriptions/s/providers/Microsoft.Network/natGateways")
    assert scoped is not None and scoped.resource_group is None
    assert armid.parse(f"{SUBNET}/providers/Microsoft.Insights/metrics") is None
    assert armid.parse("/subscriptions/s") is None


def test_the_ids_aks_makes() -> None:
    assert armid.cluster_id("s", "rg", "c") == (
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c"
    )
    assert armid.load_balancer_id("s", "MC_rg").endswith(
        "/MC_rg/providers/Microsoft.Network/loadBalancers/kubernetes"
    )

"""ARM resource ids, compared the way ARM compares them: case-insensitively.

Real ARM returns the same id with different casing in different places (`resourceGroups`
vs `resourcegroups`, `MC_rg` vs `mc_rg`), so every lookup keyed by an id goes through
`key()`. `ArmId.parse` takes apart the resource-group-scoped ids the product reads;
`parse` (to an `ArmPath`) also takes subscription-scoped and collection paths, for the
sandbox's request routing.
"""

from __future__ import annotations

from dataclasses import dataclass


def key(path: str) -> str:
    """The lookup form of an ARM id or path: lower-case, one leading slash, no empty segments."""
    return "/" + "/".join(s.lower() for s in path.split("/") if s)


def same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and key(a) == key(b)


@dataclass(frozen=True)
class ArmId:
    subscription: str
    resource_group: str
    provider: str
    types: tuple[str, ...]
    names: tuple[str, ...]
    raw: str

    @classmethod
    def parse(cls, resource_id: str) -> ArmId:
        parts = resource_id.strip("/").split("/")
        if len(parts) < 8 or parts[0].lower() != "subscriptions":
            raise ValueError(f"not an ARM resource id: {resource_id!r}")
        if parts[2].lower() != "resourcegroups" or parts[4].lower() != "providers":
            raise ValueError(f"not a resource-group scoped ARM id: {resource_id!r}")
        rest = parts[6:]
        if len(rest) % 2:
            raise ValueError(f"ARM id has a type without a name: {resource_id!r}")
        return cls(
            subscription=parts[1],
            resource_group=parts[3],
            provider=parts[5],
            types=tuple(rest[0::2]),
            names=tuple(rest[1::2]),
            raw=resource_id,
        )

    @property
    def name(self) -> str:
        return self.names[-1]

    @property
    def parent_name(self) -> str:
        return self.names[-2]

    @property
    def type(self) -> str:
        return f"{self.provider}/{'/'.join(self.types)}"

    def parent_id(self) -> str:
        return "/".join(self.raw.rstrip("/").split("/")[:-2])


@dataclass(frozen=True)
class ArmPath:
    """`/subscriptions/{s}[/resourceGroups/{rg}]/providers/{ns}/{type}/{name}[/{type}/{name}…]`.

    With one name fewer than types it is a collection (`…/virtualNetworks/{v}/subnets`).
    """

    subscription: str
    resource_group: str | None
    namespace: str
    types: tuple[str, ...]
    names: tuple[str, ...]

    @property
    def is_collection(self) -> bool:
        return len(self.names) < len(self.types)

    @property
    def resource_type(self) -> str:
        """`Microsoft.Network/virtualNetworks/subnets`: the form RBAC actions and errors use."""
        return "/".join((self.namespace, *self.types))

    @property
    def path(self) -> str:
        scope = f"/subscriptions/{self.subscription}"
        if self.resource_group is not None:
            scope += f"/resourceGroups/{self.resource_group}"
        pairs = [seg for pair in zip(self.types, self.names, strict=False) for seg in pair]
        if self.is_collection:
            pairs.append(self.types[-1])
        return "/".join((scope, "providers", self.namespace, *pairs))

    @property
    def parent(self) -> ArmPath | None:
        """The resource that owns this one (for a collection: the owner of its members)."""
        depth = len(self.names) - (0 if self.is_collection else 1)
        if depth < 1:
            return None
        return ArmPath(
            self.subscription,
            self.resource_group,
            self.namespace,
            self.types[:depth],
            self.names[:depth],
        )

    def child(self, child_type: str, name: str) -> ArmPath:
        return ArmPath(
            self.subscription,
            self.resource_group,
            self.namespace,
            (*self.types, child_type),
            (*self.names, name),
        )


def parse(path: str) -> ArmPath | None:
    """Parse a provider resource or collection path; None for anything else.

    Extension paths (a second `providers` segment, as in `{id}/providers/Microsoft.Insights/
    metrics`) are not resources of the world and are routed before this is consulted.
    """
    segs = [s for s in path.split("/") if s]
    if len(segs) < 5 or segs[0].lower() != "subscriptions":
        return None
    at = 2
    group = None
    if segs[2].lower() == "resourcegroups":
        group, at = segs[3], 4
    if len(segs) < at + 3 or segs[at].lower() != "providers":
        return None
    rest = segs[at + 2 :]
    types, names = tuple(rest[0::2]), tuple(rest[1::2])
    if any(t.lower() == "providers" for t in types):
        return None
    return ArmPath(segs[1], group, segs[at + 1], types, names)


def cluster_id(subscription: str, resource_group: str, name: str) -> str:
    """An AKS managed cluster's ARM id."""
    return (
        f"/subscriptions/{subscription}/resourceGroups/{resource_group}"
        f"/providers/Microsoft.ContainerService/managedClusters/{name}"
    )


def load_balancer_id(subscription: str, node_resource_group: str) -> str:
    """The load balancer AKS creates for outbound type loadBalancer: always `kubernetes`,
    in the node resource group."""
    return (
        f"/subscriptions/{subscription}/resourceGroups/{node_resource_group}"
        "/providers/Microsoft.Network/loadBalancers/kubernetes"
    )

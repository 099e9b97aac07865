"""ARM resource paths, parsed once so world indexing and request routing agree.

ARM compares ids case-insensitively but echoes them as written, so a parsed path keeps the
original spelling and offers `key` (lower-cased, normalised) for every lookup.
"""

from __future__ import annotations

from dataclasses import dataclass


def key(path: str) -> str:
    """The lookup form of an ARM path: lower-case, one leading slash, no empty segments."""
    return "/" + "/".join(s.lower() for s in path.split("/") if s)


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

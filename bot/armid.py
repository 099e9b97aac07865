"""ARM resource ids, compared the way ARM compares them: case-insensitively.

Real ARM returns the same id with different casing in different places (`resourceGroups`
vs `resourcegroups`, `MC_rg` vs `mc_rg`), so every lookup keyed by an id goes through
`key()` and every id taken apart goes through `ArmId.parse`.
"""

from __future__ import annotations

from dataclasses import dataclass


def key(resource_id: str) -> str:
    """The lookup key of an id: lower-cased, without a trailing slash."""
    return resource_id.rstrip("/").lower()


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

"""The read-only objects a world's cluster holds beyond nodes and pods (world-format.md,
`kubernetes`): services, config maps, NetworkPolicies and Cilium's policies.

They are served as the official client lists and gets them: across or within namespaces,
with label and field selectors, in etcd key order. Cilium's `cilium.io/v2` resources are
CustomResourceDefinitions that exist only when the cluster runs Azure CNI powered by Cilium
(`networkProfile.networkDataplane: cilium`); anywhere else their paths answer 404, as the
API server does for a CRD that is not installed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.sandbox.wire import Response

Json = dict[str, Any]

CILIUM_GROUP = "cilium.io"


@dataclass(frozen=True)
class Kind:
    """One served resource: its world key, kind and whether it lives in a namespace."""

    group_version: str  # "v1" for the core group
    plural: str
    world_key: str
    kind: str
    namespaced: bool = True

    @property
    def custom(self) -> bool:
        return self.group_version.startswith(CILIUM_GROUP)


KINDS = (
    Kind("v1", "services", "services", "Service"),
    Kind("v1", "configmaps", "configMaps", "ConfigMap"),
    Kind("networking.k8s.io/v1", "networkpolicies", "networkPolicies", "NetworkPolicy"),
    Kind("cilium.io/v2", "ciliumnetworkpolicies", "ciliumNetworkPolicies", "CiliumNetworkPolicy"),
    Kind(
        "cilium.io/v2",
        "ciliumclusterwidenetworkpolicies",
        "ciliumClusterwideNetworkPolicies",
        "CiliumClusterwideNetworkPolicy",
        namespaced=False,
    ),
)
_BY_PATH = {(k.group_version, k.plural): k for k in KINDS}


def runs_cilium(cluster: Json | None) -> bool:
    """Azure CNI powered by Cilium: the network profile's dataplane is `cilium`."""
    profile = ((cluster or {}).get("properties") or {}).get("networkProfile") or {}
    return str(profile.get("networkDataplane") or "").lower() == "cilium"


class WorldObjects:
    """The authored objects of one cluster, stored once (uid, resourceVersion filled in)."""

    def __init__(self, spec: Json, cilium: bool, stored: Callable[[str, Json], Json]) -> None:
        self.cilium = cilium
        self._objects: dict[str, list[Json]] = {}
        for kind in KINDS:
            items = [stored(kind.kind, o) for o in spec.get(kind.world_key) or []]
            for item in items:
                item["apiVersion"] = kind.group_version
                if kind.namespaced:
                    item["metadata"].setdefault("namespace", "default")
                else:
                    item["metadata"].pop("namespace", None)
            self._objects[kind.plural] = sorted(items, key=_etcd_key)

    def kind(self, group: str, version: str, plural: str | None) -> Kind | None:
        """The served kind at a path; Cilium's only where its CRDs are installed."""
        found = _BY_PATH.get((f"{group}/{version}" if group else version, plural or ""))
        if found is None or (found.custom and not self.cilium):
            return None
        return found

    def items(self, kind: Kind) -> list[Json]:
        return self._objects[kind.plural]

    def answer(
        self,
        kind: Kind,
        namespace: str | None,
        name: str | None,
        match: Callable[[Json], bool],
        rv: int,
        ok: Callable[[Any], Response],
        not_found: Callable[[str, str, str], Response],
    ) -> Response:
        """A get (by name) or a list, in or across namespaces."""
        if namespace is not None and not kind.namespaced:
            return not_found(kind.plural, name or "", _group(kind))
        scoped = [
            o
            for o in self._objects[kind.plural]
            if namespace is None or o["metadata"].get("namespace") == namespace
        ]
        if name is not None:
            if kind.namespaced and namespace is None:
                return not_found(kind.plural, name, _group(kind))
            found = next((o for o in scoped if o["metadata"].get("name") == name), None)
            if found is None:
                return not_found(kind.plural, name, _group(kind))
            return ok(copy.deepcopy(found))
        items = [copy.deepcopy(o) for o in scoped if match(o)]
        if not kind.custom:  # built-in lists carry no kind/apiVersion per item
            items = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in items]
        return ok(
            {
                "kind": f"{kind.kind}List",
                "apiVersion": kind.group_version,
                "metadata": {"resourceVersion": str(rv)},
                "items": items,
            }
        )


def _group(kind: Kind) -> str:
    return kind.group_version.rpartition("/")[0]


def _etcd_key(obj: Json) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


OBJECT_FIELDS: Mapping[str, Callable[[Json], Any]] = {
    "metadata.name": lambda o: (o.get("metadata") or {}).get("name"),
    "metadata.namespace": lambda o: (o.get("metadata") or {}).get("namespace"),
}

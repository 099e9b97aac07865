"""Loading a world file (world-format.md) and indexing its ARM part the way ARM looks it up.

The index is what makes worlds cheap to author: ids match case-insensitively, and child
resources (subnets, rules, routes, agent pools) are served from their parent's body, so a
world lists each thing once, exactly as a GET of the parent shows it.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from bot import armid

_MAX_REPORTED_ERRORS = 10
_AGENT_POOL_TYPE = "Microsoft.ContainerService/managedClusters/agentPools"
_MANAGED_CLUSTER_TYPE = "microsoft.containerservice/managedclusters"


class WorldError(ValueError):
    """A world file that cannot be served; the message names the file and the key path."""


@dataclass(frozen=True)
class _Embedded:
    """A list in a parent's `properties` that ARM also serves as child resources."""

    prop: str
    child: str
    profile: bool = False  # entries are profiles whose fields become the child's properties


_EMBEDDED: dict[str, tuple[_Embedded, ...]] = {
    "microsoft.network/virtualnetworks": (_Embedded("subnets", "subnets"),),
    "microsoft.network/networksecuritygroups": (
        _Embedded("securityRules", "securityRules"),
        _Embedded("defaultSecurityRules", "defaultSecurityRules"),
    ),
    "microsoft.network/routetables": (_Embedded("routes", "routes"),),
    "microsoft.containerservice/managedclusters": (
        _Embedded("agentPoolProfiles", "agentPools", profile=True),
    ),
}


@dataclass
class World:
    """A validated world plus its ARM index.

    `data` is the document as authored. Writes (`put`, `delete`) replace the dicts they
    change instead of mutating them, so a body handed to a reader is never modified under it
    while another thread writes.
    """

    data: dict[str, Any]
    source: str = "<world>"
    now: datetime = field(init=False)
    subscription_id: str = field(init=False)
    clusters: dict[str, str] = field(init=False)
    _by_id: dict[str, dict[str, Any]] = field(init=False, repr=False)
    _collections: dict[str, list[dict[str, Any]]] = field(init=False, repr=False)
    _by_key: dict[str, dict[str, Any]] = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)
    # Every write served (world-format.md: writes are applied *and recorded*), in order:
    # {"method", "id", "status", "body"}; the NVA-bypass tests assert on it.
    writes: list[dict[str, Any]] = field(init=False, repr=False, default_factory=list)

    def __post_init__(self) -> None:
        self.now = datetime.fromisoformat(self.data["now"]).astimezone(UTC)
        self.subscription_id = self.data["subscriptionId"]
        self.clusters = dict(self.data["clusters"])
        self._by_key = {
            section: {armid.key(k): v for k, v in self.data.get(section, {}).items()}
            for section in ("metrics", "egressEndpoints", "kubernetes")
        }
        self._reindex()

    def copy(self) -> World:
        """An independent world, so a served world's writes never leak into its template."""
        return World(copy.deepcopy(self.data), self.source)

    def resource(self, resource_id: str) -> dict[str, Any] | None:
        return self._by_id.get(armid.key(resource_id))

    def collection(self, path: str) -> list[dict[str, Any]] | None:
        """Members of a collection path, or None when the world has none of that type there."""
        return self._collections.get(armid.key(path))

    def metrics_for(self, resource_id: str) -> list[dict[str, Any]] | None:
        return self._by_key["metrics"].get(armid.key(resource_id))

    def egress_endpoints_for(self, cluster_id: str) -> list[dict[str, Any]] | None:
        return self._by_key["egressEndpoints"].get(armid.key(cluster_id))

    def kubernetes_for(self, cluster_id: str) -> dict[str, Any] | None:
        return self._by_key["kubernetes"].get(armid.key(cluster_id))

    def put(self, body: dict[str, Any]) -> bool:
        """Create or replace the resource at `body["id"]`; True if it did not exist.

        A child whose parent embeds its kind (a route in its route table) is also written into
        the parent's list, so a GET of the parent shows it as ARM would.
        """
        target = armid.key(body["id"])
        with self._lock:
            created = target not in self._by_id
            arm: list[dict[str, Any]] = self.data["arm"]
            standalone = next((i for i, b in enumerate(arm) if armid.key(b["id"]) == target), None)
            if standalone is not None:
                arm[standalone] = body
            embedded = self._rewrite_parent_list(body["id"], body)
            if standalone is None and not embedded:
                arm.append(body)
            self._reindex()
        return created

    def delete(self, resource_id: str) -> bool:
        """Remove a resource and everything under it; True if it existed."""
        target = armid.key(resource_id)
        with self._lock:
            existed = target in self._by_id
            self.data["arm"] = [
                b
                for b in self.data["arm"]
                if armid.key(b["id"]) != target and not armid.key(b["id"]).startswith(target + "/")
            ]
            self._rewrite_parent_list(resource_id, None)
            self._reindex()
        return existed

    def _rewrite_parent_list(self, child_id: str, body: dict[str, Any] | None) -> bool:
        """Upsert (body) or remove (None) a child in its parent's embedded list."""
        path = armid.parse(child_id)
        parent = path.parent if path else None
        if path is None or parent is None:
            return False
        spec = _spec_for(parent.resource_type, path.types[-1])
        arm: list[dict[str, Any]] = self.data["arm"]
        at = next(
            (i for i, b in enumerate(arm) if armid.key(b["id"]) == armid.key(parent.path)), None
        )
        if spec is None or spec.profile or at is None:
            return False
        props = arm[at].get("properties") or {}
        name = path.names[-1].lower()
        entries = [e for e in props.get(spec.prop) or [] if str(e.get("name", "")).lower() != name]
        if body is not None:
            old = [str(e.get("name", "")).lower() for e in props.get(spec.prop) or []]
            entries.insert(old.index(name) if name in old else len(entries), body)
        arm[at] = {**arm[at], "properties": {**props, spec.prop: entries}}
        return True

    def _reindex(self) -> None:
        arm: list[dict[str, Any]] = self.data["arm"]
        standalone = {armid.key(b["id"]): b for b in arm}
        by_id: dict[str, dict[str, Any]] = {}
        for body in arm:
            by_id[armid.key(body["id"])] = body
            for child_key, child in _embedded_children(body):
                by_id[child_key] = standalone.get(child_key, child)
        collections: dict[str, list[dict[str, Any]]] = {}
        for resource_key, body in by_id.items():
            for collection_key in _collection_keys(resource_key):
                collections.setdefault(collection_key, []).append(body)
        self._by_id, self._collections = by_id, collections


def _spec_for(parent_type: str, child_type: str) -> _Embedded | None:
    specs = _EMBEDDED.get(parent_type.lower(), ())
    return next((s for s in specs if s.child.lower() == child_type.lower()), None)


def _embedded_children(parent: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    path = armid.parse(parent["id"])
    if path is None or path.is_collection:
        return
    props = parent.get("properties") or {}
    for spec in _EMBEDDED.get(path.resource_type.lower(), ()):
        for entry in props.get(spec.prop) or []:
            if not isinstance(entry, dict) or not entry.get("name"):
                continue
            child_id = path.child(spec.child, entry["name"]).path
            if spec.profile:
                fields = {k: v for k, v in entry.items() if k != "name"}
                body = {
                    "id": child_id,
                    "name": entry["name"],
                    "type": _AGENT_POOL_TYPE,
                    "properties": fields,
                }
            else:
                body = {"name": entry["name"], "id": child_id, **entry}
                body.setdefault("type", f"{parent['type']}/{spec.child}")
            yield armid.key(child_id), body


_VMSS_INSTANCE_NIC = ("virtualmachinescalesets", "virtualmachines", "networkinterfaces")


def _collection_keys(resource_key: str) -> list[str]:
    """The list paths a resource shows up in: its parent collection, and for a top-level
    resource in a resource group also the subscription-wide list of its type."""
    keys = [resource_key.rsplit("/", 1)[0]]
    path = armid.parse(resource_key)
    if path is not None and path.resource_group is not None and len(path.types) == 1:
        keys.append(
            f"/subscriptions/{path.subscription}/providers/{path.namespace}/{path.types[0]}"
        )
    if path is not None and path.types == _VMSS_INSTANCE_NIC:
        # A scale set instance's NIC is also listed under the scale set itself, as ARM's
        # "List Virtual Machine Scale Set Network Interfaces" does.
        keys.append(resource_key.split("/virtualmachines/", 1)[0] + "/networkinterfaces")
    return keys


# --- loading and validation -------------------------------------------------------------


class _WorldLoader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1 timestamps: an unquoted `now: 2026-…Z` stays the string
    the schema and the served JSON expect instead of becoming a datetime."""


_WorldLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _schema() -> dict[str, Any]:
    text = resources.files("bot.sandbox").joinpath("world.schema.json").read_text("utf-8")
    return json.loads(text)


_VALIDATOR = jsonschema.Draft202012Validator(_schema())
_TOP_LEVEL_KEYS = tuple(_VALIDATOR.schema["properties"])


def load_world(path: str | Path) -> World:
    """Read, validate and index a world file (YAML, or JSON by its `.json` suffix)."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise WorldError(f"{source}: cannot read: {exc.strerror or exc}") from exc
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise WorldError(f"{source}: line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    else:
        try:
            data = yaml.load(text, Loader=_WorldLoader)
        except yaml.YAMLError as exc:
            raise WorldError(f"{source}: {_yaml_problem(exc)}") from exc
    return parse_world(data, source)


def parse_world(data: Any, source: str = "<world>") -> World:
    """Validate an already-parsed world document (tests and benchmarks build them in code)."""
    if not isinstance(data, dict):
        raise WorldError(f"{source}: a world is a mapping, got {type(data).__name__}")
    problems = [_describe(error) for error in _VALIDATOR.iter_errors(data)]
    problems.sort()
    problems += _semantic_problems(data) if not problems else []
    if problems:
        shown = problems[:_MAX_REPORTED_ERRORS]
        more = len(problems) - len(shown)
        lines = [f"{source}: {p}" for p in shown]
        if more:
            lines.append(f"{source}: … and {more} more")
        raise WorldError("\n".join(lines))
    return World(data, source)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is None:
        return f"invalid YAML: {problem}"
    return f"line {mark.line + 1}, column {mark.column + 1}: invalid YAML: {problem}"


def _describe(error: jsonschema.ValidationError) -> str:
    if not error.absolute_path and error.validator == "additionalProperties":
        unknown = sorted(set(error.instance) - set(_TOP_LEVEL_KEYS))
        names = ", ".join(repr(k) for k in unknown)
        noun = "key" if len(unknown) == 1 else "keys"
        return f"unknown top-level {noun} {names} (allowed: {', '.join(_TOP_LEVEL_KEYS)})"
    if error.context:
        error = jsonschema.exceptions.best_match(error.context)
    where = _key_path(error.absolute_path) or "(top level)"
    message = error.message
    if error.validator == "pattern":
        shape = next((v for k, v in _ID_SHAPES.items() if k in str(error.validator_value)), None)
        message = f"{error.instance!r} does not match {shape}" if shape else message
    return f"{where}: {message}"


# The schema spells id patterns case-insensitively, which makes its raw regexes unreadable;
# these say the same in words (most specific first).
_ID_SHAPES = {
    "[Mm][Aa][Nn][Aa][Gg][Ee][Dd][Cc]": "an AKS cluster id (/subscriptions/{s}/resourceGroups/{rg}"
    "/providers/Microsoft.ContainerService/managedClusters/{name})",
    "[Pp][Rr][Oo][Vv][Ii][Dd][Ee][Rr][Ss]": "an ARM id (/subscriptions/{s}[/resourceGroups/{rg}]"
    "/providers/{ns}/{type}/{name}…)",
}
_BARE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _key_path(parts: Any) -> str:
    """`arm[3].id`, `clusters.prod-weu`, `metrics['/subscriptions/…'][0].name`."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _BARE_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def _semantic_problems(data: dict[str, Any]) -> list[str]:
    """What the schema cannot say: unique ids, and aliases that name a cluster in `arm`."""
    problems = []
    seen: dict[str, int] = {}
    for i, body in enumerate(data["arm"]):
        k = armid.key(body["id"])
        if k in seen:
            problems.append(f"arm[{i}].id: {body['id']!r} duplicates arm[{seen[k]}].id")
        seen.setdefault(k, i)
    for alias, cluster_id in data["clusters"].items():
        body = data["arm"][seen[armid.key(cluster_id)]] if armid.key(cluster_id) in seen else None
        if body is None or str(body["type"]).lower() != _MANAGED_CLUSTER_TYPE:
            problems.append(
                f"{_key_path(['clusters', alias])}: {cluster_id!r} is not a "
                "Microsoft.ContainerService/managedClusters resource listed in arm"
            )
    return problems

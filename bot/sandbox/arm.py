"""Azure Resource Manager, answered from a world (world-format.md, `arm`).

`ArmApi.handle(method, path, query, body)` is a pure function of the request apart from the
route-table writes it applies to the world, so routing and error bodies are unit-testable
without a socket. Bodies and error shapes are those of real ARM, because the product parses
them with the real SDK models and must meet the same surprises it meets in production.
"""

from __future__ import annotations

import base64
import functools
import re
import uuid
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

import yaml

from bot import armid
from bot.sandbox import metrics, resourcegraph
from bot.sandbox.runcommand import RunCommands
from bot.sandbox.wire import Request, Response
from bot.sandbox.world import World

SANDBOX_TOKEN = "sandbox-token"
SANDBOX_CLIENT = "sandbox@aks-egress.invalid"
SANDBOX_OBJECT_ID = "00000000-0000-0000-0000-000000000000"

_JSON = {"Content-Type": "application/json; charset=utf-8"}
_CLUSTERS = "microsoft.containerservice/managedclusters"
_ROUTE_TABLES = "microsoft.network/routetables"
_ROUTES = "microsoft.network/routetables/routes"
_COMMAND_RESULTS = f"{_CLUSTERS}/commandresults"
_WRITE_VERBS = {"PUT": "write", "PATCH": "write", "DELETE": "delete", "POST": "action"}

# ARM's code and message per status, for 401s and injected faults (faults.rules).
_ERRORS = {
    400: (
        "InvalidRequestContent",
        "The request content was invalid and could not be deserialized.",
    ),
    401: (
        "AuthenticationFailed",
        "Authentication failed. The 'Authorization' header is missing or invalid.",
    ),
    409: ("Conflict", "The request conflicts with the current state of the resource."),
    429: (
        "TooManyRequests",
        "The request is being throttled as the limit has been reached for operation type - "
        "Read_ObservationWindow_00:05:00. For more information, see - "
        "https://aka.ms/srpthrottlinglimits",
    ),
    500: ("InternalServerError", "Encountered internal server error. Please try again."),
    502: ("BadGateway", "The gateway did not receive a response from the service in time."),
    503: ("ServiceUnavailable", "The service is temporarily unavailable. Please try again later."),
    504: ("GatewayTimeout", "The gateway did not receive a response within the specified time."),
}


def error(status: int, code: str, message: str) -> Response:
    return Response(status, dict(_JSON), {"error": {"code": code, "message": message}})


_PERMISSIONS = "/providers/microsoft.authorization/permissions"


class ArmApi:
    """The ARM endpoint of one sandbox.

    `kube_url_for(cluster_id)` gives the API server URL that kubeconfigs point at (the
    Kubernetes emulator's); without it the cluster's real `fqdn` is used. `kube_ca_pem` is the
    CA those kubeconfigs trust. `run_commands` runs `POST {cluster}/runCommand` (runcommand.py);
    without it that operation is refused as any other unknown action.
    """

    api = "arm"
    # What the caller may do, as the permissions API reports it for every scope (tests set
    # this to play a principal missing actions).
    granted: tuple[str, ...] = ("*",)

    def __init__(
        self,
        world: World,
        kube_url_for: Callable[[str], str] | None = None,
        kube_ca_pem: bytes | None = None,
        run_commands: RunCommands | None = None,
    ) -> None:
        self.world = world
        self.kube_url_for = kube_url_for
        self.kube_ca_pem = kube_ca_pem
        self.run_commands = run_commands

    def __call__(self, request: Request) -> Response:
        return self.handle(
            request.method, request.path, request.query, request.body, request.headers
        )

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        method = method.upper()
        if "api-version" not in {k.lower() for k in query}:
            return error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        if (target := metrics.split_path(path)) is not None:
            return self._metrics(method, path, *target, query)
        if method == "POST" and path.lower() == resourcegraph.PATH:
            return resourcegraph.query(self.world, body)
        if method == "GET" and path.lower().endswith(_PERMISSIONS):
            # https://learn.microsoft.com/rest/api/authorization/permissions/list-for-resource
            rules = {"actions": list(self.granted), "notActions": []}
            return ok({"value": [{**rules, "dataActions": [], "notDataActions": []}]})
        parsed = armid.parse(path)
        if parsed is None:
            return self._unknown_path(method, path)
        if method == "GET" and parsed.resource_type.lower() == "microsoft.advisor/recommendations":
            return ok({"value": self.world.data.get("advisor") or []})
        if method == "GET" and parsed.resource_type.lower() == "microsoft.compute/skus":
            return ok({"value": self._resource_skus(query.get("$filter"))})
        operation = self._operation(method, parsed)
        if operation is not None:
            return operation(body)
        if method == "GET" and parsed.resource_type.lower() == _COMMAND_RESULTS:
            return self._command_result(parsed)
        if method == "GET":
            return self._get(parsed)
        if method in ("PUT", "PATCH", "DELETE") and parsed.resource_type.lower() in (
            _ROUTE_TABLES,
            _ROUTES,
        ):
            return self._write(method, parsed, body, headers or {})
        return forbidden(method, path)

    def error(self, status: int, request: Request) -> Response:
        """ARM's error body for a status: 401s, malformed bodies and injected faults."""
        if status == 403:
            return forbidden(request.method, request.path)
        if status == 404:
            return not_found(request.path)
        code, message = _ERRORS.get(status) or (_phrase_code(status), f"HTTP {status}.")
        return error(status, code, message)

    # --- routing ----------------------------------------------------------------------

    def _operation(self, method: str, parsed: armid.ArmPath) -> Callable[[Any], Response] | None:
        """`{owner}/{operation}` paths that are not resources, bound to their owner; called
        with the request body."""
        owner = parsed.parent
        if not parsed.is_collection or owner is None:
            return None
        handler = {
            ("GET", _CLUSTERS, "outboundnetworkdependenciesendpoints"): self._egress_endpoints,
            ("POST", _CLUSTERS, "listclusterusercredential"): self._user_credential,
            ("POST", _CLUSTERS, "runcommand"): self._run_command,
            ("GET", "microsoft.network/locations", "servicetags"): self._service_tags,
        }.get((method, owner.resource_type.lower(), parsed.types[-1].lower()))
        return functools.partial(handler, owner) if handler is not None else None

    def _unknown_path(self, method: str, path: str) -> Response:
        if method == "GET":
            return not_found(path)
        return forbidden(method, path)

    def _get(self, parsed: armid.ArmPath) -> Response:
        if not parsed.is_collection:
            body = self.world.resource(parsed.path)
            return ok(body) if body is not None else not_found(parsed.path)
        parent = parsed.parent
        if parent is not None and self.world.resource(parent.path) is None:
            return not_found(parent.path)
        return ok({"value": self.world.collection(parsed.path) or []})

    # --- operations ---------------------------------------------------------------------

    def _egress_endpoints(self, owner: armid.ArmPath, body: Any = None) -> Response:
        cluster = self.world.resource(owner.path)
        if cluster is None:
            return not_found(owner.path)
        return ok({"value": self.world.egress_endpoints_for(cluster["id"]) or []})

    def _user_credential(self, owner: armid.ArmPath, body: Any = None) -> Response:
        cluster = self.world.resource(owner.path)
        if cluster is None:
            return not_found(owner.path)
        kubeconfig = yaml.safe_dump(self._kubeconfig(cluster), sort_keys=False)
        value = base64.b64encode(kubeconfig.encode()).decode()
        return ok({"kubeconfigs": [{"name": "clusterUser", "value": value}]})

    def _kubeconfig(self, cluster: dict[str, Any]) -> dict[str, Any]:
        """A clusterUser kubeconfig as AKS writes it, but with a static bearer token in place
        of the kubelogin exec plugin, so the Kubernetes client needs nothing installed."""
        name = cluster["name"]
        group = armid.parse(cluster["id"])
        user = f"clusterUser_{group.resource_group if group else ''}_{name}"
        if self.kube_url_for is not None:
            server = self.kube_url_for(cluster["id"])
        else:
            server = f"https://{(cluster.get('properties') or {}).get('fqdn', name)}:443"
        entry: dict[str, Any] = {"server": server}
        if self.kube_ca_pem is not None:
            entry["certificate-authority-data"] = base64.b64encode(self.kube_ca_pem).decode()
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": entry}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": user}}],
            "current-context": name,
            "preferences": {},
            "users": [{"name": user, "user": {"token": SANDBOX_TOKEN}}],
        }

    def _run_command(self, owner: armid.ArmPath, body: Any) -> Response:
        cluster = self.world.resource(owner.path)
        if cluster is None:
            return not_found(owner.path)
        if self.run_commands is None:
            return forbidden("POST", f"{owner.path}/runCommand")
        return self.run_commands.start(cluster, owner.path, body)

    def _command_result(self, parsed: armid.ArmPath) -> Response:
        owner = parsed.parent
        result = None
        if owner is not None and self.run_commands is not None:
            if self.world.resource(owner.path) is None:
                return not_found(owner.path)
            result = self.run_commands.result(owner.path, parsed.names[-1])
        return result if result is not None else not_found(parsed.path)

    def _service_tags(self, owner: armid.ArmPath, body: Any = None) -> Response:
        return ok(
            {
                "name": "Public",
                "id": f"/subscriptions/{owner.subscription}/providers/Microsoft.Network"
                "/serviceTags/Public",
                "type": "Microsoft.Network/serviceTags",
                "changeNumber": "1",
                "cloud": "Public",
                "values": self.world.data.get("serviceTags") or [],
            }
        )

    def _resource_skus(self, filter_: str | None) -> list[dict[str, Any]]:
        """The world's `resourceSkus` (our extension), in the region `$filter` names."""
        skus = self.world.data.get("resourceSkus") or []
        match = re.fullmatch(r"\s*location\s+eq\s+'([^']*)'\s*", filter_ or "", re.IGNORECASE)
        if match is None:
            return skus
        region = match.group(1).lower()
        return [s for s in skus if region in {loc.lower() for loc in s.get("locations") or []}]

    def _metrics(
        self, method: str, path: str, resource_id: str, operation: str, query: Mapping[str, str]
    ) -> Response:
        if method != "GET":
            return forbidden(method, path)
        if self.world.resource(resource_id) is None and self.world.metrics_for(resource_id) is None:
            return not_found(resource_id)
        if operation == "metricdefinitions":
            return ok(metrics.list_definitions(self.world, resource_id))
        return ok(metrics.list_metrics(self.world, resource_id, query))

    # --- writes (route tables and routes only: the NVA-bypass action) -------------------

    def _write(
        self, method: str, parsed: armid.ArmPath, body: Any, headers: Mapping[str, str]
    ) -> Response:
        response = self._apply_write(method, parsed, body, headers)
        self.world.writes.append(
            {"method": method, "id": parsed.path, "status": response.status, "body": body}
        )
        return response

    def _apply_write(
        self, method: str, parsed: armid.ArmPath, body: Any, headers: Mapping[str, str]
    ) -> Response:
        """PUT/PATCH/DELETE of a route table or a route, as the Network provider answers.

        Long-running operations complete synchronously (world-format.md allows it): PUT
        answers 201 (created) or 200 (replaced) with the body, DELETE 200 when something was
        deleted and 204 when there was nothing to delete (the Routes - Delete reference).
        `If-Match` (an etag, or `*`: must exist) and `If-None-Match: *` (must not exist)
        are honoured with 412 PreconditionFailed. A write to a route gives its route table
        a new etag too, as the table's state changed.
        """
        if parsed.is_collection:
            return forbidden(method, parsed.path)
        existing = self.world.resource(parsed.path)
        refused = _precondition(existing, headers)
        if refused is not None:
            return refused
        is_route = parsed.resource_type.lower() == _ROUTES
        table = self.world.resource(parsed.parent.path) if is_route and parsed.parent else None
        if is_route and table is None:
            return not_found(parsed.parent.path if parsed.parent else parsed.path)
        if method == "DELETE" and not is_route and existing and self._in_use(existing):
            return error(
                400,
                "InUseRouteTableCannotBeDeleted",
                f"Route table {existing['id']} is in use and cannot be deleted.",
            )
        if method == "DELETE":
            existed = self.world.delete(parsed.path)
            if existed and table is not None:
                self._touch(table["id"])
            return Response(200 if existed else 204, {})
        if not isinstance(body, dict):
            return error(400, "InvalidRequestContent", "The request content was invalid.")
        if method == "PATCH":
            if existing is None:
                return not_found(parsed.path)
            body = _merge_patch(existing, body)
        if table is not None:
            resource = _route(table["id"], parsed.names[-1], body)
        else:
            resource = _route_table(parsed, existing, body)
        invalid = _invalid_route([resource] if is_route else resource["properties"]["routes"])
        if invalid:
            return error(400, "InvalidRequestFormat", invalid)
        created = self.world.put(resource)
        if table is not None:
            self._touch(table["id"])
        return Response(201 if created else 200, dict(_JSON), resource)

    def _in_use(self, table: dict[str, Any]) -> bool:
        """A route table still associated with a subnet (its `subnets`, or a subnet in the
        world naming it) cannot be deleted, as on Azure."""
        if (table.get("properties") or {}).get("subnets"):
            return True
        for body in self.world.data["arm"]:
            for subnet in (body.get("properties") or {}).get("subnets") or []:
                if not isinstance(subnet, dict):
                    continue
                ref = ((subnet.get("properties") or {}).get("routeTable") or {}).get("id")
                if armid.same(ref, table["id"]):
                    return True
        return False

    def _touch(self, table_id: str) -> None:
        """A new etag on a route table whose routes changed."""
        current = self.world.resource(table_id)
        if current is not None:
            self.world.put({**current, "etag": _etag()})


def ok(body: Any) -> Response:
    return Response(200, dict(_JSON), body)


def not_found(path: str) -> Response:
    parsed = armid.parse(path)
    if parsed is None:
        return error(404, "NotFound", f"The path '{path}' was not found.")
    pairs = "/".join(f"{t}/{n}" for t, n in zip(parsed.types, parsed.names, strict=False))
    what = f"{parsed.namespace}/{pairs}"
    where = f" under resource group '{parsed.resource_group}'" if parsed.resource_group else ""
    return error(
        404,
        "ResourceNotFound",
        f"The Resource '{what}'{where} was not found. "
        "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    )


def forbidden(method: str, path: str) -> Response:
    parsed = armid.parse(path)
    verb = _WRITE_VERBS.get(method.upper(), "read")
    resource_type = parsed.resource_type if parsed else "Microsoft.Resources/subscriptions"
    return error(
        403,
        "AuthorizationFailed",
        f"The client '{SANDBOX_CLIENT}' with object id '{SANDBOX_OBJECT_ID}' does not have "
        f"authorization to perform action '{resource_type}/{verb}' over scope '{path}' "
        "or the scope is invalid. If access was recently granted, please refresh your "
        "credentials.",
    )


def _precondition(existing: dict[str, Any] | None, headers: Mapping[str, str]) -> Response | None:
    """412 when `If-Match` / `If-None-Match` do not hold (RFC 9110 13.1, as ARM applies them)."""
    if_match = _header(headers, "If-Match")
    if_none_match = _header(headers, "If-None-Match")
    etag = (existing or {}).get("etag")
    failed = False
    if if_match is not None:
        wanted = {t.strip() for t in if_match.split(",")}
        failed = existing is None or ("*" not in wanted and etag not in wanted)
    if if_none_match is not None and existing is not None:
        wanted = {t.strip() for t in if_none_match.split(",")}
        failed = failed or "*" in wanted or etag in wanted
    if not failed:
        return None
    return error(
        412,
        "PreconditionFailed",
        "The condition specified using HTTP conditional header(s) is not met. "
        f"Current etag: {etag or 'none (the resource does not exist)'}.",
    )


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    return value


def _phrase_code(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.replace(" ", "").replace("-", "")
    except ValueError:
        return "Error"


def _etag() -> str:
    return f'W/"{uuid.uuid4()}"'


def _merge_patch(existing: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """ARM's PATCH: given top-level keys replace, `properties` merges one level deep."""
    merged = {**existing, **{k: v for k, v in patch.items() if k != "properties"}}
    if "properties" in patch:
        merged["properties"] = {**(existing.get("properties") or {}), **patch["properties"]}
    return merged


def _route(table_id: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    props = {k: v for k, v in (body.get("properties") or {}).items() if k != "provisioningState"}
    return {
        "name": name,
        "id": f"{table_id}/routes/{name}",
        "etag": _etag(),
        "type": "Microsoft.Network/routeTables/routes",
        "properties": {"provisioningState": "Succeeded", **props},
    }


def _route_table(
    parsed: armid.ArmPath, existing: dict[str, Any] | None, body: dict[str, Any]
) -> dict[str, Any]:
    """A PUT body turned into what ARM returns: ids, etags and read-only fields filled in,
    the subnets association kept from the existing table (clients cannot write it)."""
    old = existing or {}
    old_props = old.get("properties") or {}
    table_id = old.get("id") or parsed.path
    props = {
        k: v
        for k, v in (body.get("properties") or {}).items()
        if k not in ("provisioningState", "resourceGuid", "subnets")
    }
    props["routes"] = [_route(table_id, r.get("name", ""), r) for r in props.get("routes") or []]
    props.setdefault("disableBgpRoutePropagation", False)
    resource = {
        "name": old.get("name") or parsed.names[-1],
        "id": table_id,
        "etag": _etag(),
        "type": "Microsoft.Network/routeTables",
        "location": body.get("location") or old.get("location"),
        "properties": {
            "provisioningState": "Succeeded",
            "resourceGuid": old_props.get("resourceGuid") or str(uuid.uuid4()),
            **props,
        },
    }
    if "subnets" in old_props:
        resource["properties"]["subnets"] = old_props["subnets"]
    if body.get("tags") is not None:
        resource["tags"] = body["tags"]
    return resource


def _invalid_route(routes: list[dict[str, Any]]) -> str | None:
    """ARM rejects routes without a prefix or next hop; so must the sandbox, or a broken
    NVA-bypass payload would pass its tests."""
    for r in routes:
        props = r["properties"]
        if not r["name"] or not props.get("addressPrefix") or not props.get("nextHopType"):
            return (
                f"Route '{r['name']}' must have a name, properties.addressPrefix and "
                "properties.nextHopType."
            )
        if props["nextHopType"] == "VirtualAppliance" and not props.get("nextHopIpAddress"):
            return f"Route '{r['name']}' with nextHopType VirtualAppliance needs nextHopIpAddress."
    return None

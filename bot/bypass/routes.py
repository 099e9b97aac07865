"""Route-table writes through azure-mgmt-network: save, add the bot's routes, revert.

The bot only ever *adds* routes (Routes - Create Or Update, with `If-None-Match: *` so a
route of the same name someone else made is never overwritten) and its revert deletes
exactly those routes by name (Routes - Delete). A route table someone changed in between
(its ETag differs from the one the apply left) keeps that change; the revert says so.
Needs the route-writer role (deploy/azure/aks-egress-route-writer.json: routes/write and
routes/delete, as deploy/azure/operations.yaml maps these calls; a test keeps them equal);
the table reads are the reader role's.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import HttpResponseError

from bot import armid
from bot.bypass.state import SavedTable
from bot.collect.clients import AzureClients
from bot.evidence import AzureEvidence
from handlers.bypass import ROUTE_PREFIX, TableChange

Json = dict[str, Any]


class WriteRefused(Exception):
    """Azure refused a write (403: the bot lacks the route-writer role; 412; 409)."""

    def __init__(self, status: int | None, message: str, table: str):
        super().__init__(message)
        self.status = status
        self.table = table

    def describe(self) -> str:
        if self.status == 403:
            return (
                f"Azure refused the write to {self.table} (403): the identity lacks the "
                "aks-egress route-writer role on that resource group (deploy/azure/"
                "aks-egress-route-writer.json), so the bypass is off here."
            )
        return f"Azure refused the write to {self.table} ({self.status}): {self}"


@dataclass(frozen=True)
class RevertResult:
    restored: bool
    notes: tuple[str, ...]


def _plain(model: Any) -> Json:
    """The SDK model as the REST JSON ARM returned (camelCase, with `properties`)."""
    body: Json = model.as_dict() if hasattr(model, "as_dict") else dict(model)
    return body


def _routes(body: Json) -> list[Json]:
    return list((body.get("properties") or {}).get("routes") or [])


def comparable(body: Json) -> Json:
    """A route table as its content: ETags and provisioning states dropped (every write
    changes them), routes in name order."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("etag", "provisioningState")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    out: Json = strip(body)
    props = out.setdefault("properties", {})
    props["routes"] = sorted(_routes(out), key=lambda r: str(r.get("name", "")).lower())
    return out


class RouteWriter:
    def __init__(self, clients: AzureClients):
        self.clients = clients

    def _ops(self, table_id: str) -> tuple[Any, armid.ArmId]:
        rid = armid.ArmId.parse(table_id)
        return self.clients.network(rid.subscription), rid

    def read(self, table_id: str) -> Json:
        network, rid = self._ops(table_id)
        return _plain(network.route_tables.get(rid.resource_group, rid.name))

    def save(self, changes: tuple[TableChange, ...]) -> list[SavedTable]:
        return [SavedTable(id=c.id, body=self.read(c.id)) for c in changes]

    def apply(self, change: TableChange, saved: SavedTable) -> None:
        """Add the plan's routes to one table; `saved.added` lists what is in Azure so far,
        so a failure half-way leaves a record the revert can clean up."""
        network, rid = self._ops(change.id)
        for route in change.add:
            body = {
                "properties": {
                    "addressPrefix": route.address_prefix,
                    "nextHopType": route.next_hop_type,
                }
            }
            try:
                network.routes.begin_create_or_update(
                    rid.resource_group,
                    rid.name,
                    route.name,
                    body,
                    headers={"If-None-Match": "*"},
                ).result()
            except HttpResponseError as exc:
                raise WriteRefused(exc.status_code, _message(exc), change.id) from None
            saved.added.append(route.name)
        saved.etag_after_apply = self.read(change.id).get("etag")

    def revert(self, saved: SavedTable) -> RevertResult:
        """Delete exactly the bot's routes; report a change someone else made meanwhile."""
        network, rid = self._ops(saved.id)
        current = self.read(saved.id)
        notes = []
        changed_by_others = (
            saved.etag_after_apply is not None and current.get("etag") != saved.etag_after_apply
        )
        for name in list(saved.added):
            if not name.startswith(ROUTE_PREFIX):
                continue  # never the case; a record is never trusted to name other routes
            try:
                network.routes.begin_delete(rid.resource_group, rid.name, name).result()
            except HttpResponseError as exc:
                raise WriteRefused(exc.status_code, _message(exc), saved.id) from None
            saved.added.remove(name)
        after = self.read(saved.id)
        restored = comparable(after) == comparable(saved.body)
        if changed_by_others or not restored:
            others = _differences(saved.body, after)
            notes.append(
                f"{rid.name} was changed by someone else while the bypass lasted "
                f"({others or 'properties other than routes'}): that change was kept; only "
                "the bot's routes were removed."
            )
        return RevertResult(restored, tuple(notes))


def read_pod_subnets(clients: AzureClients, ev: AzureEvidence) -> None:
    """Pod subnets (Azure CNI `podSubnetID`) and their route tables, into the evidence where
    the collector has not read them. A pod subnet outside the node VNets comes with
    its VNet. A read that fails leaves the subnet out of the plan (never a write)."""
    for subnet_id in ev.pod_subnet_ids():
        sid = armid.ArmId.parse(subnet_id)
        network = clients.network(sid.subscription)
        with contextlib.suppress(HttpResponseError):
            if ev.subnet(subnet_id) is None:
                vnet = _plain(network.virtual_networks.get(sid.resource_group, sid.parent_name))
                for subnet in (vnet.get("properties") or {}).get("subnets") or []:
                    ev.subnets.setdefault(armid.key(subnet.get("id", "")), subnet)
            props = (ev.subnet(subnet_id) or {}).get("properties") or {}
            table_id = (props.get("routeTable") or {}).get("id")
            if table_id and armid.key(table_id) not in ev.route_tables:
                tid = armid.ArmId.parse(table_id)
                table = network.route_tables.get(tid.resource_group, tid.name)
                ev.route_tables[armid.key(table_id)] = _plain(table)


def _differences(before: Json, after: Json) -> str:
    def routes(body: Json) -> dict[str, Json]:
        return {
            str(r.get("name", "")).lower(): comparable(r)
            for r in _routes(body)
            if not str(r.get("name", "")).startswith(ROUTE_PREFIX)
        }

    old, new = routes(before), routes(after)
    parts = [f"route {n} added" for n in new.keys() - old.keys()]
    parts += [f"route {n} removed" for n in old.keys() - new.keys()]
    parts += [f"route {n} changed" for n in old.keys() & new.keys() if old[n] != new[n]]
    return ", ".join(sorted(parts))


def _message(exc: HttpResponseError) -> str:
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    text = (getattr(error, "message", None) or str(exc)).strip().splitlines()[0]
    return f"{code}: {text}" if code else text

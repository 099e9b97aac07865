"""A bypass from plan to revert: what the terminal command, the worker jobs and the
reconciler share.

Order of events, and why: the record (with the plan) is saved and the route tables'
locks taken *before* anything is written, and the record lists every route as soon as it
exists in Azure, so whatever crashes in between, the reconciler finds and removes it.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bot import armid
from bot.bypass.routes import RevertResult, RouteWriter, WriteRefused, read_pod_subnets
from bot.bypass.state import (
    APPLIED,
    DRY_RUN,
    REFUSED,
    REVERTED,
    BypassRecord,
    BypassState,
    Holder,
)
from bot.collect.azure import AzureCollector
from bot.collect.kube import KubeNotConnected, KubeReader, KubeUnavailable, connect
from bot.collect.probe import ProbeRunner, probe_pools
from bot.collect.runcommand import probe_through_run_command
from bot.destination import cluster_policy, judge, probe_rules
from bot.endpoint import Endpoint
from bot.evidence import AzureEvidence, ProbeRun
from bot.model import Finding, Json, Severity
from bot.runtime import Runtime
from handlers import bypass, firewall, nsg, routes

log = logging.getLogger(__name__)


class BypassBusy(Exception):
    """Another incident's bypass holds one of the route tables."""

    def __init__(self, table: str, holder: Holder):
        super().__init__(f"route table {armid.ArmId.parse(table).name}: {holder.describe()}")
        self.holder = holder


@dataclass
class Outcome:
    """What a foreground run (the terminal) ends with."""

    record: BypassRecord
    finding: Finding | None  # None: a dry run, which proves nothing
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        r = self.record
        return {
            "incident": r.incident,
            "plan": r.plan,
            "before": r.before,
            "after": r.after,
            "verdict": self.finding.code if self.finding else None,
            # nothing applied (not feasible, dry run) leaves the tables as they were
            "restored": r.restored if r.restored is not None else True,
            "finding": self.finding.to_json() if self.finding else None,
            "notes": self.notes,
            "dryRun": r.status == DRY_RUN,
        }


# --- the plan -----------------------------------------------------------------------------


def prepare(
    runtime: Runtime,
    alias: str,
    cluster_id: str,
    endpoint: Endpoint,
    incident: str,
    requester: str,
    minutes: int,
    *,
    all_traffic: bool = False,
    allow_all_traffic: bool = False,
) -> BypassRecord:
    """Read the path, probe from every pool, and plan. Writes nothing anywhere."""
    if refusal := judge(endpoint, runtime.policy_config(alias).policy()):
        # The destination policy holds for a bypass as for every probe (bot/destination.py).
        return BypassRecord(
            incident=incident,
            alias=alias,
            cluster_id=cluster_id,
            endpoint=endpoint.url,
            requester=requester,
            plan=bypass.BypassPlan(False, f"Refused: {refusal}.", minutes=minutes).to_json(),
            minutes=minutes,
        )
    collector = AzureCollector(runtime.clients, runtime.resolver, vm_sizes=runtime.vm_sizes)
    ev = collector.collect(alias, cluster_id, endpoint)
    read_pod_subnets(runtime.clients, ev)
    record = BypassRecord(
        incident=incident,
        alias=alias,
        cluster_id=cluster_id,
        endpoint=endpoint.url,
        requester=requester,
        plan={},
        minutes=minutes,
    )
    try:
        runs, pools = _probe(
            runtime, alias, cluster_id, endpoint.url, None, (ev.cluster, list(ev.subnets.values()))
        )
    except KubeUnavailable as exc:
        plan = bypass.BypassPlan(
            False,
            f"The cluster's API server cannot be used ({exc}): without a probe before and "
            "after, a bypass proves nothing.",
            minutes=minutes,
        )
        record.plan = plan.to_json()
        return record
    record.pools = pools
    record.before = bypass.probe_code(runs)
    addresses, changing = bypass.probe_addresses(runs)
    if endpoint.is_ip:
        addresses = [endpoint.host]
    record.suspects = _suspects(ev)
    plan = bypass.plan(
        ev,
        addresses,
        incident,
        before=record.before,
        minutes=minutes,
        all_traffic=all_traffic,
        allow_all_traffic=allow_all_traffic,
        changing=changing,
        port=endpoint.port,
    )
    record.plan = plan.to_json()
    return record


def _suspects(ev: AzureEvidence) -> list[str]:
    """The check's own errors and warnings on the path: where to look if the appliance is
    cleared."""
    found = [f for step in (routes.check, nsg.check, firewall.check) for f in step(ev)]
    wanted = (Severity.ERROR, Severity.WARNING)
    return list(dict.fromkeys(f.code for f in found if f.severity in wanted))


def _probe(
    runtime: Runtime,
    alias: str,
    cluster_id: str,
    url: str,
    only: list[str | None] | None,
    network: tuple[Json, list[Json]] = ({}, []),
) -> tuple[list[ProbeRun], list[str | None]]:
    """Probe pods under the destination policy, as every probe (bot/destination.py), from
    the pools (all Linux pools with a node when `only` is None); through Azure run command
    when the bot cannot connect to the API server (private clusters), with the same rules."""
    connection = connect(
        runtime.kube_connection_plan(cluster_id), runtime.clients, runtime.credential
    )
    try:
        nodes = KubeReader(connection).nodes()  # also: can the bot connect at all?
        if only is None:
            only = list(probe_pools(nodes)) or [None]
        policy = cluster_policy(runtime.policy_config(alias).policy(), network, nodes)
        runner = ProbeRunner(connection, runtime.probe, runtime.clock)
        return runner.run(url, only, probe_rules(policy)), only
    except KubeNotConnected as exc:
        policy = cluster_policy(runtime.policy_config(alias).policy(), network, [])
        rules = probe_rules(policy)
        return probe_through_run_command(runtime, cluster_id, url, only, str(exc), rules)
    finally:
        connection.close()


# --- apply, probe, revert ---------------------------------------------------------------


def apply(runtime: Runtime, record: BypassRecord, state: BypassState | None, who: str) -> None:
    """Lock, save, write. On any failure what was written is reverted before raising."""
    plan = bypass.BypassPlan.from_json(record.plan)
    tables = [t.id for t in plan.route_tables]
    until = time.time() + record.minutes * 60
    if state is not None:
        busy = state.lock(tables, record.incident, until)
        if busy is not None:
            raise BypassBusy(*busy)
    writer = RouteWriter(runtime.clients)
    try:
        record.tables = writer.save(plan.route_tables)
        record.status, record.expires_at, record.approver = APPLIED, until, who
        if state is not None:
            state.save(record)  # before the first write: the reconciler can always find it
        for change, saved in zip(plan.route_tables, record.tables, strict=True):
            writer.apply(change, saved)
            if state is not None:
                state.save(record)
                state.audit(
                    "apply",
                    who,
                    record.incident,
                    change.id,
                    before=saved.body,
                    after=writer.read(change.id),
                    detail=", ".join(f"{r.name} {r.address_prefix}" for r in change.add),
                )
    except BaseException:
        # Ctrl-C, a signal, a refused write: take back what is in Azure first.
        with contextlib.suppress(Exception):
            revert(runtime, record, state, "aks-egress (apply failed)")
        if state is not None and not leftovers(record):
            with contextlib.suppress(Exception):
                state.unlock(tables, record.incident)  # nothing of ours is left in Azure
        raise


def probe_again(runtime: Runtime, record: BypassRecord) -> str | None:
    """Probe from the same pools as before the bypass (those behind the changed tables)."""
    plan = bypass.BypassPlan.from_json(record.plan)
    pools = [p for p in record.pools if p is None or p in plan.pools] or record.pools
    runs, _ = _probe(runtime, record.alias, record.cluster_id, record.endpoint, pools)
    record.after = bypass.probe_code(runs)
    return record.after


def revert(
    runtime: Runtime, record: BypassRecord, state: BypassState | None, who: str
) -> RevertResult:
    """Remove exactly the bot's routes from every table, then say whether each table reads
    as it did before. Idempotent: a reverted record reverts nothing."""
    writer = RouteWriter(runtime.clients)
    restored, notes = True, list[str]()
    for saved in record.tables:
        result = writer.revert(saved)
        restored = restored and result.restored
        notes += result.notes
        if state is not None:
            state.save(record)
            state.audit(
                "revert",
                who,
                record.incident,
                saved.id,
                before=saved.body,
                after=writer.read(saved.id),
                detail="; ".join(result.notes) or "restored",
            )
    record.status, record.restored = REVERTED, restored
    record.notes += notes
    if state is not None:
        state.save(record)
        state.unlock([t.id for t in record.tables], record.incident)
    return RevertResult(restored, tuple(notes))


def leftovers(record: BypassRecord) -> list[str]:
    """`az` commands that remove the bot's routes still in Azure (a revert that failed)."""
    out = []
    for saved in record.tables:
        rid = armid.ArmId.parse(saved.id)
        where = ["--subscription", rid.subscription, "--resource-group", rid.resource_group]
        for name in saved.added:
            argv = ["az", "network", "route-table", "route", "delete", *where]
            out.append(shlex.join([*argv, "--route-table-name", rid.name, "--name", name]))
    return out


def conclude(record: BypassRecord) -> Finding:
    plan = bypass.BypassPlan.from_json(record.plan)
    finding = bypass.verdict(plan, record.before, record.after, record.suspects)
    record.verdict = finding.code
    return finding


def run_foreground(
    runtime: Runtime,
    record: BypassRecord,
    state: BypassState | None,
    who: str,
    *,
    dry_run: bool = False,
    on_step: Callable[[str], None] = lambda _: None,
) -> Outcome:
    """plan → apply → probe → revert in one go (the terminal). `--minutes` is the longest
    the routes may live; the run reverts as soon as the second probe has spoken, and
    whatever interrupts it reverts first."""
    plan = bypass.BypassPlan.from_json(record.plan)
    if not plan.feasible or dry_run:
        if state is not None:
            state.audit("dry-run" if dry_run else "plan", who, record.incident, detail=plan.reason)
        if plan.feasible:
            record.status = DRY_RUN
            return Outcome(record, None, ["dry run: nothing was written"])
        return Outcome(record, conclude(record), [])
    if state is not None:
        state.audit("request", who, record.incident, detail=plan.reason)
    try:
        on_step("applying")
        apply(runtime, record, state, who)
        on_step("probing")
        probe_again(runtime, record)
    finally:
        if record.status == APPLIED:
            on_step("reverting")
            revert(runtime, record, state, who)
    return Outcome(record, conclude(record), list(record.notes))


def refuse(record: BypassRecord, state: BypassState | None, why: WriteRefused) -> None:
    record.status = REFUSED
    record.notes.append(why.describe())
    if state is not None:
        state.save(record)


# --- the reconciler -----------------------------------------------------------------------


def reconcile(runtime: Runtime, state: BypassState, now: float | None = None) -> list[str]:
    """Revert every applied bypass past its expiry, whatever crashed in between (at every
    worker start and every minute). Returns the incidents reverted."""
    done = []
    for incident in state.due(now):
        record = state.get(incident)
        if record is None or record.status != APPLIED:
            state.save_inactive(incident)
            continue
        try:
            revert(runtime, record, state, "aks-egress (expired)")
            done.append(incident)
        except Exception:
            log.exception("reverting the bypass of %s failed; retrying next round", incident)
    return done

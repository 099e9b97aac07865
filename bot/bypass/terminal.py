"""`aks-egress bypass` and `aks-egress audit` (their arguments: bypass/cli.py): the
bypass from a terminal, under the operator's own Azure identity, and the audit export.

The terminal run is plan → (confirm) → apply → probe → revert in the foreground; Ctrl-C,
SIGTERM/SIGHUP or any error reverts first. With REDIS_URL it takes the same route-table
locks as the Slack path and writes the audit stream, and a worker's reconciler reverts
the routes should this process die (kill -9) before it could.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import HttpResponseError
from rich.console import Console

from bot.bypass import run
from bot.bypass.cli import BAD_INPUT, CANNOT_RUN, Fail
from bot.bypass.policy import BypassPolicy
from bot.bypass.routes import WriteRefused
from bot.bypass.state import BypassRecord, BypassState
from bot.collect.azure import ClusterUnreadable
from bot.config import ClusterConfig, ConfigError, Settings
from bot.endpoint import EndpointError, parse_endpoint
from bot.runtime import UnknownCluster, open_runtime
from bot.sandbox.world import WorldError
from bot.store import StoreUnavailable, new_incident_id


def _policy(config: ClusterConfig, alias: str) -> BypassPolicy:
    ref = config.clusters.get(alias)
    return ref.bypass if ref is not None else BypassPolicy()


def cmd_bypass(args: argparse.Namespace, fail: Fail) -> int:
    try:
        endpoint = parse_endpoint(args.endpoint)
    except EndpointError as exc:
        return fail(f"bad endpoint: {exc}", BAD_INPUT)
    settings = Settings()
    try:
        config = ClusterConfig.load(settings.config)
    except ConfigError as exc:
        return fail(str(exc), BAD_INPUT)
    policy = _policy(config, args.alias)
    if args.minutes is not None and not 1 <= args.minutes <= policy.max_minutes:
        return fail(f"--minutes: give 1 to {policy.max_minutes} (bypass.maxMinutes)", BAD_INPUT)
    state = None
    if settings.redis_url:
        from bot import services

        state = BypassState(services.store(settings))
    elif args.world is None and not (args.plan or args.dry_run):
        return fail(
            "a bypass needs REDIS_URL: its route-table lock, its audit entry and the "
            "worker's reconciler (which reverts it should this terminal die) live there",
            BAD_INPUT,
        )
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    incident = new_incident_id()
    who = f"terminal:{_user()}"
    record: BypassRecord | None = None
    try:
        with open_runtime(args.world, settings) as runtime:
            alias, cluster_id = runtime.cluster_id(args.alias)
            if not args.json:
                console.print(f"Planning a bypass for {alias} ({incident})…")
            record = run.prepare(
                runtime,
                alias,
                cluster_id,
                endpoint,
                incident,
                who,
                policy.minutes(args.minutes),
                all_traffic=args.all_traffic,
                allow_all_traffic=policy.allow_all_traffic,
            )
            if not args.json:
                _print_plan(console, record.plan)
            if args.plan:
                if args.json:
                    print(json.dumps({"incident": incident, "plan": record.plan}, indent=2))
                return 0
            if record.plan["feasible"] and not (args.yes or args.dry_run):
                if not sys.stdin.isatty():
                    return fail("not a terminal: give --yes to apply the plan", BAD_INPUT)
                if input("Apply this bypass now? [y/N] ").strip().lower() not in ("y", "yes"):
                    console.print("Not applied; nothing was written.")
                    return 0
            with _signals_interrupt():
                outcome = run.run_foreground(
                    runtime,
                    record,
                    state,
                    who,
                    dry_run=args.dry_run,
                    on_step=(lambda s: None) if args.json else (lambda s: console.print(f"{s}…")),
                )
    except (UnknownCluster, WorldError, ConfigError) as exc:
        return fail(str(exc), BAD_INPUT)
    except run.BypassBusy as exc:
        return fail(f"refused: {exc}; nothing was written", CANNOT_RUN)
    except WriteRefused as exc:
        return fail(f"{exc.describe()}{_left(record)}", CANNOT_RUN)
    except ClusterUnreadable as exc:
        return fail(f"cannot read the cluster: {exc}", CANNOT_RUN)
    except StoreUnavailable as exc:
        return fail(f"Redis is unreachable ({exc}){_left(record)}; check REDIS_URL", CANNOT_RUN)
    except HttpResponseError as exc:
        first = (str(exc).strip().splitlines() or ["no message"])[0]
        return fail(f"Azure answered {exc.status_code}: {first}{_left(record)}", CANNOT_RUN)
    except Exception as exc:
        if record is not None and run.leftovers(record):
            return fail(f"the run failed ({type(exc).__name__}: {exc}){_left(record)}", CANNOT_RUN)
        raise
    if args.json:
        print(json.dumps(outcome.to_json(), indent=2))
    else:
        if (f := outcome.finding) is not None:
            console.print(f"[bold]{f.code}[/bold]: {f.detail}", markup=True)
        for note in outcome.notes:
            console.print(f"note: {note}")
        if outcome.record.restored is not None:
            console.print(f"restored: {str(outcome.record.restored).lower()}")
    return 0


def _left(record: BypassRecord | None) -> str:
    """What to run by hand when a revert could not finish (else: nothing is left)."""
    commands = run.leftovers(record) if record is not None else []
    if not commands:
        return ". Nothing the bypass wrote is left in Azure"
    return (
        ". The bypass's routes are STILL IN AZURE (a worker's reconciler retries if REDIS_URL "
        "is set); remove them now: " + " && ".join(commands)
    )


def _print_plan(console: Console, plan: dict[str, Any]) -> None:
    console.print(("Plan: " if plan["feasible"] else "Not possible: ") + plan["reason"])
    for table in plan["routeTables"]:
        console.print(f"  {table['id']}")
        for route in table["add"]:
            console.print(
                f"    + {route['name']}  {route['addressPrefix']} → {route['nextHopType']}"
            )
    for warning in plan["warnings"]:
        console.print(f"  ⚠ {warning}")


def _user() -> str:
    import getpass

    with contextlib.suppress(Exception):
        return getpass.getuser()
    return "unknown"


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP become KeyboardInterrupt, so `finally` reverts as for Ctrl-C."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError):  # not the main thread: leave them be
            previous[sig] = signal.signal(sig, interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def cmd_audit(args: argparse.Namespace, fail: Fail) -> int:
    since = None
    if args.since:
        try:
            since = datetime.fromisoformat(args.since)
        except ValueError:
            return fail(f"--since {args.since!r}: give an ISO date, e.g. 2026-11-27", BAD_INPUT)
        since = since if since.tzinfo else since.replace(tzinfo=UTC)
    settings = Settings()
    if not settings.redis_url:
        return fail("the audit stream lives in Redis: set REDIS_URL", BAD_INPUT)
    from bot import services

    try:
        entries = BypassState(services.store(settings)).audit_entries(since)
    except StoreUnavailable as exc:
        return fail(f"Redis is unreachable ({exc}); check REDIS_URL", CANNOT_RUN)
    if args.json:
        for entry in entries:
            print(json.dumps(entry))
        return 0
    console = Console(highlight=False, soft_wrap=True)
    for e in entries:
        table = e["routeTable"].rsplit("/", 1)[-1] if e["routeTable"] else "-"
        console.print(f"{e['at']}  {e['incident']}  {e['action']:<8} {e['who']}  {table}")
        if e.get("detail"):
            console.print(f"    {e['detail']}")
    return 0

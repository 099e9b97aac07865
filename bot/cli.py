"""The `aks-egress` command.

Exit status (world-format.md): 0 when the check ran, whatever it found; 2 on bad input
(unknown alias, invalid URL, unreadable world); 1 when the check itself could not run.
Errors are one clear line on stderr with what to do, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

# Only the standard library at module level: `--help`, `--version` and usage errors must
# answer in well under 0.3 s (tests/bench/bench_startup.py), and the Azure SDKs, the
# Kubernetes client, pydantic and the sandbox cost over a second to import. Each command
# imports what it needs.

BAD_INPUT, CANNOT_RUN = 2, 1
# Shipped with the package (a copy of tests/worlds/nsg-subnet-deny.yaml), so the demo runs
# from a wheel or the image, wherever it is started.
DEMO_WORLD = Path(__file__).resolve().parent / "sandbox" / "worlds" / "demo.yaml"


def _fail(message: str, code: int) -> int:
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    console.print(f"[bold red]aks-egress:[/bold red] {escape(message)}", markup=True)
    return code


def cmd_check(args: argparse.Namespace) -> int:
    from bot.endpoint import EndpointError, parse_endpoint
    from bot.slack.commands import POD_REF

    target = args.target
    if args.resource_group and args.name and args.alias and not target:
        args.alias, target = None, args.alias  # `check --resource-group G --name N URL`
    if target and args.endpoint and target != args.endpoint:
        return _fail(f"two endpoints: {target!r} and --endpoint {args.endpoint!r}", BAD_INPUT)
    args.endpoint = args.endpoint or target
    if not args.alias and not (args.resource_group and args.name):
        return _fail("give a cluster ALIAS, or --resource-group and --name", BAD_INPUT)
    try:
        endpoint = parse_endpoint(args.endpoint) if args.endpoint else None
    except EndpointError as exc:
        return _fail(f"bad endpoint: {exc}", BAD_INPUT)
    if args.pod and not POD_REF.match(args.pod):
        return _fail(f"--pod {args.pod!r}: give NAMESPACE/NAME, e.g. payments/api-7d9c", BAD_INPUT)
    from azure.core.exceptions import ClientAuthenticationError

    from bot.collect.azure import ClusterUnreadable
    from bot.config import ConfigError
    from bot.destination import judge
    from bot.engine import CheckRequest, Engine
    from bot.runtime import UnknownCluster, open_runtime
    from bot.sandbox.world import WorldError

    try:
        with open_runtime(args.world) as runtime:
            alias, cluster_id = runtime.cluster_id(
                args.alias, args.resource_group, args.name, args.subscription
            )
            # The CLI's user runs it with their own Azure identity on their terminal: the
            # private allowance needs no Slack group, but the policy still applies.
            policy = runtime.policy_config(alias).policy(in_groups=True)
            if endpoint and (refusal := judge(endpoint, policy)):
                return _fail(f"refused endpoint: {refusal}", BAD_INPUT)
            report = Engine(runtime).check(
                CheckRequest(
                    alias=alias,
                    cluster_id=cluster_id,
                    endpoint=endpoint,
                    pod=args.pod,
                    mode=args.mode,
                    policy=policy,
                )
            )
    except (UnknownCluster, WorldError, ConfigError) as exc:
        return _fail(str(exc), BAD_INPUT)
    except ClusterUnreadable as exc:
        f = exc.failure
        hint = (
            f"grant {f.permission} on it to the identity the bot runs as"
            if f.status == 403
            else "check the alias's subscription, resource group and name"
            if f.status == 404
            else "try again; Azure did not answer after retries"
        )
        return _fail(
            f"cannot read the cluster {f.resource}: {f.status} {f.code}: {f.message} ({hint})",
            CANNOT_RUN,
        )
    except ClientAuthenticationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "no credential"
        return _fail(
            f"cannot sign in to Azure ({first}); run `az login`, or set up a managed or "
            "workload identity, or use --world FILE for the sandbox",
            CANNOT_RUN,
        )
    if args.json:
        from bot.render import json as json_render

        print(json_render.render(report))
    else:
        from rich.console import Console

        from bot.render import terminal

        # crop=False: a token wider than the terminal (a long id in a fix) is left whole for
        # the terminal to wrap, never cut (the renderer breaks lines only between tokens).
        Console().print(terminal.render(report, verbose=args.verbose), crop=False)
    return 0


def _run_process(fn: Callable[[], None]) -> int:
    """Long-running commands: setup problems are one clear line, Ctrl-C a clean exit."""
    from bot.config import ConfigError
    from bot.redisserver import RedisServerMissing
    from bot.sandbox.world import WorldError
    from bot.services import SetupError
    from bot.store import StoreUnavailable

    try:
        fn()
    except (SetupError, ConfigError, WorldError, RedisServerMissing) as exc:
        return _fail(str(exc), BAD_INPUT)
    except StoreUnavailable as exc:
        return _fail(f"Redis is unreachable ({exc}); check REDIS_URL", CANNOT_RUN)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from bot import processes
    from bot.config import Settings

    return _run_process(lambda: processes.serve(Settings(), args.world, args.http, args.port))


def cmd_worker(args: argparse.Namespace) -> int:
    from bot import processes
    from bot.config import Settings

    return _run_process(
        lambda: processes.work(Settings(), args.world, burst=args.burst, port=args.port)
    )


def cmd_dev(args: argparse.Namespace) -> int:
    from bot import processes
    from bot.config import Settings

    return _run_process(lambda: processes.dev(Settings(), args.world, args.http, args.port))


def cmd_snat_summary(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console

    from bot import services, summary
    from bot.config import ClusterConfig, ConfigError, Settings
    from bot.runtime import UnknownCluster, open_runtime
    from bot.sandbox.world import WorldError
    from bot.services import SetupError
    from bot.store import StoreUnavailable

    settings = Settings()
    try:
        config = ClusterConfig.load(settings.config)
        with open_runtime(args.world, settings) as runtime:
            if args.all:
                from bot.collect.discover import discover

                clusters = {c.alias: c.id for c in discover(runtime.clients)}
            elif args.channel and config.clusters:
                clusters = config.clusters_of(args.channel)
            else:
                clusters = dict(runtime.aliases)
            if not clusters:
                return _fail(f"no clusters are configured for channel {args.channel}", BAD_INPUT)
            now = runtime.clock()
            data = summary.build(runtime, clusters, now)
            if args.post:
                if not args.channel:
                    return _fail("--post needs --channel (the Slack channel id)", BAD_INPUT)
                store = services.store(settings)
                day = now.date().isoformat()
                data = summary.with_trend(data, store, day)
                zone = next(
                    (s.timezone for s in config.summaries if s.channel == args.channel), "UTC"
                )
                client = services.slack_client(settings)
                ts = summary.post(client, store, args.channel, day, data, zone)
                Console(stderr=True).print(
                    f"posted to {args.channel} (ts {ts})"
                    if ts
                    else "today's summary is posted already, or another process is posting it"
                )
    except (UnknownCluster, WorldError, ConfigError, SetupError) as exc:
        return _fail(str(exc), BAD_INPUT)
    except StoreUnavailable as exc:
        return _fail(f"Redis is unreachable ({exc}); check REDIS_URL", CANNOT_RUN)
    if args.json or not args.post:
        print(json.dumps(data, indent=2))
    return 0


def cmd_clusters(args: argparse.Namespace) -> int:
    import json

    from azure.core.exceptions import HttpResponseError
    from rich.console import Console
    from rich.table import Table

    from bot.config import Settings
    from bot.runtime import open_runtime
    from bot.sandbox.world import WorldError

    try:
        with open_runtime(args.world, Settings()) as runtime:
            if not args.discover:
                rows = [{"alias": a, "id": i} for a, i in sorted(runtime.aliases.items())]
            else:
                from dataclasses import asdict

                from bot.collect.discover import discover

                rows = [asdict(c) for c in discover(runtime.clients)]
    except WorldError as exc:
        return _fail(str(exc), BAD_INPUT)
    except HttpResponseError as exc:
        return _fail(f"Azure Resource Graph refused the query ({exc.status_code})", CANNOT_RUN)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(
        "alias",
        *(
            ["subscription", "resource group", "name", "location", "outbound"]
            if args.discover
            else ["id"]
        ),
    )
    for row in rows:
        if args.discover:
            table.add_row(
                row["alias"],
                row["subscription"],
                row["resource_group"],
                row["name"],
                row["location"],
                row["outbound_type"] or "",
            )
        else:
            table.add_row(row["alias"], row["id"])
    Console().print(table)
    return 0


def cmd_cron(args: argparse.Namespace) -> int:
    from bot import processes
    from bot.config import Settings

    return _run_process(lambda: processes.cron(Settings(), port=args.port))


def cmd_doctor(args: argparse.Namespace) -> int:
    from bot import doctor, services
    from bot.config import ConfigError, Settings
    from bot.runtime import open_runtime
    from bot.sandbox.world import WorldError

    settings = Settings()
    try:
        slack = services.slack_client(settings) if settings.slack_bot_token else None
        with open_runtime(args.world, settings) as runtime:
            results = doctor.run(settings, runtime, slack)
    except (WorldError, ConfigError) as exc:
        return _fail(str(exc), BAD_INPUT)
    for result in results:
        print("\n".join(result.lines()))
    return 0 if all(r.ok for r in results) else CANNOT_RUN


def cmd_demo(args: argparse.Namespace) -> int:
    from rich.console import Console

    from bot import demo
    from bot.config import Settings

    result: list[int] = []
    code = _run_process(lambda: result.append(demo.run(args.world, Settings(), Console())))
    return code or (result[0] if result else CANNOT_RUN)


VERBOSE_HELP = "show every finding's full evidence and the resources' full ids"


class _VersionAction(argparse.Action):
    """`--version` from the installed package's metadata, read only when asked for."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help=str(kwargs.get("help", "")))

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            shown = version("aks-egress")
        except PackageNotFoundError:
            shown = "unknown (not installed as a package)"
        print(f"aks-egress {shown}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aks-egress",
        description="Find out why pods in an AKS cluster cannot reach endpoints outside "
        "their virtual network.",
    )
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="diagnose one cluster's outbound path")
    check.add_argument("alias", nargs="?", help="cluster alias from the configuration or world")
    check.add_argument(
        "target",
        nargs="?",
        metavar="ENDPOINT",
        help="URL, host:port or IP the pods cannot reach (as in Slack; or --endpoint)",
    )
    check.add_argument("--endpoint", help="URL, host:port or IP the pods cannot reach")
    check.add_argument("--world", type=Path, help="serve this sandbox world instead of Azure")
    check.add_argument("--pod", help="NAMESPACE/NAME of the application pod that fails")
    check.add_argument(
        "--mode",
        choices=("persistent", "intermittent", "all"),
        default="all",
        help="persistent: is the path open; intermittent: SNAT, resources, disk (default all)",
    )
    check.add_argument("--json", action="store_true", help="print the JSON report only")
    check.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    check.add_argument("--resource-group", help="the cluster's resource group (with --name)")
    check.add_argument("--name", help="the cluster's name (with --resource-group)")
    check.add_argument("--subscription", help="subscription id (default AZURE_SUBSCRIPTION_ID)")
    check.set_defaults(func=cmd_check)

    snat_cmd = sub.add_parser("snat", help="SNAT port use of one cluster, with the fix")
    snat_cmd.add_argument("alias", nargs="?", help="cluster alias")
    snat_cmd.add_argument("--world", type=Path, help="serve this sandbox world instead of Azure")
    snat_cmd.add_argument("--json", action="store_true", help="print the JSON report only")
    snat_cmd.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    snat_cmd.set_defaults(
        func=cmd_check,
        mode="snat",
        target=None,
        endpoint=None,
        pod=None,
        resource_group=None,
        name=None,
        subscription=None,
    )

    summary_cmd = sub.add_parser("snat-summary", help="build (or --post) the daily SNAT summary")
    summary_cmd.add_argument("--channel", help="only the clusters this channel is configured for")
    summary_cmd.add_argument("--world", type=Path, help="serve this sandbox world instead of Azure")
    summary_cmd.add_argument("--json", action="store_true", help="print the summary as JSON")
    summary_cmd.add_argument("--post", action="store_true", help="post it to the channel(s)")
    summary_cmd.add_argument(
        "--all", action="store_true", help="every cluster Azure Resource Graph finds"
    )
    summary_cmd.set_defaults(func=cmd_snat_summary)

    clusters_cmd = sub.add_parser("clusters", help="the configured clusters, or --discover all")
    clusters_cmd.add_argument(
        "--discover", action="store_true", help="every AKS cluster Azure Resource Graph finds"
    )
    clusters_cmd.add_argument(
        "--world", type=Path, help="serve this sandbox world instead of Azure"
    )
    clusters_cmd.add_argument("--json", action="store_true", help="print JSON")
    clusters_cmd.set_defaults(func=cmd_clusters)

    # cron only enqueues; the workers that run its jobs read Azure (or their own --world).
    cron = sub.add_parser("cron", help="enqueue the scheduled jobs (the daily SNAT summary)")
    cron.add_argument("--port", type=int, help="health and metrics port (AKS_EGRESS_PORT)")
    cron.set_defaults(func=cmd_cron)

    serve = sub.add_parser("serve", help="run the Slack app (Socket Mode if SLACK_APP_TOKEN)")
    worker = sub.add_parser("worker", help="run a queue worker (checks, probes, posts)")
    dev = sub.add_parser("dev", help="app and worker in one process, for local use")
    for p in (serve, worker, dev):
        p.add_argument("--world", type=Path, help="use this sandbox world instead of Azure")
    for p in (serve, dev):
        p.add_argument("--http", action="store_true", help="serve HTTP even with SLACK_APP_TOKEN")
        p.add_argument("--port", type=int, help="HTTP port (default AKS_EGRESS_PORT or 3000)")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    worker.add_argument("--port", type=int, help="health and metrics port (AKS_EGRESS_PORT)")
    serve.set_defaults(func=cmd_serve)
    worker.set_defaults(func=cmd_worker)
    dev.set_defaults(func=cmd_dev)

    doctor_cmd = sub.add_parser("doctor", help="check Redis, Slack scopes, Azure and K8s rights")
    doctor_cmd.add_argument("--world", type=Path, help="a sandbox world instead of Azure")
    doctor_cmd.set_defaults(func=cmd_doctor)

    demo_cmd = sub.add_parser("demo", help="the whole bot on a sandbox world, printed here")
    demo_cmd.add_argument("world", nargs="?", type=Path, default=DEMO_WORLD)
    demo_cmd.set_defaults(func=cmd_demo)
    from bot.bypass import cli as bypass_cli  # the standard library only

    bypass_cli.register(sub, _fail)
    return parser


def _setup_logs() -> None:
    """JSON logs (AKS_EGRESS_LOG_FORMAT=text for a terminal), with this process's secrets
    redacted wherever they would appear."""
    from urllib.parse import urlsplit

    from bot import logs, redact
    from bot.config import Settings

    settings = Settings()
    password = urlsplit(settings.redis_url).password if settings.redis_url else None
    redact.register(
        settings.slack_bot_token, settings.slack_signing_secret, settings.slack_app_token, password
    )
    logs.setup(settings.log_format)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("serve", "worker", "dev", "cron"):
        _setup_logs()
    try:
        code: int = args.func(args)
        return code
    except KeyboardInterrupt:
        return _fail("interrupted", CANNOT_RUN)
    except Exception as exc:
        # A bug, not bad input: one line for the user, the traceback only when asked for.
        if os.environ.get("AKS_EGRESS_DEBUG"):
            raise
        return _fail(
            f"internal error ({type(exc).__name__}: {exc}); set AKS_EGRESS_DEBUG=1 for details "
            "and report it",
            CANNOT_RUN,
        )


if __name__ == "__main__":
    sys.exit(main())

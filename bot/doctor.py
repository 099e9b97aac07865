"""`aks-egress doctor`: is everything the bot needs in place, and if not, what grants it.

It asks each system what the bot may do rather than trying things: Redis (reachable, and
whether it persists the queue), Slack (the bot token's scopes, from auth.test's
X-OAuth-Scopes header, against the app manifest's), and per configured cluster Azure's
permissions API (the actions the bot holds at the cluster, against bot/collect/azure.py
READS) and the API server's SelfSubjectRulesReview (against K8S_NEEDS, which
deploy/kubernetes/api-calls.yaml explains call by call).
"""

from __future__ import annotations

import fnmatch
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from azure.core.exceptions import AzureError
from azure.core.rest import HttpRequest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from redis.exceptions import RedisError
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import armid
from bot.collect.azure import READS
from bot.collect.kube import KubeUnavailable, connect
from bot.config import Settings
from bot.runtime import Runtime

MANIFEST = Path(__file__).resolve().parent.parent / "deploy" / "slack" / "manifest.yaml"
LIST_CREDENTIAL = "Microsoft.ContainerService/managedClusters/listClusterUserCredential/action"
# (api group, resource, verb, where): `cluster` is any namespace, `probe` the probe namespace,
# `dns` kube-system. The optional in-pod probe's rights (`inpod`) are not asked for.
K8S_NEEDS: tuple[tuple[str, str, str, str], ...] = (
    ("", "nodes", "list", "cluster"),
    ("", "pods", "list", "cluster"),
    ("", "pods", "get", "cluster"),
    ("", "namespaces", "list", "cluster"),
    ("metrics.k8s.io", "nodes", "list", "cluster"),
    ("metrics.k8s.io", "pods", "list", "cluster"),
    ("networking.k8s.io", "networkpolicies", "list", "cluster"),
    ("cilium.io", "ciliumnetworkpolicies", "list", "cluster"),
    ("cilium.io", "ciliumclusterwidenetworkpolicies", "list", "cluster"),
    ("", "services", "list", "dns"),
    ("", "configmaps", "get", "dns"),
    ("", "pods", "create", "probe"),
    ("", "pods", "list", "probe"),
    ("", "pods", "watch", "probe"),
    ("", "pods/log", "get", "probe"),
    ("", "pods", "delete", "probe"),
)
PERMISSIONS_API = "2022-04-01"


@dataclass
class Result:
    area: str
    ok: bool
    detail: str
    fixes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        mark = "ok  " if self.ok else "FAIL"
        return [f"{mark} {self.area}: {self.detail}", *(f"     fix: {f}" for f in self.fixes)]


def redis_state(settings: Settings) -> Result:
    from bot.services import redis_client

    client = redis_client(settings, patient=False, decode=True, socket_timeout=2.0)
    try:
        client.ping()
        aof = client.info("persistence").get("aof_enabled") == 1
        try:
            save = "" if aof else str(client.config_get("save").get("save") or "")
        except RedisError:
            save = "?"
    except RedisError as exc:
        return Result("redis", False, f"unreachable ({type(exc).__name__}); check REDIS_URL")
    if aof or save not in ("", "?"):
        how = "append-only file" if aof else f"RDB snapshots ({save})"
        return Result("redis", True, f"answers and persists ({how})")
    if save == "?":
        return Result("redis", True, "answers; persistence unknown (CONFIG refused)")
    return Result(
        "redis",
        False,
        "answers but keeps nothing on disk: a restart loses the queue and the incidents",
        ["redis-cli CONFIG SET appendonly yes (or enable persistence on the Azure cache)"],
    )


def manifest_scopes() -> set[str] | None:
    if not MANIFEST.exists():
        return None
    manifest = yaml.safe_load(MANIFEST.read_text())
    return set(manifest["oauth_config"]["scopes"]["bot"])


def slack_scopes(client: WebClient, needed: set[str] | None) -> Result:
    try:
        response = client.auth_test()
    except SlackApiError as exc:
        return Result("slack", False, f"auth.test refused the bot token: {exc.response['error']}")
    except OSError as exc:
        return Result("slack", False, f"Slack did not answer ({type(exc).__name__})")
    header = {k.lower(): v for k, v in response.headers.items()}.get("x-oauth-scopes")
    if header is None or needed is None:
        return Result("slack", True, "the bot token works (its scopes were not compared)")
    have = {s.strip() for s in header.split(",") if s.strip()}
    missing = sorted(needed - have)
    if not missing:
        return Result(
            "slack", True, f"the bot token has every scope the manifest asks ({len(needed)})"
        )
    return Result(
        "slack",
        False,
        f"the bot token lacks {', '.join(missing)}",
        [
            "api.slack.com/apps → your app → OAuth & Permissions → add "
            f"{', '.join(missing)} (or update it from deploy/slack/manifest.yaml), then "
            "reinstall the app to the workspace"
        ],
    )


def _matches(action: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(action.lower(), p.lower()) for p in patterns)


def azure_permissions(runtime: Runtime, alias: str, cluster_id: str) -> Result:
    area = f"azure {alias}"
    subscription = armid.ArmId.parse(cluster_id).subscription
    client = runtime.clients.containers(subscription)
    request = HttpRequest(
        "GET",
        f"{cluster_id}/providers/Microsoft.Authorization/permissions",
        params={"api-version": PERMISSIONS_API},
    )
    try:
        response = client.send_request(request)
        response.raise_for_status()
        rules: list[dict[str, Any]] = response.json().get("value") or []
    except (AzureError, ValueError) as exc:
        return Result(area, False, f"cannot list the bot's permissions ({type(exc).__name__})")
    needed = {*READS.values(), LIST_CREDENTIAL}
    missing = sorted(
        a
        for a in needed
        if not any(
            _matches(a, r.get("actions") or []) and not _matches(a, r.get("notActions") or [])
            for r in rules
        )
    )
    if not missing:
        return Result(area, True, f"the identity holds all {len(needed)} actions at the cluster")
    scope = shlex.quote(cluster_id)
    fixes = []
    if LIST_CREDENTIAL in missing:
        fixes.append(
            "az role assignment create --assignee-object-id PRINCIPAL_ID "
            "--assignee-principal-type ServicePrincipal --role 'aks-egress cluster user' "
            f"--scope {scope}"
        )
    if set(missing) - {LIST_CREDENTIAL}:
        fixes.append(
            "az role assignment create --assignee-object-id PRINCIPAL_ID "
            "--assignee-principal-type ServicePrincipal --role 'aks-egress reader' "
            f"--scope /subscriptions/{shlex.quote(subscription)}"
        )
    return Result(area, False, f"missing {', '.join(missing)}", fixes)


def _allowed(rules: list[Any], group: str, resource: str, verb: str) -> bool:
    for rule in rules:
        if (
            {group, "*"} & set(rule.api_groups or [])
            and {resource, "*"} & set(rule.resources or [])
            and {verb, "*"} & set(rule.verbs or [])
        ):
            return True
    return False


def kubernetes_rights(runtime: Runtime, alias: str, cluster_id: str) -> Result:
    area = f"kubernetes {alias}"
    try:
        connection = connect(
            runtime.kube_connection_plan(cluster_id), runtime.clients, runtime.credential
        )
    except (KubeUnavailable, AzureError) as exc:
        return Result(area, False, f"cannot reach the API server: {exc}")
    api = k8s.AuthorizationV1Api(connection.api)
    missing = []
    try:
        namespaces = (
            ("cluster", "default"),
            ("probe", runtime.probe.namespace),
            ("dns", "kube-system"),
        )
        for where, namespace in namespaces:
            review = api.create_self_subject_rules_review(
                k8s.V1SelfSubjectRulesReview(
                    spec=k8s.V1SelfSubjectRulesReviewSpec(namespace=namespace)
                )
            )
            rules = (review.status.resource_rules if review.status else None) or []
            missing += [
                f"{verb} {group + '/' if group else ''}{resource}"
                + (f" in {namespace}" if where != "cluster" else "")
                for group, resource, verb, scope in K8S_NEEDS
                if scope == where and not _allowed(rules, group, resource, verb)
            ]
    except ApiException as exc:
        return Result(area, False, f"SelfSubjectRulesReview failed ({exc.status} {exc.reason})")
    finally:
        connection.close()
    if not missing:
        return Result(area, True, f"{connection.how} may do all {len(K8S_NEEDS)} things it needs")
    return Result(
        area,
        False,
        f"{connection.how} may not {'; '.join(missing)}",
        [
            "kubectl apply -k deploy/kubernetes/access   # in the cluster the bot runs in",
            "kubectl apply -k deploy/kubernetes/target-rbac   # in every other checked cluster",
        ],
    )


def run(settings: Settings, runtime: Runtime, slack: WebClient | None) -> list[Result]:
    results = [
        Result(
            "config",
            bool(runtime.aliases),
            f"{len(runtime.aliases)} cluster(s): {', '.join(sorted(runtime.aliases)) or 'none'}"
            + ("" if settings.redis_url else "; REDIS_URL is not set")
            + ("" if settings.slack_bot_token else "; SLACK_BOT_TOKEN is not set"),
        )
    ]
    if settings.redis_url:
        results.append(redis_state(settings))
    if slack is not None:
        results.append(slack_scopes(slack, manifest_scopes()))
    for alias, cluster_id in sorted(runtime.aliases.items()):
        results.append(azure_permissions(runtime, alias, cluster_id))
        results.append(kubernetes_rights(runtime, alias, cluster_id))
    return results

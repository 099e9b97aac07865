"""Settings from the environment (and .env), and the cluster configuration file.

Environment settings are read with pydantic-settings; the cluster map is a YAML file
(`AKS_EGRESS_CONFIG`, default ./aks-egress.yaml) because it is edited by people and grows
per-cluster keys (channels allowed to use a cluster, kubeconfig contexts).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot import armid
from bot.bypass.policy import BypassPolicy, PolicyError
from bot.destination import PolicyConfig, parse_prefixes
from bot.store import Limits

USER_GROUP = re.compile(r"S[A-Z0-9]{2,}")


@dataclass(frozen=True)
class ProbeSettings:
    """Where and how probe pods run (bot/collect/probe.py builds them from these)."""

    namespace: str = "aks-egress"
    image: str = "mcr.microsoft.com/azurelinux/base/core:3.0"
    connect_timeout_s: int = 5
    max_time_s: int = 10
    deadline_s: int = 60
    leftover_after_s: int = 180
    # How long to wait for one Azure run command (private clusters, runcommand.py).
    run_command_timeout_s: int = 300


_PROBE = ProbeSettings()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_prefix="AKS_EGRESS_", extra="ignore")

    config: Path = Path("aks-egress.yaml")
    azure_subscription_id: str | None = Field(
        default=None, validation_alias="AZURE_SUBSCRIPTION_ID"
    )
    slack_bot_token: str | None = Field(default=None, validation_alias="SLACK_BOT_TOKEN")
    slack_signing_secret: str | None = Field(default=None, validation_alias="SLACK_SIGNING_SECRET")
    slack_app_token: str | None = Field(default=None, validation_alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field(default="https://slack.com/api/", validation_alias="SLACK_API_URL")
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")
    redis_entra_id: bool = Field(default=False, validation_alias="REDIS_ENTRA_ID")
    retention_days: int = 30
    rate_per_minute: int = 10
    cluster_rate_per_minute: int = 30
    queue_max: int = 200
    runs_per_incident: int = 3
    reports_per_incident: int = 20
    port: int = 3000  # Slack HTTP (serve --http) and every process's /healthz /readyz /metrics
    log_format: str = "json"  # or "text"
    worker_heartbeat_s: int = 10  # how soon a killed worker's check is retried
    worker_concurrency: int = Field(default=16, ge=1, le=64)  # checks one worker runs at once
    summary_batch: int = 50  # clusters per daily-summary job; more are split over workers
    # The probe's defaults live in ProbeSettings; these only let the environment override.
    probe_namespace: str = _PROBE.namespace
    probe_image: str = _PROBE.image
    probe_connect_timeout_s: int = _PROBE.connect_timeout_s
    probe_max_time_s: int = _PROBE.max_time_s
    probe_deadline_s: int = _PROBE.deadline_s
    probe_leftover_after_s: int = _PROBE.leftover_after_s
    probe_pods_per_cluster: int = Field(default=20, ge=1)  # at once, over all workers
    run_command_timeout_s: int = _PROBE.run_command_timeout_s

    def limits(self) -> Limits:
        return Limits(
            per_user=self.rate_per_minute,
            per_cluster=self.cluster_rate_per_minute,
            queue=self.queue_max,
            runs_per_incident=self.runs_per_incident,
            reports_per_incident=self.reports_per_incident,
        )

    def probe_settings(self) -> ProbeSettings:
        return ProbeSettings(
            namespace=self.probe_namespace,
            image=self.probe_image,
            connect_timeout_s=self.probe_connect_timeout_s,
            max_time_s=self.probe_max_time_s,
            deadline_s=self.probe_deadline_s,
            leftover_after_s=self.probe_leftover_after_s,
            run_command_timeout_s=self.run_command_timeout_s,
        )


def policy_config(entry: dict[str, Any]) -> PolicyConfig:
    """A cluster entry's destination-policy keys; ValueError names the key that is wrong."""
    try:
        prefixes = parse_prefixes(entry.get("allowPrivatePrefixes") or ())
    except ValueError as exc:
        raise ValueError(f"allowPrivatePrefixes: {exc}") from None
    groups = tuple(str(g) for g in entry.get("allowPrivateUserGroups") or ())
    for group in groups:
        if not USER_GROUP.fullmatch(group):
            raise ValueError(f"allowPrivateUserGroups: {group!r} is not a user group ID (S…)")
    ports = entry.get("telnetPorts")
    if ports is None:
        return PolicyConfig(prefixes, groups)
    if not isinstance(ports, list) or not all(isinstance(p, int) and 0 < p < 65536 for p in ports):
        raise ValueError(f"telnetPorts: {ports!r} is not a list of port numbers")
    return PolicyConfig(prefixes, groups, frozenset(ports))


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or malformed; the message says where."""


@dataclass(frozen=True)
class ClusterRef:
    alias: str
    subscription: str
    resource_group: str
    name: str
    channels: tuple[str, ...] = ()
    user_groups: tuple[str, ...] = ()  # if any: only their members may use the cluster
    kubeconfig_context: str | None = None
    in_cluster: bool = False
    policy: PolicyConfig = field(default_factory=PolicyConfig)  # where the probe may aim
    pod_namespaces: tuple[str, ...] = ()  # namespaces --pod may name; empty: none
    # Probe inside --pod with an ephemeral container (cannot be removed afterwards, and needs
    # the pods/ephemeralcontainers patch permission): off unless set; None when not set.
    in_pod_probe: bool | None = None
    # the appliance bypass (bot/bypass/policy.py)
    bypass: BypassPolicy = field(default_factory=BypassPolicy)

    @property
    def id(self) -> str:
        return armid.cluster_id(self.subscription, self.resource_group, self.name)


@dataclass(frozen=True)
class SummarySchedule:
    """When a channel gets its daily SNAT summary: a local time in a time zone."""

    channel: str
    at: str = "08:00"  # HH:MM
    timezone: str = "UTC"


@dataclass
class ClusterConfig:
    clusters: dict[str, ClusterRef] = field(default_factory=dict)
    summaries: list[SummarySchedule] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> ClusterConfig:
        if not path.exists():
            return cls()
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read the configuration: {exc}") from None
        clusters = {}
        try:
            bypass = BypassPolicy.parse(f"{path}: bypass", data.get("bypass"))
        except PolicyError as exc:
            raise ConfigError(str(exc)) from None
        for alias, entry in (data.get("clusters") or {}).items():
            missing = [k for k in ("subscription", "resourceGroup", "name") if k not in entry]
            if missing:
                raise ConfigError(f"{path}: clusters.{alias}: missing {', '.join(missing)}")
            groups = tuple(str(g) for g in entry.get("userGroups") or ())
            for group in groups:
                if not USER_GROUP.fullmatch(group):
                    raise ConfigError(
                        f"{path}: clusters.{alias}.userGroups: {group!r} is not a user group "
                        "ID (S…); in Slack, open the group and choose Copy group ID"
                    )
            try:
                destination = policy_config(entry)
            except ValueError as exc:
                raise ConfigError(f"{path}: clusters.{alias}.{exc}") from None
            try:
                policy = BypassPolicy.parse(
                    f"{path}: clusters.{alias}.bypass", entry.get("bypass"), bypass
                )
            except PolicyError as exc:
                raise ConfigError(str(exc)) from None
            clusters[alias] = ClusterRef(
                alias=alias,
                subscription=str(entry["subscription"]),
                resource_group=str(entry["resourceGroup"]),
                name=str(entry["name"]),
                channels=tuple(entry.get("channels") or ()),
                user_groups=groups,
                kubeconfig_context=entry.get("kubeconfigContext"),
                in_cluster=bool(entry.get("inCluster", False)),
                policy=destination,
                pod_namespaces=tuple(str(n) for n in entry.get("podNamespaces") or ()),
                in_pod_probe=(
                    None if entry.get("inPodProbe") is None else bool(entry["inPodProbe"])
                ),
                bypass=policy,
            )
        summaries = []
        for channel, entry in (data.get("summaries") or {}).items():
            entry = entry or {}
            at, zone = str(entry.get("time", "08:00")), str(entry.get("timezone", "UTC"))
            if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", at):
                raise ConfigError(f"{path}: summaries.{channel}.time: {at!r} is not HH:MM")
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ConfigError(
                    f"{path}: summaries.{channel}.timezone: unknown {zone!r}"
                ) from None
            summaries.append(SummarySchedule(channel=channel, at=at, timezone=zone))
        return cls(clusters=clusters, summaries=summaries)

    def clusters_of(self, channel: str) -> dict[str, str]:
        """alias -> cluster id of every cluster this channel is configured for."""
        return {a: ref.id for a, ref in self.clusters.items() if channel in ref.channels}

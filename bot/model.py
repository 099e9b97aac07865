"""Findings and reports: the one shape every surface (terminal, JSON, Slack) renders.

Handlers produce `Finding`s; the engine wraps them in a `Report`. No surface computes a
verdict of its own, so the terminal, the JSON contract and Slack can never disagree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

# A JSON object as an API returns it (ARM, Kubernetes, Slack) or as we write it (reports,
# evidence): the one spelling of that type.
Json = dict[str, Any]


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"
    OK = "ok"


@dataclass(frozen=True)
class Finding:
    """One fact the checklist established, with the evidence that proves it.

    `resource` is the ARM id (or Kubernetes object) the finding is about, so a reader can
    open it; `fix` holds exact commands with the user's names filled in.
    """

    code: str
    severity: Severity
    title: str
    detail: str = ""
    resource: str | None = None
    evidence: Json = field(default_factory=dict)
    fix: list[str] = field(default_factory=list)
    about_endpoint: bool = False

    def to_json(self) -> Json:
        data = asdict(self)
        data["severity"] = str(self.severity)
        del data["about_endpoint"]
        return data

    @classmethod
    def from_json(cls, data: Json) -> Finding:
        return cls(
            code=data["code"],
            severity=Severity(data["severity"]),
            title=data.get("title", ""),
            detail=data.get("detail", ""),
            resource=data.get("resource"),
            evidence=data.get("evidence") or {},
            fix=list(data.get("fix") or []),
        )


@dataclass
class Stats:
    arm_calls: int = 0
    k8s_calls: int = 0
    duration_ms: int = 0
    run_commands: int = 0  # Azure run commands the cluster side took (0: reached directly)
    # The incident whose collection these counts are, when this check shared it
    # (bot/flight.py); kept beside the report as its `shared`, not in `stats`.
    shared_from: str | None = None


@dataclass
class ClusterSummary:
    alias: str
    id: str
    outbound_type: str | None
    network_plugin: str | None
    network_plugin_mode: str | None


@dataclass
class Report:
    cluster: ClusterSummary
    endpoint: str | None
    egress_ips: list[str]
    findings: list[Finding]
    root_cause: str | None
    stats: Stats = field(default_factory=Stats)
    # The checklist steps that ran, so a surface can show a passed step as passed
    # (not part of the JSON contract).
    steps: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: Json) -> Report:
        """A report read back from the `--json` contract (as Redis keeps it)."""
        cluster, stats = data["cluster"], data.get("stats") or {}
        return cls(
            cluster=ClusterSummary(
                alias=cluster["alias"],
                id=cluster["id"],
                outbound_type=cluster.get("outboundType"),
                network_plugin=cluster.get("networkPlugin"),
                network_plugin_mode=cluster.get("networkPluginMode"),
            ),
            endpoint=data.get("endpoint"),
            egress_ips=list(data.get("egressIps") or []),
            findings=[Finding.from_json(f) for f in data.get("findings") or []],
            root_cause=data.get("rootCause"),
            stats=Stats(
                arm_calls=stats.get("armCalls", 0),
                k8s_calls=stats.get("k8sCalls", 0),
                duration_ms=stats.get("durationMs", 0),
                run_commands=stats.get("runCommands", 0),
                shared_from=(data.get("shared") or {}).get("incident"),
            ),
        )

    def to_json(self) -> Json:
        """The `--json` contract of world-format.md, key for key."""
        return {
            "cluster": {
                "alias": self.cluster.alias,
                "id": self.cluster.id,
                "outboundType": self.cluster.outbound_type,
                "networkPlugin": self.cluster.network_plugin,
                "networkPluginMode": self.cluster.network_plugin_mode,
            },
            "endpoint": self.endpoint,
            "egressIps": self.egress_ips,
            "findings": [f.to_json() for f in self.findings],
            "rootCause": self.root_cause,
            "stats": {
                "armCalls": self.stats.arm_calls,
                "k8sCalls": self.stats.k8s_calls,
                "durationMs": self.stats.duration_ms,
                "runCommands": self.stats.run_commands,
            },
        }

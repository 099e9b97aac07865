"""Which clusters exist under which alias, which Slack channels may use each, and which
user groups (if any) a user must belong to.

In real mode a cluster with no channels listed is usable from none: use is authorized by
naming channels in the configuration, never by default. `--world` dev mode without a
configuration is open to every channel, since nothing real is behind it. Membership of the
user groups is Slack's to say: bot/slack/authorization.py asks it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.bypass.policy import BypassPolicy
from bot.config import ClusterConfig, ClusterRef
from bot.destination import PolicyConfig


@dataclass(frozen=True)
class Directory:
    clusters: dict[str, str]  # alias -> cluster ARM id
    channels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    user_groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    open_to_all: bool = False
    # Where the probe may aim, and which namespaces `--pod` may name, per alias.
    refs: dict[str, ClusterRef] = field(default_factory=dict)
    bypass: dict[str, BypassPolicy] = field(default_factory=dict)  # alias -> its policy

    @classmethod
    def from_config(cls, config: ClusterConfig) -> Directory:
        return cls(
            clusters={alias: ref.id for alias, ref in config.clusters.items()},
            channels={alias: ref.channels for alias, ref in config.clusters.items()},
            user_groups={alias: ref.user_groups for alias, ref in config.clusters.items()},
            refs=dict(config.clusters),
            bypass={alias: ref.bypass for alias, ref in config.clusters.items()},
        )

    @classmethod
    def open(cls, clusters: dict[str, str], refs: dict[str, ClusterRef] | None = None) -> Directory:
        return cls(clusters=dict(clusters), open_to_all=True, refs=dict(refs or {}))

    def policy(self, alias: str) -> PolicyConfig:
        ref = self.refs.get(alias)
        return ref.policy if ref else PolicyConfig()

    def pod_refusal(self, alias: str, pod: str | None) -> str | None:
        """Why `--pod` may not name this pod's namespace on this cluster, or None.

        A configured cluster lists the namespaces (`podNamespaces`); none listed: none
        may be named. An open dev directory (a world, no configuration) allows any."""
        if pod is None:
            return None
        namespace = pod.partition("/")[0]
        ref = self.refs.get(alias)
        allowed = ref.pod_namespaces if ref else ()
        if namespace in allowed or (self.open_to_all and not allowed):
            return None
        return (
            f"--pod may name pods in the namespaces configured for {alias!r} "
            f"({', '.join(allowed) or 'none'}), not {namespace!r}; the bot's operators can "
            "add it to the cluster's `podNamespaces`"
        )

    def allowed(self, alias: str, channel: str) -> bool:
        if alias not in self.clusters:
            return False
        return self.open_to_all or channel in self.channels.get(alias, ())

    def visible(self, channel: str) -> list[str]:
        return sorted(a for a in self.clusters if self.allowed(a, channel))

"""Who may approve a bypass of a cluster's appliance, for how long, and whether it writes.

From the configuration file: a top-level `bypass:` section gives defaults and a cluster's
own `bypass:` overrides them. Without approvers the feature is off for that cluster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

DEFAULT_MINUTES = 10
DEFAULT_MAX_MINUTES = 30


class PolicyError(ValueError):
    """A malformed `bypass:` section; the message names the key."""


@dataclass(frozen=True)
class BypassPolicy:
    approvers: tuple[str, ...] = ()  # Slack user group IDs (S…) whose members approve
    max_minutes: int = DEFAULT_MAX_MINUTES
    allow_all_traffic: bool = False
    dry_run: bool = True  # the Slack path writes nothing until an operator turns this off

    @property
    def enabled(self) -> bool:
        return bool(self.approvers)

    def minutes(self, asked: int | None) -> int:
        """The lifetime to use: the default, never more than the maximum, at least one."""
        return max(1, min(asked or DEFAULT_MINUTES, self.max_minutes))

    @classmethod
    def parse(cls, where: str, entry: Any, defaults: BypassPolicy | None = None) -> BypassPolicy:
        base = defaults or cls()
        if entry is None:
            return base
        if not isinstance(entry, dict):
            raise PolicyError(f"{where}: a mapping of approvers, maxMinutes, allowAllTraffic")
        approvers = tuple(str(g) for g in entry.get("approvers") or base.approvers)
        for group in approvers:
            if not re.fullmatch(r"S[A-Z0-9]{2,}", group):
                raise PolicyError(f"{where}.approvers: {group!r} is not a user group ID (S…)")
        max_minutes = entry.get("maxMinutes", base.max_minutes)
        if not isinstance(max_minutes, int) or isinstance(max_minutes, bool) or max_minutes < 1:
            raise PolicyError(f"{where}.maxMinutes: {max_minutes!r} is not a positive integer")
        flags = {}
        for key, attr in (("allowAllTraffic", "allow_all_traffic"), ("dryRun", "dry_run")):
            value = entry.get(key, getattr(base, attr))
            if not isinstance(value, bool):
                raise PolicyError(f"{where}.{key}: {value!r} is not true or false")
            flags[attr] = value
        return cls(approvers=approvers, max_minutes=max_minutes, **flags)

"""Latency and error injection from a world's `faults` section, shared by every emulated API."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

_LATENCY_KEYS = {"arm": "armLatencyMs", "k8s": "k8sLatencyMs", "slack": "slackLatencyMs"}


@dataclass
class FaultRule:
    status: int
    api: str | None = None
    method: str | None = None
    path_contains: str | None = None
    headers: dict[str, str] | None = None
    times: int | None = None  # None: always

    def matches(self, api: str, method: str, path: str) -> bool:
        return (
            self.api in (None, api)
            and self.method in (None, method.upper())
            and (self.path_contains is None or self.path_contains.lower() in path.lower())
        )


class Faults:
    """Decides, per request, whether to inject an error; rules with `times` run out.

    Thread-safe because concurrent requests must consume a `times: 1` rule exactly once.
    """

    def __init__(self, spec: dict[str, Any] | None) -> None:
        spec = spec or {}
        self._latency = {api: spec.get(k, 0) / 1000 for api, k in _LATENCY_KEYS.items()}
        self._rules = [_rule(r) for r in spec.get("rules", [])]
        self._lock = threading.Lock()

    def add(self, rule: dict[str, Any]) -> None:
        """Add a rule (as a world's `faults.rules` entry spells it) to a running sandbox;
        it applies after the world's own rules."""
        parsed = _rule(rule)
        with self._lock:
            self._rules.append(parsed)

    def latency_s(self, api: str) -> float:
        return self._latency.get(api, 0.0)

    def take(self, api: str, method: str, path: str) -> FaultRule | None:
        """The first live rule matching this request, with one of its `times` used up."""
        with self._lock:
            for rule in self._rules:
                if rule.times == 0 or not rule.matches(api, method, path):
                    continue
                if rule.times is not None:
                    rule.times -= 1
                return rule
        return None


def _rule(r: dict[str, Any]) -> FaultRule:
    return FaultRule(
        status=r["status"],
        api=r.get("api"),
        method=r.get("method"),
        path_contains=r.get("pathContains"),
        headers=r.get("headers"),
        times=r.get("times"),
    )

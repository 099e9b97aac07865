"""Liveness, readiness and metrics over HTTP, for every process kind.

    GET /healthz   200 while the process's main loop runs (restarting would not help
                   otherwise: Redis or Slack being away is not the process's fault)
    GET /readyz    200 when Redis answers and Slack works, else 503; the JSON body says
                   which: {"redis": "ok", "slack": "failing: ratelimited (for 12 s)"}
    GET /metrics   Prometheus text format (bot/metrics.py)

HTTP `serve` answers these beside /slack/events; Socket Mode `serve`, `worker` and `cron`
serve only these, on AKS_EGRESS_PORT, from a thread (bot/slack/http.py's server).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.metrics import SLACK

HEALTH_PATHS = ("/healthz", "/readyz", "/metrics")


def slack_from_calls() -> str | None:
    """Slack trouble as this process's latest Web API call saw it."""
    if SLACK.problem is None:
        return None
    return f"failing: {SLACK.problem} (for {time.time() - SLACK.since:.0f} s)"


@dataclass
class Probes:
    """What this process depends on. Each callable returns None when fine, else what is
    wrong (short, no secrets)."""

    redis: Callable[[], str | None]
    slack: Callable[[], str | None] | None = slack_from_calls
    alive: Callable[[], bool] = lambda: True

    def readiness(self) -> tuple[bool, dict[str, str]]:
        status = {"redis": self.redis() or "ok"}
        if self.slack is not None:
            status["slack"] = self.slack() or "ok"
        return all(v == "ok" for v in status.values()), status


def redis_probe(ping: Callable[[], Any]) -> Callable[[], str | None]:
    def probe() -> str | None:
        try:
            ping()
        except Exception as exc:  # any failure to reach Redis is "not ready"
            return f"unavailable: {type(exc).__name__}"
        return None

    return probe


def route(
    probes: Probes, environ: dict[str, Any], start_response: Callable[..., Any]
) -> Iterable[bytes]:
    """Answer one of HEALTH_PATHS."""
    path = environ.get("PATH_INFO", "")
    if path == "/metrics":
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
        return [generate_latest()]
    if path == "/healthz":
        ok, body = probes.alive(), {"process": "running"}
        if not ok:
            body = {"process": "stopped"}
    else:
        ok, body = probes.readiness()
    start_response(
        "200 OK" if ok else "503 Service Unavailable", [("Content-Type", "application/json")]
    )
    return [json.dumps(body).encode()]


def wsgi(probes: Probes) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") in HEALTH_PATHS:
            return route(probes, environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]

    return app

"""Prometheus metrics of every process (`/metrics` on the process's health port).

Each metric is documented in deploy/README.md ("Metrics"); the names here are the contract
for dashboards and alerts, so they change only with that table. Counters are recorded
where the thing happens: check runs in the worker, their outcome in the job, refusals in
the Slack listeners, API calls in the clients (an Azure pipeline policy, the Kubernetes
ApiClient, the Slack WebClient). The queue depth is read from Redis when Prometheus
scrapes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from rq import Queue

CHECKS_STARTED = Counter(
    "aks_egress_checks_started", "Check runs a worker started, by mode.", ["mode"]
)
CHECKS_FINISHED = Counter(
    "aks_egress_checks_finished",
    "Check runs that produced a report, by the cluster's outbound type and the root cause "
    "(`none` when nothing failed).",
    ["outbound_type", "root_cause"],
)
CHECKS_FAILED = Counter(
    "aks_egress_checks_failed",
    "Check runs that produced no report, by reason (cluster_unreadable; error: the job "
    "raised, e.g. Redis or Slack stayed away, and is retried while it has retries).",
    ["reason"],
)
CHECK_DURATION = Histogram(
    "aks_egress_check_duration_seconds",
    "Wall time of a check run in the worker, from start to summary, by mode.",
    ["mode"],
    buckets=(1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 300, 600),
)
REFUSALS = Counter(
    "aks_egress_refusals",
    "Requests the Slack app refused, by reason (not_allowed, rate_limited, duplicate, "
    "store_unavailable, usage).",
    ["reason"],
)
API_CALLS = Counter(
    "aks_egress_api_calls",
    "HTTP calls to Azure (ARM), Kubernetes API servers and Slack's Web API, by API.",
    ["api"],
)
API_ERRORS = Counter(
    "aks_egress_api_errors",
    "Those calls that failed (HTTP status >= 400, Slack `ok: false`, or no answer), by API.",
    ["api"],
)


@dataclass
class SlackHealth:
    """The outcome of this process's latest Slack Web API call, for readiness: Slack trouble
    shows as such, not as the process being down."""

    problem: str | None = None
    since: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, problem: str | None) -> None:
        with self._lock:
            if problem and not self.problem:
                self.since = time.time()
            self.problem = problem


SLACK = SlackHealth()


def count_call(api: str, failed: bool) -> None:
    API_CALLS.labels(api).inc()
    if failed:
        API_ERRORS.labels(api).inc()


class QueueDepth(Collector):
    """`aks_egress_queue_depth`: jobs waiting in the check queue, read at scrape time.
    Absent while Redis cannot be reached (readiness says so)."""

    def __init__(self, queue: Queue):
        self.queue = queue

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "aks_egress_queue_depth", "Jobs waiting in the check queue (not yet started)."
        )
        try:
            gauge.add_metric([], self.queue.count)
        except (RedisError, OSError):
            return
        yield gauge


_queue_lock = threading.Lock()
_queue_collector: QueueDepth | None = None


def watch_queue(queue: Queue) -> None:
    """Report this queue's depth (once per process: every process kind watches the same)."""
    global _queue_collector
    with _queue_lock:
        if _queue_collector is None:
            _queue_collector = QueueDepth(queue)
            REGISTRY.register(_queue_collector)


def check_finished(outbound_type: str | None, root_cause: str | None) -> None:
    CHECKS_FINISHED.labels(outbound_type or "unknown", root_cause or "none").inc()


def check_failed(reason: str) -> None:
    CHECKS_FAILED.labels(reason).inc()

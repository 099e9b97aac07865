"""The fleet summary's metrics reads gathered into Azure Monitor's metrics batch API.

A summary reads the same two metrics requests of every cluster's load balancer (or NAT
gateways). `metrics:getBatch` answers one request for up to 50 resources of one
subscription, region and resource type in a single call, from the region's data-plane
endpoint, and each resource's answer is what Metrics - List would give it
("How to migrate from the metrics API to the getBatch API",
https://learn.microsoft.com/azure/azure-monitor/metrics/migrate-to-batch-api; 50 resources:
https://azure.microsoft.com/updates/generalavailabilityofazuremonitormetricsdataplaneapi/).

Clusters arrive one by one as their bodies are read, so a batch waits at most `linger_s`
for company after its first resource, and goes at once when it is full. A batch that fails
(the identity lacks subscription-wide read, the data plane is unreachable, a resource is
not where its cluster is) falls back to the per-resource read of each of its resources, as
does a resource the batch answered without metrics: the summary then holds exactly what
the per-resource reads would have given it, failures included.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from bot import armid
from bot.armid import ArmId
from bot.collect.clients import AzureClients
from bot.collect.metrics import read_batch
from bot.evidence import Series

log = logging.getLogger(__name__)

BATCH_LIMIT = 50  # resources per metrics:getBatch call (the service's limit)
LINGER_S = 0.5  # how long a batch waits for more resources after its first

Spec = tuple[tuple[str, ...], str, tuple[str, ...]]  # (metrics, aggregation, split), metrics.py
Fallback = Callable[[], list[Series] | None]


@dataclass(frozen=True)
class _Key:
    """What every resource of one call shares."""

    subscription: str
    region: str
    namespace: str
    spec: Spec
    until: datetime


@dataclass
class _Batch:
    items: list[tuple[str, Future[list[Series] | None], Fallback]] = field(default_factory=list)
    timer: threading.Timer | None = None


class MetricsBatcher:
    """Gathers `read` calls into batch calls on `pool` (which must never wait on them)."""

    def __init__(
        self,
        clients: AzureClients,
        pool: ThreadPoolExecutor,
        linger_s: float = LINGER_S,
        limit: int = BATCH_LIMIT,
    ) -> None:
        self.clients = clients
        self.pool = pool
        self.linger_s = linger_s
        self.limit = limit
        self._lock = threading.Lock()
        self._open: dict[_Key, _Batch] = {}

    def read(
        self, resource_id: str, region: str, spec: Spec, until: datetime, fallback: Fallback
    ) -> Future[list[Series] | None]:
        """The resource's series for `spec`, from a batch call or else from `fallback`
        (the per-resource read, which records its own failure and gives None)."""
        rid = ArmId.parse(resource_id)
        key = _Key(rid.subscription.lower(), region.lower(), rid.type.lower(), spec, until)
        future: Future[list[Series] | None] = Future()
        with self._lock:
            batch = self._open.get(key)
            if batch is None:
                batch = self._open[key] = _Batch()
                batch.timer = threading.Timer(self.linger_s, self._due, (key, batch))
                batch.timer.daemon = True
                batch.timer.start()
            batch.items.append((resource_id, future, fallback))
            full = len(batch.items) >= self.limit
            if full:
                del self._open[key]
        if full:
            self._start(key, batch)
        return future

    def close(self) -> None:
        """Send every open batch now (the summary's last clusters wait no longer)."""
        with self._lock:
            batches = list(self._open.items())
            self._open.clear()
        for key, batch in batches:
            self._start(key, batch)

    def _due(self, key: _Key, batch: _Batch) -> None:
        with self._lock:
            if self._open.get(key) is not batch:
                return  # sent already, full
            del self._open[key]
        self._start(key, batch)

    def _start(self, key: _Key, batch: _Batch) -> None:
        if batch.timer is not None:
            batch.timer.cancel()
        self.pool.submit(self._send, key, batch)

    def _send(self, key: _Key, batch: _Batch) -> None:
        ids = [resource_id for resource_id, _, _ in batch.items]
        metrics, aggregation, split = key.spec
        try:
            client = self.clients.metrics_batch(key.region)
            found = read_batch(client, ids, metrics, aggregation, split, key.until)
        except Exception as exc:  # whatever went wrong, the per-resource reads still can
            log.warning(
                "metrics batch of %d %s in %s failed, reading each: %s",
                len(ids),
                key.namespace,
                key.region,
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            )
            found = {}
        for resource_id, future, fallback in batch.items:
            series = found.get(armid.key(resource_id))
            if series is not None:
                future.set_result(series)
            else:
                self.pool.submit(_settle, future, fallback)


def _settle(future: Future[list[Series] | None], fallback: Fallback) -> None:
    try:
        future.set_result(fallback())
    except BaseException as exc:  # handed to whoever waits on the future, as submit() does
        future.set_exception(exc)

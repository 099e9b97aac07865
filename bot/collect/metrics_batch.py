"""The fleet summary's metrics reads gathered into Azure Monitor's metrics batch API.

A summary reads the same two metrics requests of every cluster's load balancer (or NAT
gateways). `metrics:getBatch` answers one request for up to 50 resources of one
subscription, region and resource type in a single call, from the region's data-plane
endpoint, and each resource's answer is what Metrics - List would give it
("How to migrate from the metrics API to the getBatch API",
https://learn.microsoft.com/azure/azure-monitor/metrics/migrate-to-batch-api; 50 resources:
https://azure.microsoft.com/updates/generalavailabilityofazuremonitormetricsdataplaneapi/).

Clusters arrive one by one as their bodies are read (the summary starts a subscription's
clusters together, bot/summary.py), so a batch goes when it is full, when no resource has
joined it for `linger_s`, or `max_wait_s` after its first resource, whichever comes first:
it fills while its subscription's clusters are still arriving, and a cluster waits for its
metrics no longer than that. One thread sends the batches whose wait is over. A batch that
fails (the identity lacks subscription-wide read, the data plane is unreachable, a resource is
not where its cluster is) falls back to the per-resource read of each of its resources, as
does a resource the batch answered without metrics: the summary then holds exactly what
the per-resource reads would have given it, failures included.
"""

from __future__ import annotations

import logging
import threading
import time
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
LINGER_S = 0.25  # a batch goes when no resource has joined it for this long
MAX_WAIT_S = 2.0  # and at the latest this long after its first resource

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
    first: float  # time.monotonic() when its first resource joined
    due: float  # when it goes unless it fills first
    items: list[tuple[str, Future[list[Series] | None], Fallback]] = field(default_factory=list)


class MetricsBatcher:
    """Gathers `read` calls into batch calls on `pool` (which must never wait on them)
    until `close`."""

    def __init__(
        self,
        clients: AzureClients,
        pool: ThreadPoolExecutor,
        linger_s: float = LINGER_S,
        limit: int = BATCH_LIMIT,
        max_wait_s: float = MAX_WAIT_S,
    ) -> None:
        self.clients = clients
        self.pool = pool
        self.linger_s = linger_s
        self.max_wait_s = max_wait_s
        self.limit = limit
        self._changed = threading.Condition()
        self._open: dict[_Key, _Batch] = {}
        self._closed = False
        self._sender = threading.Thread(target=self._send_due, name="metrics-batch", daemon=True)
        self._sender.start()

    def read(
        self, resource_id: str, region: str, spec: Spec, until: datetime, fallback: Fallback
    ) -> Future[list[Series] | None]:
        """The resource's series for `spec`, from a batch call or else from `fallback`
        (the per-resource read, which records its own failure and gives None)."""
        rid = ArmId.parse(resource_id)
        key = _Key(rid.subscription.lower(), region.lower(), rid.type.lower(), spec, until)
        future: Future[list[Series] | None] = Future()
        now = time.monotonic()
        with self._changed:
            batch = self._open.get(key)
            if batch is None:
                batch = self._open[key] = _Batch(first=now, due=now + self.linger_s)
                self._changed.notify()  # the sender may sleep past this batch's due time
            else:  # later only: the sender, waking early, finds it not yet due
                batch.due = min(now + self.linger_s, batch.first + self.max_wait_s)
            batch.items.append((resource_id, future, fallback))
            if len(batch.items) >= self.limit:
                del self._open[key]
                self.pool.submit(self._send, key, batch)
        return future

    def close(self) -> None:
        """Send every open batch now (the summary's last clusters wait no longer)."""
        with self._changed:
            self._closed = True
            for key, batch in self._open.items():
                self.pool.submit(self._send, key, batch)
            self._open.clear()
            self._changed.notify()
        self._sender.join()

    def _send_due(self) -> None:
        """The sender thread: each batch the moment its wait is over, until closed."""
        with self._changed:
            while not self._closed:
                now = time.monotonic()
                for key, batch in list(self._open.items()):
                    if batch.due <= now:
                        del self._open[key]
                        self.pool.submit(self._send, key, batch)
                wake = min((b.due for b in self._open.values()), default=None)
                self._changed.wait(None if wake is None else wake - now)

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

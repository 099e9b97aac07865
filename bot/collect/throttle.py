"""ARM's read throttling, honoured per subscription so one throttled subscription does not
stall a run that reads many.

ARM limits reads per subscription (and principal, and region) with a token bucket: 250
reads, refilled at 25 a second. Every response says how many remain
(`x-ms-ratelimit-remaining-subscription-reads`); a throttled request gets 429 with
`Retry-After` in seconds, and a request sent before that time is refused again
("Request limits and throttling",
https://learn.microsoft.com/azure/azure-resource-manager/management/request-limits-and-throttling).

azure-core's RetryPolicy already sleeps the `Retry-After` of the request that got the
429 and retries it. This policy makes the *other* requests to that subscription wait for
the same moment instead of each drawing its own 429, and, when few reads remain, spaces
that subscription's requests at the refill rate so the bucket is never emptied. Requests to
other subscriptions never wait.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

from azure.core.pipeline.policies import SansIOHTTPPolicy

REMAINING_READS = "x-ms-ratelimit-remaining-subscription-reads"
REFILL_PER_S = 25.0  # reads a second ARM returns to a subscription's bucket
RESERVE = 25  # below this many remaining reads, pace at the refill rate
_SUBSCRIPTION = re.compile(r"/subscriptions/([^/?]+)", re.IGNORECASE)


def subscription_of(url: str) -> str | None:
    match = _SUBSCRIPTION.search(url)
    return match.group(1).lower() if match else None


def retry_after_s(headers: Any) -> float | None:
    """`Retry-After` in seconds (ARM sends a number of seconds), None when absent or not one."""
    value = headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def pace_s(remaining: str | None) -> float:
    """How long the next read of a subscription should wait after a response that said
    `remaining` reads are left: nothing while the bucket is comfortably full, one refill
    interval per read once it is nearly empty."""
    try:
        left = int(remaining) if remaining is not None else None
    except ValueError:
        return 0.0
    if left is None or left >= RESERVE:
        return 0.0
    return 1.0 / REFILL_PER_S


class SubscriptionPacer(SansIOHTTPPolicy):
    """Per subscription, the earliest moment its next request may leave and the spacing
    between its requests (see the module's docstring)."""

    def __init__(self, clock: Any = time.monotonic, sleep: Any = time.sleep) -> None:
        self._lock = threading.Lock()
        self._not_before: dict[str, float] = {}
        self._spacing: dict[str, float] = {}
        self._clock, self._sleep = clock, sleep
        self.waited_s = 0.0  # total time requests were held, for tests and benchmarks

    def on_request(self, request: Any) -> None:
        sub = subscription_of(request.http_request.url)
        if sub is None:
            return
        with self._lock:
            now = self._clock()
            slot = max(now, self._not_before.get(sub, 0.0))
            self._not_before[sub] = slot + self._spacing.get(sub, 0.0)
            wait_s = slot - now
            self.waited_s += wait_s
        if wait_s > 0:
            self._sleep(wait_s)

    def on_response(self, request: Any, response: Any) -> None:
        sub = subscription_of(request.http_request.url)
        if sub is None:
            return
        headers = response.http_response.headers
        with self._lock:
            self._spacing[sub] = pace_s(headers.get(REMAINING_READS))
            if response.http_response.status_code == 429 and (after := retry_after_s(headers)):
                resume = self._clock() + after
                self._not_before[sub] = max(self._not_before.get(sub, 0.0), resume)
